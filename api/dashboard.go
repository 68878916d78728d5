package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
	"github.com/socketd/socketd/web"
)

// dashboardPrefix is where the dashboard is served.
const dashboardPrefix = "/ui"

// isDashboard reports whether path is the dashboard's, which checks its own
// logins (web.Sessions) instead of a bearer token; / sends a browser there.
func isDashboard(path string) bool {
	return path == "/" || path == dashboardPrefix || strings.HasPrefix(path, dashboardPrefix+"/")
}

// toDashboard answers GET / by sending the browser to the dashboard.
func toDashboard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Location", dashboardPrefix+"/")
	w.WriteHeader(http.StatusSeeOther)
}

// dashboardBackend is the dashboard's view of the server: the same store,
// runtime and events as the API's.
type dashboardBackend struct{ s *Server }

var _ web.Backend = dashboardBackend{}

func (b dashboardBackend) CheckToken(ctx context.Context, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	return b.s.store.CheckToken(ctx, token)
}

func (b dashboardBackend) ListSockets(ctx context.Context) ([]socketd.Socket, error) {
	return b.s.socketsWithStatus(ctx)
}

func (b dashboardBackend) SetEnabled(ctx context.Context, name string, enabled bool) error {
	_, err := b.s.store.UpdateSocket(ctx, name, func(s *socketd.Socket) error {
		s.Enabled = enabled
		return nil
	})
	if err != nil {
		return err
	}
	b.s.reconcile(ctx, socketd.EventSocketChanged, name)
	return nil
}

func (b dashboardBackend) ConnectionsPerMinute(name string) []int64 {
	return b.s.hub.perMinute(name)
}

func (b dashboardBackend) LastEventID() int64 { return b.s.hub.LastEventID() }

func (b dashboardBackend) GetSocket(ctx context.Context, name string) (socketd.Socket, error) {
	return b.s.socketWithStatus(ctx, name)
}

func (b dashboardBackend) LiveConnections(name string) []socketd.Connection {
	return b.s.runtime.Connections(name)
}

func (b dashboardBackend) ListConnections(ctx context.Context, f socketd.ConnectionFilter) ([]socketd.Connection, string, error) {
	cs, next, err := b.s.store.ListConnections(ctx, f)
	b.s.withLive(cs)
	return cs, next, err
}

func (b dashboardBackend) Kill(ctx context.Context, id int64) error { return b.s.runtime.Kill(ctx, id) }

func (b dashboardBackend) GetConnection(ctx context.Context, id int64) (socketd.Connection, error) {
	c, err := b.s.store.GetConnection(ctx, id)
	one := []socketd.Connection{c}
	b.s.withLive(one)
	return one[0], err
}

func (b dashboardBackend) ConnectionLog(ctx context.Context, id int64) ([]byte, error) {
	return b.s.store.ConnectionLog(ctx, id)
}

func (b dashboardBackend) ConnectionStats(ctx context.Context, socket string, since, until time.Time, step time.Duration) (socketd.ConnectionStats, error) {
	return b.s.store.ConnectionStats(ctx, socket, since, until, step)
}

func (b dashboardBackend) CreateSocket(ctx context.Context, def []byte) (socketd.Socket, error) {
	sock, err := decodeSocket(def, false)
	if err != nil {
		return socketd.Socket{}, err
	}
	return b.s.addSocket(ctx, sock)
}

func (b dashboardBackend) ReplaceSocket(ctx context.Context, name string, def []byte, since time.Time) (socketd.Socket, error) {
	sock, err := decodeSocket(def, false)
	if err != nil {
		return socketd.Socket{}, err
	}
	return b.s.replaceSocket(ctx, name, sock, since)
}

func (b dashboardBackend) DeleteSocket(ctx context.Context, name string) error {
	return b.s.removeSocket(ctx, name)
}

func (b dashboardBackend) Import(ctx context.Context, format, name, text string, dryRun bool, versions map[string]time.Time) ([]socketd.Socket, []convert.Unmapped, error) {
	out, err := b.s.importText(ctx, format, name, text, dryRun, versions)
	return out.Items, out.Unmapped, err
}
