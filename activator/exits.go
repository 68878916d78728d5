package activator

import (
	"sync"
	"time"
)

// exitWatcher runs the exit handling of handlers (see conn.handleExit): it
// waits for their pidfds in one epoll instance, so that a worker is free
// again as soon as its handler has started, and a running handler costs no
// goroutine, no os.File and no netpoll registration of its own.
type exitWatcher struct {
	p *poller

	mu       sync.Mutex
	waiting  map[int]*conn // by pidfd
	stopping bool
	stopped  chan struct{} // closed when run returns
}

func newExitWatcher() (*exitWatcher, error) {
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	return &exitWatcher{p: p, waiting: map[int]*conn{}, stopped: make(chan struct{})}, nil
}

// add hands over c, whose handler's pidfd is pidfd: c.handleExit runs on
// the watcher's goroutine once the handler has exited. It reports false if
// the watcher cannot take it.
func (w *exitWatcher) add(pidfd int, c *conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping || w.p.add(pidfd) != nil {
		return false
	}
	w.waiting[pidfd] = c
	return true
}

// stop makes run return once no handler is waited for any more; add
// refuses from now on.
func (w *exitWatcher) stop() {
	w.mu.Lock()
	w.stopping = true
	w.p.setDeadline(time.Now()) // wake run to see it
	w.mu.Unlock()
}

// run waits for exits until stop.
func (w *exitWatcher) run() {
	defer close(w.stopped)
	defer w.p.close()
	var exited []*conn
	for {
		ready, err := w.p.wait()
		if err != nil {
			return
		}
		w.mu.Lock()
		for _, ev := range ready {
			fd := int(ev.Fd)
			if c := w.waiting[fd]; c != nil {
				delete(w.waiting, fd)
				w.p.del(fd) // the pidfd lives on, to signal what the handler left
				exited = append(exited, c)
			}
		}
		stop := w.stopping && len(w.waiting) == 0
		if w.stopping && !stop {
			w.p.setDeadline(time.Time{}) // stop's wake-up is seen
		}
		w.mu.Unlock()
		for i, c := range exited {
			c.handleExit()
			exited[i] = nil
		}
		exited = exited[:0]
		if stop {
			return
		}
	}
}
