// Package datadir is where socketd keeps its state and its admin token,
// and where its API listens by default: what the daemon and socketctl must
// agree on. It imports only the standard library.
package datadir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultAPIAddr is where the API listens unless told otherwise: loopback
// only, since the API can start programs.
const DefaultAPIAddr = "127.0.0.1:7780"

// Environment variables both commands read.
const (
	EnvAPIAddr = "SOCKETD_API_ADDR"
	EnvDataDir = "SOCKETD_DATA_DIR"
)

// TokenFile names the admin token's file in the data dir.
const TokenFile = "admin.token"

// Default returns the data dir socketd uses unless told otherwise:
// /var/lib/socketd for root, else $XDG_STATE_HOME/socketd or
// ~/.local/state/socketd; "" when neither XDG_STATE_HOME (absolute) nor
// HOME is set.
func Default(getenv func(string) string, euid int) string {
	if euid == 0 {
		return "/var/lib/socketd"
	}
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "socketd")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "socketd")
	}
	return ""
}

// ReadToken reads a token file: its first line, trimmed. An empty file is
// an error.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return t, nil
}
