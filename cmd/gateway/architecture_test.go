package main

import (
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// layers are ARCHITECTURE.md's import rules: which of the module's top-level
// packages each one may import (its own subpackages always). Imports point
// down: cmd and scripts wire everything; admin and proxy use projections,
// which uses events; proxy also uses resilience, which uses none of the
// others; never proxy <-> admin.
var layers = map[string][]string{
	"events":      {},
	"migrations":  {},
	"projections": {"events"},
	"resilience":  {},
	"proxy":       {"events", "projections", "resilience"},
	"admin":       {"events", "projections"},
	"cmd":         {"*"},
	"scripts":     {"*"},
}

// TestImportRules checks every package of the module, with the go tool's
// own view of the imports (go list), so that a new import breaking a rule
// fails the build. The rules hold transitively because each layer only
// imports layers whose own rules are checked too.
func TestImportRules(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/tenantgate/gateway/"
	top := func(pkg string) string { return strings.SplitN(strings.TrimPrefix(pkg, module), "/", 2)[0] }
	checked := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		from := top(pkg)
		allowed, ok := layers[from]
		if !ok {
			t.Errorf("%s: a top-level package the layers do not name (fixed layout: %v)", pkg, slices.Sorted(maps.Keys(layers)))
			continue
		}
		checked++
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to := top(imp)
			if to != from && !slices.Contains(allowed, "*") && !slices.Contains(allowed, to) {
				t.Errorf("%s imports %s: %s may import only %v", strings.TrimPrefix(pkg, module), strings.TrimPrefix(imp, module), from, allowed)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d packages checked: go list found too little", checked)
	}
}
