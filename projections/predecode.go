package projections

import (
	"reflect"

	"github.com/tenantgate/gateway/events"
)

// Decoding event data is a third of a replay's time and needs nothing of
// the state, so a replay decodes the next page's data on the goroutine that
// reads it, while this one applies the page before (Apply itself stays
// single-threaded, as it must). The results are exactly decode's: the value,
// or the error it returns.

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

// decode is the package's decode, taking ev's data from b.pre when it was
// decoded beforehand into a value of v's type.
func (b *edit) decode(ev events.Envelope, v any) error {
	if b.pre != nil {
		if i := ev.Seq - b.pre.first; i >= 0 && i < int64(len(b.pre.data)) {
			if d := b.pre.data[i]; d.v != nil {
				dst, src := reflect.ValueOf(v), reflect.ValueOf(d.v)
				if dst.Type() == src.Type() {
					if d.err == nil {
						dst.Elem().Set(src.Elem())
					}
					return d.err
				}
			}
		}
	}
	return decode(ev, v)
}
