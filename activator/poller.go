package activator

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller is an epoll instance that itself waits in the netpoller, so that
// one goroutine waits for many descriptors (lingering connections, the
// pidfds of handlers) without a netpoll registration, an os.File or a
// goroutine for each.
type poller struct {
	epfd   int      // never f.Fd(): that would make it blocking
	f      *os.File // the same, waiting in the netpoller
	rc     syscall.RawConn
	events [64]unix.EpollEvent // serve's only
	done   chan struct{}       // closed when serve returns
}

func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Only a non-blocking fd waits in the netpoller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &poller{epfd: fd, f: f, rc: rc, done: make(chan struct{})}, nil
}

// add watches fd for input (and the peer's shutdown).
func (p *poller) add(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// del stops watching fd. It must come before fd is closed: epoll watches
// the open file, which another process may hold open too.
func (p *poller) del(fd int) {
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// serve calls handle with the descriptors that are ready, as they become
// ready, and with none when the deadline set with setDeadline passes,
// until stop.
func (p *poller) serve(handle func(ready []unix.EpollEvent)) {
	defer close(p.done)
	for {
		n := 0
		err := p.rc.Read(func(fd uintptr) bool {
			n, _ = unix.EpollWait(int(fd), p.events[:], 0)
			return n > 0
		})
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return // stopped
		}
		handle(p.events[:max(n, 0)])
	}
}

// wait waits until a descriptor is ready and returns it, without serve:
// for a poller that only ever waits. It returns an error once the poller is
// closed.
func (p *poller) wait() (int, error) {
	var ev [1]unix.EpollEvent
	n := 0
	err := p.rc.Read(func(fd uintptr) bool {
		n, _ = unix.EpollWait(int(fd), ev[:], 0)
		return n > 0
	})
	if err != nil {
		return -1, err
	}
	return int(ev[0].Fd), nil
}

// ready reports whether a descriptor is ready now.
func (p *poller) ready() bool {
	var ev [1]unix.EpollEvent
	n, _ := unix.EpollWait(p.epfd, ev[:], 0)
	return n > 0
}

// setDeadline makes serve call its handler at t; the zero time never. It
// may be called while serve waits.
func (p *poller) setDeadline(t time.Time) { _ = p.f.SetReadDeadline(t) }

// stop closes the epoll instance and waits for serve to return. The caller
// makes sure nothing is waited for any more: whatever still is, is
// forgotten.
func (p *poller) stop() {
	p.f.Close()
	<-p.done
}
