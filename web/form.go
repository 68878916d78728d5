package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socketd/socketd"
)

// socketFormView is the socket form as a page shows it: every field with
// the text it holds and its errors.
type socketFormView struct {
	// Edit names the socket edited; empty for a new one.
	Edit   string
	Action string
	// Version is the updated_at of the definition an edit began from.
	Version string
	Groups  []*groupView
	// Problem is about the form as a whole: a conflict, say.
	Problem string
	// Errors lists every error: those of fields link to them.
	Errors []errorLink
	// Inexact lists the fields whose saved values the form cannot show
	// exactly, which saving would change: a warning, not an error.
	Inexact []errorLink
}

// groupView is a fieldset of the form.
type groupView struct {
	*formGroup
	// Open is set when the group holds an error or a value other than
	// the default: a closed group hides only what was left alone.
	Open   bool
	Fields []*fieldView
}

// fieldView is a field as the form shows it.
type fieldView struct {
	*formField
	Name, ID string
	Value    string // the text in the input, as typed
	Checked  bool
	ReadOnly bool
	Errors   []string
	// Note warns that the field does not show its saved value exactly.
	Note string
	// lines maps the elements of a list field to their lines in the
	// text, and keys the variables of an environment field, so that an
	// error at /listen/2 says which line it is about.
	lines []int
	keys  map[string]int
}

// errorLink is an error in the form's summary, with the id of its field.
type errorLink struct {
	Field, ID, Detail string
}

// newSocketForm returns the empty form that creates a socket (edit "") or
// edits the socket edit.
func newSocketForm(edit string) *socketFormView {
	v := &socketFormView{Edit: edit, Action: "/ui/new"}
	if edit != "" {
		v.Action = "/ui/sockets/" + edit + "/edit"
	}
	for i := range socketFormGroups {
		g := &groupView{formGroup: &socketFormGroups[i]}
		for j := range g.formGroup.Fields {
			f := &g.formGroup.Fields[j]
			name := strings.TrimPrefix(f.Pointer, "/")
			g.Fields = append(g.Fields, &fieldView{formField: f, Name: name, ID: "f-" + strings.ReplaceAll(name, "/", "-")})
		}
		v.Groups = append(v.Groups, g)
	}
	if edit != "" {
		name := v.field("/name")
		name.ReadOnly, name.Value = true, edit
		name.Help = "The socket's key: it cannot change. To rename a socket, create one with the new name and delete this one."
	}
	return v
}

// fields returns every field of the form, in order.
func (v *socketFormView) fields() []*fieldView {
	var out []*fieldView
	for _, g := range v.Groups {
		out = append(out, g.Fields...)
	}
	return out
}

// field returns the field at pointer, or nil.
func (v *socketFormView) field(pointer string) *fieldView {
	for _, f := range v.fields() {
		if f.Pointer == pointer {
			return f
		}
	}
	return nil
}

// Control names the element that enters the field.
func (f *fieldView) Control() string {
	switch f.Kind {
	case kindBool:
		return "checkbox"
	case kindChoice:
		return "select"
	case kindList, kindArgv, kindEnv:
		return "textarea"
	}
	return "input"
}

// InputMode is the inputmode of a number field: the keyboard to offer.
func (f *fieldView) InputMode() string {
	switch {
	case f.Kind == kindNumber:
		return "decimal"
	case f.Kind == kindInt && f.Pointer != "/nice": // nice may be negative
		return "numeric"
	}
	return ""
}

// Rows is the height of a textarea: its lines, and one more to type in.
func (f *fieldView) Rows() int { return min(max(strings.Count(f.Value, "\n")+2, 3), 20) }

// DescribedBy lists the ids of the field's errors and help, for
// aria-describedby.
func (f *fieldView) DescribedBy() string {
	var ids []string
	if len(f.Errors) > 0 {
		ids = append(ids, f.ID+"-error")
	}
	if f.Note != "" {
		ids = append(ids, f.ID+"-note")
	}
	if f.Help != "" {
		ids = append(ids, f.ID+"-help")
	}
	return strings.Join(ids, " ")
}

// Options are the choices of a select, with the field's value first if it
// is none of them, so that an unknown value is shown, not replaced.
func (f *fieldView) Options() []choice {
	for _, c := range f.Choices {
		if c.Value == f.Value {
			return f.Choices
		}
	}
	return append([]choice{{Value: f.Value, Label: f.Value}}, f.Choices...)
}

// sameValue reports whether the field's value means what v means: the
// same text, or, for a choice, two spellings of its default ("" and
// "defer").
func (f *fieldView) sameValue(v string) bool {
	return f.Value == v || (f.Kind == kindChoice && f.isDefault(f.Value) && f.isDefault(v))
}

// isDefault reports whether v is a choice that means the field's default.
func (f *formField) isDefault(v string) bool {
	for _, c := range f.Choices {
		if c.Value == v {
			return c.Default
		}
	}
	return false
}

// definitionDoc returns s as the JSON object the API would send, without
// what the daemon sets, numbers kept as written.
func definitionDoc(s socketd.Socket) map[string]any {
	s.Status, s.CreatedAt, s.UpdatedAt = nil, time.Time{}, time.Time{}
	b, _ := json.Marshal(s) // strings, numbers, lists and maps: cannot fail
	var doc map[string]any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	dec.Decode(&doc)
	return doc
}

// lookup returns the value at pointer in doc, or nil.
func lookup(doc map[string]any, pointer string) any {
	var v any = doc
	for _, k := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// set puts v at pointer in doc, making the objects on the way.
func set(doc map[string]any, pointer string, v any) {
	keys := strings.Split(strings.TrimPrefix(pointer, "/"), "/")
	for _, k := range keys[:len(keys)-1] {
		m, ok := doc[k].(map[string]any)
		if !ok {
			m = map[string]any{}
			doc[k] = m
		}
		doc = m
	}
	doc[keys[len(keys)-1]] = v
}

// fill shows the definition doc in the form. It returns the fields whose
// values the form cannot show as they are (a line break in a text input,
// in an argument or a variable's value; blanks around a list's entry):
// saving them would change them.
func (v *socketFormView) fill(doc map[string]any) []*fieldView {
	lossy := v.show(doc)
	v.openGroups()
	return lossy
}

// show is fill without opening the groups.
func (v *socketFormView) show(doc map[string]any) []*fieldView {
	var lossy []*fieldView
	for _, f := range v.fields() {
		if f.ReadOnly {
			continue
		}
		f.Value, f.Checked = "", false
		switch x := lookup(doc, f.Pointer).(type) {
		case string:
			// A text input holds one line: a browser drops the line
			// breaks of its value.
			if f.Kind == kindText && strings.ContainsAny(x, "\r\n") {
				lossy = append(lossy, f)
			}
			f.Value = x
		case json.Number:
			f.Value = x.String()
		case bool:
			f.Checked = x
		case []any:
			lines := make([]string, len(x))
			for i, e := range x {
				lines[i], _ = e.(string)
				if strings.ContainsAny(lines[i], "\r\n") || (f.Kind == kindList && strings.TrimSpace(lines[i]) != lines[i]) {
					lossy = append(lossy, f)
				}
			}
			blank := func(s string) bool { return strings.TrimSpace(s) == "" }
			if f.Kind == kindArgv && len(lines) > 0 && (blank(lines[0]) || blank(lines[len(lines)-1])) {
				lossy = append(lossy, f)
			}
			f.Value = strings.Join(lines, "\n")
		case map[string]any:
			var lines []string
			for _, k := range slices.Sorted(maps.Keys(x)) {
				s, _ := x[k].(string)
				if strings.ContainsAny(s, "\r\n") || strings.TrimSpace(k) != k {
					lossy = append(lossy, f)
				}
				lines = append(lines, k+"="+s)
			}
			f.Value = strings.Join(lines, "\n")
		}
	}
	return slices.Compact(lossy)
}

// fillPost shows in the form what r posted, exactly as typed.
func (v *socketFormView) fillPost(r *http.Request) {
	for _, f := range v.fields() {
		if f.ReadOnly {
			continue
		}
		if f.Kind == kindBool {
			f.Checked = r.PostFormValue(f.Name) != ""
		} else {
			f.Value = r.PostFormValue(f.Name)
		}
	}
	v.openGroups()
}

// defaultForm is the form of a new socket, against which openGroups tells
// what was changed.
var defaultForm = func() *socketFormView {
	v := newSocketForm("")
	v.show(definitionDoc(socketd.NewSocket()))
	return v
}()

// openGroups opens the basics, and every group with an error or a value
// other than its default.
func (v *socketFormView) openGroups() {
	for i, g := range v.Groups {
		g.Open = i == 0
		for j, f := range g.Fields {
			def := defaultForm.Groups[i].Fields[j]
			if len(f.Errors) > 0 || f.Note != "" || (!f.ReadOnly && (!f.sameValue(def.Value) || f.Checked != def.Checked)) {
				g.Open = true
			}
		}
	}
}

// formNumber reads s, typed into a field of kind kindInt or kindNumber, as
// people write numbers (+3, .5, 1.) and returns it as JSON writes it. An
// integer field takes a fraction too, for the API to refuse at its field
// (it must be an integer, not a number), as it does whether the value fits.
func formNumber(s string, kind fieldKind) (json.Number, bool) {
	if kind == kindInt {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return json.Number(strconv.FormatInt(n, 10)), true
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	// ParseFloat takes Inf and NaN, which are no JSON numbers; beyond
	// float64's range it returns ±Inf with an error.
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", false
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), true
}

// definition turns the form's text into a definition in JSON, for the API's
// own decoding and validation. What cannot become JSON at all (a number
// that is not one, a variable without "=") is returned as field errors
// instead.
func (v *socketFormView) definition() ([]byte, []socketd.FieldError) {
	doc := map[string]any{}
	var errs []socketd.FieldError
	for _, f := range v.fields() {
		f.lines, f.keys = nil, nil
		switch f.Kind {
		case kindBool:
			set(doc, f.Pointer, f.Checked)
		case kindChoice:
			if s := strings.TrimSpace(f.Value); s != "" {
				set(doc, f.Pointer, s)
			}
		case kindText:
			// Kept as typed, blanks at either end too: a description
			// saved with them must not change when another field is
			// edited. The name is a key, and never holds a blank.
			s := f.Value
			if f.Pointer == "/name" {
				s = strings.TrimSpace(s)
			}
			if s != "" {
				set(doc, f.Pointer, s)
			}
		case kindInt, kindNumber:
			s := strings.TrimSpace(f.Value)
			if s == "" {
				break
			}
			n, ok := formNumber(s, f.Kind)
			if !ok {
				errs = append(errs, socketd.FieldError{Pointer: f.Pointer, Detail: fmt.Sprintf("%q is not a number", s)})
				break
			}
			set(doc, f.Pointer, n)
		case kindList, kindArgv:
			var list []string
			for i, line := range textLines(f.Value) {
				// An argv keeps its lines as typed, blank ones too, once
				// the program is named.
				if strings.TrimSpace(line) == "" && (f.Kind == kindList || list == nil) {
					continue
				}
				if f.Kind == kindList {
					line = strings.TrimSpace(line)
				}
				list = append(list, line)
				f.lines = append(f.lines, i+1)
			}
			if list != nil {
				set(doc, f.Pointer, list)
			}
		case kindEnv:
			env := map[string]any{}
			f.keys = map[string]int{}
			for i, line := range textLines(f.Value) {
				if strings.TrimSpace(line) == "" {
					continue
				}
				k, val, ok := strings.Cut(strings.TrimLeft(line, " \t"), "=")
				k = strings.TrimSpace(k)
				switch {
				case !ok:
					errs = append(errs, socketd.FieldError{Pointer: f.Pointer,
						Detail: fmt.Sprintf("line %d: %q has no “=”: write KEY=VALUE", i+1, line)})
				case f.keys[k] != 0:
					errs = append(errs, socketd.FieldError{Pointer: f.Pointer,
						Detail: fmt.Sprintf("line %d: %s repeats line %d", i+1, k, f.keys[k])})
				default:
					env[k], f.keys[k] = val, i+1
				}
			}
			if len(env) > 0 {
				set(doc, f.Pointer, env)
			}
		}
	}
	b, _ := json.Marshal(doc) // strings, numbers and booleans: cannot fail
	return b, errs
}

// textLines splits a textarea's text into lines, without the carriage
// returns browsers send and the blank lines at its end.
func textLines(s string) []string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// place shows an error next to its field: the field at its pointer, or
// the one that holds it (/listen/2 is the second line of listen), or else
// the first within it (/rate_limit is its rate). An error no field shows
// goes at the top.
func (v *socketFormView) place(fe socketd.FieldError) {
	var at *fieldView
	for _, f := range v.fields() {
		if (fe.Pointer == f.Pointer || strings.HasPrefix(fe.Pointer, f.Pointer+"/")) &&
			(at == nil || len(f.Pointer) > len(at.Pointer)) {
			at = f
		}
	}
	if at == nil {
		for _, f := range v.fields() {
			if strings.HasPrefix(f.Pointer, fe.Pointer+"/") {
				at = f
				break
			}
		}
	}
	if at == nil {
		v.Errors = append(v.Errors, errorLink{Field: fe.Pointer, Detail: fe.Detail})
		return
	}
	detail := fe.Detail
	if rest, ok := strings.CutPrefix(fe.Pointer, at.Pointer+"/"); ok {
		key := strings.ReplaceAll(strings.ReplaceAll(rest, "~1", "/"), "~0", "~")
		switch i, err := strconv.Atoi(key); {
		case (at.Kind == kindList || at.Kind == kindArgv) && err == nil:
			line := i + 1
			if i >= 0 && i < len(at.lines) {
				line = at.lines[i]
			}
			detail = fmt.Sprintf("line %d: %s", line, detail)
		case at.Kind == kindEnv && at.keys[key] != 0 && key == "":
			detail = fmt.Sprintf("line %d: %s", at.keys[key], detail)
		case at.Kind == kindEnv && at.keys[key] != 0:
			detail = fmt.Sprintf("line %d, %s: %s", at.keys[key], key, detail)
		default:
			detail = key + ": " + detail
		}
	}
	at.Errors = append(at.Errors, detail)
	v.Errors = append(v.Errors, errorLink{Field: at.Label, ID: at.ID, Detail: detail})
}

// showErrors places the field errors of err, a *socketd.Error, or shows its
// message; it reports whether err was one.
func (v *socketFormView) showErrors(err error) bool {
	var e *socketd.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, fe := range e.Fields {
		v.place(fe)
	}
	if len(e.Fields) == 0 {
		v.Problem = e.Message
	}
	// The summary follows the form; errors of no field come last.
	order := map[string]int{}
	for i, f := range v.fields() {
		order[f.ID] = i + 1
	}
	slices.SortStableFunc(v.Errors, func(a, b errorLink) int {
		pos := func(e errorLink) int {
			if e.ID == "" {
				return len(order) + 1
			}
			return order[e.ID]
		}
		return pos(a) - pos(b)
	})
	v.openGroups()
	return true
}
