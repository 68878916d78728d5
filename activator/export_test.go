package activator

import (
	"testing"
	"time"
)

// SetRetryBackoff sets the bounds of the bind retry backoff. Call it
// before Open.
func (a *Activator) SetRetryBackoff(min, max time.Duration) {
	a.retryMin, a.retryMax = min, max
}

// OnBindFailure makes f be called after every failed bind, with the delay
// before the next retry and its time. Call it before Open; f runs under the
// reconcile lock and must not call the Activator.
func (a *Activator) OnBindFailure(f func(name string, backoff time.Duration, retryAt time.Time)) {
	a.bindFailed = f
}

// ExitState is exitState, for tests.
var ExitState = exitState

// UseKillFallback makes group signals go through kill(2), as on a kernel
// without PIDFD_SIGNAL_PROCESS_GROUP (before Linux 6.9), until the test
// ends.
func UseKillFallback(t testing.TB) {
	noPidfdGroups.Store(true)
	t.Cleanup(func() { noPidfdGroups.Store(false) })
}

// CgroupDir is the directory of a's connection cgroups; "" without them.
func (a *Activator) CgroupDir() string {
	if a.cgroups == nil {
		return ""
	}
	return a.cgroups.dir
}

// CapsDir is where a caps controller ctl ("memory", "pids") is set for a
// connection cgroup named name: a v1 directory, or the cgroup itself in
// v2; "" if ctl is not to be had.
func (a *Activator) CapsDir(ctl, name string) string {
	switch {
	case a.cgroups == nil:
		return ""
	case a.cgroups.v2[ctl]:
		return a.cgroups.dir + "/" + name
	case a.cgroups.v1[ctl] != "":
		return a.cgroups.v1[ctl] + "/" + name
	}
	return ""
}

// CloneFallbacks counts the handlers started with the C library's clone.
var CloneFallbacks = cloneFallbacks

// UseCloneFallback makes handlers start with the C library's clone, as
// where clone3 is not to be had (a container's seccomp profile), until the
// test ends.
func UseCloneFallback(t testing.TB) {
	useCloneFallback(true)
	t.Cleanup(func() { useCloneFallback(false) })
}

// CgroupMount is where the cgroup v2 hierarchy of a's cgroups is mounted.
func (a *Activator) CgroupMount() string { return a.cgroups.mount }
