package activator

import (
	"errors"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxLog bounds the standard error kept per connection: its last 64 KiB.
const maxLog = 64 << 10

const readChunk = 16 << 10

// readBufs holds read buffers, so that a handler that writes nothing to
// stderr costs no buffer of its own.
var readBufs = sync.Pool{New: func() any { return new([readChunk]byte) }}

// logWatchAfter is how long a handler with stderr "log" runs before a
// goroutine starts reading its pipe. Most handlers are done sooner: their
// stderr is read once, without waiting, when they exit, which spares each
// connection a goroutine and a netpoller registration. A handler that fills
// the pipe (64 KiB) before then waits at most about twice this long.
const logWatchAfter = 50 * time.Millisecond

// watchLogs starts, every logWatchAfter, a reader for the stderr pipe of
// each handler that has been running longer than that, until Close.
func (a *Activator) watchLogs() {
	defer a.wg.Done()
	tick := time.NewTicker(logWatchAfter)
	defer tick.Stop()
	var due []*conn
	for {
		select {
		case <-a.done:
			return
		case now := <-tick.C:
			a.logMu.Lock()
			for c := range a.unwatched {
				if now.Sub(c.start) >= logWatchAfter {
					due = append(due, c)
					delete(a.unwatched, c)
				}
			}
			a.logMu.Unlock()
			for _, c := range due {
				c.watchLog()
			}
			clear(due)
			due = due[:0]
		}
	}
}

// watchLog starts the reader of c's stderr pipe unless the handler has
// exited and its stderr has been read already.
func (c *conn) watchLog() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logFD >= 0 && !c.exited {
		c.log = startLog(c.logFD)
		c.logFD = -1
	}
}

// readLog reads what the stderr pipe fd (non-blocking) holds, without
// waiting, closes it and returns the tail: the capture of a handler that
// exited before its pipe was watched.
func readLog(fd int) []byte {
	var l stderrLog
	buf := readBufs.Get().(*[readChunk]byte)
	defer readBufs.Put(buf)
	for {
		n, err := unix.Read(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 || err != nil {
			break
		}
		l.write(buf[:n])
	}
	unix.Close(fd)
	return l.trimmed()
}

// stderrLog captures a handler's standard error for stderr "log" once it
// has run for logWatchAfter: a goroutine reads the pipe, waiting in the
// netpoller, and keeps the tail.
type stderrLog struct {
	f    *os.File
	done chan struct{}
	tail []byte // written by the reader until done is closed
}

// startLog starts capturing from fd, the read end of the handler's stderr
// pipe; it takes ownership of fd.
func startLog(fd int) *stderrLog {
	// fd is non-blocking (see run), so the reader waits in the netpoller.
	l := &stderrLog{f: os.NewFile(uintptr(fd), "stderr"), done: make(chan struct{})}
	go l.read()
	return l
}

// stop bounds the capture once the handler has exited: a process it left
// behind may hold the pipe open. What is already in the pipe is kept.
func (l *stderrLog) stop(linger time.Duration, now bool) {
	if now {
		linger = 0
	}
	_ = l.f.SetReadDeadline(time.Now().Add(linger))
}

// wait waits for the reader and returns the captured tail.
func (l *stderrLog) wait() []byte {
	<-l.done
	l.f.Close()
	return l.trimmed()
}

// trimmed returns the last maxLog bytes captured.
func (l *stderrLog) trimmed() []byte {
	if len(l.tail) > maxLog {
		return slices.Clone(l.tail[len(l.tail)-maxLog:])
	}
	return l.tail
}

func (l *stderrLog) read() {
	defer close(l.done)
	buf := readBufs.Get().(*[readChunk]byte)
	defer readBufs.Put(buf)
	for {
		n, err := l.f.Read(buf[:])
		l.write(buf[:n])
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			l.readRest(buf[:])
		}
		return
	}
}

// readRest reads what the pipe holds without waiting: a deadline that has
// passed would keep Read from even trying.
func (l *stderrLog) readRest(buf []byte) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		for {
			n, err := unix.Read(int(fd), buf)
			if n <= 0 || err != nil {
				return
			}
			l.write(buf[:n])
		}
	})
}

// write appends p to the tail, keeping at most 2*maxLog bytes so that
// trimming costs one copy per maxLog bytes written.
func (l *stderrLog) write(p []byte) {
	if len(p) >= maxLog {
		l.tail = append(l.tail[:0], p[len(p)-maxLog:]...)
		return
	}
	if len(l.tail)+len(p) > 2*maxLog {
		l.tail = append(l.tail[:0], l.tail[len(l.tail)-(maxLog-len(p)):]...)
	}
	l.tail = append(l.tail, p...)
}
