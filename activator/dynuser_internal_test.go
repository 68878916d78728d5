package activator

import (
	"fmt"
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
	// too otherwise; the sleeper shows it at work.
	cmd := exec.Command("/bin/sh", "-c", `setsid sh -c 'while kill -0 "$0" 2>/dev/null; do sleep 0.01; done
while :; do kill -STOP -1; done' $$ </dev/null >/dev/null 2>&1 & echo $!
setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u, Gid: u}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var pid, sleeper int
	if _, err := fmt.Sscan(string(out), &pid, &sleeper); err != nil {
		t.Fatalf("read %q: %v", out, err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	defer syscall.Kill(sleeper, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); procState(sleeper) != "T"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stopper does not stop the sleeper (state %q)", procState(sleeper))
		}
	}
	began := time.Now()
	if err := killUID(u, spare); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took >= killTimeout {
		t.Errorf("killUID took %v: the stopper stopped the killer", took)
	}
	for _, p := range []int{pid, sleeper} {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if st := procState(p); st == "" || st == "Z" {
				break // gone, or a zombie of whoever adopted it
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d outlived the kill of its uid", p)
			}
		}
	}
}

// procState is the state letter of process pid, "" if there is none.
func procState(pid int) string {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return rest[:min(1, len(rest))]
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
