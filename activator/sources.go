package activator

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/socketd/socketd"
)

// A socket keeps the rates of at most maxRateSources sources: past
// pruneRateSources, the sources whose bucket has filled up again (idle ones)
// are forgotten, and the next pruning waits until there are twice as many;
// at maxRateSources, a new source is refused (reason rate) until some are
// forgotten, so that a client minting sources (a routed IPv6 prefix) can
// neither grow memory nor make every connection pay for a scan.
const (
	pruneRateSources = 16384
	maxRateSources   = 1 << 18
)

// maxStatusSources bounds the sources a socket's status lists.
const maxStatusSources = 100

// bucket is a token bucket: a rate limit's state.
type bucket struct {
	tokens float64
	last   time.Time // when tokens was last brought up to date; zero: full
}

// take takes a token at now if r allows one; if not, wait says when one
// will be there.
func (b *bucket) take(r *socketd.RateLimit, now time.Time) (ok bool, wait time.Duration) {
	burst := float64(r.Burst)
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*r.PerSecond)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	// Bounded: a rate stored before Validate bounded it must not make
	// the wait overflow into the past, and spin.
	wait = time.Duration(min((1-b.tokens)/r.PerSecond, float64(24*time.Hour/time.Second)) * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// full reports whether the bucket is full again at now: it can be
// forgotten.
func (b *bucket) full(r *socketd.RateLimit, now time.Time) bool {
	return b.tokens+now.Sub(b.last).Seconds()*r.PerSecond >= float64(r.Burst)
}

// sources counts a socket's live connections by source (see
// socketd.Limits.SourcePrefix), and keeps each source's rate.
type sources struct {
	mu        sync.Mutex
	live      map[netip.Prefix]int
	rates     map[netip.Prefix]*bucket
	pruneMark int       // len(rates) at which to prune next
	pruned    time.Time // when rates was last pruned
}

// enter counts a new connection from src, unless the limits refuse it: it
// returns the reason then.
func (s *sources) enter(l *socketd.Limits, src netip.Prefix, now time.Time) (reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := l.SourceRateLimit; r == nil {
		s.rates = nil // a rate limit removed: forget the rates
	} else {
		if s.rates == nil {
			s.rates, s.pruneMark = map[netip.Prefix]*bucket{}, pruneRateSources
		}
		b := s.rates[src]
		if b == nil {
			if len(s.rates) >= s.pruneMark || len(s.rates) >= maxRateSources && now.Sub(s.pruned) >= time.Second {
				s.pruneLocked(r, now)
				s.pruned = now
				s.pruneMark = min(max(pruneRateSources, 2*len(s.rates)), maxRateSources)
			}
			if len(s.rates) >= maxRateSources {
				return socketd.ReasonRate // at the cap: pruned again at most once a second
			}
			b = &bucket{}
			s.rates[src] = b
		}
		if ok, _ := b.take(r, now); !ok {
			return socketd.ReasonRate
		}
	}
	if n := l.MaxConnectionsPerSource; n > 0 && s.live[src] >= n {
		return socketd.ReasonPerSource
	}
	if s.live == nil {
		s.live = map[netip.Prefix]int{}
	}
	s.live[src]++
	return ""
}

// pruneLocked forgets the sources whose bucket is full again.
func (s *sources) pruneLocked(r *socketd.RateLimit, now time.Time) {
	for src, b := range s.rates {
		if b.full(r, now) {
			delete(s.rates, src)
		}
	}
}

// leave counts a connection from src gone.
func (s *sources) leave(src netip.Prefix) {
	s.mu.Lock()
	if s.live[src] <= 1 {
		delete(s.live, src)
	} else {
		s.live[src]--
	}
	s.mu.Unlock()
}

// counts returns the sources with live connections, the busiest first, at
// most maxStatusSources of them.
func (s *sources) counts() []socketd.SourceCount {
	s.mu.Lock()
	out := make([]socketd.SourceCount, 0, len(s.live))
	for src, n := range s.live {
		out = append(out, socketd.SourceCount{Source: src.String(), Connections: n})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b socketd.SourceCount) int {
		return cmp.Or(cmp.Compare(b.Connections, a.Connections), cmp.Compare(a.Source, b.Source))
	})
	return out[:min(len(out), maxStatusSources)]
}

// shownSources returns the socket's live sources as its definition lets
// them be shown (shownSource): merged into their /24 or /48, or into one.
func (s *socket) shownSources() []socketd.SourceCount {
	counts := s.sources.counts()
	def := s.def.Load()
	if def == nil || !def.masksRemote() {
		return counts
	}
	merged := map[string]int{}
	for _, c := range counts {
		p, err := netip.ParsePrefix(c.Source)
		if err != nil {
			continue
		}
		merged[def.shownSource(p)] += c.Connections
	}
	out := make([]socketd.SourceCount, 0, len(merged))
	for src, n := range merged {
		out = append(out, socketd.SourceCount{Source: src, Connections: n})
	}
	slices.SortFunc(out, func(a, b socketd.SourceCount) int {
		return cmp.Or(cmp.Compare(b.Connections, a.Connections), cmp.Compare(a.Source, b.Source))
	})
	return out
}

// rateGate paces a socket by its rate_limit: it holds the socket's bucket
// and, while the socket waits for a token, when it resumes.
type rateGate struct {
	mu     sync.Mutex
	b      bucket
	paused time.Time // when the socket resumes; zero while it is not paused
}

// wait takes a token of r, waiting for one while stop and changed are
// open; it reports false if either was closed. A nil r takes nothing.
func (g *rateGate) wait(r *socketd.RateLimit, stop, changed <-chan struct{}) bool {
	if r == nil {
		g.mu.Lock()
		g.paused = time.Time{}
		g.mu.Unlock()
		return true
	}
	for {
		now := time.Now()
		g.mu.Lock()
		ok, wait := g.b.take(r, now)
		if ok {
			g.paused = time.Time{}
		} else {
			g.paused = now.Add(wait)
		}
		g.mu.Unlock()
		if ok {
			return true
		}
		if !sleep(wait, stop, changed) {
			return false
		}
	}
}

// resumes returns when the paused socket resumes, or the zero time.
func (g *rateGate) resumes() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused.IsZero() && time.Now().After(g.paused) {
		return time.Time{}
	}
	return g.paused
}
