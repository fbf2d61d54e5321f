package ui

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func TestServesTheConsoleWithItsHeaders(t *testing.T) {
	t.Parallel()
	app := fiber.New()
	Mount(app)
	tests := []struct {
		name, path string
		status     int
		ctype      string
	}{
		{"index", "/admin/ui/", 200, "text/html"},
		{"module", "/admin/ui/js/app.js", 200, "javascript"},
		{"stylesheet", "/admin/ui/style.css", 200, "text/css"},
		{"no slash redirects", "/admin/ui", 301, ""},
		{"unknown file", "/admin/ui/nope.js", 404, "application/json"},
		{"no way out", "/admin/ui/../admin.go", 404, "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := app.Test(httptest.NewRequest("GET", tc.path, nil))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Content-Security-Policy"); got != CSP {
				t.Errorf("CSP %q, want %q", got, CSP)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.ctype)
			}
			if tc.status == 404 {
				var e struct{ Error struct{ Code string } }
				if json.Unmarshal(body, &e) != nil || e.Error.Code != "not_found" {
					t.Errorf("404 body %s is not the contract's error JSON", body)
				}
			}
		})
	}
}

// The CSP forbids inline code; these checks keep the files from relying on
// it, and keep the key where the contract allows it.
var scriptTag = regexp.MustCompile(`(?s)<script([^>]*)>(.*?)</script>`)

func TestFilesNeedNothingTheCSPForbids(t *testing.T) {
	t.Parallel()
	forbidden := map[string]*regexp.Regexp{
		"inline style":        regexp.MustCompile(`<style|\sstyle="`),
		"inline handler":      regexp.MustCompile(`\son[a-z]+="`),
		"remote resource":     regexp.MustCompile(`(?:src|href)="(?:https?:)?//`),
		"HTML from strings":   regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write`),
		"persistent key":      regexp.MustCompile(`localStorage|document\.cookie`),
		"eval":                regexp.MustCompile(`\beval\(|new Function\(`),
		"setAttribute(style)": regexp.MustCompile(`setAttribute\(['"]style`),
	}
	n := 0
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		n++
		for _, m := range scriptTag.FindAllSubmatch(b, -1) {
			if !strings.Contains(string(m[1]), "src=") || strings.TrimSpace(string(m[2])) != "" {
				t.Errorf("%s: inline script %q", name, m[0])
			}
		}
		for what, re := range forbidden {
			if loc := re.FindIndex(b); loc != nil {
				t.Errorf("%s: %s at %q", name, what, b[loc[0]:min(loc[1]+20, len(b))])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d files embedded", n)
	}
}
