//go:build !linux

package socketd

// hostMemory is 0 where socketd cannot tell the host's memory (it runs
// only on Linux; the vocabulary builds anywhere, for socketctl).
func hostMemory() uint64 { return 0 }
