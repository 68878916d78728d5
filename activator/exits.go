package activator

import (
	"sync"

	"golang.org/x/sys/unix"
)

// exitWatcher runs the exit handling of handlers (see conn.handleExit): it
// waits for their pidfds in one epoll instance, so that a worker is free
// again as soon as its handler has started, and a running handler costs no
// goroutine, no os.File and no netpoll registration of its own.
type exitWatcher struct {
	p *poller

	mu      sync.Mutex
	waiting map[int]*conn // by pidfd
	exited  []*conn       // serve's only
}

// newExitWatcher starts an exit watcher; stop it with w.p.stop once no
// handler can be handed to it any more.
func newExitWatcher() (*exitWatcher, error) {
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	w := &exitWatcher{p: p, waiting: map[int]*conn{}}
	go p.serve(w.handle)
	return w, nil
}

// add hands over c, whose handler's pidfd is pidfd: c.handleExit runs on
// the watcher's goroutine once the handler has exited. It reports false if
// the watcher cannot take it.
func (w *exitWatcher) add(pidfd int, c *conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.p.add(pidfd) != nil {
		return false
	}
	w.waiting[pidfd] = c
	return true
}

// handle runs the exit handling of the handlers whose pidfd is ready.
func (w *exitWatcher) handle(ready []unix.EpollEvent) {
	w.mu.Lock()
	for _, ev := range ready {
		fd := int(ev.Fd)
		if c := w.waiting[fd]; c != nil {
			delete(w.waiting, fd)
			w.p.del(fd) // the pidfd lives on, to signal what the handler left
			w.exited = append(w.exited, c)
		}
	}
	w.mu.Unlock()
	for i, c := range w.exited {
		c.handleExit()
		w.exited[i] = nil
	}
	w.exited = w.exited[:0]
}
