package socketd_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection holds the packages to the house plan: the root
// package is the vocabulary, the store knows no HTTP or processes, the
// activator knows no SQL or HTTP, the conversions know only the
// vocabulary, and the CLI reaches the daemon only
// through the API client. (internal/apitest's own test keeps it out of every
// package but tests.)
func TestDependencyDirection(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		if os.Getenv("SOCKETD_TEST_STRICT") != "" {
			t.Fatal("the go command is not in PATH (SOCKETD_TEST_STRICT forbids skipping)")
		}
		t.Skip("the go command is not in PATH")
	}
	const mod = "github.com/socketd/socketd"
	forbidden := map[string][]string{
		mod:                       {"net/http", "database/sql", mod + "/"},
		mod + "/store":            {"net/http", mod + "/api", mod + "/activator", mod + "/web"},
		mod + "/activator":        {"net/http", "database/sql", mod + "/api", mod + "/store"},
		mod + "/api":              {mod + "/store", mod + "/activator", "database/sql"},
		mod + "/migrations":       {mod + "/"},
		mod + "/internal/datadir": {mod + "/"},
		mod + "/convert":          {"net/http", "database/sql", mod + "/api", mod + "/store", mod + "/activator", mod + "/web"},
		mod + "/web":              {mod + "/api", mod + "/store", mod + "/activator"},
		mod + "/cmd/socketctl":    {mod + "/store", mod + "/activator", "database/sql"},
		mod + "/cmd/socketd":      {mod + "/internal/testhandler"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == pkg {
				continue
			}
			for _, b := range bad {
				if dep == b || (strings.HasSuffix(b, "/") && strings.HasPrefix(dep, b)) {
					t.Errorf("%s imports %s", pkg, dep)
				}
			}
		}
	}
}
