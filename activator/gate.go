package activator

import "sync"

// gate counts a socket's live connections against its max_connections,
// which a new definition may change while connections hold slots: a
// counting semaphore whose size can change.
type gate struct {
	mu      sync.Mutex
	n, max  int
	waiting int           // takers waiting for freed
	freed   chan struct{} // closed and replaced when a slot frees or max grows, if anyone waits
}

func newGate(max int) *gate { return &gate{max: max, freed: make(chan struct{})} }

// take takes a slot, waiting for one until stop or changed is closed; it
// reports false if either was.
func (g *gate) take(stop, changed <-chan struct{}) bool {
	g.mu.Lock()
	for g.n >= g.max {
		g.waiting++
		ch := g.freed
		g.mu.Unlock()
		freed := false
		select {
		case <-ch:
			freed = true
		case <-stop:
		case <-changed:
		}
		g.mu.Lock()
		g.waiting--
		if !freed {
			g.mu.Unlock()
			return false
		}
	}
	g.n++
	g.mu.Unlock()
	return true
}

// tryTake takes a slot if one is free.
func (g *gate) tryTake() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n >= g.max {
		return false
	}
	g.n++
	return true
}

// give gives a slot back.
func (g *gate) give() {
	g.mu.Lock()
	g.n--
	g.wakeLocked()
	g.mu.Unlock()
}

// setMax changes the number of slots. Connections over a lowered max keep
// theirs; new ones wait until the count is below it.
func (g *gate) setMax(max int) {
	g.mu.Lock()
	g.max = max
	g.wakeLocked()
	g.mu.Unlock()
}

func (g *gate) wakeLocked() {
	if g.waiting > 0 {
		close(g.freed)
		g.freed = make(chan struct{})
	}
}
