package admin

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAdminKeyLifecycleAndSecrets: a created key works at once, is listed
// without its secret, revoked keys are refused; the key never appears in
// events, state, the key list, logs or any later answer.
func TestAdminKeyLifecycleAndSecrets(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	r := do(t, e.app, "POST", "/admin/keys", `{"name":"alice","role":"operator"}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	var created struct{ ID, Key, KeyPrefix string }
	r.decode(t, &created)
	if !strings.HasPrefix(created.Key, created.KeyPrefix) || len(created.Key) < 40 {
		t.Fatalf("key %q prefix %q", created.Key, created.KeyPrefix)
	}
	wantError(t, do(t, e.app, "POST", "/admin/keys", `{"name":"alice","role":"viewer"}`), 409, "conflict", "-")
	wantError(t, do(t, e.app, "POST", "/admin/keys", `{"name":"bob","role":"boss"}`), 400, "validation_failed", "role")
	wantError(t, do(t, e.app, "POST", "/admin/keys", `{"name":"bob","role":"viewer","tenantIds":["0190a0b0-7c1e-7a3d-9a40-3f1c2b5d6e01"]}`), 400, "validation_failed", "tenantIds[0]")
	alice := header{"X-Admin-Key", created.Key}
	tn := do(t, e.app, "POST", "/admin/tenants", `{"name":"acme"}`, alice)
	if tn.status != 201 {
		t.Fatalf("alice creates a tenant: %d %s", tn.status, tn.raw)
	}
	wantError(t, do(t, e.app, "GET", "/admin/keys", "", alice), 403, "forbidden", "-")

	var answers []string
	for _, path := range []string{"/admin/keys", "/admin/keys/" + created.ID, "/admin/events?limit=1000", "/admin/state", "/admin/state?at=2", "/admin/diff?from=0&to=2"} {
		r := do(t, e.app, "GET", path, "")
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.raw)
		}
		answers = append(answers, string(r.raw))
	}
	if !strings.Contains(answers[3], `"adminKeys":[{"id":"`+created.ID) {
		t.Fatalf("state does not list the key: %s", answers[3])
	}
	if !strings.Contains(answers[5], `"aggregateType":"adminKey"`) {
		t.Fatalf("diff does not list the key's creation: %s", answers[5])
	}
	rb := do(t, e.app, "POST", "/admin/rollback", `{"toSeq":0}`, header{"X-Actor", "ops"})
	if rb.status != 200 {
		t.Fatalf("rollback: %d %s", rb.status, rb.raw)
	}
	answers = append(answers, string(rb.raw))
	if !strings.Contains(string(rb.raw), `{"aggregateType":"adminKey","aggregateId":"`+created.ID+`","change":"deleted"`) {
		t.Fatalf("rollback to 0 does not revoke the key in its changes: %s", rb.raw)
	}
	wantError(t, do(t, e.app, "GET", "/admin/status", "", alice), 401, "unauthorized", "-")
	// Rolling back to when the key was live does not bring it back.
	if r := do(t, e.app, "POST", "/admin/rollback", `{"toSeq":2}`); r.status != 200 || strings.Contains(string(r.raw), "adminKey") {
		t.Fatalf("rollback to 2: %d %s", r.status, r.raw)
	}
	wantError(t, do(t, e.app, "GET", "/admin/status", "", alice), 401, "unauthorized", "-")
	if r := do(t, e.app, "GET", "/admin/state?at=1", ""); !strings.Contains(string(r.raw), created.ID) {
		t.Fatalf("state at 1 lacks the key: %s", r.raw)
	}

	evs := e.allEvents(t)
	var stored []string
	for _, ev := range evs {
		stored = append(stored, fmt.Sprintf("%+v %s", ev, ev.Data))
	}
	if evs[0].Type != "AdminKeyCreated" || !strings.Contains(stored[0], `"keyHash"`) {
		t.Fatalf("first event: %s", stored[0])
	}
	if last := evs[len(evs)-1]; last.Type != "AdminKeyRevoked" && evs[len(evs)-2].Type != "AdminKeyRevoked" {
		t.Logf("events: %v", stored)
	}
	for name, text := range map[string]string{"answers": strings.Join(answers, "\n"), "events": strings.Join(stored, "\n"), "logs": e.logs.String()} {
		if strings.Contains(text, created.Key) || strings.Contains(text, created.Key[len(created.KeyPrefix):]) {
			t.Errorf("the key appears in %s", name)
		}
	}
	if strings.Contains(answers[2], "keyHash") {
		t.Errorf("events answer shows the key digest: %s", answers[2])
	}
}

// TestFailedAdminAuthIsCountedLoggedAndSlowed: wrong keys are logged without
// the key, counted, and past a few failures answered more slowly.
func TestFailedAdminAuthIsCountedLoggedAndSlowed(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	var f failures
	now := time.Unix(1000, 0)
	for i := range freeFailures {
		if d := f.add("10.0.0.1", now); d != 0 {
			t.Fatalf("failure %d delayed %v", i+1, d)
		}
	}
	if d := f.add("10.0.0.1", now); d != failureStep {
		t.Fatalf("failure %d delayed %v, want %v", freeFailures+1, d, failureStep)
	}
	if d := f.add("10.0.0.2", now); d != 0 {
		t.Fatalf("another address delayed %v", d)
	}
	if d := f.add("10.0.0.1", now.Add(2*failureWindow)); d != 0 {
		t.Fatalf("a new window delayed %v", d)
	}
	const wrong = "gwa_this-is-not-a-valid-key-0123456789"
	var slowest time.Duration
	for range freeFailures + 1 {
		start := time.Now()
		wantError(t, do(t, e.app, "GET", "/admin/status", "", header{"X-Admin-Key", wrong}), 401, "unauthorized", "-")
		slowest = time.Since(start)
	}
	if slowest < failureStep {
		t.Fatalf("failure %d took %v, want at least %v", freeFailures+1, slowest, failureStep)
	}
	logs := e.logs.String()
	if strings.Count(logs, "admin: authentication failed") != freeFailures+1 || strings.Contains(logs, wrong) {
		t.Fatalf("logs: %s", logs)
	}
}
