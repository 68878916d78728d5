package activator_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
)

// BenchmarkHello measures the accept-spawn-record path: every iteration is
// one connection served by /bin/echo and read to end of file, by c clients
// at once, recorded by the fake recorder. cpu-µs/conn is this process's CPU
// time (socketd's side and the clients'; not the handlers'). Handlers run
// in connection cgroups where the machine lets the activator make them, and
// without for comparison.
func BenchmarkHello(b *testing.B) {
	s := socketd.NewSocket()
	s.Name = "hello"
	s.Listen = []string{"127.0.0.1:0"}
	s.Command = []string{"/bin/echo", "Hello World"}
	for _, noCgroups := range []bool{false, true} {
		h := start(b, activator.Config{NoCgroups: noCgroups}, s)
		name := "cgroups"
		if h.a.CgroupDir() == "" {
			name = "no-cgroups"
		}
		for _, clients := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/c=%d", name, clients), func(b *testing.B) { benchmarkHello(b, h.addr(b, "hello"), clients) })
		}
	}
}

func benchmarkHello(b *testing.B, addr string, clients int) {
	var wg sync.WaitGroup
	work := make(chan struct{})
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			for range work {
				if err := hello(addr); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	b.ResetTimer()
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	b.StopTimer()
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conn/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/conn")
}

func hello(addr string) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	out, err := io.ReadAll(c)
	if err != nil || string(out) != "Hello World\n" {
		return fmt.Errorf("read %q, %v", out, err)
	}
	return nil
}
