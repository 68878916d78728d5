package activator

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/socketd/socketd/internal/testhandler"
)

// enableV2Helper, when set, makes TestEnableV2MovesSelf the helper process
// it starts.
const enableV2Helper = "SOCKETD_TEST_ENABLEV2_HELPER"

// TestEnableV2MovesSelf: socketd in a cgroup with a process of its own (as a
// systemd service with Delegate=yes is) moves itself into a cgroup below, so
// that its cgroup may enable a controller for the connections' cgroups.
// This machine binds memory and pids to cgroup v1; hugetlb, offered by its
// cgroup v2 root, stands in for them.
func TestEnableV2MovesSelf(t *testing.T) {
	if os.Getenv(enableV2Helper) != "" {
		enableV2InHelper()
		return
	}
	testhandler.RequireRoot(t)
	m, err := readCgroupMounts()
	if err != nil || m.v2 == "" {
		testhandler.Require(t, "a cgroup v2 hierarchy")
	}
	if !hasWord(filepath.Join(m.v2, "cgroup.controllers"), "hugetlb") {
		testhandler.Require(t, "the hugetlb controller in the cgroup v2 root")
	}
	// The root may enable it whatever runs there; a cgroup below may not.
	control := filepath.Join(m.v2, "cgroup.subtree_control")
	if !hasWord(control, "hugetlb") {
		if err := writeFile(control, "+hugetlb"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { writeFile(control, "-hugetlb") })
	}
	parent := filepath.Join(m.v2, fmt.Sprintf("socketd-test-%d", os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range []string{daemonCgroup, "socketd", ""} {
			os.Remove(filepath.Join(parent, d))
		}
	})
	dir, err := os.Open(parent)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	helper := exec.Command(os.Args[0], "-test.run=^TestEnableV2MovesSelf$")
	helper.Env = append(os.Environ(), enableV2Helper+"=1")
	helper.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	out, err := helper.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	want := fmt.Sprintf("enabled=true self=/%s/%s control=hugetlb", filepath.Base(parent), daemonCgroup)
	if !strings.Contains(string(out), want) {
		t.Errorf("helper said:\n%s\nwant %s", out, want)
	}
}

// enableV2InHelper takes a directory in its own cgroup, enables hugetlb
// there, and says what came of it.
func enableV2InHelper() {
	own, err := readOwnCgroups()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	m, _ := readCgroupMounts()
	parent := filepath.Join(m.v2, own[""])
	g := &cgroups{v1: map[string]string{}, v2: map[string]bool{}, made: map[*cgroup]bool{}}
	if _, _, err := g.take(parent, nil); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	enabled := g.enableV2(parent, "hugetlb")
	control, _ := os.ReadFile(filepath.Join(g.dir, "cgroup.subtree_control"))
	own, _ = readOwnCgroups()
	fmt.Printf("enabled=%v self=%s control=%s\n", enabled, own[""], strings.TrimSpace(string(control)))
	g.close()
	os.Exit(0)
}
