package admin

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/events/instances"
	"github.com/tenantgate/gateway/events/testenv"
	"github.com/tenantgate/gateway/projections"
)

type statusJSON struct {
	InstanceID string `json:"instanceId"`
	AppliedSeq int64  `json:"appliedSeq"`
	StateHash  string `json:"stateHash"`
	Ready      bool   `json:"ready"`
}

func getInstances(t *testing.T, app *fiber.App) instances.List {
	t.Helper()
	r := do(t, app, "GET", "/admin/instances", "")
	if r.status != 200 {
		t.Fatalf("GET /admin/instances: %d %s", r.status, r.raw)
	}
	var l instances.List
	r.decode(t, &l)
	return l
}

func getStatus(t *testing.T, app *fiber.App) statusJSON {
	t.Helper()
	var st statusJSON
	do(t, app, "GET", "/admin/status", "").decode(t, &st)
	return st
}

// Without Instances (the embedded gateway), the list is this instance, with
// what its /admin/status says.
func TestInstancesListsItselfWhenAlone(t *testing.T) {
	t.Parallel()
	e := newSQLiteEnv(t)
	e.createTenant(t, `{"name":"acme"}`)
	l := getInstances(t, e.app)
	st := getStatus(t, e.app)
	if len(l.Items) != 1 || l.Partial {
		t.Fatalf("list %+v, want this instance alone", l)
	}
	in := l.Items[0]
	if in.InstanceID != st.InstanceID || in.AppliedSeq != st.AppliedSeq || in.StateHash != st.StateHash || in.Ready != st.Ready || in.LagMs != 0 {
		t.Fatalf("instance %+v, status %+v", in, st)
	}
	if r := do(t, e.app, "GET", "/admin/instances", "", header{"X-Admin-Key", ""}); r.status != 401 {
		t.Fatalf("without the admin key: %d", r.status)
	}
}

// Two instances over one store and one Redis: each lists both, each entry
// what that instance's /admin/status says, and an admin write shows on both.
func TestInstancesListsEveryInstanceOnRedis(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.RedisClient(t)
	e := newSQLiteEnv(t)
	log := testLogger(e.logs)
	apps := map[string]*fiber.App{}
	for _, id := range []string{"gw-a", "gw-b"} {
		proj, err := projections.NewProjector(projections.ProjectorConfig{HeadCheckInterval: 50 * time.Millisecond}, e.store, e.bus, log)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := instances.New(instances.Config{
			InstanceID: id, Key: prefix + "instances", Log: e.store, Interval: 100 * time.Millisecond,
			Self: SelfReport(proj, proj.Ready),
		}, client, log)
		if err != nil {
			t.Fatal(err)
		}
		runUntilCleanup(t, proj.Run, reg.Run)
		api, err := New(Config{AdminKey: testAdminKey, InstanceID: id}, Deps{
			Store: e.store, Projector: proj, BusKind: "redis", Log: log, Instances: reg,
		})
		if err != nil {
			t.Fatal(err)
		}
		apps[id] = newAppFor(api)
	}
	do(t, apps["gw-a"], "POST", "/admin/tenants", `{"name":"acme"}`)
	for id, app := range apps {
		pollUntil(t, func() bool {
			l := getInstances(t, app)
			if len(l.Items) != 2 || l.Partial {
				return false
			}
			for _, in := range l.Items {
				st := getStatus(t, apps[in.InstanceID])
				if in.AppliedSeq != st.AppliedSeq || in.StateHash != st.StateHash || in.AppliedSeq != 1 || !in.Ready || in.LagMs != 0 {
					return false
				}
			}
			return true
		})
		t.Logf("%s lists both instances at seq 1", id)
	}
}

// runUntilCleanup runs loops until the test ends.
func runUntilCleanup(t *testing.T, loops ...func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, loop := range loops {
		wg.Add(1)
		go func() { defer wg.Done(); _ = loop(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}
