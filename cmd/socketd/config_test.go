package main

import (
	"github.com/socketd/socketd/store"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig(nil, envOf(map[string]string{"HOME": "/home/op"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIAddr != DefaultAPIAddr || c.StopTimeout != 10*time.Second || c.LogLevel != slog.LevelInfo ||
		c.DynamicUIDMin != 61184 || c.DynamicUIDMax != 65519 || c.History != (store.Retention{}) {
		t.Errorf("defaults = %+v", c)
	}
	want := "/home/op/.local/state/socketd"
	if os.Geteuid() == 0 {
		want = "/var/lib/socketd"
	}
	if c.DataDir != want {
		t.Errorf("data dir = %q, want %q", c.DataDir, want)
	}
	if c.DBPath() != filepath.Join(want, "socketd.db") || c.TokenPath() != filepath.Join(want, "admin.token") {
		t.Errorf("paths = %q %q", c.DBPath(), c.TokenPath())
	}
}

func TestParseConfigFlagsBeatEnvironment(t *testing.T) {
	env := envOf(map[string]string{
		"SOCKETD_API_ADDR":         "127.0.0.1:1",
		"SOCKETD_DATA_DIR":         "/from/env",
		"SOCKETD_STOP_TIMEOUT":     "3s",
		"SOCKETD_LOG_LEVEL":        "debug",
		"SOCKETD_DYNAMIC_USERS":    "70000-70009",
		"SOCKETD_HISTORY_MAX_AGE":  "30d",
		"SOCKETD_HISTORY_MAX_ROWS": "1000000",
	})
	c, err := ParseConfig(nil, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIAddr != "127.0.0.1:1" || c.DataDir != "/from/env" || c.StopTimeout != 3*time.Second || c.LogLevel != slog.LevelDebug ||
		c.DynamicUIDMin != 70000 || c.DynamicUIDMax != 70009 || c.History.MaxAge != 30*24*time.Hour || c.History.MaxRows != 1000000 {
		t.Errorf("from env = %+v", c)
	}
	c, err = ParseConfig([]string{"--api-addr", "[::1]:2", "--data-dir=/from/flag", "--stop-timeout", "1m", "--log-level", "warn",
		"--history-max-age", "36h", "--history-max-rows", "0"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIAddr != "[::1]:2" || c.DataDir != "/from/flag" || c.StopTimeout != time.Minute || c.LogLevel != slog.LevelWarn ||
		c.History.MaxAge != 36*time.Hour || c.History.MaxRows != 0 {
		t.Errorf("from flags = %+v", c)
	}
}

func TestParseConfigRejectsBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--stop-timeout", "soon"},
		{"--stop-timeout", "-1s"},
		{"--log-level", "loud"},
		{"--log-format", "xml"},
		{"--dynamic-users", "61184"},
		{"--dynamic-users", "0-100"},
		{"--dynamic-users", "200-100"},
		{"--dynamic-users", "60000-70000"},
		{"--dynamic-users", "65535-70000"},
		{"--dynamic-users", "a-b"},
		{"--api-addr", " "},
		{"--history-max-age", "a month"},
		{"--history-max-age", "-1h"},
		{"--history-max-age", "-3d"},
		{"--history-max-rows", "-1"},
		{"--history-max-rows", "many"},
		{"--no-such-flag"},
		{"extra-argument"},
	} {
		if c, err := ParseConfig(args, envOf(map[string]string{"HOME": "/h"}), io.Discard); err == nil {
			t.Errorf("ParseConfig(%q) = %+v, want an error", args, c)
		}
	}
}
