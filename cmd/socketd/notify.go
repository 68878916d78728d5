package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// notifier tells the service manager how the daemon is doing, as
// sd_notify(3) does: datagrams to the socket NOTIFY_SOCKET names. Without
// NOTIFY_SOCKET (socketd not run by systemd as Type=notify) it does nothing.
type notifier struct {
	addr *net.UnixAddr
}

func newNotifier(getenv func(string) string) notifier {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return notifier{}
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // an abstract socket
	}
	return notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// notify sends state, one or more "KEY=value" lines.
func (n notifier) notify(state ...string) error {
	if n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify the service manager: %w", err)
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(strings.Join(state, "\n"))); err != nil {
		return fmt.Errorf("notify the service manager: %w", err)
	}
	return nil
}

// monotonicUsec is MONOTONIC_USEC= of a RELOADING=1 message: the
// CLOCK_MONOTONIC time, in microseconds, as systemd's reload protocol asks.
func monotonicUsec() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000)
}
