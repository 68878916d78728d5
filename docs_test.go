package socketd_test

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/socketd/socketd"
)

// TestDocsShowEveryField holds docs/sockets.md to the definition: every
// field of a socket is named there, and every example definition decodes
// with no unknown field.
func TestDocsShowEveryField(t *testing.T) {
	b, err := os.ReadFile("docs/sockets.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var fields []string
	var collect func(reflect.Type)
	collect = func(typ reflect.Type) {
		for f := range typ.Fields() {
			if f.Anonymous {
				collect(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields = append(fields, name)
		}
	}
	collect(reflect.TypeFor[socketd.Socket]())
	for _, name := range fields {
		switch name {
		case "name", "description", "enabled", "created_at", "updated_at", "status", "-":
			continue // the API's own, shown in openapi.yaml
		}
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("docs/sockets.md does not show %s", name)
		}
	}

	// put NAME 'JSON', the JSON possibly over several lines.
	examples := regexp.MustCompile(`(?s)\bput [a-z0-9]+ +'(\{.*?\})'`).FindAllStringSubmatch(doc, -1)
	if len(examples) < 5 {
		t.Fatalf("found %d examples", len(examples))
	}
	for _, m := range examples {
		dec := json.NewDecoder(bytes.NewReader([]byte(m[1])))
		dec.DisallowUnknownFields()
		var s socketd.Socket
		if err := dec.Decode(&s); err != nil {
			t.Errorf("example %s: %v", m[1], err)
		}
	}
}
