package socketd

import "syscall"

// hostMemory is the host's physical memory in bytes, for a MemoryMax=
// percentage.
func hostMemory() uint64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}
