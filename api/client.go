package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
)

// maxResponseBytes bounds what the Client reads of a response.
const maxResponseBytes = 64 << 20

// Client calls a socketd daemon's API. Errors the daemon reports come back
// as *socketd.Error, so that callers can use socketd.ErrorCode; any other
// failure is a plain error. A Client is safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient makes the Client send its requests through hc.
func WithHTTPClient(hc *http.Client) ClientOption {
	return func(c *Client) { c.hc = hc }
}

// NewClient returns a Client for the daemon at baseURL
// ("http://127.0.0.1:7780") that authenticates with token. Requests are
// bounded by the contexts given to its methods.
func NewClient(baseURL, token string, opts ...ClientOption) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Health returns nil if the daemon answers GET /healthz.
func (c *Client) Health(ctx context.Context) error {
	_, _, err := c.do(ctx, http.MethodGet, healthPath, nil, "", nil, http.StatusOK)
	return err
}

// ListSockets returns every socket definition, by name, with its status.
func (c *Client) ListSockets(ctx context.Context) ([]socketd.Socket, error) {
	var list socketList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/sockets", nil, &list, http.StatusOK); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// GetSocket returns one socket definition with its status.
func (c *Client) GetSocket(ctx context.Context, name string) (socketd.Socket, error) {
	var s socketd.Socket
	err := c.doJSON(ctx, http.MethodGet, socketPath(name), nil, &s, http.StatusOK)
	return s, err
}

// PutSocket creates the socket s names or replaces its definition, and
// reports whether it was created. Start s from socketd.NewSocket, which
// holds the defaults; its read-only fields are not sent.
func (c *Client) PutSocket(ctx context.Context, s socketd.Socket) (socketd.Socket, bool, error) {
	body, err := socketBody(s)
	if err != nil {
		return socketd.Socket{}, false, err
	}
	var out socketd.Socket
	status, err := c.doBody(ctx, http.MethodPut, socketPath(s.Name), jsonContentType, body, &out,
		http.StatusOK, http.StatusCreated)
	return out, status == http.StatusCreated, err
}

// ReplaceSocket replaces the definition of the socket s names, but only if
// it is still the version updated at version (the UpdatedAt of the one s
// was made from): else a CodePreconditionFailed error, and nothing changes.
// It never creates a socket.
func (c *Client) ReplaceSocket(ctx context.Context, s socketd.Socket, version time.Time) (socketd.Socket, error) {
	body, err := socketBody(s)
	if err != nil {
		return socketd.Socket{}, err
	}
	var out socketd.Socket
	path := socketPath(s.Name)
	_, resp, err := c.send(ctx, http.MethodPut, path, nil, http.Header{"If-Match": {etag(version)}}, jsonContentType, body, http.StatusOK)
	if err != nil {
		return out, err
	}
	return out, decodeResponse(http.MethodPut, path, resp, &out)
}

// CreateSocket creates the socket s names; a CodeConflict error if the name
// is taken. Start s from socketd.NewSocket; its read-only fields are not sent.
func (c *Client) CreateSocket(ctx context.Context, s socketd.Socket) (socketd.Socket, error) {
	body, err := socketBody(s)
	if err != nil {
		return socketd.Socket{}, err
	}
	var out socketd.Socket
	_, err = c.doBody(ctx, http.MethodPost, "/v1/sockets", jsonContentType, body, &out, http.StatusCreated)
	return out, err
}

// socketBody encodes a definition without its read-only fields.
func socketBody(s socketd.Socket) ([]byte, error) {
	s.Status, s.CreatedAt, s.UpdatedAt = nil, time.Time{}, time.Time{}
	return json.Marshal(s)
}

// PatchSocket applies a JSON merge patch (RFC 7396) to a socket's definition
// and returns the result. patch is encoded as JSON unless it is a
// json.RawMessage or []byte, which are sent as they are; a null member
// resets a field to its default.
func (c *Client) PatchSocket(ctx context.Context, name string, patch any) (socketd.Socket, error) {
	var body []byte
	switch p := patch.(type) {
	case json.RawMessage:
		body = p
	case []byte:
		body = p
	default:
		var err error
		if body, err = json.Marshal(patch); err != nil {
			return socketd.Socket{}, fmt.Errorf("encode patch: %w", err)
		}
	}
	var out socketd.Socket
	_, err := c.doBody(ctx, http.MethodPatch, socketPath(name), mergePatchContentType, body, &out, http.StatusOK)
	return out, err
}

// DeleteSocket removes a socket; its listener closes and connections in
// flight finish.
func (c *Client) DeleteSocket(ctx context.Context, name string) error {
	_, _, err := c.do(ctx, http.MethodDelete, socketPath(name), nil, "", nil, http.StatusNoContent)
	return err
}

// ListConnections returns a page of the connection history, newest first,
// and the cursor of the next page ("" on the last). Pass that cursor in
// f.Cursor to read on.
func (c *Client) ListConnections(ctx context.Context, f socketd.ConnectionFilter) ([]socketd.Connection, string, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("socket", f.Socket)
	set("state", string(f.State))
	set("remote_ip", f.RemoteIP)
	if !f.Since.IsZero() {
		set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit != 0 {
		set("limit", strconv.Itoa(f.Limit))
	}
	set("cursor", f.Cursor)
	var list connectionList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/connections", q, &list, http.StatusOK); err != nil {
		return nil, "", err
	}
	return list.Items, list.NextCursor, nil
}

// GetConnection returns one connection of the history.
func (c *Client) GetConnection(ctx context.Context, id int64) (socketd.Connection, error) {
	var conn socketd.Connection
	err := c.doJSON(ctx, http.MethodGet, connectionPath(id), nil, &conn, http.StatusOK)
	return conn, err
}

// ConnectionLog returns the standard error a connection's handler wrote, as
// far as it was captured.
func (c *Client) ConnectionLog(ctx context.Context, id int64) ([]byte, error) {
	_, body, err := c.do(ctx, http.MethodGet, connectionPath(id)+"/log", nil, "", nil, http.StatusOK)
	return body, err
}

// KillConnection terminates a running connection's handler and returns its
// final record; a CodeConflict error if it is not running.
func (c *Client) KillConnection(ctx context.Context, id int64) (socketd.Connection, error) {
	var conn socketd.Connection
	err := c.doJSON(ctx, http.MethodDelete, connectionPath(id), nil, &conn, http.StatusOK)
	return conn, err
}

// ImportOptions says how Import reads its text: Format is "systemd",
// "inetd", "xinetd", or "" for the text to tell; Name is the socket's name
// for systemd units; DryRun saves nothing.
type ImportOptions struct {
	Format string
	Name   string
	DryRun bool
}

// ImportResult is what Import made of a text: the sockets, as saved (or as
// they would be with DryRun), and every directive they do not express.
type ImportResult = importResult

// Import creates or replaces the sockets that text (systemd units, inetd.conf
// lines or xinetd services) defines.
func (c *Client) Import(ctx context.Context, text string, o ImportOptions) (ImportResult, error) {
	q := url.Values{}
	if o.Format != "" {
		q.Set("format", o.Format)
	}
	if o.Name != "" {
		q.Set("name", o.Name)
	}
	if o.DryRun {
		q.Set("dry_run", "true")
	}
	var res ImportResult
	path := "/v1/import"
	_, body, err := c.do(ctx, http.MethodPost, path, q, "text/plain; charset=utf-8", []byte(text), http.StatusOK)
	if err != nil {
		return res, err
	}
	return res, decodeResponse(http.MethodPost, path, body, &res)
}

// Export returns socket name as systemd unit files.
func (c *Client) Export(ctx context.Context, name string) ([]convert.File, error) {
	var res exportResult
	err := c.doJSON(ctx, http.MethodGet, socketPath(name)+"/export", nil, &res, http.StatusOK)
	return res.Files, err
}

func connectionPath(id int64) string { return "/v1/connections/" + strconv.FormatInt(id, 10) }

// doJSON sends a request without a body and decodes the JSON answer into out.
func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, out any, ok ...int) error {
	_, body, err := c.do(ctx, method, path, q, "", nil, ok...)
	if err != nil {
		return err
	}
	return decodeResponse(method, path, body, out)
}

// doBody sends a request with a body and decodes the JSON answer into out.
func (c *Client) doBody(ctx context.Context, method, path, contentType string, reqBody []byte, out any, ok ...int) (int, error) {
	status, body, err := c.do(ctx, method, path, nil, contentType, reqBody, ok...)
	if err != nil {
		return status, err
	}
	return status, decodeResponse(method, path, body, out)
}

func decodeResponse(method, path string, body []byte, out any) error {
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// do sends a request and returns the status and body of a response whose
// status is one of ok; any other status is an error.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, contentType string, reqBody []byte, ok ...int) (int, []byte, error) {
	return c.send(ctx, method, path, q, nil, contentType, reqBody, ok...)
}

// send is do with headers of the caller's besides.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, hdr http.Header, contentType string, reqBody []byte, ok ...int) (int, []byte, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if reqBody != nil {
		rd = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json, application/problem+json, text/plain")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	switch {
	case err != nil:
		return resp.StatusCode, nil, fmt.Errorf("%s %s: read response: %w", method, path, err)
	case len(body) > maxResponseBytes:
		return resp.StatusCode, nil, fmt.Errorf("%s %s: the response is larger than %d bytes", method, path, maxResponseBytes)
	}
	if !slices.Contains(ok, resp.StatusCode) {
		return resp.StatusCode, nil, responseError(method, path, resp, body)
	}
	return resp.StatusCode, body, nil
}

// responseError turns a failed response into an error: a *socketd.Error if
// the body is a problem document, else a plain error that says the status.
func responseError(method, path string, resp *http.Response, body []byte) error {
	plain := fmt.Errorf("%s %s: %s", method, path, resp.Status)
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != problemContentType {
		return plain
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Code == "" {
		return errors.Join(plain, err)
	}
	msg := p.Detail
	if msg == "" {
		msg = p.Title
	}
	if p.Code == socketd.CodeInternal && p.RequestID != "" {
		msg += " (request id " + p.RequestID + ")"
	}
	return &socketd.Error{Code: p.Code, Message: msg, Fields: p.Errors}
}

// EventMissed is the type Events gives a notice that the stream lost
// events: the client resumed from an event the daemon no longer keeps, or
// of an earlier run. What it shows should be read again.
const EventMissed socketd.EventType = "missed"

// EventsOptions says which events Events follows.
type EventsOptions struct {
	// Socket keeps that socket's events; "" keeps all.
	Socket string
	// After is the ID of the last event already seen: the stream resumes
	// after it. 0 starts from now.
	After int64
	// Opened, if set, is called once the daemon has taken the stream:
	// every event from then on will be given to fn.
	Opened func()
}

// Events follows the daemon's event stream (GET /v1/events): it calls fn
// with each event until ctx ends, the stream ends (nil), or fn returns an
// error, which Events returns. To resume, call it again with After set to
// the ID of the last event fn got.
func (c *Client) Events(ctx context.Context, o EventsOptions, fn func(socketd.Event) error) error {
	q := url.Values{}
	if o.Socket != "" {
		q.Set("socket", o.Socket)
	}
	if o.After > 0 {
		q.Set("after", strconv.FormatInt(o.After, 10))
	}
	u := c.base + eventsPath
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	// The daemon writes at least a keepalive every keepaliveInterval: a
	// stream silent for much longer is a connection that died unseen.
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var silent atomic.Bool
	watchdog := time.AfterFunc(eventsIdle, func() {
		silent.Store(true)
		cancel()
	})
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(streamCtx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", eventsPath, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", eventsPath, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		return responseError(http.MethodGet, eventsPath, resp, body)
	}
	// The daemon subscribes the stream before it answers.
	if o.Opened != nil {
		o.Opened()
	}
	// Server-Sent Events: "field: value" lines, an empty line ends an
	// event, a line that starts with a colon is a comment.
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventBytes)
	var typ, data string
	for sc.Scan() {
		watchdog.Reset(eventsIdle)
		line := sc.Text()
		switch {
		case line == "":
			if typ == string(EventMissed) {
				if err := fn(socketd.Event{Type: EventMissed}); err != nil {
					return err
				}
			} else if data != "" {
				var e socketd.Event
				if err := json.Unmarshal([]byte(data), &e); err != nil {
					return fmt.Errorf("GET %s: decode event: %w", eventsPath, err)
				}
				if err := fn(e); err != nil {
					return err
				}
			}
			typ, data = "", ""
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				typ = value
			case "data":
				if data != "" {
					data += "\n"
				}
				data += value
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case silent.Load():
		return fmt.Errorf("GET %s: nothing from the daemon for %s", eventsPath, eventsIdle)
	case sc.Err() != nil:
		return fmt.Errorf("GET %s: %w", eventsPath, sc.Err())
	}
	return nil
}

// eventsIdle is how long Events waits for a line before it takes the
// stream for dead: two keepalives and some.
const eventsIdle = 2*keepaliveInterval + 5*time.Second

// maxEventBytes bounds a line of the event stream: an event is a few
// hundred bytes, a socket's status with many addresses a few KiB.
const maxEventBytes = 1 << 20
