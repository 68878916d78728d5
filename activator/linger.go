package activator

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// lingerer closes the connections whose peer has not closed yet when their
// handler is done (see closeConn). It waits for all of them in one epoll
// instance, which itself waits in the netpoller, drains each as its input
// comes, and closes it once the peer has closed or its linger has passed.
// A connection waiting here costs no goroutine, no timer and no switch of
// its fd to non-blocking (the drain does not wait: MSG_DONTWAIT).
type lingerer struct {
	p *poller

	mu      sync.Mutex
	waiting map[int]*lingering // by fd
	order   []*lingering       // by deadline: every linger is as long; done ones stay until first
	closing []*lingering       // serve's only: released, to be closed once mu is
}

// lingering is a connection the lingerer holds.
type lingering struct {
	fd       int
	deadline time.Time
	closed   func(in, out int64)
	done     bool // closed, or about to be: it is no longer waited for
	eof      bool // the peer has closed its side
}

// newLingerer starts a lingerer; stop it with l.p.stop once no connection
// can be handed to it any more.
func newLingerer() (*lingerer, error) {
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	l := &lingerer{p: p, waiting: map[int]*lingering{}}
	go p.serve(l.handle)
	return l, nil
}

// add hands connection fd over until deadline; closed is called with the
// byte counts once it is closed, on the lingerer's goroutine. It reports
// false if the lingerer cannot take fd: the caller closes it.
func (l *lingerer) add(fd int, deadline time.Time, closed func(in, out int64)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p.add(fd) != nil {
		return false
	}
	e := &lingering{fd: fd, deadline: deadline, closed: closed}
	if len(l.waiting) == 0 {
		// No deadline is set while nothing waits.
		l.p.setDeadline(deadline)
	}
	l.waiting[fd] = e
	l.order = append(l.order, e)
	return true
}

// handle drains the connections that are ready, closes those whose peer
// has closed or whose linger has passed, and sets the next deadline.
func (l *lingerer) handle(ready []unix.EpollEvent) {
	now := time.Now()
	l.mu.Lock()
	for _, ev := range ready {
		e := l.waiting[int(ev.Fd)]
		if e == nil {
			continue
		}
		if eof, err := drain(e.fd); eof || err != nil {
			e.eof = eof
			l.release(e)
		}
	}
	for len(l.order) > 0 && (l.order[0].done || !now.Before(l.order[0].deadline)) {
		e := l.order[0]
		l.order[0] = nil
		l.order = l.order[1:]
		if !e.done {
			e.eof, _ = drain(e.fd) // what came since the last pass
			l.release(e)
		}
	}
	var next time.Time // none
	if len(l.order) > 0 {
		next = l.order[0].deadline
	}
	l.p.setDeadline(next)
	l.mu.Unlock()

	for i, e := range l.closing {
		in, out := tcpBytes(e.fd, e.eof)
		unix.Close(e.fd)
		e.closed(in, out)
		l.closing[i] = nil
	}
	l.closing = l.closing[:0]
}

// release stops waiting for e and queues it to be closed once l.mu is
// released. The caller holds l.mu.
func (l *lingerer) release(e *lingering) {
	e.done = true
	delete(l.waiting, e.fd)
	l.p.del(e.fd)
	l.closing = append(l.closing, e)
}
