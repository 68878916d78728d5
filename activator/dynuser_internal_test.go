package activator

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socketd/socketd/internal/testhandler"
)

// TestKillUIDCannotBeStopped: the processes of the uid a killer kills
// cannot stop it, even one that stops every process it may signal: the
// killer's real and saved uid are a spare one. It returns at once, and
// the stopper is gone.
func TestKillUIDCannotBeStopped(t *testing.T) {
	testhandler.RequireRoot(t)
	const u, spare = 64300, 64301
	// The stopper starts once this shell is gone, which it would stop
	// too otherwise.
	cmd := exec.Command("/bin/sh", "-c", `setsid sh -c 'while kill -0 "$0" 2>/dev/null; do sleep 0.01; done
while :; do kill -STOP -1; done' $$ </dev/null >/dev/null 2>&1 & echo $!`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u, Gid: u}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("read %q", out)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	time.Sleep(50 * time.Millisecond) // the stopper at work
	began := time.Now()
	if err := killUID(u, spare); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took >= killTimeout {
		t.Errorf("killUID took %v: the stopper stopped the killer", took)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if _, rest, _ := strings.Cut(string(stat), ") "); err != nil || strings.HasPrefix(rest, "Z") {
			break // gone, or a zombie of whoever adopted it
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stopper (%d) outlived the kill of its uid", pid)
		}
	}
}

// TestSpareUID: the killer of a uid gets another uid of the range, free and
// reserved while it runs, or the uid itself in a range of one.
func TestSpareUID(t *testing.T) {
	p := newUIDPool(64400, 64402)
	p.swept = true
	p.busy[64402] = true // handed to a connection
	if got := p.spare(64400); got != 64401 || !p.busy[64401] {
		t.Errorf("spare of 64400 = %d (busy %v), want 64401 reserved", got, p.busy)
	}
	one := newUIDPool(64403, 64403)
	one.swept = true
	if got := one.spare(64403); got != 64403 {
		t.Errorf("spare in a range of one = %d, want the uid itself", got)
	}
}
