package web

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/socketd/socketd"
)

// daemonFields are the fields of a socket the daemon sets, which no form
// takes.
var daemonFields = []string{"created_at", "updated_at", "status"}

// socketJSONFields returns the JSON names of t's fields, embedded structs
// flattened as encoding/json does, with their types.
func socketJSONFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			for k, v := range socketJSONFields(f.Type) {
				out[k] = v
			}
		case f.IsExported() && name != "-" && name != "":
			out[name] = f.Type
		}
	}
	return out
}

// kindFits reports whether a form field of kind k can hold a value of type t.
func kindFits(k fieldKind, t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch k {
	case kindText, kindChoice:
		return t.Kind() == reflect.String
	case kindInt:
		return t.Kind() == reflect.Int
	case kindNumber:
		return t.Kind() == reflect.Float64
	case kindBool:
		return t.Kind() == reflect.Bool
	case kindList, kindArgv:
		return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String
	case kindEnv:
		return t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String
	}
	return false
}

// TestFormCoversEverySocketField: every field of a definition, and every
// field of the objects in it (a rate limit's), has a field in the form of
// a kind that holds its type, and every field of the form is one of a
// definition. A field added to socketd.Socket fails this test until the
// form takes it.
func TestFormCoversEverySocketField(t *testing.T) {
	want := map[string]reflect.Type{}
	for name, typ := range socketJSONFields(reflect.TypeFor[socketd.Socket]()) {
		if slices.Contains(daemonFields, name) {
			continue
		}
		elem := typ
		if elem.Kind() == reflect.Pointer {
			elem = elem.Elem()
		}
		if elem.Kind() == reflect.Struct {
			for sub, subType := range socketJSONFields(elem) {
				want["/"+name+"/"+sub] = subType
			}
			continue
		}
		want["/"+name] = typ
	}
	seen := map[string]bool{}
	for _, g := range socketFormGroups {
		for _, f := range g.Fields {
			typ, ok := want[f.Pointer]
			switch {
			case !ok:
				t.Errorf("the form's %s is not a field of a definition", f.Pointer)
			case seen[f.Pointer]:
				t.Errorf("the form has %s twice", f.Pointer)
			case !kindFits(f.Kind, typ):
				t.Errorf("the form's %s cannot hold a %s", f.Pointer, typ)
			}
			seen[f.Pointer] = true
			if f.Label == "" {
				t.Errorf("the form's %s has no label", f.Pointer)
			}
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("the form has no field for %s", p)
		}
	}
	if len(want) < 50 {
		t.Errorf("a definition has only %d fields: %v", len(want), want)
	}
}

// fullSocket is a definition whose every field differs from the
// defaults, awkward values included.
func fullSocket() socketd.Socket {
	nice := -5
	s := socketd.Socket{
		Name: "full", Description: "  every field, set ", Listen: []string{"127.0.0.1:0", "[::1]:0", "/run/full.sock"},
		Accept: false,
		SocketOptions: socketd.SocketOptions{Backlog: 128, BindIPv6Only: "both", ReusePort: true, KeepAlive: true,
			KeepAliveTime: "5m", KeepAliveInterval: "30s", KeepAliveProbes: 4, NoDelay: true, DeferAccept: "3s",
			FreeBind: true, ReceiveBuffer: 262144, SendBuffer: 131072, BindToDevice: "lo",
			SocketUser: "nobody", SocketGroup: "nogroup", SocketMode: "0660"},
		Limits: socketd.Limits{MaxConnections: 10, OnLimit: "refuse", LimitMessage: " all lines busy\t",
			MaxConnectionsPerSource: 4, SourcePrefixIPv4: 24, SourcePrefixIPv6: 56,
			RateLimit: &socketd.RateLimit{PerSecond: 0.5, Burst: 3}, SourceRateLimit: &socketd.RateLimit{PerSecond: 1e-6, Burst: 1},
			IPAddressAllow: []string{"localhost", "192.0.2.0/24"}, IPAddressDeny: []string{"any"}},
		ResourceLimits: socketd.ResourceLimits{LimitNOFILE: "256:1024", LimitNPROC: "32", LimitCPU: "10m",
			LimitAS: "512M", LimitCORE: "0", MemoryMax: "256M", TasksMax: "64"},
		// An empty argument between others, and spaces that count.
		Command:          []string{"/bin/sh", "-c", "echo  \"$0\"  $1", "", " x "},
		Environment:      map[string]string{"A": "1", "GREETING": "hello world", "EQ": "a=b"},
		WorkingDirectory: "/srv", IgnoreExitStatus: true,
		StandardInput: "null", StandardOutput: "log", Stderr: "inherit",
		User: "nobody", Group: "nogroup", DynamicUser: true, SupplementaryGroups: []string{"adm", "dialout"},
		UMask: "0027", Nice: &nice, PassEnvironment: []string{"TZ", "LANG"},
		RuntimeMax: "15m", IdleTimeout: "5m", KillSignal: "SIGHUP", TimeoutStop: "5s",
		RecordRemoteIP: "prefix",
		Enabled:        false,
	}
	return s
}

// TestFormRoundTrip: a definition shown in the form and sent back as it is
// comes back unchanged, for a definition with every field set and for the
// defaults; nothing in between is lost or added.
func TestFormRoundTrip(t *testing.T) {
	full := fullSocket()
	def := reflect.ValueOf(socketd.NewSocket())
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if slices.Contains(daemonFields, name) {
			continue
		}
		if f.Anonymous {
			for j := range v.Field(i).NumField() {
				if reflect.DeepEqual(v.Field(i).Field(j).Interface(), def.Field(i).Field(j).Interface()) {
					t.Errorf("fullSocket leaves %s.%s at its default", f.Name, v.Field(i).Type().Field(j).Name)
				}
			}
		} else if reflect.DeepEqual(v.Field(i).Interface(), def.Field(i).Interface()) {
			t.Errorf("fullSocket leaves %s at its default", f.Name)
		}
	}

	for _, s := range []socketd.Socket{full, socketd.NewSocket()} {
		form := newSocketForm("")
		if lossy := form.fill(definitionDoc(s)); len(lossy) > 0 {
			t.Errorf("%s: the form cannot show %s", s.Name, lossy[0].Pointer)
		}
		b, errs := form.definition()
		if len(errs) > 0 {
			t.Fatalf("%s: %v", s.Name, errs)
		}
		got := socketd.NewSocket()
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s: %v\n%s", s.Name, err, b)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("%s through the form:\n got %+v\nwant %+v\n%s", s.Name, got, s, b)
		}
	}
}

// TestFormSaysWhatItCannotShow: a value the form would change if saved (an
// argument with a line break, a variable's value on two lines, a text on
// two lines, which a text input cannot hold) is pointed out; blanks around
// a text, which it can, are not.
func TestFormSaysWhatItCannotShow(t *testing.T) {
	s := socketd.NewSocket()
	s.Command = []string{"/bin/sh", "-c", "echo one\necho two"}
	s.Environment = map[string]string{"MOTD": "line one\nline two"}
	s.Listen = []string{"13063"}
	s.Description = "first line\nsecond line"
	s.LimitMessage = "busy\r"
	s.WorkingDirectory = " /srv "
	var got []string
	for _, f := range newSocketForm("x").fill(definitionDoc(s)) {
		got = append(got, f.Pointer)
	}
	if !slices.Equal(got, []string{"/description", "/command", "/environment", "/limit_message"}) {
		t.Errorf("fields the form cannot show: %v", got)
	}
}

// TestFormPlacesErrors: each error of the API lands next to the field at
// its pointer, naming the line of a list or the variable of an
// environment; one of no field lands at the top.
func TestFormPlacesErrors(t *testing.T) {
	v := newSocketForm("")
	listen, env := v.field("/listen"), v.field("/environment")
	listen.Value = "13063\r\n\r\n  nope  \r\n"
	env.Value = "A=1\n\nREMOTE_ADDR=x\n"
	v.field("/max_connections").Value = "ten"
	_, errs := v.definition()
	if len(errs) != 1 || errs[0].Pointer != "/max_connections" || errs[0].Detail != `"ten" is not a number` {
		t.Errorf("the form's own errors: %+v", errs)
	}
	v.showErrors(&socketd.Error{Code: socketd.CodeInvalid, Fields: []socketd.FieldError{
		{Pointer: "/listen/1", Detail: "is not a port"},
		{Pointer: "/environment/REMOTE~1ADDR", Detail: "no such"},
		{Pointer: "/environment/REMOTE_ADDR", Detail: "is set by socketd"},
		{Pointer: "/rate_limit/burst", Detail: "must be from 1"},
		{Pointer: "/source_rate_limit", Detail: "applies to accepted connections"},
		{Pointer: "/command/0", Detail: "does not exist"},
		{Pointer: "/nope", Detail: "is not a field"},
	}})
	for pointer, want := range map[string][]string{
		"/listen":                       {"line 3: is not a port"},
		"/environment":                  {"REMOTE/ADDR: no such", "line 3, REMOTE_ADDR: is set by socketd"},
		"/rate_limit/burst":             {"must be from 1"},
		"/source_rate_limit/per_second": {"applies to accepted connections"},
		"/command":                      {"line 1: does not exist"},
	} {
		if got := v.field(pointer).Errors; !slices.Equal(got, want) {
			t.Errorf("errors of %s: %q, want %q", pointer, got, want)
		}
	}
	// The summary follows the form's order, errors of no field last.
	if len(v.Errors) != 7 || v.Errors[0].ID != "f-listen" || v.Errors[1].ID != "f-command" ||
		v.Errors[6] != (errorLink{Field: "/nope", Detail: "is not a field"}) {
		t.Errorf("the summary: %+v", v.Errors)
	}
	if !v.Groups[2].Open || v.Groups[3].Open {
		t.Errorf("open groups: limits %v, isolation %v; want the one with errors only", v.Groups[2].Open, v.Groups[3].Open)
	}
	if got := listen.DescribedBy(); got != "f-listen-error f-listen-help" {
		t.Errorf("listen's aria-describedby: %q", got)
	}
}

// TestFormRendersEveryField: the page has a labelled control for every
// field of the form, each in its fieldset.
func TestFormRendersEveryField(t *testing.T) {
	d := New(Config{})
	v := newSocketForm("")
	v.fill(definitionDoc(socketd.NewSocket()))
	var b strings.Builder
	if err := d.pages["form"].ExecuteTemplate(&b, "layout", &page{Title: "New socket", Form: v}); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	for _, f := range v.fields() {
		for _, want := range []string{`name="` + f.Name + `"`, `<label for="` + f.ID + `">`, `id="` + f.ID + `"`} {
			if !strings.Contains(html, want) {
				t.Errorf("the form has no %s", want)
			}
		}
	}
	if n := strings.Count(html, "<fieldset>"); n != len(socketFormGroups) {
		t.Errorf("%d fieldsets, want %d", n, len(socketFormGroups))
	}
}

// TestFormReadsNumbers: numbers as people type them (+3, .5, 1.) are
// taken, written as JSON writes them; what is no number (words, Inf, NaN,
// a decimal comma) is the field's error, saying what was typed.
func TestFormReadsNumbers(t *testing.T) {
	v := newSocketForm("")
	v.fill(definitionDoc(socketd.NewSocket()))
	for pointer, typed := range map[string]string{
		"/max_connections": "+3", "/nice": "-5", "/backlog": " 7 ", "/receive_buffer": "1e3",
		"/rate_limit/per_second": ".5", "/rate_limit/burst": "2", "/source_rate_limit/per_second": "1.",
		"/source_rate_limit/burst": "+1",
	} {
		v.field(pointer).Value = typed
	}
	b, errs := v.definition()
	if len(errs) > 0 {
		t.Fatalf("numbers refused: %+v", errs)
	}
	got := socketd.NewSocket()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if got.MaxConnections != 3 || got.Nice == nil || *got.Nice != -5 || got.Backlog != 7 || got.ReceiveBuffer != 1000 ||
		got.RateLimit == nil || *got.RateLimit != (socketd.RateLimit{PerSecond: 0.5, Burst: 2}) ||
		got.SourceRateLimit == nil || *got.SourceRateLimit != (socketd.RateLimit{PerSecond: 1, Burst: 1}) {
		t.Errorf("read as %s", b)
	}
	for _, want := range []string{`"max_connections":3,`, `"per_second":0.5`, `"per_second":1}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("no %s in %s", want, b)
		}
	}
	// A fraction in an integer field goes to the API, which refuses it
	// at its field.
	v.field("/max_connections").Value = "1.5"
	if b, errs := v.definition(); len(errs) > 0 || !strings.Contains(string(b), `"max_connections":1.5`) {
		t.Errorf("a fraction for an integer: %s, %+v", b, errs)
	}

	for _, typed := range []string{"ten", "Inf", "-inf", "NaN", "1,5", "1e999", "3 4", "."} {
		v.field("/max_connections").Value = typed
		v.field("/rate_limit/per_second").Value = typed
		_, errs := v.definition()
		want := []socketd.FieldError{
			{Pointer: "/max_connections", Detail: fmt.Sprintf("%q is not a number", strings.TrimSpace(typed))},
			{Pointer: "/rate_limit/per_second", Detail: fmt.Sprintf("%q is not a number", strings.TrimSpace(typed))},
		}
		if !slices.Equal(errs, want) {
			t.Errorf("%q: errors %+v, want %+v", typed, errs, want)
		}
	}
}

// TestFormLabelsExplicitDefaults: a definition that spells out a default
// (on_limit defer, record_remote_ip full, bind_ipv6_only default) shows it
// as a labelled choice, keeps it when saved, and does not open its group
// as if it were changed.
func TestFormLabelsExplicitDefaults(t *testing.T) {
	s := socketd.NewSocket()
	s.Name = "x"
	s.OnLimit, s.RecordRemoteIP, s.BindIPv6Only = socketd.OnLimitDefer, socketd.RecordRemoteFull, socketd.BindIPv6Default
	v := newSocketForm("x")
	v.fill(definitionDoc(s))
	for pointer, value := range map[string]string{"/on_limit": "defer", "/record_remote_ip": "full", "/bind_ipv6_only": "default"} {
		f := v.field(pointer)
		if f.Value != value {
			t.Errorf("%s shows %q, want %q", pointer, f.Value, value)
		}
		opts := f.Options()
		if len(opts) != len(f.Choices) {
			t.Errorf("%s: %q is not among its choices: %+v", pointer, value, opts)
		}
		for _, c := range opts {
			if c.Value == value && (c.Label == value || !strings.HasPrefix(c.Label, value+": ")) {
				t.Errorf("%s: %q is labelled %q", pointer, value, c.Label)
			}
		}
	}
	for _, g := range v.Groups[1:] {
		if g.Open {
			t.Errorf("group %s is open: it holds only defaults", g.ID)
		}
	}
	b, errs := v.definition()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got := socketd.NewSocket()
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("through the form:\n got %+v\nwant %+v", got, s)
	}
	// Another value of the group opens it.
	v.field("/on_limit").Value = socketd.OnLimitRefuse
	if v.openGroups(); !v.Groups[2].Open {
		t.Error("the limits group, with on_limit refuse, is closed")
	}
}
