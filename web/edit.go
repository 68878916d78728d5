package web

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/socketd/socketd"
)

// newSocketPage shows the form that creates a socket, holding the defaults.
func (d *Dashboard) newSocketPage(w http.ResponseWriter, r *http.Request) {
	v := newSocketForm("")
	v.fill(definitionDoc(socketd.NewSocket()))
	d.showForm(w, r, http.StatusOK, v)
}

// createSocket creates the socket the form defines, as POST /v1/sockets
// does, and shows its page; or shows the form again with what was typed
// and the errors next to their fields.
func (d *Dashboard) createSocket(w http.ResponseWriter, r *http.Request) {
	v := newSocketForm("")
	v.fillPost(r)
	def, errs := v.definition()
	if len(errs) > 0 {
		d.formErrors(w, r, v, &socketd.Error{Code: socketd.CodeInvalid, Fields: errs})
		return
	}
	saved, err := d.backend.CreateSocket(r.Context(), def)
	if socketd.ErrorCode(err) == socketd.CodeConflict {
		// The name is taken: that is the name field's problem.
		err = &socketd.Error{Code: socketd.CodeConflict, Fields: []socketd.FieldError{{Pointer: "/name",
			Detail: "is taken by another socket: choose another name, or edit that socket"}}}
	}
	if err != nil {
		d.formErrors(w, r, v, err)
		return
	}
	http.Redirect(w, r, "/ui/sockets/"+saved.Name, http.StatusSeeOther)
}

// editSocketPage shows the form that edits a socket, holding its
// definition.
func (d *Dashboard) editSocketPage(w http.ResponseWriter, r *http.Request) {
	s, err := d.backend.GetSocket(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		d.fail(w, r, err)
		return
	}
	v := newSocketForm(s.Name)
	v.Version = s.UpdatedAt.Format(time.RFC3339Nano)
	for _, f := range v.fill(definitionDoc(s)) {
		f.Note = inexactNote(f)
		v.Inexact = append(v.Inexact, errorLink{Field: f.Label, ID: f.ID, Detail: f.Note})
	}
	v.openGroups()
	d.showForm(w, r, http.StatusOK, v)
}

// inexactNote says what of its saved value field f cannot show.
func inexactNote(f *fieldView) string {
	what := "its saved value holds a line break, which a one-line field drops"
	switch f.Kind {
	case kindList:
		what = "an entry holds a line break or blanks at either end, which one entry a line cannot show"
	case kindArgv:
		what = "an argument holds a line break, or the first or last is blank, which one argument a line cannot show"
	case kindEnv:
		what = "a value holds a line break, or a name blanks around it, which KEY=VALUE a line cannot show"
	}
	return what + ": saving this form would change it"
}

// saveSocket replaces a socket's definition with the form's, as PUT
// /v1/sockets/{name} does, unless the socket changed since the form was
// shown: then the form comes back with what was typed, to be saved again
// over the change if so wished.
func (d *Dashboard) saveSocket(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	v := newSocketForm(name)
	v.fillPost(r)
	v.Version = r.PostFormValue("version")
	def, errs := v.definition()
	if len(errs) > 0 {
		d.formErrors(w, r, v, &socketd.Error{Code: socketd.CodeInvalid, Fields: errs})
		return
	}
	since, _ := time.Parse(time.RFC3339Nano, v.Version) // a bad version is a conflict
	saved, err := d.backend.ReplaceSocket(r.Context(), name, def, since)
	switch socketd.ErrorCode(err) {
	case "":
		http.Redirect(w, r, "/ui/sockets/"+saved.Name, http.StatusSeeOther)
		return
	case socketd.CodeConflict:
		cur, gerr := d.backend.GetSocket(r.Context(), name)
		if gerr != nil {
			d.formErrors(w, r, v, gerr)
			return
		}
		v.Version = cur.UpdatedAt.Format(time.RFC3339Nano)
		err = socketd.Errorf(socketd.CodeConflict, "%s was changed at %s, while this form was open, and nothing was saved. "+
			"The form still holds what you typed; the definition saved now is on the socket's page. "+
			"Save again to replace it with yours.", name, cur.UpdatedAt.Format("2006-01-02 15:04:05 MST"))
	case socketd.CodeNotFound:
		err = socketd.Errorf(socketd.CodeNotFound, "%s was deleted while this form was open, and nothing was saved. "+
			"To define it again, create a socket of that name.", name)
	}
	d.formErrors(w, r, v, err)
}

// formErrors shows the form again with err: field errors next to their
// fields, 422; a conflict, 409; a socket gone, 404. Any other error is the
// daemon's: fail.
func (d *Dashboard) formErrors(w http.ResponseWriter, r *http.Request, v *socketFormView, err error) {
	status := errorStatus(err)
	if status == http.StatusInternalServerError {
		d.fail(w, r, err)
		return
	}
	v.showErrors(err)
	d.showForm(w, r, status, v)
}

// showForm renders the socket form.
func (d *Dashboard) showForm(w http.ResponseWriter, r *http.Request, status int, v *socketFormView) {
	title := "New socket"
	if v.Edit != "" {
		title = "Edit " + v.Edit
	}
	if len(v.Errors) > 0 || v.Problem != "" {
		title = "Error: " + title
	}
	p := d.newPage(r, title, "sockets")
	p.Form = v
	d.render(w, "form", "layout", status, p)
}

// deleteView is what the delete confirmation says will happen.
type deleteView struct {
	Socket socketd.Socket
	Status socketd.SocketStatus
	// Listening is where it listens now, or else its definition's
	// addresses.
	Listening  string
	KillSignal string
}

// deletePage asks to confirm a socket's deletion, saying what it does.
func (d *Dashboard) deletePage(w http.ResponseWriter, r *http.Request) {
	s, err := d.backend.GetSocket(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		d.fail(w, r, err)
		return
	}
	v := &deleteView{Socket: s, KillSignal: s.KillSignal}
	if s.Status != nil {
		v.Status = *s.Status
	}
	addrs := v.Status.Listening
	if len(addrs) == 0 {
		addrs = s.Listen
	}
	v.Listening = strings.Join(addrs, ", ")
	if v.KillSignal == "" {
		v.KillSignal = "SIGTERM"
	}
	p := d.newPage(r, fmt.Sprintf("Delete %s?", s.Name), "sockets")
	p.Delete = v
	d.render(w, "delete", "layout", http.StatusOK, p)
}

// deleteSocket deletes a socket, as DELETE /v1/sockets/{name} does, and
// shows the overview. A socket already gone is not an error: it is what
// was asked.
func (d *Dashboard) deleteSocket(w http.ResponseWriter, r *http.Request) {
	err := d.backend.DeleteSocket(r.Context(), chi.URLParam(r, "name"))
	if err != nil && socketd.ErrorCode(err) != socketd.CodeNotFound {
		d.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}
