package projections

import (
	"github.com/tenantgate/gateway/events"
)

// Decoding event data is a third of a replay's time and needs nothing of
// the state, so a replay (ReplayStore) and a projector's catch-up decode the
// next page's data on the goroutine that reads it, while the page before is
// applied (Apply itself stays single-threaded, as it must). The results are
// exactly decode's: the value, or the error it returns; Apply takes the
// value itself, not a copy.

// decodedPage is the decoded data of consecutive events from seq first on.
type decodedPage struct {
	first int64
	data  []decodedData
}

type decodedData struct {
	v   any // a pointer to the event type's data, nil when undecoded
	err error
}

// dataOf returns a new value of the data type Apply decodes events of type
// t into, nil for the types whose data it does not read.
func dataOf(t events.Type) any {
	switch t {
	case events.TenantCreated:
		return new(events.TenantCreatedData)
	case events.TenantUpdated:
		return new(events.TenantUpdatedData)
	case events.TenantAPIKeyRotated:
		return new(events.TenantAPIKeyRotatedData)
	case events.RouteCreated:
		return new(events.RouteSpec)
	case events.RouteUpdated:
		return new(events.RouteUpdatedData)
	case events.AdminKeyCreated:
		return new(events.AdminKeyCreatedData)
	}
	return nil
}

// predecode decodes the data of evs, consecutive events.
func predecode(evs []events.Envelope) *decodedPage {
	if len(evs) == 0 {
		return nil
	}
	p := &decodedPage{first: evs[0].Seq, data: make([]decodedData, len(evs))}
	for i, ev := range evs {
		if ev.Seq != p.first+int64(i) {
			return nil // not consecutive: decode each as it is applied
		}
		if v := dataOf(ev.Type); v != nil {
			p.data[i] = decodedData{v: v, err: decode(ev, v)}
		}
	}
	return p
}

// decodeData returns ev's data as a T: the value decoded beforehand, when
// b.pre has it (the caller owns it: each event is applied once), or one
// decoded now.
func decodeData[T any](b *edit, ev events.Envelope) (*T, error) {
	if b.pre != nil {
		if i := ev.Seq - b.pre.first; i >= 0 && i < int64(len(b.pre.data)) {
			if d := b.pre.data[i]; d.v != nil {
				if v, ok := d.v.(*T); ok {
					if d.err != nil {
						return nil, d.err
					}
					return v, nil
				}
			}
		}
	}
	v := new(T)
	if err := decode(ev, v); err != nil {
		return nil, err
	}
	return v, nil
}
