package datadir

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDefaultDataDir(t *testing.T) {
	cases := []struct {
		env  map[string]string
		euid int
		want string
	}{
		{map[string]string{"HOME": "/home/op"}, 0, "/var/lib/socketd"},
		{map[string]string{"HOME": "/home/op", "XDG_STATE_HOME": "/state"}, 0, "/var/lib/socketd"},
		{map[string]string{"HOME": "/home/op"}, 1000, "/home/op/.local/state/socketd"},
		{map[string]string{"HOME": "/home/op", "XDG_STATE_HOME": "/state"}, 1000, "/state/socketd"},
		{map[string]string{"HOME": "/home/op", "XDG_STATE_HOME": "relative"}, 1000, "/home/op/.local/state/socketd"},
		{map[string]string{}, 1000, ""},
	}
	for _, c := range cases {
		if got := Default(func(k string) string { return c.env[k] }, c.euid); got != c.want {
			t.Errorf("Default(%v, %d) = %q, want %q", c.env, c.euid, got, c.want)
		}
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, TokenFile)
	os.WriteFile(path, []byte("  abc\n"), 0o600)
	if got, err := ReadToken(path); got != "abc" || err != nil {
		t.Errorf("ReadToken = %q, %v", got, err)
	}
	os.WriteFile(path, []byte("\n"), 0o600)
	if _, err := ReadToken(path); err == nil {
		t.Error("an empty token file was read")
	}
	if _, err := ReadToken(filepath.Join(dir, "none")); err == nil {
		t.Error("a missing token file was read")
	}
}
