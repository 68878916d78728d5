package activator_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// serviceSocket returns an accept: false definition of the handler on
// listen.
func serviceSocket(name, handler string, listen ...string) socketd.Socket {
	s := testhandler.Socket(name, handler, listen...)
	s.Accept = false
	return s
}

// lineFrom connects to a TCP address and returns the line a service writes.
func lineFrom(t *testing.T, addr string) string {
	t.Helper()
	return readLine(t, dial(t, addr))
}

// datagram sends msg to a UDP address and returns the answer.
func datagram(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// TestServiceGetsEveryListener: with accept false, the first connection
// starts one service, which gets every listening socket from fd 3 on, in
// listen order, blocking, with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID as
// go-systemd's activation checks them; while it runs socketd accepts
// nothing (the same pid serves every socket); once it has exited, the next
// connection starts it again. One history row per run, with its pid;
// status shows the running service's pid.
func TestServiceGetsEveryListener(t *testing.T) {
	s := serviceSocket("svc", testhandler.SDService, "127.0.0.1:0", "udp:127.0.0.1:0", "127.0.0.1:0")
	mustValid(t, s)
	h := start(t, activator.Config{}, s)
	st := h.status(t, "svc")
	if len(st.Listening) != 3 {
		t.Fatalf("listening on %v", st.Listening)
	}
	tcp0, udp, tcp2 := st.Listening[0], st.Listening[1], st.Listening[2]

	first := lineFrom(t, tcp0)
	var pid int
	if _, err := fmt.Sscanf(first, "0 svc pid=%d nonblock=false", &pid); err != nil {
		t.Fatalf("service wrote %q: %v", first, err)
	}
	if got, want := datagram(t, udp, "hi"), fmt.Sprintf("1 svc pid=%d nonblock=false hi", pid); got != want {
		t.Errorf("datagram answer %q, want %q", got, want)
	}
	if got, want := lineFrom(t, tcp2), fmt.Sprintf("2 svc pid=%d nonblock=false", pid); got != want {
		t.Errorf("third socket %q, want %q", got, want)
	}
	if got := h.status(t, "svc").ServicePID; got != pid {
		t.Errorf("status service_pid %d, want %d", got, pid)
	}

	row := h.rec.rowOf(t, "svc") // the service ends after a second unused
	if row.State != socketd.ConnExited || row.PID != pid || row.RemoteIP != "" || row.LocalIP != "127.0.0.1" {
		t.Errorf("row %+v", row)
	}
	eventually(t, "service_pid to clear", func() bool { return h.status(t, "svc").ServicePID == 0 })

	// A datagram starts the next run, and its row says who sent it.
	if got := datagram(t, udp, "again"); !strings.HasPrefix(got, "1 svc pid=") || strings.Contains(got, fmt.Sprintf("pid=%d ", pid)) {
		t.Errorf("second run answered %q (first run was pid %d)", got, pid)
	}
	id := h.rec.nthBegun(t, 2)
	if row := h.rec.row(t, id); row.State != socketd.ConnExited || row.RemoteIP != "127.0.0.1" || row.RemotePort == 0 {
		t.Errorf("second row %+v", row)
	}
	if b, _ := h.rec.counts(); b != 2 {
		t.Errorf("%d rows for two runs", b)
	}
}

// TestInetdWait: with standard_input socket, the service gets its one
// listening socket as stdin and stdout, as inetd's wait services do, for
// a stream and for a datagram socket.
func TestInetdWait(t *testing.T) {
	stream := serviceSocket("stream", testhandler.InetdWait, "127.0.0.1:0")
	dgram := serviceSocket("dgram", testhandler.InetdWait, "udp:127.0.0.1:0")
	stream.StandardInput, dgram.StandardInput = socketd.StdinSocket, socketd.StdinSocket
	mustValid(t, stream, dgram)
	h := start(t, activator.Config{}, stream, dgram)
	if got := lineFrom(t, h.addr(t, "stream")); !strings.HasPrefix(got, "0 /dev/stdin pid=") || !strings.HasSuffix(got, "nonblock=false") {
		t.Errorf("stream service wrote %q", got)
	}
	if got := datagram(t, h.addr(t, "dgram"), "x"); !strings.HasPrefix(got, "0 /dev/stdin pid=") || !strings.HasSuffix(got, " x") {
		t.Errorf("datagram service answered %q", got)
	}
	for _, name := range []string{"stream", "dgram"} {
		if row := h.rec.rowOf(t, name); row.State != socketd.ConnExited {
			t.Errorf("%s: row %s (%s)", name, row.State, row.Error)
		}
	}
}

// TestServiceIPv6Datagram: a datagram service on IPv6 and one on the IPv6
// wildcard with bind_ipv6_only both, which takes IPv4 too.
func TestServiceIPv6Datagram(t *testing.T) {
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		testhandler.Require(t, "IPv6 loopback")
	} else {
		c.Close()
	}
	v6 := serviceSocket("v6", testhandler.InetdWait, "udp:[::1]:0")
	both := serviceSocket("both", testhandler.InetdWait, "udp:[::]:0")
	both.BindIPv6Only = socketd.BindIPv6Both
	v6.StandardInput, both.StandardInput = socketd.StdinSocket, socketd.StdinSocket
	mustValid(t, v6, both)
	h := start(t, activator.Config{}, v6, both)
	if got := datagram(t, h.addr(t, "v6"), "six"); !strings.HasSuffix(got, " six") {
		t.Errorf("IPv6 service answered %q", got)
	}
	_, port, _ := net.SplitHostPort(h.addr(t, "both"))
	if got := datagram(t, "127.0.0.1:"+port, "four"); !strings.HasSuffix(got, " four") {
		t.Errorf("dual-stack service answered %q over IPv4", got)
	}
	if row := h.rec.rowOf(t, "v6"); row.RemoteIP != "::1" {
		t.Errorf("row of the IPv6 run: remote %q", row.RemoteIP)
	}
}

// TestServiceThatLeavesItsSocketReady: a service that exits without taking
// the connection that started it is started again, but after a few quick
// runs its starts slow down instead of spinning, and the socket keeps
// listening.
func TestServiceThatLeavesItsSocketReady(t *testing.T) {
	h := start(t, activator.Config{}, serviceSocket("lazy", testhandler.Exit3, "127.0.0.1:0"))
	c := dial(t, h.addr(t, "lazy"))
	h.rec.nthBegun(t, 6) // the quick runs allowed in a row, and one more
	time.Sleep(time.Second)
	if b, _ := h.rec.counts(); b > 12 {
		t.Errorf("%d runs within about a second of a service that never takes its connection", b)
	}
	if st := h.status(t, "lazy"); st.State != socketd.SocketListening {
		t.Errorf("socket %s: %s", st.State, st.Error)
	}
	if row := h.rec.rowOf(t, "lazy"); row.State != socketd.ConnFailed || row.ExitCode == nil || *row.ExitCode != 3 {
		t.Errorf("row %+v", row)
	}
	c.Close()
}

// TestBusyWaitService: a wait service that answers one datagram per run,
// with more waiting, takes something each time and is never delayed.
func TestBusyWaitService(t *testing.T) {
	s := socketd.NewSocket()
	s.Name, s.Accept, s.Listen, s.StandardInput = "busy", false, []string{"udp:127.0.0.1:0"}, socketd.StdinSocket
	s.Command = []string{"/bin/sh", "-c", "dd bs=512 count=1 of=/dev/null 2>/dev/null"}
	h := start(t, activator.Config{}, s)
	c, err := net.Dial("udp", h.addr(t, "busy"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 12
	for i := range n {
		if _, err := fmt.Fprintf(c, "datagram %d", i); err != nil {
			t.Fatal(err)
		}
	}
	h.rec.waitFor(t, fmt.Sprintf("%d runs", n), func() bool { return len(h.rec.finished) == n })
	if logs := h.logs.String(); strings.Contains(logs, "delaying") {
		t.Errorf("a service that takes a datagram each run was delayed:\n%s", logs)
	}
}

// TestServiceKill: a running service is killed like a connection's
// handler, and the next connection starts it again.
func TestServiceKill(t *testing.T) {
	h := start(t, activator.Config{}, serviceSocket("hang", testhandler.ReadyHang, "127.0.0.1:0"))
	c := dial(t, h.addr(t, "hang"))
	id := h.rec.nthBegun(t, 1)
	eventually(t, "the service to start", func() bool { return h.status(t, "hang").ServicePID != 0 })
	if err := h.a.Kill(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if row := h.rec.row(t, id); row.State != socketd.ConnKilled {
		t.Errorf("row %s", row.State)
	}
	// The connection still waits in the backlog: the next run starts.
	h.rec.nthBegun(t, 2)
	c.Close()
}

// TestServiceStopsWithItsSockets: a running service is stopped when its
// sockets change, and the socket binds its address again once it has
// exited (the service held it too); likewise when the socket is deleted
// and defined again, or disabled.
func TestServiceStopsWithItsSockets(t *testing.T) {
	addr := testhandler.FreePort(t)
	s := serviceSocket("held", testhandler.Hang, addr)
	h := start(t, activator.Config{StopTimeout: time.Minute}, s)
	running := func(n int) int64 {
		t.Helper()
		dial(t, addr)
		id := h.rec.nthBegun(t, n)
		eventually(t, "the service to run", func() bool { return h.status(t, "held").ServicePID != 0 })
		return id
	}
	killed := func(id int64) {
		t.Helper()
		if row := h.rec.row(t, id); row.State != socketd.ConnKilled || row.Signal != "SIGTERM" {
			t.Errorf("row %d: %s by %q, want killed by SIGTERM", id, row.State, row.Signal)
		}
	}
	listening := func() {
		t.Helper()
		eventually(t, "the socket to listen again", func() bool {
			st := h.status(t, "held")
			return st.State == socketd.SocketListening && len(st.Listening) == 1 && st.Listening[0] == addr
		})
	}

	id := running(1)
	s.Backlog = 16 // a change of the listening socket
	h.apply(t, s)
	killed(id)
	listening()

	id = running(2)
	h.apply(t) // deleted
	h.apply(t, s)
	killed(id)
	listening()

	id = running(3)
	s.Enabled = false
	h.apply(t, s)
	killed(id)
	if st := h.status(t, "held"); st.State != socketd.SocketDisabled {
		t.Errorf("disabled socket: %s", st.State)
	}
}

// TestChangedServiceWaits: a service whose sockets changed while a run
// ignores its SIGTERM keeps the socket waiting, saying so, until the run is
// gone (SIGKILL after the stop timeout): never a bind that fails because the
// run still holds the address.
func TestChangedServiceWaits(t *testing.T) {
	addr, ready := testhandler.FreePort(t), filepath.Join(t.TempDir(), "ready")
	s := serviceSocket("trap", "", addr)
	s.Command = []string{"/bin/sh", "-c", `trap "" TERM; touch "$0"; exec sleep 1000`, ready}
	h := start(t, activator.Config{StopTimeout: 500 * time.Millisecond}, s)
	dial(t, addr) // starts the service, which never accepts it
	eventually(t, "the service to ignore SIGTERM", func() bool { _, err := os.Stat(ready); return err == nil })
	s.Backlog = 16
	h.apply(t, s)
	if st := h.status(t, "trap"); !strings.Contains(st.Error, "waiting for the service") {
		t.Errorf("while the stopped run holds its sockets: %s %q", st.State, st.Error)
	}
	eventually(t, "the socket to listen again", func() bool {
		st := h.status(t, "trap")
		return st.State == socketd.SocketListening && len(st.Listening) == 1
	})
	if row := h.rec.row(t, h.rec.nthBegun(t, 1)); row.Signal != "SIGKILL" {
		t.Errorf("the run ended by %q, want SIGKILL", row.Signal)
	}
}

// TestSystemdSocketProxyd runs a real socket-activated daemon from Debian:
// systemd-socket-proxyd takes its listening socket through LISTEN_FDS and
// forwards each connection to a backend.
func TestSystemdSocketProxyd(t *testing.T) {
	proxyd := "/lib/systemd/systemd-socket-proxyd"
	if _, err := os.Stat(proxyd); err != nil {
		testhandler.Require(t, proxyd+" (Debian's systemd package)")
	}
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("backend: "))
				// Not io.Copy: TCP to TCP, it splices through pipes
				// that Go keeps for later, which the leak check
				// would report.
				io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
			}()
		}
	}()
	s := socketd.NewSocket()
	s.Name, s.Accept, s.Listen = "proxy", false, []string{"127.0.0.1:0"}
	s.Command = []string{proxyd, "--exit-idle-time=1s", backend.Addr().String()}
	mustValid(t, s)
	h := start(t, activator.Config{}, s)
	// The proxy ends a connection at the client's end of file, before
	// the backend answers: read the answer first.
	for i := range 3 {
		msg := fmt.Sprintf("hello %d\n", i)
		c := dial(t, h.addr(t, "proxy"))
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len("backend: "+msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "backend: "+msg {
			t.Errorf("through the proxy: %q (%v), want %q", got, err, "backend: "+msg)
		}
		c.Close()
	}
	if row := h.rec.rowOf(t, "proxy"); row.State != socketd.ConnExited {
		t.Errorf("row %s (%s), log %q", row.State, row.Error, row.Log)
	}
}

// TestTFTPD runs a real UDP service from Debian, tftpd-hpa's in.tftpd, as
// inetd runs it (dgram wait): the first request starts it with the socket
// as stdin, and a file is fetched.
func TestTFTPD(t *testing.T) {
	tftpd := "/usr/sbin/in.tftpd"
	if _, err := os.Stat(tftpd); err != nil {
		testhandler.Require(t, tftpd+" (Debian's tftpd-hpa package)")
	}
	testhandler.RequireRoot(t) // in.tftpd changes to its own user
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	want := strings.Repeat("socketd over tftp\n", 40) // more than one block
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	s := socketd.NewSocket()
	s.Name, s.Accept, s.Listen = "tftp", false, []string{"udp:127.0.0.1:0"}
	s.StandardInput, s.Stderr = socketd.StdinSocket, socketd.StderrLog
	s.Command = []string{tftpd, "--timeout", "1", "--user", "nobody", "--secure", dir}
	mustValid(t, s)
	h := start(t, activator.Config{}, s)
	if got := tftpGet(t, h.addr(t, "tftp"), "hello.txt"); got != want {
		t.Errorf("fetched %q, want %q", got, want)
	}
	if row := h.rec.rowOf(t, "tftp"); row.State != socketd.ConnExited || row.RemoteIP != "127.0.0.1" {
		t.Errorf("row %+v, log %q", row, row.Log)
	}
}

// tftpGet fetches file from a TFTP server (RFC 1350, octet mode).
func tftpGet(t *testing.T, addr, file string) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	server, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rrq := append([]byte{0, 1}, file+"\x00octet\x00"...)
	if _, err := c.WriteTo(rrq, server); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 4+512)
	for block := uint16(1); ; block++ {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("block %d: %v", block, err)
		}
		if n < 4 || buf[1] != 3 || uint16(buf[2])<<8|uint16(buf[3]) != block {
			t.Fatalf("block %d: got %q", block, buf[:n])
		}
		out = append(out, buf[4:n]...)
		if _, err := c.WriteTo([]byte{0, 4, buf[2], buf[3]}, from); err != nil {
			t.Fatal(err)
		}
		if n < len(buf) {
			return string(out)
		}
	}
}
