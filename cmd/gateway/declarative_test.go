package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/migrations"
)

const declSampleYAML = `# two tenants, one route each
tenants:
  - id: 0190a0b0-0000-7000-8000-00000000000a
    name: acme
    rateLimit: {limit: 100, windowMs: 1000}
  - id: 0190a0b0-0000-7000-8000-00000000000b
    name: beta
    status: suspended
routes:
  - id: 0190a0b0-0000-7000-8000-0000000000a1
    tenantId: 0190a0b0-0000-7000-8000-00000000000a
    method: GET
    path: /api/users
    upstreams:
      - url: http://127.0.0.1:9001
        weight: 3
      - url: http://127.0.0.1:9002
    loadBalancing: weighted
    resilience:
      retry: {maxRetries: 2}
      fallback: {body: "down"}
    transform:
      request:
        headers: {set: {X-Env: prod}}
  - id: 0190a0b0-0000-7000-8000-0000000000b1
    tenantId: 0190a0b0-0000-7000-8000-00000000000b
    path: /b
    upstreams: [{url: "https://example.com/base"}]
`

// declConfigs are an embedded (SQLite) and a distributed (PostgreSQL)
// configuration, each over a store of its own.
func declConfigs(t *testing.T) map[string]func(t *testing.T) Config {
	return map[string]func(t *testing.T) Config{
		"sqlite":   func(t *testing.T) Config { return Config{DataDir: t.TempDir()} },
		"postgres": func(t *testing.T) Config { return Config{DatabaseURL: testenv.Postgres(t)} },
	}
}

func declWriteFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func declRunApply(t *testing.T, cfg Config, args ...string) declarative.Result {
	t.Helper()
	var out bytes.Buffer
	if err := applyCommand(context.Background(), cfg, args, &out); err != nil {
		t.Fatalf("apply %v: %v", args, err)
	}
	var res declarative.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("apply printed %s: %v", out.String(), err)
	}
	return res
}

func declRunExport(t *testing.T, cfg Config, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := exportCommand(context.Background(), cfg, args, &out); err != nil {
		t.Fatalf("export %v: %v", args, err)
	}
	return out.String()
}

func declStoreHead(t *testing.T, cfg Config) int64 {
	t.Helper()
	store, err := openStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := migrations.Migrate(context.Background(), store.DB()); err != nil {
		t.Fatal(err)
	}
	h, err := store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestExportWipeApply(t *testing.T) {
	t.Parallel()
	for name, newConfig := range declConfigs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := newConfig(t)
			first := declRunApply(t, src, "-f", declWriteFile(t, "config.yaml", declSampleYAML), "--actor", "ci")
			if first.AppliedSeq == nil || *first.AppliedSeq != 4 || len(first.APIKeys) != 2 {
				t.Fatalf("first apply = %+v", first)
			}
			yamlDoc := declRunExport(t, src)
			jsonDoc := declRunExport(t, src, "-o", "json")
			if !strings.Contains(yamlDoc, "windowMs: 1000") || !strings.Contains(yamlDoc, "loadBalancing: weighted") {
				t.Fatalf("YAML export lacks camelCase keys:\n%s", yamlDoc)
			}
			if strings.Contains(jsonDoc, "apiKey") || strings.Contains(jsonDoc, "version") {
				t.Fatalf("export carries keys or versions:\n%s", jsonDoc)
			}

			// A wiped store gets the same configuration back from either form.
			for _, form := range []struct{ file, content string }{{"export.yaml", yamlDoc}, {"export.json", jsonDoc}} {
				dst := newConfig(t)
				dry := declRunApply(t, dst, "-f", declWriteFile(t, form.file, form.content), "--dry-run")
				if len(dry.Changes) != 4 || dry.AppliedSeq != nil || declStoreHead(t, dst) != 0 {
					t.Fatalf("%s: dry run = %+v, head %d", form.file, dry, declStoreHead(t, dst))
				}
				res := declRunApply(t, dst, "-f", declWriteFile(t, form.file, form.content))
				if len(res.Changes) != 4 || len(res.APIKeys) != 2 {
					t.Fatalf("%s: apply = %+v", form.file, res)
				}
				if got := declRunExport(t, dst, "-o", "json"); got != jsonDoc {
					t.Fatalf("%s: applied config differs:\n got %s\nwant %s", form.file, got, jsonDoc)
				}
				again := declRunApply(t, dst, "-f", declWriteFile(t, form.file, form.content))
				if len(again.Changes) != 0 || again.AppliedSeq != nil || declStoreHead(t, dst) != 4 {
					t.Fatalf("%s: second apply = %+v, head %d", form.file, again, declStoreHead(t, dst))
				}
			}
		})
	}
}

func TestExportAt(t *testing.T) {
	t.Parallel()
	cfg := Config{DataDir: t.TempDir()}
	declRunApply(t, cfg, "-f", declWriteFile(t, "c.yaml", declSampleYAML))
	if got := declRunExport(t, cfg, "--at", "0", "-o", "json"); got != "{\n  \"tenants\": [],\n  \"routes\": []\n}\n" {
		t.Fatalf("export --at 0 = %q", got)
	}
	var doc declarative.Document
	if err := json.Unmarshal([]byte(declRunExport(t, cfg, "--at", "1", "-o", "json")), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Tenants) != 1 || doc.Tenants[0].Name != "acme" || len(doc.Routes) != 0 {
		t.Fatalf("export --at 1 = %+v", doc)
	}
	var out bytes.Buffer
	if err := exportCommand(context.Background(), cfg, []string{"--at", "99"}, &out); err == nil {
		t.Fatal("export beyond the head succeeded")
	}
}

func TestApplyRejectsInvalidDocuments(t *testing.T) {
	t.Parallel()
	cfg := Config{DataDir: t.TempDir()}
	tests := []struct {
		name, content string
		args          []string
		want          string
	}{
		{name: "admin rules", content: strings.Replace(declSampleYAML, "http://127.0.0.1:9002", "ftp://x", 1), want: "routes[0].upstreams[1].url"},
		{name: "unknown field", content: declSampleYAML + "extra: 1\n", want: "extra: unknown field"},
		{name: "route of a missing tenant", content: strings.Replace(declSampleYAML, "tenantId: 0190a0b0-0000-7000-8000-00000000000b", "tenantId: 0190a0b0-0000-7000-8000-0000000000ff", 1), want: "routes[1].tenantId"},
		{name: "not YAML", content: "tenants: [\n", want: "YAML"},
		{name: "no file", args: []string{"--dry-run"}, want: "usage"},
		{name: "missing file", args: []string{"-f", "/nonexistent/c.yaml"}, want: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if args == nil {
				args = []string{"-f", declWriteFile(t, "c.yaml", tt.content)}
			}
			var out bytes.Buffer
			err := applyCommand(context.Background(), cfg, args, &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
			if h := declStoreHead(t, cfg); h != 0 {
				t.Fatalf("a rejected apply appended %d events", h)
			}
		})
	}
}

func TestApplyRecordsActorAndStoresNoKey(t *testing.T) {
	t.Parallel()
	cfg := Config{DataDir: t.TempDir()}
	res := declRunApply(t, cfg, "-f", declWriteFile(t, "c.yaml", declSampleYAML), "--actor", "deploy-42")
	store, err := openStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	evs, err := store.Read(context.Background(), events.Query{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Actor != "deploy-42" {
			t.Errorf("event %d actor = %q", ev.Seq, ev.Actor)
		}
		for _, k := range res.APIKeys {
			if strings.Contains(string(ev.Data), k.APIKey) {
				t.Errorf("event %d stores a plaintext key", ev.Seq)
			}
		}
	}
}
