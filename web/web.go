// Package web is socketd's dashboard: pages rendered on the server with
// html/template, kept live by htmx and its Server-Sent Events extension
// (vendored under static/vendor, no build step, nothing from a CDN), behind
// a login with an API token and a strict Content-Security-Policy. The api
// package mounts it at /ui/ and gives it a Backend.
package web

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
)

// Backend is what the dashboard needs of the daemon.
type Backend interface {
	// CheckToken reports whether token is an API token.
	CheckToken(ctx context.Context, token string) (bool, error)
	// ListSockets returns the definitions with their live statuses.
	ListSockets(ctx context.Context) ([]socketd.Socket, error)
	// SetEnabled enables or disables a socket, as a PATCH would.
	SetEnabled(ctx context.Context, name string, enabled bool) error
	// ConnectionsPerMinute returns how many connections the socket had
	// in each of the last 60 minutes, oldest first.
	ConnectionsPerMinute(name string) []int64
	// LastEventID is the id of the last event of GET /v1/events: a page
	// follows the events after the one it was rendered at.
	LastEventID() int64
	// GetSocket returns a definition with its live status.
	GetSocket(ctx context.Context, name string) (socketd.Socket, error)
	// LiveConnections returns a socket's running connections with the
	// bytes they have carried so far.
	LiveConnections(name string) []socketd.Connection
	// ListConnections reads the history, newest first; running rows come
	// with their pid and bytes so far, as GetConnection's.
	ListConnections(ctx context.Context, f socketd.ConnectionFilter) ([]socketd.Connection, string, error)
	// Kill terminates a running connection and returns once it is
	// recorded.
	Kill(ctx context.Context, id int64) error
	// GetConnection returns a connection of the history.
	GetConnection(ctx context.Context, id int64) (socketd.Connection, error)
	// ConnectionLog returns a connection's captured standard error.
	ConnectionLog(ctx context.Context, id int64) ([]byte, error)
	// ConnectionStats summarises a socket's connections in a time range.
	ConnectionStats(ctx context.Context, socket string, since, until time.Time, step time.Duration) (socketd.ConnectionStats, error)
	// CreateSocket creates a socket from def, a definition in JSON,
	// decoded, validated and applied as POST /v1/sockets does.
	CreateSocket(ctx context.Context, def []byte) (socketd.Socket, error)
	// ReplaceSocket replaces a socket's definition with def, as PUT
	// /v1/sockets/{name} does, if it is still the one updated at since;
	// else a CodeConflict error. It does not create a socket.
	ReplaceSocket(ctx context.Context, name string, def []byte, since time.Time) (socketd.Socket, error)
	// DeleteSocket deletes a socket, as DELETE /v1/sockets/{name} does.
	DeleteSocket(ctx context.Context, name string) error
	// Import converts text in format ("" to tell from the text) as POST
	// /v1/import does, and saves the sockets unless dryRun, all or none.
	// When they do not validate it returns them, as converted, with the
	// error. versions says which definitions it may replace: for each
	// name, the updated_at of the definition the page showed, or the zero
	// time for a socket that did not exist. A socket stored otherwise
	// (changed since, or existing and not in versions) is a CodeConflict
	// error with a field error at its item ("/items/1"), checked inside
	// the write: nothing is saved, and the sockets come back with it.
	Import(ctx context.Context, format, name, text string, dryRun bool, versions map[string]time.Time) ([]socketd.Socket, []convert.Unmapped, error)
}

// Config configures a Dashboard.
type Config struct {
	Backend  Backend
	Sessions *Sessions
	Logger   *slog.Logger
}

// Dashboard serves the dashboard's pages under the prefix it is mounted at
// (/ui).
type Dashboard struct {
	backend  Backend
	sessions *Sessions
	log      *slog.Logger
	pages    map[string]*template.Template
	router   chi.Router
}

//go:embed templates static
var files embed.FS

// contentSecurityPolicy allows the dashboard's own files and nothing else:
// no inline script or style, no frames, forms only to itself.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// New returns the dashboard for cfg.
func New(cfg Config) *Dashboard {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{backend: cfg.Backend, sessions: cfg.Sessions, log: log, pages: map[string]*template.Template{}}
	layout := template.Must(template.New("").ParseFS(files, "templates/layout.html"))
	for _, name := range []string{"sockets", "socket", "history", "connection", "form", "delete", "import"} {
		d.pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(files, "templates/"+name+".html"))
	}
	d.pages["login"] = template.Must(template.New("").ParseFS(files, "templates/login.html"))

	r := chi.NewRouter()
	r.Use(securityHeaders)
	r.Handle("/static/*", staticFiles())
	r.Get("/login", d.loginPage)
	r.Get("/session", d.session)
	r.Post("/login", d.login)
	r.Group(func(r chi.Router) {
		r.Use(d.requireSession)
		r.Post("/logout", d.logout)
		r.Get("/", d.socketsPage)
		r.Get("/sockets/table", d.socketsTable)
		r.Get("/sockets/{name}", d.socketPageHandler)
		r.Get("/sockets/{name}/live", d.socketLive)
		r.Get("/sockets/{name}/charts", d.socketChartsHandler)
		r.Get("/history", d.historyPageHandler)
		r.Get("/history/table", d.historyTable)
		r.Get("/history.csv", d.historyCSV)
		r.Get("/connections/{id}", d.connectionPageHandler)
		r.Get("/connections/{id}/detail", d.connectionDetail)
		r.Post("/connections/{id}/kill", d.kill)
		r.Post("/sockets/{name}/enable", d.setEnabled(true))
		r.Post("/sockets/{name}/disable", d.setEnabled(false))
		r.Get("/new", d.newSocketPage)
		r.Post("/new", d.createSocket)
		r.Get("/sockets/{name}/edit", d.editSocketPage)
		r.Post("/sockets/{name}/edit", d.saveSocket)
		r.Get("/sockets/{name}/delete", d.deletePage)
		r.Post("/sockets/{name}/delete", d.deleteSocket)
		r.Get("/import", d.importPage)
		r.Post("/import", d.importSockets)
	})
	d.router = r
	return d
}

// ServeHTTP serves the dashboard; it expects paths under /ui.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.router.ServeHTTP(w, r) }

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// requireSession lets through requests of a live session: a page request
// without one is sent to the login page; a state-changing request must also
// pass the session's CSRF and origin checks, or it is refused (403).
func (d *Dashboard) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		csrf, ok := d.sessions.CSRF(r)
		if !ok {
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", "/ui/login")
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		// Looked up once: each look-up checks the session's token.
		r = r.WithContext(context.WithValue(r.Context(), csrfKey{}, csrf))
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			// The form is read first, so that a body too large to read
			// is told as such, not as a request from elsewhere.
			var tooLarge *http.MaxBytesError
			switch err := readForm(r); {
			case errors.As(err, &tooLarge):
				d.tooLarge(w, r, tooLarge.Limit)
				return
			case err != nil:
				http.Error(w, "the form sent cannot be read: "+err.Error(), http.StatusBadRequest)
				return
			}
			if !checkWrite(r, csrf) {
				http.Error(w, "refused: this request did not come from socketd's own pages", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// tooLarge answers a post whose body is over limit bytes, which was not
// read: the import page says so in its own words, as its files are what
// make a body that large; anything else gets a line of text.
func (d *Dashboard) tooLarge(w http.ResponseWriter, r *http.Request, limit int64) {
	size := fmt.Sprintf("%d bytes", limit)
	if limit >= 1<<20 && limit%(1<<20) == 0 {
		size = fmt.Sprintf("%d MiB", limit>>20)
	}
	if strings.HasSuffix(chi.RouteContext(r.Context()).RoutePattern(), "/import") {
		d.showImport(w, r, http.StatusRequestEntityTooLarge, &importView{Problem: "That is more than " + size +
			", the most socketd reads at once, so nothing was read and nothing imported. Choose fewer or smaller files, " +
			"or paste the text of one unit at a time; your browser's Back button returns to the form as you left it."})
		return
	}
	http.Error(w, "refused: the form sent is larger than "+size+", the most socketd reads at once; nothing was read", http.StatusRequestEntityTooLarge)
}

// csrfKey holds, in a request's context, its session's CSRF token, once
// requireSession has let the request through.
type csrfKey struct{}

// page is what every page's template gets.
type page struct {
	Title, Nav string
	CSRF       string
	EventID    int64 // the last event the page shows
	Host       string
	Error      string
	Sockets    []socketRow
	Socket     *socketPage
	Charts     *socketCharts
	History    *historyPage
	Connection *connectionPage
	// Events is the query of the page's event stream before after=:
	// "socket=NAME&" for one socket's.
	Events string
	Form   *socketFormView
	Delete *deleteView
	Import *importView
}

func (d *Dashboard) newPage(r *http.Request, title, nav string) *page {
	csrf, _ := r.Context().Value(csrfKey{}).(string)
	return &page{Title: title, Nav: nav, CSRF: csrf, Host: r.Host, EventID: d.backend.LastEventID()}
}

// render writes page p with template name of page file.
func (d *Dashboard) render(w http.ResponseWriter, file, name string, status int, p *page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	if err := d.pages[file].ExecuteTemplate(&b, name, p); err != nil {
		d.log.Error("render", "page", file, "err", err)
		http.Error(w, "the page cannot be shown", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	fmt.Fprint(w, b.String())
}

// errorStatus is the status of a page that shows err: 404 for what is not
// found, 409 for a conflict, 422 for input refused, 500 for the rest (the
// daemon's own failures).
func errorStatus(err error) int {
	switch socketd.ErrorCode(err) {
	case socketd.CodeNotFound:
		return http.StatusNotFound
	case socketd.CodeConflict:
		return http.StatusConflict
	case socketd.CodeInvalid, socketd.CodeBadRequest:
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// fail answers a request whose backend call failed.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := errorStatus(err)
	if status == http.StatusInternalServerError {
		d.log.Error("dashboard", "path", r.URL.Path, "err", err)
		http.Error(w, "socketd could not do that; its log says why", status)
		return
	}
	http.Error(w, err.Error(), status)
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	if d.sessions.Valid(r) {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	d.render(w, "login", "login", http.StatusOK, &page{Title: "Log in"})
}

// login starts a session for a request that carries an API token.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "refused: this request did not come from socketd's own pages", http.StatusForbidden)
		return
	}
	ok, err := d.backend.CheckToken(r.Context(), strings.TrimSpace(r.PostFormValue("token")))
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if !ok {
		d.render(w, "login", "login", http.StatusUnauthorized, &page{Title: "Log in", Error: "That is not a token of this socketd."})
		return
	}
	d.sessions.start(w, strings.TrimSpace(r.PostFormValue("token")))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// session answers whether the request's login is live: 204, or 401. The
// pages ask when their event stream fails.
func (d *Dashboard) session(w http.ResponseWriter, r *http.Request) {
	if d.sessions.Valid(r) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusUnauthorized)
}

// staticFiles serves the files of static/ under /ui/static/, each with an
// ETag of its content, to be revalidated on use (they change with
// socketd's version); no directory is listed.
func staticFiles() http.Handler {
	static, _ := fs.Sub(files, "static")
	etags := map[string]string{}
	fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(static, path)
			sum := sha256.Sum256(b)
			etags["/ui/static/"+path] = `"` + hex.EncodeToString(sum[:8]) + `"`
		}
		return nil
	})
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		etag, ok := etags[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	d.sessions.end(w, r)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}
