package activator_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestSocketOptions checks each socket option on the listening socket or
// on the connection the handler gets, by what the kernel reports or by
// what it does.
func TestSocketOptions(t *testing.T) {
	opts := handlerSocket("opts", testhandler.SockOpts)
	opts.KeepAlive, opts.KeepAliveTime, opts.KeepAliveInterval, opts.KeepAliveProbes = true, "2m", "10s", 4
	opts.NoDelay, opts.ReceiveBuffer, opts.SendBuffer = true, 65536, 65536
	opts.Backlog, opts.ReusePort = 17, true
	v6only := handlerSocket("v6only", testhandler.Hello)
	v6only.Listen, v6only.BindIPv6Only = []string{"[::]:0"}, socketd.BindIPv6Only
	both := handlerSocket("both", testhandler.Hello)
	both.Listen, both.BindIPv6Only = []string{"[::]:0"}, socketd.BindIPv6Both
	dual := handlerSocket("dual", testhandler.Hello)
	dual.Listen = []string{"[::]:0"} // the default: the kernel's, dual stack here
	mapped := handlerSocket("mapped", testhandler.Hello)
	mapped.Listen = []string{"[::ffff:127.0.0.1]:0"}
	// With ipv6-only, the IPv6 and IPv4 wildcards of one port are two
	// listeners; an IPv4 wildcard never takes IPv6.
	_, port, _ := net.SplitHostPort(testhandler.FreePort(t))
	split := handlerSocket("split", testhandler.Hello)
	split.Listen, split.BindIPv6Only = []string{"[::]:" + port, "0.0.0.0:" + port}, socketd.BindIPv6Only
	v4 := handlerSocket("v4", testhandler.Hello)
	v4.Listen = []string{"0.0.0.0:0"}
	freeBind := handlerSocket("freebind", testhandler.Hello)
	freeBind.Listen, freeBind.FreeBind = []string{"192.0.2.1:0"}, true
	deferred := handlerSocket("deferred", testhandler.Echo)
	deferred.DeferAccept = "5s"
	device := handlerSocket("device", testhandler.Hello)
	device.BindToDevice = "lo"
	noDevice := handlerSocket("nodevice", testhandler.Hello)
	noDevice.BindToDevice = "nosuchdev0"
	all := []socketd.Socket{opts, v6only, both, dual, mapped, split, v4, freeBind, deferred, device, noDevice}
	mustValid(t, all...)
	h := start(t, activator.Config{}, all...)

	t.Run("connection options", func(t *testing.T) {
		got := strings.TrimSpace(roundTrip(t, h.addr(t, "opts"), ""))
		// The kernel doubles a buffer size for its bookkeeping.
		if want := "keepalive=1 idle=120 intvl=10 cnt=4 nodelay=1 rcvbuf=131072 sndbuf=131072"; got != want {
			t.Errorf("handler's connection: %s\nwant %s", got, want)
		}
	})
	t.Run("backlog and reuse_port", func(t *testing.T) {
		addr := h.addr(t, "opts")
		_, port, _ := net.SplitHostPort(addr)
		if _, err := exec.LookPath("ss"); err != nil {
			testhandler.Require(t, "ss (Debian's iproute2), to read the backlog")
		}
		out, err := exec.Command("ss", "-ltnH", "sport = :"+port).Output()
		if err != nil {
			t.Fatalf("ss: %v", err)
		}
		if f := strings.Fields(string(out)); len(f) < 3 || f[2] != "17" {
			t.Errorf("ss: %q, want a backlog (Send-Q) of 17", out)
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		ap := netip.MustParseAddrPort(addr)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
			t.Errorf("another SO_REUSEPORT socket cannot bind %s: %v", addr, err)
		}
	})
	t.Run("bind_ipv6_only", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			v4   bool
		}{{"v6only", false}, {"both", true}, {"dual", kernelDualStack(t)}} {
			_, port, _ := net.SplitHostPort(h.addr(t, tc.name))
			if out := roundTrip(t, "[::1]:"+port, ""); out != "Hello World\n" {
				t.Errorf("%s over IPv6: %q", tc.name, out)
			}
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
			if err == nil {
				c.Close()
			}
			if tc.v4 != (err == nil) {
				t.Errorf("%s over IPv4: %v", tc.name, err)
			}
			if err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("%s over IPv4: %v, want refused", tc.name, err)
			}
		}
		if st := h.status(t, "split"); len(st.Listening) != 2 {
			t.Fatalf("split listens on %v, want both wildcards", st.Listening)
		}
		for _, addr := range []string{"[::1]:" + port, "127.0.0.1:" + port} {
			if out := roundTrip(t, addr, ""); out != "Hello World\n" {
				t.Errorf("split over %s: %q", addr, out)
			}
		}
		if out := roundTrip(t, h.addr(t, "mapped"), ""); out != "Hello World\n" {
			t.Errorf("an IPv4-mapped address: %q", out)
		}
		_, v4port, _ := net.SplitHostPort(h.addr(t, "v4"))
		if c, err := net.DialTimeout("tcp", "[::1]:"+v4port, 5*time.Second); err == nil {
			c.Close()
			t.Error("an IPv4 wildcard took an IPv6 connection")
		}
	})
	t.Run("free_bind", func(t *testing.T) {
		if st := h.status(t, "freebind"); st.State != socketd.SocketListening {
			t.Errorf("status %+v: want listening on an address the host lacks", st)
		}
	})
	t.Run("defer_accept", func(t *testing.T) {
		c := dial(t, h.addr(t, "deferred"))
		time.Sleep(300 * time.Millisecond)
		if n := countBegun(h, "deferred"); n != 0 {
			t.Fatalf("a connection that sent nothing was accepted")
		}
		if _, err := c.Write([]byte("x\n")); err != nil {
			t.Fatal(err)
		}
		if got := readLine(t, c); got != "x" {
			t.Errorf("echo %q", got)
		}
	})
	t.Run("bind_to_device", func(t *testing.T) {
		testhandler.RequireRoot(t) // SO_BINDTODEVICE needs CAP_NET_RAW
		if out := roundTrip(t, h.addr(t, "device"), ""); out != "Hello World\n" {
			t.Errorf("over lo: %q", out)
		}
		st := h.status(t, "nodevice")
		if st.State != socketd.SocketFailed || !strings.Contains(st.Error, "bind_to_device nosuchdev0") {
			t.Errorf("status %+v: want failed, naming the device", st)
		}
	})
}

// kernelDualStack reports whether an IPv6 wildcard takes IPv4 by default
// here (net.ipv6.bindv6only).
func kernelDualStack(t *testing.T) bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/bindv6only")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b)) == "0"
}

// countBegun returns how many rows of socket have begun.
func countBegun(h *harness, socket string) int {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	n := 0
	for _, b := range h.rec.begun {
		if b.Socket == socket {
			n++
		}
	}
	return n
}
