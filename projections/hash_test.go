package projections

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events"
)

// fullRoute and fullTenant set every field, every optional block included.
func fullRoute() *Route {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &Route{
		ID: "r1", Version: 3, CreatedAt: at, UpdatedAt: at.Add(time.Hour),
		RouteSpec: events.RouteSpec{
			TenantID: "t1", Method: "GET", Path: "/a", PathType: events.PathPrefix,
			Upstreams:     []events.Upstream{{URL: "http://u:1", Weight: 2}},
			LoadBalancing: events.BalanceWeighted,
			Resilience: &events.Resilience{
				CircuitBreaker: &events.CircuitBreaker{Enabled: true, FailureThreshold: 5, SuccessThreshold: 2, Timeout: 30000},
				Retry:          &events.Retry{Enabled: true, MaxRetries: 3, BaseDelayMs: 100, MaxDelayMs: 2000, RetryableStatusCodes: []int{502}, RetryNonIdempotent: true},
				Timeout:        &events.Timeout{Enabled: true, Default: 10000, ByMethod: map[string]int{"GET": 5000}},
				HealthCheck:    &events.HealthCheck{Enabled: true, Endpoint: "/health", IntervalMs: 30000, TimeoutMs: 5000, HealthyThreshold: 2, UnhealthyThreshold: 3},
				Fallback:       &events.Fallback{Enabled: true, StatusCode: 503, ContentType: "text/plain", Body: "down"},
			},
			Transform: &events.Transform{
				Request: &events.RequestTransform{
					Headers: &events.HeaderOps{Set: map[string]string{"A": "1"}, Add: map[string]string{"B": "2"}, Remove: []string{"C"}},
					Path:    &events.PathRewrite{Pattern: "^/a", Replacement: "/b"},
				},
				Response: &events.ResponseTransform{Headers: &events.HeaderOps{Set: map[string]string{"D": "4"}, Add: map[string]string{"E": "5"}, Remove: []string{"F"}}},
			},
		},
	}
}

func fullTenant() *Tenant {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &Tenant{
		ID: "t1", Name: "acme", Status: events.TenantActive, RateLimit: &events.RateLimit{Limit: 5, WindowMs: 1000},
		KeyPrefix: "gw_ab", Version: 2, CreatedAt: at, UpdatedAt: at.Add(time.Minute), KeyHash: [32]byte{1, 2, 3},
	}
}

// mutations calls visit once per way to change one field of v: every leaf
// value, every pointer set to nil, every map and slice given another entry.
// visit(n) gets a fresh copy's mutation n applied by mutate.
func mutations(v reflect.Value, name string, visit func(name string, mutate func(reflect.Value))) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem().String() == "regexp.Regexp" {
			return // compiled from fields that are covered
		}
		visit(name+"=nil", func(x reflect.Value) { x.Set(reflect.Zero(x.Type())) })
		mutations(v.Elem(), name, func(n string, m func(reflect.Value)) {
			visit(n, func(x reflect.Value) { m(x.Elem()) })
		})
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			visit(name, func(x reflect.Value) { x.Set(reflect.ValueOf(x.Interface().(time.Time).Add(time.Microsecond))) })
			return
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			mutations(v.Field(i), name+"."+f.Name, func(n string, m func(reflect.Value)) {
				visit(n, func(x reflect.Value) { m(x.Field(i)) })
			})
		}
	case reflect.Slice:
		visit(name+"+elem", func(x reflect.Value) { x.Set(reflect.Append(x, reflect.Zero(x.Type().Elem()))) })
		for i := range v.Len() {
			mutations(v.Index(i), name+"[i]", func(n string, m func(reflect.Value)) {
				visit(n, func(x reflect.Value) { m(x.Index(i)) })
			})
		}
	case reflect.Map:
		visit(name+"+key", func(x reflect.Value) {
			x.SetMapIndex(reflect.ValueOf("zz").Convert(x.Type().Key()), reflect.Zero(x.Type().Elem()))
		})
		visit(name+"[k]", func(x reflect.Value) {
			for _, k := range x.MapKeys() {
				old := x.MapIndex(k)
				nv := reflect.New(old.Type()).Elem()
				nv.Set(old)
				bump(nv)
				x.SetMapIndex(k, nv)
			}
		})
	case reflect.Array:
		visit(name, func(x reflect.Value) { x.Index(0).SetUint(x.Index(0).Uint() + 1) })
	default:
		visit(name, bump)
	}
}

func bump(x reflect.Value) {
	switch x.Kind() {
	case reflect.String:
		x.SetString(x.String() + "x")
	case reflect.Int, reflect.Int64:
		x.SetInt(x.Int() + 1)
	case reflect.Bool:
		x.SetBool(!x.Bool())
	default:
		panic("bump: unhandled kind " + x.Kind().String())
	}
}

// TestDigestCoversEveryField changes each field of a tenant and a route, one
// at a time, found by reflection (so a field added to the model later is
// found too), and requires the digest to change.
func TestDigestCoversEveryField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		fresh  func() any
		digest func(any) [32]byte
	}{
		{"tenant", func() any { return fullTenant() }, func(v any) [32]byte { return tenantDigest(v.(*Tenant)) }},
		{"route", func() any { return fullRoute() }, func(v any) [32]byte { return routeDigest(v.(*Route)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := tc.digest(tc.fresh())
			if tc.digest(tc.fresh()) != base {
				t.Fatal("digest is not deterministic")
			}
			n := 0
			mutations(reflect.ValueOf(tc.fresh()).Elem(), tc.name, func(name string, mutate func(reflect.Value)) {
				n++
				v := tc.fresh()
				mutate(reflect.ValueOf(v).Elem())
				if tc.digest(v) == base {
					t.Errorf("changing %s does not change the digest", name)
				}
			})
			if n < 10 {
				t.Fatalf("only %d mutations found", n)
			}
			t.Logf("%d single-field changes checked", n)
		})
	}
}

// TestDigestsSettledInEveryState holds the route digests an edit puts off
// until it hands a state out (edit.settle) to digests computed from
// scratch: in every state Apply and ApplyBatch return, each route's digests
// are its own and the sums are the XOR of every aggregate's, whatever the
// log did (updates, deletes, re-creates in one batch). ReplayStore, the
// catch-up and its checkpoints are held to ApplyBatch's states by
// TestReplayStoreEqualsReplayAtEverySeq and TestCatchUpEqualsReplay.
func TestDigestsSettledInEveryState(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, how string, s *Snapshot) {
		t.Helper()
		var sum, configSum [32]byte
		s.tenants.all(func(_ string, e tenantEntry) bool {
			e.addTo(&sum, &configSum)
			return true
		})
		s.routes.all(func(id string, e routeEntry) bool {
			if e.stale || e.digests != routeDigests(e.r) {
				t.Fatalf("%s: seq %d: route %s: stale %v or digests not its own", how, s.Seq(), id, e.stale)
			}
			e.addTo(&sum, &configSum)
			return true
		})
		s.keys.all(func(_ string, e adminKeyEntry) bool {
			e.addTo(&sum, &configSum)
			return true
		})
		if sum != s.sum || configSum != s.configSum {
			t.Fatalf("%s: seq %d: sums differ from the XOR of the digests", how, s.Seq())
		}
	}
	for seed := range uint64(6) {
		evs := randomLog(t, rand.New(rand.NewPCG(seed, 77)), 500).evs
		one := Empty()
		for _, ev := range evs {
			one, _ = Apply(one, ev)
			check(t, "Apply", one)
		}
		for _, n := range []int{7, 100, len(evs)} {
			s := Empty()
			for i := 0; i < len(evs); i += n {
				s, _ = ApplyBatch(s, evs[i:min(i+n, len(evs))], nil)
				check(t, "ApplyBatch", s)
			}
			if s.StateHash() != one.StateHash() || s.ConfigHash() != one.ConfigHash() {
				t.Fatalf("seed %d: batches of %d give another state than one by one", seed, n)
			}
		}
	}
}
