package web

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"testing"
)

// TestVendoredFiles holds every vendored file to the sha256 VENDOR.md
// records for it, and VENDOR.md to the files there are.
func TestVendoredFiles(t *testing.T) {
	doc, err := files.ReadFile("static/vendor/VENDOR.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|.*\\| `([0-9a-f]{64})` \\|$").FindAllStringSubmatch(string(doc), -1)
	recorded := map[string]bool{}
	for _, row := range rows {
		name, want := row[1], row[2]
		recorded[name] = true
		b, err := files.ReadFile("static/vendor/" + name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s has sha256 %s; VENDOR.md records %s", name, got, want)
		}
	}
	entries, err := files.ReadDir("static/vendor")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if name := e.Name(); regexp.MustCompile(`\.(js|css)$`).MatchString(name) && !recorded[name] {
			t.Errorf("%s is not in VENDOR.md", name)
		}
	}
	if len(recorded) < 3 {
		t.Errorf("VENDOR.md records %d files", len(recorded))
	}
}
