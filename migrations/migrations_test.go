package migrations

import (
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var nameRE = regexp.MustCompile(`^(\d{6})_([a-z]+_[a-z0-9_]+)\.(up|down)\.sql$`)

// TestFiles holds the migrations to their naming rules: every file is
// NNNNNN_verb_noun.up.sql or .down.sql, each version has both halves under
// one name, versions count up from 1 without gaps, and no file is empty.
func TestFiles(t *testing.T) {
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	type pair struct {
		name     string
		up, down bool
	}
	versions := map[int]*pair{}
	for _, e := range entries {
		m := nameRE.FindStringSubmatch(e.Name())
		if m == nil {
			t.Errorf("%s is not named NNNNNN_verb_noun.up.sql or .down.sql", e.Name())
			continue
		}
		v, _ := strconv.Atoi(m[1])
		p := versions[v]
		if p == nil {
			p = &pair{name: m[2]}
			versions[v] = p
		}
		if p.name != m[2] {
			t.Errorf("version %d is named both %s and %s", v, p.name, m[2])
		}
		if m[3] == "up" {
			p.up = true
		} else {
			p.down = true
		}
		b, err := fs.ReadFile(FS, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(b)) == "" {
			t.Errorf("%s is empty", e.Name())
		}
	}
	if len(versions) == 0 {
		t.Fatal("no migrations embedded")
	}
	for v := 1; v <= len(versions); v++ {
		p := versions[v]
		if p == nil {
			t.Errorf("version %d is missing", v)
			continue
		}
		if !p.up || !p.down {
			t.Errorf("version %d (%s): up %v, down %v; want both", v, p.name, p.up, p.down)
		}
	}
}
