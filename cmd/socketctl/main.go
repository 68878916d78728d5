// Command socketctl manages a socketd daemon from the shell, as systemctl
// manages systemd's units: list and inspect sockets, apply and edit their
// definitions, read and follow the connection history, kill connections,
// import and export units. It talks to the daemon through its API only.
//
// Exit status: 0 success; 1 failure (the daemon refused or could not do
// it, or could not be reached); 2 bad usage; 3 status of a socket that is
// not listening; 4 no such socket or connection.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
	"github.com/socketd/socketd/internal/datadir"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitNotRunning  = 3
	exitNotFound    = 4
	envAddr         = datadir.EnvAPIAddr
	envToken        = "SOCKETD_TOKEN"
	envTokenFile    = "SOCKETD_TOKEN_FILE"
	envDataDir      = datadir.EnvDataDir
	defaultHistoryN = 20
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}))
}

// env is what a run of socketctl has of the world: its streams and its
// environment, so that tests run it in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is a subcommand: its name, its arguments' synopsis, what it does,
// and its run, which returns the exit status.
type command struct {
	name, args, help string
	run              func(ctx context.Context, c *cli, args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"list", "", "list the sockets with their state and counts", runList},
		{"status", "NAME...", "show sockets in detail: state, counts, live connections, recent stderr", runStatus},
		{"apply", "-f FILE...", "create or replace the sockets a JSON file defines (- for stdin)", runApply},
		{"edit", "NAME", "edit a socket's definition in $EDITOR and apply it", runEdit},
		{"enable", "NAME...", "enable sockets", runEnable(true)},
		{"disable", "NAME...", "disable sockets: their listeners close", runEnable(false)},
		{"rm", "NAME...", "delete sockets", runRemove},
		{"history", "[filters]", "list connections, oldest first; --follow for new ones as they end", runHistory},
		{"watch", "[--socket NAME]", "print the daemon's events as they happen", runWatch},
		{"kill", "ID...", "terminate running connections", runKill},
		{"import", "FILE...", "import systemd units, inetd.conf lines or xinetd services", runImport},
		{"export", "NAME", "print a socket as systemd units", runExport},
	}
}

// cli is a run of socketctl once its command is known.
type cli struct {
	*env
	name   string // the command's
	flags  *flag.FlagSet
	addr   string
	token  string
	tfile  string
	data   string
	output string
	// timeout bounds each call to the daemon, but the event streams.
	timeout time.Duration
	client  *api.Client
	// stream follows event streams: it has no timeout.
	stream *api.Client
}

func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(e.stderr, "socketctl: unknown command %q; run socketctl help\n", args[0])
		return exitUsage
	}
	cmd := commands[i]
	c := &cli{env: e, name: cmd.name, flags: flag.NewFlagSet("socketctl "+cmd.name, flag.ContinueOnError)}
	c.flags.SetOutput(e.stderr)
	c.flags.StringVar(&c.addr, "addr", "", "`host:port` of socketd's API (env "+envAddr+", default "+datadir.DefaultAPIAddr+")")
	c.flags.StringVar(&c.token, "token", "", "API `token` (env "+envToken+")")
	c.flags.StringVar(&c.tfile, "token-file", "", "`file` that holds the API token (env "+envTokenFile+")")
	c.flags.StringVar(&c.data, "data-dir", "", "socketd's data `directory`, whose admin.token is used when no token is given (env "+envDataDir+")")
	c.flags.DurationVar(&c.timeout, "timeout", 30*time.Second, "how long to wait for socketd's answer to each call")
	c.flags.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: socketctl %s %s\n\n%s.\n\nFlags:\n", cmd.name, cmd.args, upperFirst(cmd.help))
		c.flags.PrintDefaults()
	}
	return cmd.run(ctx, c, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: socketctl COMMAND [flags] [args]\n\nsocketctl manages the sockets of a socketd daemon through its API.\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %-16s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintf(w, "\nEvery command takes --addr, --token, --token-file and --data-dir; socketctl COMMAND -h lists its flags.\n"+
		"Exit status: 0 done, 1 failed, 2 bad usage, 3 a socket not listening (status), 4 no such socket or connection.\n")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// outputFlag adds -o to the command's flags, with the formats it offers,
// the first the default.
func (c *cli) outputFlag(formats ...string) {
	c.flags.StringVar(&c.output, "o", formats[0], "output: "+strings.Join(formats, ", "))
	c.flags.StringVar(&c.output, "output", formats[0], "output: "+strings.Join(formats, ", "))
}

// parse reads the command's flags, which may come before, between or after
// its arguments, and returns the arguments; ok is false, with the exit
// status, if the command line is wrong. It then finds the daemon.
func (c *cli) parse(args []string, minArgs, maxArgs int) (rest []string, status int, ok bool) {
	for {
		if err := c.flags.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		args = c.flags.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			rest = append(rest, args[1:]...)
			break
		}
		rest, args = append(rest, args[0]), args[1:]
	}
	if c.output != "" {
		formats := strings.Split(strings.TrimPrefix(c.flags.Lookup("o").Usage, "output: "), ", ")
		if !slices.Contains(formats, c.output) {
			return nil, c.usageError("-o %s: the output is one of %s", c.output, strings.Join(formats, ", ")), false
		}
	}
	switch {
	case len(rest) < minArgs:
		return nil, c.usageError("missing argument: socketctl %s %s", c.name, c.synopsis()), false
	case maxArgs >= 0 && len(rest) > maxArgs:
		return nil, c.usageError("unexpected argument %q", rest[maxArgs]), false
	}
	if err := c.connect(); err != nil {
		fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
		return nil, exitFailure, false
	}
	return rest, exitOK, true
}

func (c *cli) synopsis() string {
	for _, cmd := range commands {
		if cmd.name == c.name {
			return cmd.args
		}
	}
	return ""
}

// usageError says what is wrong with the command line and returns
// exitUsage.
func (c *cli) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "socketctl %s: %s\n", c.name, fmt.Sprintf(format, args...))
	return exitUsage
}

// connect makes the API client: the address from --addr, the environment or
// the default; the token from --token, the environment, --token-file, or the
// admin token in the daemon's data directory when socketctl can read it.
func (c *cli) connect() error {
	c.addr = firstOf(c.addr, c.getenv(envAddr), datadir.DefaultAPIAddr)
	token, err := c.findToken()
	if err != nil {
		return err
	}
	base := c.addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c.client = api.NewClient(base, token, api.WithHTTPClient(&http.Client{Timeout: c.timeout}))
	c.stream = api.NewClient(base, token)
	return nil
}

func (c *cli) findToken() (string, error) {
	if t := firstOf(c.token, c.getenv(envToken)); t != "" {
		return t, nil
	}
	if f := firstOf(c.tfile, c.getenv(envTokenFile)); f != "" {
		return datadir.ReadToken(f)
	}
	dir := firstOf(c.data, c.getenv(envDataDir), datadir.Default(c.getenv, os.Geteuid()))
	if dir == "" {
		return "", fmt.Errorf("no API token: pass --token or set %s, or --data-dir (HOME is not set to find socketd's data directory)", envToken)
	}
	path := filepath.Join(dir, datadir.TokenFile)
	t, err := datadir.ReadToken(path)
	if err != nil {
		return "", fmt.Errorf("no API token: pass --token or set %s, or run socketctl as socketd's user so that it reads %s, or point --data-dir at socketd's data directory (%v)",
			envToken, path, err)
	}
	return t, nil
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// worse returns the exit status that says more of what went wrong: a
// failure over a socket or connection not found, that over a socket not
// listening, any over success.
func worse(a, b int) int {
	rank := map[int]int{exitOK: 0, exitNotRunning: 1, exitNotFound: 2, exitFailure: 3, exitUsage: 4}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// fail reports err, which a call to the daemon returned, in words that say
// what to do, and returns the exit status it calls for.
func (c *cli) fail(err error) int {
	var se *socketd.Error
	switch {
	case errors.Is(err, context.Canceled):
		return exitFailure
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		fmt.Fprintf(c.stderr, "socketctl: socketd at %s did not answer within --timeout %s\n", c.addr, c.timeout)
		return exitFailure
	case errors.Is(err, syscall.ECONNREFUSED):
		fmt.Fprintf(c.stderr, "socketctl: socketd is not running at %s (connection refused): start it, or point --addr or %s at it\n", c.addr, envAddr)
		return exitFailure
	case errors.As(err, &se) && se.Code == socketd.CodeUnauthorized:
		fmt.Fprintf(c.stderr, "socketctl: socketd at %s refused the token: %s\n", c.addr, se.Message)
		return exitFailure
	case errors.As(err, &se):
		fmt.Fprintf(c.stderr, "socketctl: %s\n", se.Message)
		for _, f := range se.Fields {
			fmt.Fprintf(c.stderr, "  %s: %s\n", f.Pointer, f.Detail)
		}
		if se.Code == socketd.CodeNotFound {
			return exitNotFound
		}
		return exitFailure
	}
	fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
	return exitFailure
}
