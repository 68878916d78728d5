// Package testhandler turns a test binary into a connection handler, so that
// tests can run real child processes without building or shipping programs:
// a socket's command is the test binary itself, and the environment variable
// SOCKETD_TEST_HANDLER says what it should do.
//
// Use it from TestMain, before anything else:
//
//	func TestMain(m *testing.M) { testhandler.Main(); os.Exit(m.Run()) }
//
// and define the socket with Command [exe] (os.Executable) and Environment
// {"SOCKETD_TEST_HANDLER": "echo"}.
package testhandler

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Env is the environment variable that selects the handler.
const Env = "SOCKETD_TEST_HANDLER"

// Handlers, by the value of Env. Every handler exits when done; "hang",
// "readyhang" and "trapterm" only end by a signal, and so do the grandchildren
// of "spawn" and "spawntrap".
const (
	Echo      = "echo"      // copies stdin to stdout until EOF
	Hello     = "hello"     // writes "Hello World\n" and exits without reading
	FD3Echo   = "fd3echo"   // copies fd 3 to itself until EOF (systemd LISTEN_FDS style)
	Environ   = "env"       // writes its environment, one KEY=value a line, sorted
	Exit3     = "exit3"     // exits with status 3
	Hang      = "hang"      // does nothing until killed
	ReadyHang = "readyhang" // writes "ready\n", then does nothing until killed
	TrapTerm  = "trapterm"  // ignores SIGTERM, writes "ready\n", then waits for SIGKILL
	ReadyStop = "readystop" // writes "ready\n", then stops itself (SIGSTOP)
	Stderr    = "stderr"    // writes to stderr (see StderrSize), then "done\n" to stdout
	Say       = "say"       // writes the value of SOCKETD_TEST_SAY and a newline
	Spawn     = "spawn"     // starts a "hang" grandchild in its group, writes its pid, exits
	SpawnTrap = "spawntrap" // starts a "trapterm" grandchild in its group, writes its pid once SIGTERM is trapped, exits
	Cwd       = "cwd"       // writes its working directory and a newline
	// SDListen takes its connection as systemd passes it to an Accept=yes
	// service without StandardInput=socket, through go-systemd's
	// activation (which checks LISTEN_PID against its own pid): it writes
	// to it the fds' names and whether stdin is empty, then echoes.
	SDListen = "sdlisten"
	// SDService is a service of an accept: false socket: it takes its
	// listening sockets through go-systemd's activation and serves them
	// all until none has been used for a second. To each connection it
	// writes "INDEX NAME pid=PID nonblock=BOOL" and a newline (INDEX is
	// the socket's place in LISTEN_FDS) and closes it; each datagram it
	// answers with the same line and the datagram after a space.
	SDService = "sdservice"
	// InetdWait is a service that gets its one listening socket as stdin,
	// as inetd's wait services do, and serves it as SDService does.
	InetdWait = "inetdwait"
	// Stamp appends "REMOTE_ADDR start NANOSECONDS" to the file
	// SOCKETD_TEST_STAMPS when it starts, holds the connection for
	// SOCKETD_TEST_HOLD milliseconds, appends "REMOTE_ADDR end
	// NANOSECONDS" and exits: its own account of when it ran.
	Stamp = "stamp"
	// SockOpts writes the options of its connection (stdin): keep-alive
	// and its time, interval and probes, no-delay, receive and send
	// buffers.
	SockOpts = "sockopts"
)

// StderrSize is the environment variable that makes the "stderr" handler
// write that many bytes: a run of '.' ending in "END\n". Without it the
// handler writes "hello stderr\n".
const StderrSize = "SOCKETD_TEST_STDERR_SIZE"

// Main runs the handler named by SOCKETD_TEST_HANDLER and exits; it returns
// at once when the variable is not set.
func Main() {
	name, ok := os.LookupEnv(Env)
	if !ok {
		return
	}
	if err := run(name); err != nil {
		fmt.Fprintf(os.Stderr, "testhandler %s: %v\n", name, err)
		exit(1)
	}
	exit(0)
}

// exit ends the process at once. os.Exit would, in a binary built with
// -race, first sleep for a second (GORACE atexit_sleep_ms), which would make
// every handler slow and every test that waits for one slower.
func exit(code int) {
	syscall.Exit(code)
}

func run(name string) error {
	switch name {
	case Echo:
		_, err := io.Copy(os.Stdout, os.Stdin)
		return err
	case Hello:
		_, err := os.Stdout.WriteString("Hello World\n")
		return err
	case SockOpts:
		get := func(level, opt int) int {
			v, err := syscall.GetsockoptInt(0, level, opt)
			if err != nil {
				return -1
			}
			return v
		}
		_, err := fmt.Printf("keepalive=%d idle=%d intvl=%d cnt=%d nodelay=%d rcvbuf=%d sndbuf=%d\n",
			get(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE), get(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE),
			get(syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL), get(syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT),
			get(syscall.IPPROTO_TCP, syscall.TCP_NODELAY), get(syscall.SOL_SOCKET, syscall.SO_RCVBUF),
			get(syscall.SOL_SOCKET, syscall.SO_SNDBUF))
		return err
	case SDListen:
		files := activation.Files(true)
		if len(files) != 1 {
			return fmt.Errorf("activation: %d files (LISTEN_PID=%s, pid %d, LISTEN_FDS=%s)",
				len(files), os.Getenv("LISTEN_PID"), os.Getpid(), os.Getenv("LISTEN_FDS"))
		}
		n, _ := os.Stdin.Read(make([]byte, 1))
		f := files[0]
		if _, err := fmt.Fprintf(f, "name=%s stdin=%d\n", f.Name(), n); err != nil {
			return err
		}
		_, err := io.Copy(f, f)
		return err
	case SDService:
		return serveListeners(activation.Files(true))
	case InetdWait:
		return serveListeners([]*os.File{os.Stdin})
	case Stamp:
		return stamp()
	case FD3Echo:
		f := os.NewFile(3, "fd3")
		if f == nil {
			return fmt.Errorf("no fd 3")
		}
		_, err := io.Copy(f, f)
		return err
	case Environ:
		env := os.Environ()
		sort.Strings(env)
		_, err := os.Stdout.WriteString(strings.Join(env, "\n") + "\n")
		return err
	case Exit3:
		exit(3)
	case Hang:
		hang()
	case ReadyHang:
		if _, err := os.Stdout.WriteString("ready\n"); err != nil {
			return err
		}
		hang()
	case ReadyStop:
		if _, err := os.Stdout.WriteString("ready\n"); err != nil {
			return err
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGSTOP); err != nil {
			return err
		}
		hang()
	case TrapTerm:
		// Notify rather than Ignore: an ignored signal would be inherited.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM)
		if _, err := os.Stdout.WriteString("ready\n"); err != nil {
			return err
		}
		hang()
	case Stderr:
		return writeStderr()
	case Say:
		_, err := os.Stdout.WriteString(os.Getenv("SOCKETD_TEST_SAY") + "\n")
		return err
	case Spawn:
		return spawnGrandchild(Hang)
	case SpawnTrap:
		return spawnGrandchild(TrapTerm)
	case Cwd:
		dir, err := os.Getwd()
		if err != nil {
			return err
		}
		_, err = os.Stdout.WriteString(dir + "\n")
		return err
	}
	return fmt.Errorf("unknown handler %q", name)
}

// hang blocks until the process is killed. A bare select{} would be
// reported by the runtime as a deadlock.
func hang() {
	for {
		time.Sleep(time.Hour)
	}
}

func writeStderr() error {
	msg := []byte("hello stderr\n")
	if s := os.Getenv(StderrSize); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 4 {
			return fmt.Errorf("bad %s %q", StderrSize, s)
		}
		msg = []byte(strings.Repeat(".", n-4) + "END\n")
	}
	if _, err := os.Stderr.Write(msg); err != nil {
		return err
	}
	_, err := os.Stdout.WriteString("done\n")
	return err
}

// spawnGrandchild leaves a process running handler mode behind in the
// handler's process group, holding none of its files, as a careless handler
// would. For TrapTerm it waits until the grandchild has trapped SIGTERM, so
// that only SIGKILL can end it once the handler is gone.
func spawnGrandchild(mode string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	attr := &os.ProcAttr{Env: []string{Env + "=" + mode}}
	var ready, w *os.File
	if mode == TrapTerm {
		if ready, w, err = os.Pipe(); err != nil {
			return err
		}
		defer ready.Close()
		attr.Files = []*os.File{nil, w, nil}
	}
	p, err := os.StartProcess(exe, []string{exe}, attr)
	if w != nil {
		w.Close() // so that a grandchild dying early shows as end of file
	}
	if err != nil {
		return err
	}
	if ready != nil {
		line := make([]byte, len("ready\n"))
		if _, err := io.ReadFull(ready, line); err != nil || string(line) != "ready\n" {
			return fmt.Errorf("grandchild wrote %q: %v", line, err)
		}
	}
	_, err = fmt.Fprintf(os.Stdout, "%d\n", p.Pid)
	return err
}

// serveListeners serves listening sockets as SDService says, until none
// has been used for a second.
func serveListeners(files []*os.File) error {
	if len(files) == 0 {
		return fmt.Errorf("no sockets (LISTEN_PID=%s, pid %d, LISTEN_FDS=%s)",
			os.Getenv("LISTEN_PID"), os.Getpid(), os.Getenv("LISTEN_FDS"))
	}
	used := make(chan struct{}, 1)
	errs := make(chan error, len(files))
	for i, f := range files {
		flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%d %s pid=%d nonblock=%t", i, f.Name(), os.Getpid(), flags&unix.O_NONBLOCK != 0)
		if t, _ := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_TYPE); t == unix.SOCK_DGRAM {
			pc, err := net.FilePacketConn(f)
			if err != nil {
				return err
			}
			go func() {
				buf := make([]byte, 512)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						errs <- err
						return
					}
					pc.WriteTo([]byte(line+" "+string(buf[:n])), from)
					notify(used)
				}
			}()
			continue
		}
		ln, err := net.FileListener(f)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					errs <- err
					return
				}
				c.Write([]byte(line + "\n"))
				c.Close()
				notify(used)
			}
		}()
	}
	for {
		select {
		case <-used:
		case err := <-errs:
			return err
		case <-time.After(time.Second):
			return nil
		}
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// stamp runs the Stamp handler.
func stamp() error {
	f, err := os.OpenFile(os.Getenv("SOCKETD_TEST_STAMPS"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	hold, _ := strconv.Atoi(os.Getenv("SOCKETD_TEST_HOLD"))
	remote := os.Getenv("REMOTE_ADDR")
	// One write each: appends of a line are not interleaved.
	if _, err := fmt.Fprintf(f, "%s start %d\n", remote, time.Now().UnixNano()); err != nil {
		return err
	}
	time.Sleep(time.Duration(hold) * time.Millisecond)
	_, err = fmt.Fprintf(f, "%s end %d\n", remote, time.Now().UnixNano())
	return err
}
