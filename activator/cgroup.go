package activator

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// Every handler starts in a cgroup v2 of its connection's own (clone3 with
// CLONE_INTO_CGROUP, so it is in it from its first instruction), and so
// does everything it starts: a process can leave its process group and its
// session (setsid, a double fork) but not its cgroup. Ending a connection
// signals every process of its cgroup, and SIGKILL is cgroup.kill, which
// the kernel delivers to all of them at once, fork in flight or not.
//
// Making and removing a cgroup for each connection would cost about as much
// CPU as the rest of the connection does, so the cgroups are kept and used
// again once empty: a connection costs no cgroup call at all unless its
// handler leaves something behind or is stopped.
//
// The cgroups live in a directory of socketd's own below its cgroup
// ("socketd", or "socketd-N" when another socketd holds that one), which
// it holds with flock(2) while it runs. A directory nobody holds is what a
// socketd that died left behind: whatever still runs there is killed and
// the directory removed when the next one starts.
//
// memory_max and tasks_max are caps in the connection's cgroup, through the
// memory and pids controllers of cgroup v2 where socketd's cgroup offers
// them, else through the cgroup v1 hierarchies of those controllers (a
// directory of the same name there, joined by the child before it
// executes).

// cgroupMount is where the cgroup v2 hierarchy is mounted, if it is; and
// the v1 hierarchies by the controllers bound to them.
type cgroupMounts struct {
	v2 string
	v1 map[string]string // "memory", "pids" -> mount point
}

// cgroups is the pool of connection cgroups of one Activator.
type cgroups struct {
	mount string // the v2 hierarchy's
	dir   string // socketd's directory in it
	// held are dir and its namesakes in the v1 hierarchies, each opened
	// and flocked.
	held []heldDir
	// v1 holds the directories of the same name in the v1 hierarchies of
	// the controllers cgroup v2 does not offer, by controller; v2 those it
	// does.
	v1 map[string]string
	v2 map[string]bool

	mu   sync.Mutex
	free []*cgroup
	made map[*cgroup]bool // every cgroup not removed, to remove them at close
	next int
}

// heldDir is a directory socketd holds, with its flocked descriptor.
type heldDir struct {
	path string
	fd   int
}

// cgroup is one connection's cgroup.
type cgroup struct {
	pool *cgroups
	path string
	fd   int // the directory, for CLONE_INTO_CGROUP
	// events is cgroup.events, opened, read for "populated"; procs is
	// cgroup.procs, opened for writing, for a child to join the cgroup
	// where clone3 cannot place it.
	events, procs int
	// v2caps are the caps last set in its v2 files (memory.max,
	// pids.max), when v2set says they all were: a connection with the same
	// caps writes nothing, one with others writes what differs.
	v2caps socketd.Caps
	v2set  bool
	// killed says that it has had a cgroup.kill. It is not used again:
	// the kernel (6.18 at least) then kills every process started into it
	// with CLONE_INTO_CGROUP, comparing the cgroup's count of kills with
	// that of the parent's cgroup.
	killed bool
	// joins are the cgroup.procs of its v1 directories, opened, which the
	// child writes itself into, by controller; made when first capped.
	joins map[string]int
}

// capControl is a controller that keeps a cap of socketd.Caps: its name,
// the definition's field, its files in cgroup v2 and v1, and the cap.
type capControl struct {
	name, field    string
	v2File, v1File string
	value          func(socketd.Caps) uint64
}

var capControls = []capControl{
	{"memory", "memory_max", "memory.max", "memory.limit_in_bytes", func(c socketd.Caps) uint64 { return c.Memory }},
	{"pids", "tasks_max", "pids.max", "pids.max", func(c socketd.Caps) uint64 { return c.Tasks }},
}

// openCgroups finds socketd's cgroup and takes a directory below it, or
// reports why it cannot: then handlers are tracked by process group only.
func openCgroups() (*cgroups, error) {
	m, err := readCgroupMounts()
	if err != nil {
		return nil, err
	}
	own, err := readOwnCgroups()
	if err != nil {
		return nil, err
	}
	if m.v2 == "" {
		return nil, errors.New("no cgroup v2 hierarchy is mounted")
	}
	parent := filepath.Join(m.v2, own[""])
	v1parents := map[string]string{}
	for ctl, mnt := range m.v1 {
		if p, ok := own[ctl]; ok {
			v1parents[ctl] = filepath.Join(mnt, p)
		}
	}
	g := &cgroups{mount: m.v2, v1: map[string]string{}, v2: map[string]bool{}, made: map[*cgroup]bool{}}
	name, v1dirs, err := g.take(parent, v1parents)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(g.dir, "cgroup.kill")); err != nil {
		g.close()
		return nil, errors.New("the kernel has no cgroup.kill (Linux 5.14)")
	}
	g.sweep(parent, name, v1parents)
	for _, ctl := range capControls {
		if g.enableV2(parent, ctl.name) {
			g.v2[ctl.name] = true
		} else if dir, ok := v1dirs[ctl.name]; ok {
			g.v1[ctl.name] = dir
		}
	}
	return g, nil
}

// cgroupDirName is the form of the directories of socketd below its
// cgroup.
var cgroupDirName = regexp.MustCompile(`^socketd(-[0-9]+)?$`)

// take makes or takes over the first name whose directory below parent,
// and those below v1parents (socketd's cgroups in the v1 hierarchies), no
// other socketd holds, and holds them all. It returns the name and the v1
// directories it holds by controller: those it could not make (a v1
// hierarchy mounted read-only, say) are left out.
func (g *cgroups) take(parent string, v1parents map[string]string) (string, map[string]string, error) {
next:
	for i := 1; i <= 1000; i++ {
		name := "socketd"
		if i > 1 {
			name = fmt.Sprintf("socketd-%d", i)
		}
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", nil, err
		}
		fd, ok, err := lockDir(dir)
		if err != nil {
			return "", nil, err
		}
		if !ok {
			continue
		}
		held, v1dirs := []heldDir{{dir, fd}}, map[string]string{}
		for ctl, p := range v1parents {
			v1 := filepath.Join(p, name)
			if err := os.Mkdir(v1, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				continue
			}
			// Another socketd whose v2 directory has this name in
			// another cgroup may share the v1 cgroup.
			fd, ok, err := lockDir(v1)
			if err != nil {
				continue
			}
			if !ok {
				for _, h := range held {
					unix.Close(h.fd)
				}
				continue next
			}
			held, v1dirs[ctl] = append(held, heldDir{v1, fd}), v1
		}
		g.dir, g.held = dir, held
		// A socketd that held them before has died: end what it left.
		removeChildren(dir, killCgroup)
		for _, v1 := range v1dirs {
			removeChildren(v1, nil)
		}
		return name, v1dirs, nil
	}
	return "", nil, fmt.Errorf("every socketd directory in %s is held", parent)
}

// lockDir opens dir and locks it without waiting. It reports false if
// another holds the lock, or removed dir before the lock was taken.
func lockDir(dir string) (fd int, ok bool, err error) {
	fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT {
			return -1, false, nil
		}
		return -1, false, err
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if err == unix.EWOULDBLOCK {
			return -1, false, nil
		}
		return -1, false, err
	}
	var held, now unix.Stat_t
	if unix.Fstat(fd, &held) != nil || unix.Stat(dir, &now) != nil || held.Ino != now.Ino {
		unix.Close(fd) // removed by the one that held it last
		return -1, false, nil
	}
	return fd, true, nil
}

// sweep removes the directories of socketd that died, but for keep, with
// their v1 directories, each only if no socketd holds it.
func (g *cgroups) sweep(parent, keep string, v1parents map[string]string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if !e.IsDir() || e.Name() == keep || !cgroupDirName.MatchString(e.Name()) {
			continue
		}
		dirs := []string{filepath.Join(parent, e.Name())}
		for _, p := range v1parents {
			dirs = append(dirs, filepath.Join(p, e.Name()))
		}
		for i, dir := range dirs {
			fd, ok, _ := lockDir(dir)
			if !ok {
				continue
			}
			if i == 0 {
				removeChildren(dir, killCgroup)
			} else {
				removeChildren(dir, nil) // its processes were in the v2 cgroups too
			}
			unix.Rmdir(dir)
			unix.Close(fd)
		}
	}
}

// enableV2 reports whether controller ctl can cap the connection cgroups
// in the v2 hierarchy: it is enabled in socketd's directory, once socketd's
// cgroup offers it, or can be made to. Only the root, or a cgroup without
// processes of its own, can enable a controller for its children: as
// systemd asks of a service with Delegate=yes, socketd then moves itself
// into a cgroup of its own below (daemonCgroup), if it is the only process
// in its cgroup, and tries again.
func (g *cgroups) enableV2(parent, ctl string) bool {
	if !hasWord(filepath.Join(g.dir, "cgroup.controllers"), ctl) {
		if !hasWord(filepath.Join(parent, "cgroup.controllers"), ctl) {
			return false
		}
		control := filepath.Join(parent, "cgroup.subtree_control")
		err := writeFile(control, "+"+ctl)
		if err == unix.EBUSY {
			pids, _ := readPIDs(filepath.Join(parent, "cgroup.procs"))
			if len(pids) == 1 && pids[0] == os.Getpid() && moveSelf(filepath.Join(parent, daemonCgroup)) == nil {
				err = writeFile(control, "+"+ctl)
			}
		}
		if err != nil {
			return false
		}
	}
	return writeFile(filepath.Join(g.dir, "cgroup.subtree_control"), "+"+ctl) == nil
}

// daemonCgroup is where socketd moves itself, below its cgroup, to let its
// cgroup enable controllers for the connections' cgroups.
const daemonCgroup = "socketd.daemon"

// moveSelf moves the whole of socketd, every thread, into cgroup dir.
func moveSelf(dir string) error {
	if err := unix.Mkdir(dir, 0o755); err != nil && err != unix.EEXIST {
		return err
	}
	return writeFile(filepath.Join(dir, "cgroup.procs"), "0")
}

// get returns an empty cgroup for a connection.
func (g *cgroups) get() (*cgroup, error) {
	g.mu.Lock()
	if n := len(g.free); n > 0 {
		cg := g.free[n-1]
		g.free = g.free[:n-1]
		g.mu.Unlock()
		return cg, nil
	}
	g.mu.Unlock()
	var path string
	for {
		g.mu.Lock()
		g.next++
		path = filepath.Join(g.dir, "c"+strconv.Itoa(g.next))
		g.mu.Unlock()
		err := unix.Mkdir(path, 0o755)
		if err == nil {
			break
		}
		if err != unix.EEXIST { // one a dead socketd left, still busy
			return nil, fmt.Errorf("make cgroup %s: %w", path, err)
		}
	}
	// A new cgroup has no caps (max in every file).
	cg := &cgroup{pool: g, path: path, fd: -1, events: -1, procs: -1, v2set: true}
	var err error
	if cg.fd, err = unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		cg.events, err = unix.Open(filepath.Join(path, "cgroup.events"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err == nil {
		cg.procs, err = unix.Open(filepath.Join(path, "cgroup.procs"), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		cg.remove()
		return nil, fmt.Errorf("open cgroup %s: %w", path, err)
	}
	g.mu.Lock()
	g.made[cg] = true
	g.mu.Unlock()
	return cg, nil
}

// limit sets the caps of the connection's cgroup, and returns the v1
// cgroup.procs the child must join to have them.
func (cg *cgroup) limit(c socketd.Caps) (joins []int, err error) {
	if cg.v2set && c == cg.v2caps && c == (socketd.Caps{}) {
		return nil, nil
	}
	g := cg.pool
	// Until the caps are all set, as if none were known: should one
	// fail, the next connection writes them all again.
	was, known := cg.v2caps, cg.v2set
	cg.v2set = false
	for _, ctl := range capControls {
		v := ctl.value(c)
		switch {
		case g.v2[ctl.name]:
			if known && ctl.value(was) == v {
				continue
			}
			if err := writeFile(filepath.Join(cg.path, ctl.v2File), capValue(v)); err != nil {
				return nil, fmt.Errorf("set %s: %w", ctl.v2File, err)
			}
		case v == 0:
		case g.v1[ctl.name] != "":
			fd, err := cg.joinV1(ctl.name)
			if err != nil {
				return nil, err
			}
			file := filepath.Join(g.v1[ctl.name], filepath.Base(cg.path), ctl.v1File)
			err = writeFile(file, capValue(v))
			if err == unix.EBUSY && ctl.name == "memory" {
				// Below what the connection before left charged
				// (its page cache): let it go first.
				_ = writeFile(filepath.Join(filepath.Dir(file), "memory.force_empty"), "0")
				err = writeFile(file, capValue(v))
			}
			if err != nil {
				return nil, fmt.Errorf("set %s: %w", ctl.v1File, err)
			}
			joins = append(joins, fd)
		default:
			return nil, fmt.Errorf("%s: this host offers socketd no %s cgroup controller (neither in cgroup v2 nor in v1)",
				ctl.field, ctl.name)
		}
	}
	cg.v2caps, cg.v2set = c, true
	return joins, nil
}

// capValue is cap v as a cgroup file takes it; 0 is none.
func capValue(v uint64) string {
	if v == 0 {
		return "max"
	}
	return strconv.FormatUint(v, 10)
}

// joinV1 makes the connection's directory in the v1 hierarchy of ctl and
// returns its cgroup.procs, opened for writing.
func (cg *cgroup) joinV1(ctl string) (int, error) {
	if fd, ok := cg.joins[ctl]; ok {
		return fd, nil
	}
	dir := filepath.Join(cg.pool.v1[ctl], filepath.Base(cg.path))
	if err := unix.Mkdir(dir, 0o755); err != nil && err != unix.EEXIST {
		return -1, fmt.Errorf("make cgroup %s: %w", dir, err)
	}
	fd, err := unix.Open(filepath.Join(dir, "cgroup.procs"), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	if cg.joins == nil {
		cg.joins = map[string]int{}
	}
	cg.joins[ctl] = fd
	return fd, nil
}

// populated reports whether a process is left in the cgroup.
func (cg *cgroup) populated() bool {
	var buf [256]byte
	n, err := unix.Pread(cg.events, buf[:], 0)
	if err != nil {
		return true // assume the worst: the cgroup is not used again
	}
	return bytes.Contains(buf[:n], []byte("populated 1"))
}

// signal sends sig to every process in the cgroup and the cgroups a
// handler running as root may have made below it, reading the lists again
// until they hold none not signalled yet (a process may fork meanwhile), as
// systemd does. Each process is signalled through a pidfd opened once it
// is known to be in the cgroup, so that a pid reused meanwhile is not.
func (cg *cgroup) signal(sig unix.Signal) {
	seen := map[int]bool{}
	for range 16 {
		sent := false
		_ = filepath.WalkDir(cg.path, func(dir string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			pids, _ := readPIDs(filepath.Join(dir, "cgroup.procs"))
			for _, pid := range pids {
				if !seen[pid] {
					seen[pid], sent = true, true
					cg.signalPID(pid, dir, sig)
				}
			}
			return nil
		})
		if !sent {
			return
		}
	}
}

// signalPID sends sig to process pid if it is in the cgroup at dir.
func (cg *cgroup) signalPID(pid int, dir string, sig unix.Signal) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return
	}
	line := "0::" + strings.TrimPrefix(dir, cg.pool.mount) + "\n"
	if strings.HasPrefix(string(b), line) || strings.Contains(string(b), "\n"+line) {
		_ = unix.PidfdSendSignal(fd, sig, nil, 0)
	}
}

// kill sends SIGKILL to every process in the cgroup at once, and reports
// whether there was one.
func (cg *cgroup) kill() bool {
	if !cg.populated() {
		return false
	}
	cg.killed = true
	return killCgroup(cg.path) == nil
}

// release gives the cgroup back for another connection once it is empty,
// waiting up to cgroupEmptyWait after a kill for its processes to be gone;
// one still populated then (a process stuck in the kernel) is not used
// again, nor is one that was killed: that one is removed.
func (cg *cgroup) release() {
	if cg.waitEmpty() {
		cg.giveBack()
	}
}

// giveBack is release for a cgroup known to be empty.
func (cg *cgroup) giveBack() {
	g := cg.pool
	g.mu.Lock()
	defer g.mu.Unlock()
	if cg.killed {
		delete(g.made, cg)
		cg.remove()
		return
	}
	g.free = append(g.free, cg)
}

// cgroupEmptyWait bounds the wait for a killed cgroup to empty.
const cgroupEmptyWait = 5 * time.Second

// waitEmpty waits up to cgroupEmptyWait for the cgroup to be empty, and
// reports whether it is.
func (cg *cgroup) waitEmpty() bool {
	for wait := time.Millisecond; cg.populated(); wait *= 2 {
		if wait > cgroupEmptyWait {
			return false
		}
		time.Sleep(wait)
	}
	return true
}

// remove removes the cgroup and its v1 directories; it fails if processes
// are left in it.
func (cg *cgroup) remove() {
	for ctl, fd := range cg.joins {
		unix.Close(fd)
		unix.Rmdir(filepath.Join(cg.pool.v1[ctl], filepath.Base(cg.path)))
	}
	for _, fd := range []int{cg.fd, cg.events, cg.procs} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	removeTree(cg.path)
}

// close removes every cgroup made, and socketd's directories. Call it once
// no handler runs.
func (g *cgroups) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for cg := range g.made {
		if cg.populated() {
			_ = killCgroup(cg.path)
			cg.waitEmpty()
		}
		cg.remove()
	}
	g.made, g.free = nil, nil
	for _, h := range g.held {
		unix.Rmdir(h.path) // before the lock goes: no one takes it meanwhile
		unix.Close(h.fd)
	}
}

// killCgroup sends SIGKILL to every process in the cgroup at dir.
func killCgroup(dir string) error {
	return writeFile(filepath.Join(dir, "cgroup.kill"), "1")
}

// removeChildren removes the cgroups in dir, calling prepare on each
// first if it is not nil. What it cannot remove it leaves.
func removeChildren(dir string, prepare func(string) error) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			child := filepath.Join(dir, e.Name())
			if prepare != nil {
				_ = prepare(child)
			}
			removeTree(child)
		}
	}
}

// removeTree removes the cgroup at dir and those below it, waiting up to a
// second for each to empty: killed processes take a moment to leave.
func removeTree(dir string) {
	removeChildren(dir, nil)
	for wait := time.Millisecond; unix.Rmdir(dir) == unix.EBUSY && wait <= time.Second; wait *= 2 {
		time.Sleep(wait)
	}
}

// readCgroupMounts finds the cgroup hierarchies in /proc/self/mountinfo.
func readCgroupMounts() (cgroupMounts, error) {
	m := cgroupMounts{v1: map[string]string{}}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 || fields[3] != "/" {
			continue
		}
		point := unescapeMount(fields[4])
		switch tail[0] {
		case "cgroup2":
			if m.v2 == "" {
				m.v2 = point
			}
		case "cgroup":
			for _, opt := range strings.Split(tail[2], ",") {
				if _, seen := m.v1[opt]; !seen && (opt == "memory" || opt == "pids") {
					m.v1[opt] = point
				}
			}
		}
	}
	return m, sc.Err()
}

// unescapeMount undoes the octal escapes of a path in mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readOwnCgroups reads socketd's cgroups from /proc/self/cgroup: the v2
// one under "", the v1 ones under their controllers.
func readOwnCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			own[""] = parts[2]
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			own[ctl] = parts[2]
		}
	}
	if _, ok := own[""]; !ok {
		return nil, errors.New("socketd is in no cgroup v2")
	}
	return own, nil
}

// readPIDs reads a cgroup.procs file.
func readPIDs(file string) ([]int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// hasWord reports whether the file holds word among its space-separated
// words.
func hasWord(file, word string) bool {
	b, err := os.ReadFile(file)
	return err == nil && strings.Contains(" "+strings.TrimSpace(string(b))+" ", " "+word+" ")
}

// writeFile writes s to a cgroup file in one write.
func writeFile(file, s string) error {
	fd, err := unix.Open(file, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, []byte(s))
	return err
}
