package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/socketd/socketd/internal/testhandler"
)

// TestServiceUnit: contrib/socketd.service is a unit systemd takes as it
// is, of the Type=notify socketd speaks, and hardened as far as serving
// programs allows: systemd-analyze rates its exposure 5.4 of 10; the
// options it would take further (PrivateTmp=, RestrictNamespaces=,
// ProtectControlGroups=, PrivateDevices=, NoNewPrivileges=, UMask=) the
// unit says why it leaves out. The test holds it there.
func TestServiceUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testhandler.Require(t, "systemd-analyze (Debian's systemd package)")
	}
	unit, err := os.ReadFile("../../contrib/socketd.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nType=notify\n", "\nExecReload=/bin/kill -HUP $MAINPID\n", "\nDelegate=yes\n", "\nKillMode=mixed\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	// verify checks that the binary exists, not its flags: socketd reads
	// them as it would.
	execStart := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/socketd(.*)$`).FindStringSubmatch(string(unit))
	if execStart == nil {
		t.Fatal("the unit has no ExecStart= of /usr/local/bin/socketd")
	}
	if _, err := ParseConfig(strings.Fields(execStart[1]), func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("socketd refuses the unit's ExecStart= flags %q: %v", execStart[1], err)
	}
	// verify checks that the binary exists: this test's stands in.
	path := filepath.Join(t.TempDir(), "socketd.service")
	exe, _ := os.Executable()
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/socketd", exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(analyze, "security", "--offline=true", "--no-pager", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for socketd.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 5.4 {
		t.Errorf("exposure %.1f, want at most 5.4:\n%s", level, out)
	}
}
