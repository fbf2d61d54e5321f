package events_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantgate/gateway/events"
)

var benchStores = []struct {
	name string
	open func(testing.TB) *events.SQLStore
}{
	{"postgres", openPostgres},
	{"sqlite", openSQLite},
}

// benchData is a route's typical size.
var benchData = json.RawMessage(`{"tenantId":"7f1c0b8e-0d5e-4c1e-9a57-1d3f1f0e2b11","method":"GET","path":"/api/v1/orders","pathType":"prefix","upstreams":[{"url":"http://orders-1:8080","weight":1},{"url":"http://orders-2:8080","weight":1}],"loadBalancing":"round-robin","resilience":{"timeout":{"enabled":true,"default":2000}}}`)

func benchBatch(agg string, from int64, n int) []events.Envelope {
	evs := make([]events.Envelope, n)
	for i := range evs {
		evs[i] = events.Envelope{
			ID: uuid.NewString(), Type: events.RouteUpdated, AggregateType: events.AggregateRoute,
			AggregateID: agg, AggregateVersion: from + int64(i), TenantID: "t", Actor: "bench",
			OccurredAt: time.Now(), Data: benchData,
		}
	}
	return evs
}

// BenchmarkAppend measures committed events per second, one event per
// append and ten per append.
func BenchmarkAppend(b *testing.B) {
	for _, st := range benchStores {
		for _, batch := range []int{1, 10} {
			name := st.name + "/single"
			if batch > 1 {
				name = st.name + "/batch10"
			}
			b.Run(name, func(b *testing.B) {
				s := st.open(b)
				defer s.Close()
				ctx := context.Background()
				agg := uuid.NewString()
				version := int64(1)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := s.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: benchBatch(agg, version, batch)}); err != nil {
						b.Fatal(err)
					}
					version += int64(batch)
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkRead measures events read back per second, in pages of 1000 as a
// projector catching up reads them.
func BenchmarkRead(b *testing.B) {
	const total, page = 10000, 1000
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			defer s.Close()
			ctx := context.Background()
			agg := uuid.NewString()
			for v := int64(1); v <= total; v += 500 {
				if _, err := s.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: benchBatch(agg, v, 500)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			var after int64
			for b.Loop() {
				evs, err := s.Read(ctx, events.Query{After: after, Limit: page})
				if err != nil {
					b.Fatal(err)
				}
				if len(evs) != page {
					b.Fatalf("read %d events, want %d", len(evs), page)
				}
				after = (after + page) % total
			}
			b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
