package health

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ARCHITECTURE.md: resilience packages take plain config structs and import
// neither events nor projections (cmd/gateway adapts). Checked through every
// package of this module that health imports, directly or not.
func TestImportsNeitherEventsNorProjections(t *testing.T) {
	t.Parallel()
	const module = "github.com/tenantgate/gateway/"
	forbidden := []string{module + "events", module + "projections"}
	seen := map[string]bool{}
	var visit func(pkg, dir string, via []string)
	visit = func(pkg, dir string, via []string) {
		if seen[pkg] {
			return
		}
		seen[pkg] = true
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range parsed.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range forbidden {
					if path == bad || strings.HasPrefix(path, bad+"/") {
						t.Errorf("%s imports %s (via %s)", f, path, strings.Join(append(via, pkg), " -> "))
					}
				}
				if rel, inModule := strings.CutPrefix(path, module); inModule {
					visit(path, filepath.Join("..", "..", filepath.FromSlash(rel)), append(via, pkg))
				}
			}
		}
	}
	visit(module+"resilience/health", ".", nil)
	if len(seen) < 2 {
		t.Fatalf("only %v visited: the walk did not follow the module's imports", seen)
	}
}
