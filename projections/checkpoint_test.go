package projections

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tenantgate/gateway/events"
)

// TestCodecRoundTrip decodes what the encoder wrote for a tenant and a route
// with every field set, and for each one-field change of them (found by
// reflection, as for the digest), and requires the same value back.
func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fresh     func() any
		roundTrip func(any) (any, error)
	}{
		{"tenant", func() any { return fullTenant() }, func(v any) (any, error) {
			var e encoder
			want := e.tenant(v.(*Tenant))
			d := decoder{b: e.b}
			got, parts := d.tenant()
			if len(d.b) != 0 {
				return nil, errors.New("bytes left over")
			}
			if parts != want { // the record's digests are taken at them
				return nil, fmt.Errorf("decoded parts %+v, encoded %+v", parts, want)
			}
			return got, d.err
		}},
		{"route", func() any { return fullRoute() }, func(v any) (any, error) {
			var e encoder
			wantID, wantSpec := e.route(v.(*Route))
			d := decoder{b: e.b}
			got, id, spec := d.route()
			if len(d.b) != 0 {
				return nil, errors.New("bytes left over")
			}
			if id != wantID || spec != wantSpec {
				return nil, fmt.Errorf("decoded parts %+v %d, encoded %+v %d", id, spec, wantID, wantSpec)
			}
			return got, d.err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check := func(name string, v any) {
				got, err := tc.roundTrip(v)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !reflect.DeepEqual(normalizeNil(got), normalizeNil(v)) {
					t.Errorf("%s: decoded %+v, want %+v", name, got, v)
				}
			}
			check("full", tc.fresh())
			mutations(reflect.ValueOf(tc.fresh()).Elem(), tc.name, func(name string, mutate func(reflect.Value)) {
				v := tc.fresh()
				mutate(reflect.ValueOf(v).Elem())
				check(name, v)
			})
		})
	}
}

// normalizeNil compares values as their JSON does: an empty map or an empty
// omitempty slice is the same as nil, the rest must match exactly.
func normalizeNil(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestDecodeRecordNeverPanics feeds the record decoders every truncation and
// many corruptions of valid records: they fail, never panic.
func TestDecodeRecordNeverPanics(t *testing.T) {
	t.Parallel()
	var e encoder
	e.route(fullRoute())
	e.tenant(fullTenant())
	valid := e.b
	r := rand.New(rand.NewPCG(1, 2))
	for i := range len(valid) {
		decodeRecords(valid[:i])
		b := bytes.Clone(valid)
		b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
		decodeRecords(b)
	}
}

func decodeRecords(b []byte) {
	d := decoder{b: b}
	d.route()
	d.tenant()
}

func FuzzDecodeRecord(f *testing.F) {
	var e encoder
	e.route(fullRoute())
	f.Add(e.b)
	e.b = nil
	e.tenant(fullTenant())
	f.Add(e.b)
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeRecords(b)
	})
}

// TestCheckpointRoundTrip encodes the state of random logs (garbage events
// included) at several seqs, decodes it, and requires exactly the state a
// replay gives: hash, tenants, routes, indexes; and applying the rest of the
// log to the decoded state must give what applying it to the original gives.
func TestCheckpointRoundTrip(t *testing.T) {
	t.Parallel()
	for seed := range uint64(6) {
		evs := randomLog(t, rand.New(rand.NewPCG(seed, 99)), 400).evs
		for _, at := range []int{1, 57, 200, 399} {
			want, _ := Replay(evs[:at])
			cp, err := EncodeCheckpoint(want)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := EncodeCheckpoint(want)
			if !bytes.Equal(cp.Data, again.Data) {
				t.Fatalf("seed %d at %d: encoding is not deterministic", seed, at)
			}
			// For serving, and for a history query: the routes unfiled in
			// tables, which the rest of the log then edits (a tenant's
			// delete files them) and a match builds.
			for _, forServing := range []bool{true, false} {
				got, err := decodeCheckpoint(cp, forServing)
				if err != nil {
					t.Fatalf("seed %d at %d: %v", seed, at, err)
				}
				if got.unfiled == forServing {
					t.Fatalf("seed %d at %d: unfiled %v for serving %v", seed, at, got.unfiled, forServing)
				}
				assertSameState(t, got, want)
				assertSameJSON(t, got, want)
				if got.LastEventID() != want.LastEventID() {
					t.Fatalf("seed %d at %d: last event id %q, want %q", seed, at, got.LastEventID(), want.LastEventID())
				}
				if got.ConfigHash() != want.ConfigHash() {
					t.Fatalf("seed %d at %d: config hash differs", seed, at)
				}
				restGot, _ := ApplyBatch(got, evs[at:], nil)
				restWant, _ := ApplyBatch(want, evs[at:], nil)
				assertSameState(t, restGot, restWant)
				assertSameMatches(t, restGot, restWant)
				assertSameTenantRoutes(t, restGot, restWant)
			}
		}
	}
}

func assertSameJSON(t *testing.T, a, b *Snapshot) {
	t.Helper()
	for _, pair := range [][2]any{{a.Tenants(), b.Tenants()}, {a.Routes(), b.Routes()}} {
		ja, _ := json.Marshal(pair[0])
		jb, _ := json.Marshal(pair[1])
		if !bytes.Equal(ja, jb) {
			t.Fatalf("JSON differs:\n%s\n%s", ja, jb)
		}
	}
}

// assertSameMatches routes a set of paths for every tenant in both states.
func assertSameMatches(t *testing.T, a, b *Snapshot) {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	for _, ten := range a.Tenants() {
		for range 20 {
			_, path := randomPath(r)
			method := []string{"GET", "POST", "PUT"}[r.IntN(3)]
			ra, _ := a.Match(ten, method, path)
			rb, _ := b.Match(ten, method, path)
			if idOfRoute(ra) != idOfRoute(rb) {
				t.Fatalf("tenant %s %s %s: route %s / %s", ten.ID, method, path, idOfRoute(ra), idOfRoute(rb))
			}
		}
	}
}

func assertSameTenantRoutes(t *testing.T, a, b *Snapshot) {
	t.Helper()
	for _, ten := range b.Tenants() {
		ja, _ := json.Marshal(a.TenantRoutes(ten.ID))
		jb, _ := json.Marshal(b.TenantRoutes(ten.ID))
		if !bytes.Equal(ja, jb) {
			t.Fatalf("tenant %s routes:\n%s\n%s", ten.ID, ja, jb)
		}
	}
}

func idOfRoute(r *Route) string {
	if r == nil {
		return ""
	}
	return r.ID
}

// TestDecodeCheckpointRefusesBadOnes: another Apply version, a flipped
// byte, a truncation, a wrong hash or seq in the row: each is refused with
// ErrBadCheckpoint, never decoded into a state.
func TestDecodeCheckpointRefusesBadOnes(t *testing.T) {
	t.Parallel()
	s, _ := Replay(randomLog(t, rand.New(rand.NewPCG(5, 5)), 300).evs)
	good, err := EncodeCheckpoint(s)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good.Data)
	flipped[len(flipped)/2] ^= 0x40
	tests := []struct {
		name   string
		mutate func(*events.Checkpoint)
	}{
		{"other version", func(cp *events.Checkpoint) { cp.ApplyVersion = "0123456789abcdef" }},
		{"flipped byte", func(cp *events.Checkpoint) { cp.Data = flipped }},
		{"truncated", func(cp *events.Checkpoint) { cp.Data = cp.Data[:len(cp.Data)-9] }},
		{"empty", func(cp *events.Checkpoint) { cp.Data = nil }},
		{"not zstd", func(cp *events.Checkpoint) { cp.Data = []byte("{\"tenants\":[]}") }},
		{"wrong hash", func(cp *events.Checkpoint) { cp.StateHash = Empty().StateHash() }},
		{"wrong seq", func(cp *events.Checkpoint) { cp.Seq++ }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cp := good
			tc.mutate(&cp)
			got, err := DecodeCheckpoint(cp)
			if !errors.Is(err, ErrBadCheckpoint) || got != nil {
				t.Fatalf("DecodeCheckpoint = %v, %v; want ErrBadCheckpoint", got, err)
			}
		})
	}
}

// TestCheckpointHolds: a checkpoint holds the state it was encoded from and
// no other; one of another state is refused even when its row names the
// right seq and state hash, and so is every one DecodeCheckpoint refuses.
func TestCheckpointHolds(t *testing.T) {
	t.Parallel()
	s, _ := Replay(randomLog(t, rand.New(rand.NewPCG(5, 5)), 300).evs)
	other, _ := Replay(randomLog(t, rand.New(rand.NewPCG(6, 6)), 300).evs)
	good, err := EncodeCheckpoint(s)
	if err != nil {
		t.Fatal(err)
	}
	if !CheckpointHolds(good, s) {
		t.Fatal("a checkpoint does not hold the state it was encoded from")
	}
	if other.StateHash() == s.StateHash() {
		t.Fatal("want another state")
	}
	forged, err := EncodeCheckpoint(other)
	if err != nil {
		t.Fatal(err)
	}
	var plain bytes.Buffer
	if err := writeCheckpoint(&plain, s); err != nil {
		t.Fatal(err)
	}
	zw, _ := zstd.NewWriter(nil)
	flipped := bytes.Clone(good.Data)
	flipped[len(flipped)/2] ^= 0x40
	tests := []struct {
		name   string
		mutate func(*events.Checkpoint)
	}{
		{"another state named as this one", func(cp *events.Checkpoint) { cp.Data = forged.Data }},
		{"data after the end", func(cp *events.Checkpoint) { cp.Data = zw.EncodeAll(append(plain.Bytes(), 0), nil) }},
		{"data cut before the end", func(cp *events.Checkpoint) { cp.Data = zw.EncodeAll(plain.Bytes()[:plain.Len()-1], nil) }},
		{"other version", func(cp *events.Checkpoint) { cp.ApplyVersion = "0123456789abcdef" }},
		{"flipped byte", func(cp *events.Checkpoint) { cp.Data = flipped }},
		{"truncated", func(cp *events.Checkpoint) { cp.Data = cp.Data[:len(cp.Data)-9] }},
		{"empty", func(cp *events.Checkpoint) { cp.Data = nil }},
		{"wrong hash", func(cp *events.Checkpoint) { cp.StateHash = Empty().StateHash() }},
		{"wrong seq", func(cp *events.Checkpoint) { cp.Seq++ }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cp := good
			tc.mutate(&cp)
			if CheckpointHolds(cp, s) {
				t.Fatal("CheckpointHolds = true")
			}
		})
	}
}

func TestApplyVersionIsStable(t *testing.T) {
	t.Parallel()
	if ApplyVersion != computeApplyVersion() || len(ApplyVersion) != 16 {
		t.Fatalf("ApplyVersion %q is not a stable 16-digit hash", ApplyVersion)
	}
}
