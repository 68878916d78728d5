package main

import (
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestMetricsScraped: GET /metrics, scraped for real, counts the
// connections by socket and reason, with no peer address; it needs the
// token on the API's address, and none on --metrics-addr.
func TestMetricsScraped(t *testing.T) {
	dir := t.TempDir()
	m, c := openMain(t, dir, "--metrics-addr", "127.0.0.1:0")
	hello := testhandler.Socket("hello", testhandler.Hello, "127.0.0.1:0")
	denied := testhandler.Socket("denied", testhandler.Hello, "127.0.0.1:0")
	denied.IPAddressDeny = []string{"any"}
	for _, s := range []socketd.Socket{hello, denied} {
		if _, _, err := c.PutSocket(ctxT(t), s); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"hello", "hello", "denied"} {
		s, err := c.GetSocket(ctxT(t), name)
		if err != nil {
			t.Fatal(err)
		}
		testhandler.Answer(t, s.Status.Listening[0])
	}
	waitConnection(t, c, socketd.ConnectionFilter{Socket: "hello", Limit: 1}, socketd.ConnExited)

	scrape := func(url, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctxT(t), "GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := scrape("http://"+m.API.Addr()+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d", code)
	}
	// A client cannot add series: not by the Host it sends, which the
	// request metrics do not take.
	req, _ := http.NewRequestWithContext(ctxT(t), "GET", "http://"+m.API.Addr()+"/v1/sockets", nil)
	req.Host = "made-up-7.example:4242"
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	want := []string{
		`socketd_connections_accepted_total{socketd_socket="hello"} 2`,
		`socketd_connections_refused_total{socketd_refusal_reason="denied",socketd_socket="denied"} 1`,
		`socketd_connections_active{socketd_socket="hello"} 0`,
		`socketd_connection_io_bytes_total{network_io_direction="transmit",socketd_socket="hello"} 24`,
		`socketd_connection_duration_seconds_count{socketd_connection_state="exited",socketd_socket="hello"} 2`,
		`socketd_spawn_duration_seconds_count{socketd_socket="hello"} 2`,
		`socketd_history_queue `,
		`socketd_history_commit_duration_seconds_bucket{`,
		`http_server_request_duration_seconds_count{`,
		`target_info{service_name="socketd",`,
	}
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for {
		var code int
		code, body = scrape("http://"+m.API.Addr()+"/metrics", readToken(t, dir))
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
			}
		}
		if code == http.StatusOK && missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics: %d, lacks %s:\n%s", code, missing, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, bad := range []string{"127.0.0.1", "peer", "client_address", "made-up", "4242", "server_port"} {
		if strings.Contains(body, bad) {
			t.Errorf("the metrics have %q, of a client or its request:\n%s", bad, body)
		}
	}
	code, open := scrape("http://"+m.metricsAddr+"/metrics", "")
	if code != http.StatusOK || !strings.Contains(open, `socketd_connections_accepted_total{socketd_socket="hello"} 2`) {
		t.Errorf("--metrics-addr: %d\n%s", code, open)
	}
	if code, _ := scrape("http://"+m.metricsAddr+"/v1/sockets", ""); code != http.StatusNotFound {
		t.Errorf("--metrics-addr serves the API: %d", code)
	}
}

// TestTracesToConsole: with OTEL_TRACES_EXPORTER=console, socketd writes
// its spans to stdout (the request's, named by route, and the
// connection's), flushed as it stops; its log records made in a span carry
// the trace id. Without any OTEL_* variable it writes none.
func TestTracesToConsole(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   []string
		spans bool
	}{{"console", []string{"OTEL_TRACES_EXPORTER=console"}, true}, {"unset", nil, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var stdout testhandler.Buffer
			d := startDaemonWith(t, dir, func(cmd *exec.Cmd) {
				cmd.Args = append(cmd.Args, "--log-level", "debug")
				cmd.Env = append(cmd.Env, tc.env...)
				cmd.Stdout = &stdout
			})
			c := d.client(t, dir)
			port := testhandler.FreePort(t)
			if _, _, err := c.PutSocket(ctxT(t), testhandler.Socket("hello", testhandler.Hello, port)); err != nil {
				t.Fatal(err)
			}
			testhandler.Answer(t, port)
			waitConnection(t, c, socketd.ConnectionFilter{Limit: 1}, socketd.ConnExited)
			if err := d.stop(t, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			out := stdout.String()
			if !tc.spans {
				if out != "" {
					t.Errorf("spans written without being asked for:\n%s", out)
				}
				if strings.Contains(d.logText(), "trace_id=") {
					t.Errorf("trace ids logged without tracing:\n%s", d.logText())
				}
				return
			}
			for _, want := range []string{`"Name":"PUT /v1/sockets/{name}"`, `"Name":"connection hello"`, `"Key":"process.exit.code"`} {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %s:\n%.3000s", want, out)
				}
			}
			// The PUT's request log carries its span's trace id.
			m := regexp.MustCompile(`msg=request .*method=PUT path=/v1/sockets/hello.* trace_id=([0-9a-f]{32})`).FindStringSubmatch(d.logText())
			if m == nil {
				t.Fatalf("the PUT's log record has no trace id:\n%s", d.logText())
			}
			if !strings.Contains(out, `"TraceID":"`+m[1]+`"`) {
				t.Errorf("the logged trace id %s is not the span's", m[1])
			}
		})
	}
}

// TestExporters: the OTEL_* variables that choose what is exported.
func TestExporters(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, "console"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp, console"}, "otlp,console"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"},
		{map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4318/v1/metrics"}, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, ""},
	} {
		got := strings.Join(exporters(func(k string) string { return tc.env[k] }, "TRACES"), ",")
		if got != tc.want {
			t.Errorf("%v: traces to %q, want %q", tc.env, got, tc.want)
		}
	}
	// What socketd cannot do is refused at the start, as a bad flag is.
	for _, env := range []map[string]string{
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		{"OTEL_METRICS_EXPORTER": "zipkin"},
		{"OTEL_TRACES_EXPORTER": "prometheus"},
	} {
		env["HOME"] = "/h"
		if _, err := ParseConfig(nil, func(k string) string { return env[k] }, io.Discard); err == nil {
			t.Errorf("%v was taken", env)
		} else if env["OTEL_EXPORTER_OTLP_PROTOCOL"] != "" && !strings.Contains(err.Error(), "http/protobuf") {
			t.Errorf("OTLP over gRPC: %v, want a refusal naming http/protobuf", err)
		}
	}
	c, err := ParseConfig(nil, func(k string) string {
		return map[string]string{"HOME": "/h", "OTEL_METRICS_EXPORTER": "prometheus,console", "OTEL_TRACES_EXPORTER": "otlp"}[k]
	}, io.Discard)
	if err != nil || strings.Join(c.Exports.Metrics, ",") != "console" || strings.Join(c.Exports.Traces, ",") != "otlp" {
		t.Errorf("exports %+v, %v", c.Exports, err)
	}
}
