package activator

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/socketd/socketd"
)

// A socket's refusals get a history row each within a budget: refusalBurst
// rows at once, then refusalRate a second. Beyond it they are only counted,
// and the counts are written as one summary row (reason folded) at most
// summaryInterval after the first of them, so that a flood cannot grow the
// history without bound.
const (
	refusalBurst    = 100
	refusalRate     = 1.0
	summaryInterval = time.Minute
)

// refusals counts a socket's refusals and keeps its budget of rows.
type refusals struct {
	mu     sync.Mutex
	by     map[string]int64 // since the daemon started
	tokens float64          // rows the budget allows now
	last   time.Time        // when tokens was last brought up to date
	// folded counts the refusals without a row since foldedSince; a
	// summary row is due once summary fires.
	folded      map[string]int64
	foldedSince time.Time
	summary     *time.Timer
}

// countRefusal counts a refusal whose row is written another way (it was
// begun before the refusal).
func (s *socket) countRefusal(reason string) {
	s.refused.Add(1)
	s.refusals.mu.Lock()
	s.refusals.countLocked(reason, time.Now())
	s.refusals.mu.Unlock()
}

func (r *refusals) countLocked(reason string, now time.Time) {
	if r.by == nil {
		r.by, r.tokens, r.last = map[string]int64{}, refusalBurst, now
	}
	r.by[reason]++
}

// counts returns the refusals by reason, for status.
func (r *refusals) counts() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		return map[string]int64{} // {} in JSON, not null
	}
	return maps.Clone(r.by)
}

// refuse records that a connection to s was refused for reason (one of
// socketd.Reasons), detail saying it for humans. Within the socket's budget
// it gets a row of its own, which conn makes (nothing begun yet) with the
// words of detail; beyond it, the refusal is folded into the next summary
// row, and neither is called: under a flood, a refusal costs no more than
// it must.
func (a *Activator) refuse(s *socket, reason string, detail func() string, conn func() socketd.Connection) {
	s.refused.Add(1)
	r := &s.refusals
	now := time.Now()
	r.mu.Lock()
	r.countLocked(reason, now)
	r.tokens = min(refusalBurst, r.tokens+now.Sub(r.last).Seconds()*refusalRate)
	r.last = now
	// When the history cannot be written, the count is all there is.
	row := r.tokens >= 1 && reason != socketd.ReasonHistoryUnavailable
	if row {
		r.tokens--
	} else {
		if r.folded == nil {
			r.folded, r.foldedSince = map[string]int64{}, now
			r.summary = time.AfterFunc(summaryInterval, func() { a.writeSummary(s) })
		}
		r.folded[reason]++
	}
	r.mu.Unlock()
	if !row {
		return
	}
	rec := conn()
	ended := now.UTC()
	ms := now.Sub(rec.StartedAt).Milliseconds()
	rec.State, rec.Reason, rec.Error = socketd.ConnRefused, reason, detail()
	rec.EndedAt, rec.DurationMS = &ended, &ms
	a.refusalSpan(s, &rec, now)
	if err := a.cfg.Recorder.BeginConnectionAsync(&rec, func(error) {}); err != nil {
		// Nothing more to do: the count stands.
		a.log.Debug("record refusal", "socket", s.name, "err", err)
	}
}

// writeSummary writes the summary row of the refusals s folded, if any.
func (a *Activator) writeSummary(s *socket) {
	r := &s.refusals
	r.mu.Lock()
	folded, since := r.folded, r.foldedSince
	r.folded, r.summary = nil, nil
	r.mu.Unlock()
	if len(folded) == 0 {
		return
	}
	var total int64
	parts := make([]string, 0, len(folded))
	for _, reason := range slices.Sorted(maps.Keys(folded)) {
		total += folded[reason]
		parts = append(parts, fmt.Sprintf("%s %d", reason, folded[reason]))
	}
	now := time.Now()
	ended, ms := now.UTC(), now.Sub(since).Milliseconds()
	rec := socketd.Connection{
		Socket: s.name, State: socketd.ConnRefused, Reason: socketd.ReasonFolded,
		StartedAt: since.UTC(), EndedAt: &ended, DurationMS: &ms,
		Error: fmt.Sprintf("%d more connections refused, without a row each: %s", total, strings.Join(parts, ", ")),
	}
	if err := a.cfg.Recorder.BeginConnectionAsync(&rec, func(error) {}); err != nil {
		a.log.Error("record refusals", "socket", s.name, "refused", total, "err", err)
	}
}

// writeSummaries writes the summary rows due, at Close.
func (a *Activator) writeSummaries() {
	a.mu.RLock()
	socks := slices.Collect(maps.Values(a.sockets))
	a.mu.RUnlock()
	for _, s := range socks {
		a.flushSummary(s)
	}
}

// flushSummary writes the summary row of s now, if one is due, rather than
// when its timer fires.
func (a *Activator) flushSummary(s *socket) {
	s.refusals.mu.Lock()
	t := s.refusals.summary
	s.refusals.mu.Unlock()
	if t != nil && t.Stop() {
		a.writeSummary(s)
	}
}
