package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/datadir"
	"github.com/socketd/socketd/store"
)

// DefaultAPIAddr is where the API listens unless told otherwise: loopback
// only, since the API can start programs.
const DefaultAPIAddr = datadir.DefaultAPIAddr

// Config is everything the daemon is told at start. config.go is the only
// place that reads flags and SOCKETD_* environment variables.
type Config struct {
	APIAddr     string
	DataDir     string
	StopTimeout time.Duration
	LogLevel    slog.Level
	LogFormat   string // "text" or "json"
	// DynamicUIDMin and DynamicUIDMax bound the uids of dynamic_user
	// handlers.
	DynamicUIDMin, DynamicUIDMax uint32
	// History bounds the connection history; zero keeps it all.
	History store.Retention
	// MetricsAddr, if set, is a host:port where GET /metrics is served
	// without a token, for a scraper that cannot send one.
	MetricsAddr string
	// Exports is where telemetry goes, as the OTEL_* variables say.
	Exports exports
}

// DBPath returns the path of the SQLite database in the data dir.
func (c Config) DBPath() string { return filepath.Join(c.DataDir, "socketd.db") }

// TokenPath returns the path of the admin token file in the data dir.
func (c Config) TokenPath() string { return filepath.Join(c.DataDir, datadir.TokenFile) }

// ParseConfig reads the command line, with each flag's SOCKETD_* environment
// variable as its default. A flag given on the command line wins.
func ParseConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	fs := flag.NewFlagSet("socketd", flag.ContinueOnError)
	fs.SetOutput(usage)
	var c Config
	var stop, level, dynamic string
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.APIAddr, "api-addr", env(datadir.EnvAPIAddr, DefaultAPIAddr),
		"`host:port` of the HTTP API (env SOCKETD_API_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", env(datadir.EnvDataDir, datadir.Default(getenv, os.Geteuid())),
		"`directory` for socketd.db and admin.token, created 0700 if missing (env SOCKETD_DATA_DIR)")
	fs.StringVar(&stop, "stop-timeout", env("SOCKETD_STOP_TIMEOUT", "10s"),
		"how long a handler has between SIGTERM and SIGKILL (env SOCKETD_STOP_TIMEOUT)")
	fs.StringVar(&level, "log-level", env("SOCKETD_LOG_LEVEL", "info"),
		"debug, info, warn or error (env SOCKETD_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env("SOCKETD_LOG_FORMAT", "text"),
		"text or json (env SOCKETD_LOG_FORMAT)")
	fs.StringVar(&dynamic, "dynamic-users", env("SOCKETD_DYNAMIC_USERS",
		fmt.Sprintf("%d-%d", activator.DefaultDynamicUIDMin, activator.DefaultDynamicUIDMax)),
		"`min-max` uids for dynamic_user handlers; ids the user or group database knows are skipped (env SOCKETD_DYNAMIC_USERS)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("SOCKETD_METRICS_ADDR", ""),
		"`host:port` to serve GET /metrics on without a token, for a scraper that cannot send one; off by default (env SOCKETD_METRICS_ADDR)")
	var maxAge, maxRows string
	fs.StringVar(&maxAge, "history-max-age", env("SOCKETD_HISTORY_MAX_AGE", "0"),
		"delete connections of the history that started longer ago than this `duration` (such as 720h or 30d); 0 keeps them (env SOCKETD_HISTORY_MAX_AGE)")
	fs.StringVar(&maxRows, "history-max-rows", env("SOCKETD_HISTORY_MAX_ROWS", "0"),
		"keep at most this `number` of connections in the history, the newest; 0 for no bound (env SOCKETD_HISTORY_MAX_ROWS)")
	fs.Usage = func() {
		fmt.Fprintf(usage, "Usage: socketd [flags]\n\nsocketd serves programs on TCP sockets, one process per connection, managed over a REST API.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.StopTimeout, err = time.ParseDuration(stop); err != nil || c.StopTimeout <= 0 {
		return Config{}, fmt.Errorf("--stop-timeout: %q is not a positive duration such as 10s", stop)
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return Config{}, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	if c.DynamicUIDMin, c.DynamicUIDMax, err = parseUIDRange(dynamic); err != nil {
		return Config{}, fmt.Errorf("--dynamic-users: %w", err)
	}
	if c.History.MaxAge, err = parseAge(maxAge); err != nil {
		return Config{}, fmt.Errorf("--history-max-age: %w", err)
	}
	if c.History.MaxRows, err = strconv.ParseInt(maxRows, 10, 64); err != nil || c.History.MaxRows < 0 {
		return Config{}, fmt.Errorf("--history-max-rows: %q is not a count of 0 or more", maxRows)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return Config{}, fmt.Errorf("--log-format: %q is not text or json", c.LogFormat)
	}
	if c.DataDir == "" {
		return Config{}, errors.New("--data-dir: no default: set HOME or XDG_STATE_HOME, or give --data-dir")
	}
	if !filepath.IsAbs(c.DataDir) {
		abs, err := filepath.Abs(c.DataDir)
		if err != nil {
			return Config{}, fmt.Errorf("--data-dir: %w", err)
		}
		c.DataDir = abs
	}
	if strings.TrimSpace(c.APIAddr) == "" {
		return Config{}, errors.New("--api-addr: is empty")
	}
	if c.Exports, err = parseExports(getenv); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseAge reads a history age: a Go duration ("720h"), or days ("30d"),
// as journald's MaxRetentionSec= takes them; 0 for none.
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n >= 0 && n <= 100*365 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not a duration such as 720h or 30d", s)
}

// NewLogger returns the daemon's logger, writing to w. Records logged with
// the context of a span carry its trace_id and span_id.
func (c Config) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(traceHandler{slog.NewJSONHandler(w, opts)})
	}
	return slog.New(traceHandler{slog.NewTextHandler(w, opts)})
}

// parseUIDRange parses "min-max", a range of uids for dynamic users. Root,
// the ids the kernel reserves and the classic nobody (65534) stay out.
func parseUIDRange(s string) (min, max uint32, err error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, errA := strconv.ParseUint(lo, 10, 32)
	b, errB := strconv.ParseUint(hi, 10, 32)
	switch {
	case !ok || errA != nil || errB != nil:
		return 0, 0, fmt.Errorf("%q is not a range of uids such as 61184-65519", s)
	case a == 0 || a > b:
		return 0, 0, fmt.Errorf("%q: the range must start above 0 and not end before it starts", s)
	case a <= 65535 && b >= 65534, b >= 4294967295:
		return 0, 0, fmt.Errorf("%q takes in 65534 (nobody), 65535 or 4294967295 (no user)", s)
	}
	return uint32(a), uint32(b), nil
}
