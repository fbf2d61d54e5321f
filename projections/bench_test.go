package projections

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/tenantgate/gateway/events"
)

// The benchmark state: 10k tenants and 100k routes. One tenant ("big") has
// 10k routes (5000 exact, 4980 prefix, 20 regex); the others have 10 each.
const (
	benchTenants     = 10_000
	benchRoutes      = 100_000
	benchBigRoutes   = 10_000
	benchBigRegex    = 20
	benchBigExact    = 5_000
	benchOtherRoutes = (benchRoutes - benchBigRoutes) / (benchTenants - 1)
)

type benchState struct {
	log    *logBuilder
	snap   *Snapshot
	big    string // tenant id
	bigRID string // a prefix route of big
	small  string // route id of another tenant
}

var (
	benchOnce sync.Once
	bench     benchState
)

func benchSpec(tenantID, method string, typ events.PathType, path string) events.RouteSpec {
	return events.RouteSpec{
		TenantID: tenantID, Method: method, Path: path, PathType: typ,
		Upstreams:     []events.Upstream{{URL: "http://10.0.0.1:8080", Weight: 3}, {URL: "http://10.0.0.2:8080/base", Weight: 1}},
		LoadBalancing: events.BalanceWeighted,
		Resilience: &events.Resilience{
			Retry:   &events.Retry{Enabled: true, MaxRetries: 3, BaseDelayMs: 100, MaxDelayMs: 2000, RetryableStatusCodes: []int{500, 502, 503, 504}},
			Timeout: &events.Timeout{Enabled: true, Default: 10000},
		},
	}
}

// benchLog writes the events of the benchmark state.
func benchLog(tb testing.TB) *logBuilder {
	l := newLog(tb)
	route := func(tid string, spec events.RouteSpec) string {
		id := l.newID("r")
		l.tenantOf[id] = tid
		l.add(events.RouteCreated, id, tid, spec)
		return id
	}
	big, _ := l.tenant("big")
	for i := range benchBigRoutes {
		switch {
		case i < benchBigExact:
			route(big, benchSpec(big, "GET", events.PathExact, fmt.Sprintf("/svc%d/items", i)))
		case i < benchBigRoutes-benchBigRegex:
			id := route(big, benchSpec(big, "*", events.PathPrefix, fmt.Sprintf("/svc%d/v1", i)))
			if bench.bigRID == "" {
				bench.bigRID = id
			}
		default:
			route(big, benchSpec(big, "GET", events.PathRegex, fmt.Sprintf(`^/re%d/[0-9]+/items$`, i)))
		}
	}
	bench.big = big
	for t := 1; t < benchTenants; t++ {
		tid, _ := l.tenant(fmt.Sprintf("tenant%d", t))
		for i := range benchOtherRoutes {
			id := route(tid, benchSpec(tid, "*", events.PathPrefix, fmt.Sprintf("/api/r%d", i)))
			bench.small = id
		}
	}
	return l
}

func loadBench(b *testing.B) *benchState {
	b.Helper()
	benchOnce.Do(func() {
		bench.log = benchLog(b)
		s, err := Replay(bench.log.evs)
		if err != nil {
			b.Fatal(err)
		}
		bench.snap = s
	})
	return &bench
}

func BenchmarkMatch(b *testing.B) {
	st := loadBench(b)
	s := st.snap
	big, _ := s.Tenant(st.big)
	tests := []struct {
		name, method, path string
	}{
		{"exact", "GET", "/svc2500/items"},
		{"prefix-deep", "GET", "/svc7000/v1/a/b/c/d/e/f/g/h/i/j"},
		{"prefix-miss-to-404", "GET", "/nothing/here/at/all"},
		{"regex", "GET", fmt.Sprintf("/re%d/12345/items", benchBigRoutes-benchBigRegex/2)},
	}
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			if _, ok := s.Match(big, tc.method, tc.path); ok == (tc.name == "prefix-miss-to-404") {
				b.Fatalf("Match(%s) = %v", tc.path, ok)
			}
			b.ReportAllocs()
			for b.Loop() {
				s.Match(big, tc.method, tc.path)
			}
		})
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	st := loadBench(b)
	kh := KeyHash(testKey(st.big))
	if _, ok := st.snap.Authenticate(kh); !ok {
		b.Fatal("key not found")
	}
	b.ReportAllocs()
	for b.Loop() {
		st.snap.Authenticate(kh)
	}
}

// BenchmarkApplyRouteChange applies one route update (a path change, so the
// matcher changes too) to the 10k-tenant, 100k-route state.
func BenchmarkApplyRouteChange(b *testing.B) {
	st := loadBench(b)
	for _, tc := range []struct{ name, rid, tid string }{
		{"small-tenant", st.small, st.log.tenantOf[st.small]},
		{"10k-route-tenant", st.bigRID, st.big},
	} {
		b.Run(tc.name, func(b *testing.B) {
			data, _ := json.Marshal(events.RouteUpdatedData{Path: events.NewPatch("/moved/here")})
			ev := events.Envelope{
				Seq: st.snap.Seq() + 1, Type: events.RouteUpdated, AggregateID: tc.rid, TenantID: tc.tid,
				AggregateVersion: 2, OccurredAt: st.log.at, Data: data,
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Apply(st.snap, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReplay replays the whole 110k-event log from a slice.
func BenchmarkReplay(b *testing.B) {
	st := loadBench(b)
	evs := st.log.evs
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Replay(evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkApplyOneByOne replays the log one Apply per event, as a projector
// tailing a busy bus would.
func BenchmarkApplyOneByOne(b *testing.B) {
	st := loadBench(b)
	evs := st.log.evs[:20_000]
	b.ReportAllocs()
	for b.Loop() {
		s := Empty()
		for _, ev := range evs {
			s, _ = Apply(s, ev)
		}
	}
	b.ReportMetric(float64(len(evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSnapshotMemory reports the heap the benchmark state takes, per
// route (tenants included), built by a replay and loaded from a checkpoint.
func BenchmarkSnapshotMemory(b *testing.B) {
	st := loadBench(b)
	cp, err := EncodeCheckpoint(st.snap)
	if err != nil {
		b.Fatal(err)
	}
	builds := []struct {
		name  string
		build func() (*Snapshot, error)
	}{
		{"replay", func() (*Snapshot, error) { return Replay(st.log.evs) }},
		{"checkpoint", func() (*Snapshot, error) { return DecodeCheckpoint(cp) }},
	}
	for _, bd := range builds {
		b.Run(bd.name, func(b *testing.B) {
			var s *Snapshot
			var before, after runtime.MemStats
			for b.Loop() {
				s = nil //nolint:ineffassign // drop the previous state before measuring the heap
				runtime.GC()
				runtime.ReadMemStats(&before)
				var err error
				if s, err = bd.build(); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
			}
			runtime.KeepAlive(s)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(s.Routes())), "bytes/route")
		})
	}
}

// BenchmarkCheckpoint encodes, decodes (verifying) and checks against the
// state the checkpoint of the benchmark state: 10k tenants, 100k routes.
func BenchmarkCheckpoint(b *testing.B) {
	s := loadBench(b).snap
	cp, err := EncodeCheckpoint(s)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := EncodeCheckpoint(s); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(cp.Data)), "bytes")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeCheckpoint(cp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("holds", func(b *testing.B) { // what replay --verify does instead of decode
		b.ReportAllocs()
		for b.Loop() {
			if !CheckpointHolds(cp, s) {
				b.Fatal("the checkpoint does not hold its state")
			}
		}
	})
}
