package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
)

// importFormats are the formats the import page offers, as POST /v1/import
// names them.
var importFormats = []choice{
	{Value: "", Label: "Tell from the text"},
	{Value: "systemd", Label: "systemd: a .socket unit and its .service"},
	{Value: "inetd", Label: "inetd.conf"},
	{Value: "xinetd", Label: "xinetd"},
}

// importView is the import page: the text and its format as given, and
// what socketd makes of it.
type importView struct {
	Format, Name, Text string
	// NameError says the systemd format needs a name.
	NameError string
	// Problem is why the text cannot be imported at all.
	Problem string
	// Conflict says why nothing was imported though the sockets are
	// valid: they would replace definitions other than those shown.
	Conflict string
	// Errors are those of no socket in particular.
	Errors  []string
	Sockets []importedSocket
	// Unmapped lists what of the text the sockets do not express.
	Unmapped []convert.Unmapped
	// Saved is set once the sockets are saved; else they are a preview.
	Saved bool
}

// importedSocket is a socket of an import, with the errors that keep it
// from being saved.
type importedSocket struct {
	Name       string
	Definition string
	Errors     []string
	// Version is the updated_at of the definition saved now under the
	// socket's name, which importing replaces (RFC 3339), and Replaces the
	// same for people; both empty for a new socket. The page posts Version
	// back, so that an import replaces only the definition it showed.
	Version, Replaces string
}

// Formats are the choices of format.
func (v *importView) Formats() []choice { return importFormats }

// Replacing lists the sockets of the preview that exist already.
func (v *importView) Replacing() []importedSocket {
	var out []importedSocket
	for _, s := range v.Sockets {
		if s.Version != "" {
			out = append(out, s)
		}
	}
	return out
}

// Summary lists every error of the page that a field or a socket has,
// each with the id of what it is about, for the summary at the top.
func (v *importView) Summary() []errorLink {
	var out []errorLink
	if v.NameError != "" {
		out = append(out, errorLink{Field: "Name", ID: "import-name", Detail: v.NameError})
	}
	for i, s := range v.Sockets {
		for _, e := range s.Errors {
			out = append(out, errorLink{Field: s.Name, ID: socketCardID(i), Detail: e})
		}
	}
	for _, e := range v.Errors {
		out = append(out, errorLink{Detail: e})
	}
	return out
}

// socketCardID is the id of the i-th socket of an import on the page.
func socketCardID(i int) string { return fmt.Sprintf("import-socket-%d", i) }

// CardID is the id of the i-th socket's card.
func (v *importView) CardID(i int) string { return socketCardID(i) }

// importPage shows the import form.
func (d *Dashboard) importPage(w http.ResponseWriter, r *http.Request) {
	d.showImport(w, r, http.StatusOK, &importView{})
}

// importSockets previews (a dry run) or saves what the posted text
// defines, as POST /v1/import does, and shows the sockets with every
// directive they leave out; the text stays in the form. A preview says
// which sockets exist already and posts their versions back with the
// import, which replaces those definitions only: one changed since, or
// one that exists and was not previewed, is not replaced, and nothing is
// imported (the page shows the preview again, to import from).
func (d *Dashboard) importSockets(w http.ResponseWriter, r *http.Request) {
	v := &importView{Format: r.PostFormValue("format"), Name: strings.TrimSpace(r.PostFormValue("name")),
		Text: r.PostFormValue("text")}
	if v.Problem = v.readFiles(r); v.Problem != "" {
		d.showImport(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	format := v.Format
	if format == "" {
		format = convert.Detect(v.Text)
	}
	switch {
	case !slices.ContainsFunc(importFormats, func(c choice) bool { return c.Value == v.Format }):
		v.Problem = fmt.Sprintf("The format %q is none of those offered.", v.Format)
	case strings.TrimSpace(v.Text) == "":
		v.Problem = "There is nothing to import: paste the text, or choose its files."
	case format == convert.FormatSystemd && v.Name == "":
		v.NameError = "A systemd unit does not say its own name: give the .socket unit's name without .socket."
	}
	if v.Problem != "" || v.NameError != "" {
		d.showImport(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	save := r.PostFormValue("action") == "import"
	socks, unmapped, err := d.backend.Import(r.Context(), v.Format, v.Name, v.Text, !save, postedVersions(r))
	v.Unmapped = unmapped
	for _, s := range socks {
		v.Sockets = append(v.Sockets, importedSocket{Name: s.Name, Definition: definitionText(s)})
	}
	status := http.StatusOK
	if err != nil {
		var e *socketd.Error
		switch code := socketd.ErrorCode(err); {
		case !errors.As(err, &e):
			d.fail(w, r, err)
			return
		case code == socketd.CodeInvalid || code == socketd.CodeBadRequest:
			status = http.StatusUnprocessableEntity
		case code == socketd.CodeConflict:
			status = http.StatusConflict
			v.Conflict = "Nothing was imported: it would replace definitions that no preview showed you, as said below. " +
				"The preview now shows what each socket replaces; import again to replace them."
		default:
			d.fail(w, r, err)
			return
		}
		v.showErrors(e)
	}
	v.Saved = save && err == nil
	if !v.Saved {
		if err := v.findExisting(r.Context(), d.backend); err != nil {
			d.fail(w, r, err)
			return
		}
	}
	d.showImport(w, r, status, v)
}

// postedVersions returns the versions a preview posts back: name=version
// each, an empty version for a socket that did not exist. One that does
// not parse is left out, which makes replacing its socket a conflict.
func postedVersions(r *http.Request) map[string]time.Time {
	versions := map[string]time.Time{}
	for _, nv := range r.PostForm["version"] {
		name, at, _ := strings.Cut(nv, "=")
		if at == "" {
			versions[name] = time.Time{}
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
			versions[name] = t
		}
	}
	return versions
}

// findExisting notes, for each socket of the page, the definition saved
// now under its name, which importing replaces.
func (v *importView) findExisting(ctx context.Context, b Backend) error {
	for i := range v.Sockets {
		s := &v.Sockets[i]
		cur, err := b.GetSocket(ctx, s.Name)
		if socketd.ErrorCode(err) == socketd.CodeNotFound {
			continue
		}
		if err != nil {
			return err
		}
		s.Version = cur.UpdatedAt.Format(time.RFC3339Nano)
		s.Replaces = cur.UpdatedAt.Format("2006-01-02 15:04:05 MST")
	}
	return nil
}

// showErrors puts each error of e with its socket: "/items/1/command/0"
// is the second socket's, "/items/1" the socket's as a whole; the rest go
// at the top.
func (v *importView) showErrors(e *socketd.Error) {
	if len(e.Fields) == 0 {
		v.Problem = e.Message
	}
	for _, fe := range e.Fields {
		item, rest, _ := strings.Cut(strings.TrimPrefix(fe.Pointer, "/items/"), "/")
		i, err := strconv.Atoi(item)
		if err != nil || i < 0 || i >= len(v.Sockets) || !strings.HasPrefix(fe.Pointer, "/items/") {
			v.Errors = append(v.Errors, fe.Pointer+": "+fe.Detail)
			continue
		}
		if rest == "" {
			v.Sockets[i].Errors = append(v.Sockets[i].Errors, fe.Detail)
			continue
		}
		rest = strings.ReplaceAll(strings.ReplaceAll(rest, "~1", "/"), "~0", "~")
		v.Sockets[i].Errors = append(v.Sockets[i].Errors, rest+": "+fe.Detail)
	}
}

// maxImportFiles bounds the files of one import.
const maxImportFiles = 16

// readFiles takes the text from the files posted, if any, in place of the
// text typed: the .socket units first, then the rest, as the systemd format
// wants them. A .socket file names the socket if no name was given. It
// returns why the files cannot be taken, if they cannot.
func (v *importView) readFiles(r *http.Request) string {
	if r.MultipartForm == nil {
		return ""
	}
	files := r.MultipartForm.File["files"]
	if len(files) > maxImportFiles {
		return fmt.Sprintf("That is %d files: import at most %d at once.", len(files), maxImportFiles)
	}
	slices.SortStableFunc(files, func(a, b *multipart.FileHeader) int {
		return boolOrder(!strings.HasSuffix(a.Filename, ".socket"), !strings.HasSuffix(b.Filename, ".socket"))
	})
	var texts []string
	for _, fh := range files {
		if fh.Filename == "" && fh.Size == 0 {
			continue // no file chosen
		}
		f, err := fh.Open()
		if err != nil {
			return fmt.Sprintf("%s cannot be read: %v", fh.Filename, err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return fmt.Sprintf("%s cannot be read: %v", fh.Filename, err)
		}
		if !utf8.Valid(b) {
			return fmt.Sprintf("%s is not text.", fh.Filename)
		}
		text := string(b)
		if !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		texts = append(texts, text)
		if base, ok := strings.CutSuffix(filepath.Base(fh.Filename), ".socket"); ok && v.Name == "" && (v.Format == "" || v.Format == "systemd") {
			v.Name = base
		}
	}
	if len(texts) > 0 {
		v.Text = strings.Join(texts, "")
	}
	return ""
}

// boolOrder orders false before true.
func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// showImport renders the import page.
func (d *Dashboard) showImport(w http.ResponseWriter, r *http.Request, status int, v *importView) {
	title := "Import"
	if status != http.StatusOK {
		title = "Error: " + title
	}
	p := d.newPage(r, title, "sockets")
	p.Import = v
	d.render(w, "import", "layout", status, p)
}

// definitionText is a definition as the API takes it, indented.
func definitionText(s socketd.Socket) string {
	s.Status, s.CreatedAt, s.UpdatedAt = nil, time.Time{}, time.Time{}
	b, _ := json.MarshalIndent(s, "", "  ")
	return string(b)
}
