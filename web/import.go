package web

import (
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
	{"", "Tell from the text"},
	{"systemd", "systemd: a .socket unit and its .service"},
	{"inetd", "inetd.conf"},
	{"xinetd", "xinetd"},
}

// importView is the import page: the text and its format as given, and
// what socketd makes of it.
type importView struct {
	Format, Name, Text string
	// NameError says the systemd format needs a name.
	NameError string
	// Problem is why the text cannot be imported at all.
	Problem string
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
}

// Formats are the choices of format.
func (v *importView) Formats() []choice { return importFormats }

// importPage shows the import form.
func (d *Dashboard) importPage(w http.ResponseWriter, r *http.Request) {
	d.showImport(w, r, http.StatusOK, &importView{})
}

// importSockets previews (a dry run) or saves what the posted text
// defines, as POST /v1/import does, and shows the sockets with every
// directive they leave out; the text stays in the form.
func (d *Dashboard) importSockets(w http.ResponseWriter, r *http.Request) {
	v := &importView{Format: r.PostFormValue("format"), Name: strings.TrimSpace(r.PostFormValue("name")),
		Text: r.PostFormValue("text")}
	if v.Problem = v.readFiles(r); v.Problem != "" {
		d.showImport(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	switch {
	case !slices.ContainsFunc(importFormats, func(c choice) bool { return c.Value == v.Format }):
		v.Problem = fmt.Sprintf("The format %q is none of those offered.", v.Format)
	case strings.TrimSpace(v.Text) == "":
		v.Problem = "There is nothing to import: paste the text, or choose its files."
	case v.Format == "systemd" && v.Name == "":
		v.NameError = "A systemd unit does not say its own name: give the .socket unit's name without .socket."
	}
	if v.Problem != "" || v.NameError != "" {
		d.showImport(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	save := r.PostFormValue("action") == "import"
	socks, unmapped, err := d.backend.Import(r.Context(), v.Format, v.Name, v.Text, !save)
	v.Unmapped = unmapped
	for _, s := range socks {
		v.Sockets = append(v.Sockets, importedSocket{Name: s.Name, Definition: definitionText(s)})
	}
	if err != nil {
		var e *socketd.Error
		if code := socketd.ErrorCode(err); !errors.As(err, &e) || (code != socketd.CodeInvalid && code != socketd.CodeBadRequest) {
			d.fail(w, r, err)
			return
		}
		v.showErrors(e)
		d.showImport(w, r, http.StatusUnprocessableEntity, v)
		return
	}
	v.Saved = save
	d.showImport(w, r, http.StatusOK, v)
}

// showErrors puts each error of e with its socket: "/items/1/command/0"
// is the second socket's; the rest go at the top.
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
