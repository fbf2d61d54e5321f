package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events/instances"
)

// instances reads p's /admin/instances; ok false on a transport error or non-200.
func (p *proc) instances() (map[string]instances.Instance, bool) {
	code, b, err := p.call("GET", "/admin/instances", nil, map[string]string{"X-Admin-Key": testAdminKey})
	var l instances.List
	if err != nil || code != http.StatusOK || json.Unmarshal(b, &l) != nil || l.Partial {
		return nil, false
	}
	out := map[string]instances.Instance{}
	for _, in := range l.Items {
		out[in.InstanceID] = in
	}
	return out, true
}

// TestInstancesAcrossTheCluster: three gateway processes each list all
// three with what each one's /admin/status says; one drained with SIGTERM
// says ready false, then leaves the list; one killed with SIGKILL stays
// listed until its last heartbeat is 10 s old, then drops out.
func TestInstancesAcrossTheCluster(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.extra = map[string]string{"SHUTDOWN_DELAY": "1s"}
	c := startCluster(t, e, 3)
	createTenant(t, c.procs[0], "acme")
	c.waitConverged(5 * time.Second)
	head := c.head()
	names := []string{"gw-1", "gw-2", "gw-3"}
	for _, p := range c.procs {
		var got map[string]instances.Instance
		pollUntil(t, 10*time.Second, p.name+" lists the three at the head", func() bool {
			var ok bool
			got, ok = p.instances()
			if !ok || len(got) != 3 {
				return false
			}
			for _, q := range c.procs {
				in, listed := got[q.name]
				st, _ := q.status()
				if !listed || in.AppliedSeq != head || in.StateHash != st.StateHash || !in.Ready || in.LagMs != 0 {
					return false
				}
			}
			return true
		})
		for _, name := range names {
			if in := got[name]; in.StartedAt.IsZero() || in.StartedAt.After(in.LastSeenAt) || time.Since(in.LastSeenAt) > 10*time.Second {
				t.Errorf("%s lists %s with startedAt %v, lastSeenAt %v", p.name, name, in.StartedAt, in.LastSeenAt)
			}
		}
	}

	// SIGTERM: ready false while draining (SHUTDOWN_DELAY), then gone.
	observer, drained, killed := c.procs[0], c.procs[2], c.procs[1]
	drained.signal(syscall.SIGTERM)
	saidNotReady := pollUntil(t, 5*time.Second, "the draining instance listed as not ready", func() bool {
		got, ok := observer.instances()
		in, listed := got[drained.name]
		return ok && listed && !in.Ready
	})
	left := pollUntil(t, 15*time.Second, "the drained instance leaves the list", func() bool {
		got, ok := observer.instances()
		_, listed := got[drained.name]
		return ok && !listed
	})
	if !drained.wait(10 * time.Second) {
		t.Fatal("the drained instance did not exit")
	}

	// SIGKILL: no goodbye; listed until its heartbeat is 10 s old.
	killed.kill()
	if got, ok := observer.instances(); !ok || !slices.Contains(keys(got), killed.name) {
		t.Fatalf("right after the kill %s lists %v, want the dead instance until the window passes", observer.name, keys(got))
	}
	dropped := pollUntil(t, 20*time.Second, "the killed instance drops out", func() bool {
		got, ok := observer.instances()
		_, listed := got[killed.name]
		return ok && !listed && len(got) == 1
	})
	figure(t, "admin-instances", "sigterm_listed_not_ready_after", ms(saidNotReady), "sigterm_left_list_after", ms(saidNotReady+left),
		"sigkill_dropped_after", ms(dropped))
}

func keys(m map[string]instances.Instance) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestInstancesEmbedded: without Redis the list is the instance itself.
func TestInstancesEmbedded(t *testing.T) {
	t.Parallel()
	in := startGateway(t, map[string]string{"INSTANCE_ID": "solo"})
	status, _, b := in.do("GET", "/admin/instances", nil, map[string]string{"X-Admin-Key": testAdminKey})
	var l instances.List
	if status != http.StatusOK || json.Unmarshal(b, &l) != nil || len(l.Items) != 1 || l.Items[0].InstanceID != "solo" || !l.Items[0].Ready {
		t.Fatalf("GET /admin/instances: %d %s", status, b)
	}
}
