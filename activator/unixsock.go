package activator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// bindUnix binds a unix stream socket as spec says, and returns it with
// its file (nil for an abstract name). A socket file left behind by a
// socketd that died is replaced, but only if nothing listens on it; any
// other file in the way is an error. The file gets the definition's owner
// and mode, as systemd's SocketUser=, SocketGroup= and SocketMode= give it.
func bindUnix(lc net.ListenConfig, spec listenSpec) (*net.UnixListener, os.FileInfo, error) {
	path := spec.Address
	abstract := path[0] == '@'
	if !abstract {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, nil, err
		}
		if err := removeStale(path); err != nil {
			return nil, nil, err
		}
	}
	ln, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, nil, err
	}
	ul := ln.(*net.UnixListener)
	// The file is removed by listener.close, once the socket is closed
	// for good, not when the net.Listener is (see listen).
	ul.SetUnlinkOnClose(false)
	if abstract {
		return ul, nil, nil
	}
	fi, err := setOwnerMode(path, &spec)
	if err != nil {
		ul.Close()
		removeUnix(path, fi)
		return nil, nil, err
	}
	return ul, fi, nil
}

// setOwnerMode gives the socket file at path its owner and mode, and
// returns what it is now. It works on the file it opens without following
// a link, and checks that it is a socket: whoever may write to the
// directory could otherwise swap in a link to another file between the bind
// and the chmod, and have root change that file.
func setOwnerMode(path string, spec *listenSpec) (os.FileInfo, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer unix.Close(fd)
	self := "/proc/self/fd/" + strconv.Itoa(fd) // the file itself, not a path to it
	fi, err := os.Stat(self)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("%s was replaced by something other than a socket after the bind", path)
	}
	mode, err := socketd.ParseSocketMode(spec.opts.SocketMode)
	if err != nil {
		return fi, err
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, self, mode, 0); err != nil {
		return fi, fmt.Errorf("socket_mode: %w", err)
	}
	uid, gid, err := spec.opts.SocketOwner()
	if err != nil {
		return fi, err
	}
	if uid >= 0 || gid >= 0 {
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return fi, fmt.Errorf("socket_user, socket_group: %w", err)
		}
	}
	return fi, nil
}

// removeStale removes the socket file at path if nothing listens on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != os.ModeSocket:
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	unix.Close(fd)
	switch err {
	case unix.ECONNREFUSED:
		// Nothing listens: a socket left behind.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	case nil, unix.EAGAIN, unix.EINPROGRESS:
		return fmt.Errorf("something listens on %s already", path)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// removeUnix removes the socket file at path if it is still the one fi
// describes: another socketd or a new listener may have replaced it.
func removeUnix(path string, fi os.FileInfo) {
	if fi == nil {
		return
	}
	if now, err := os.Lstat(path); err == nil && os.SameFile(fi, now) {
		_ = os.Remove(path)
	}
}
