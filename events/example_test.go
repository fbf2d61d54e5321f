package events_test

import (
	"context"
	"fmt"

	"github.com/tenantgate/gateway/events"
)

// A subscriber gets every event after its offset, in order, whatever the
// publishing order; publishing a seq twice is harmless.
func ExampleMemoryBus() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bus := events.NewMemoryBus()
	defer bus.Close()

	_ = bus.Publish(ctx, events.Envelope{Seq: 1}, events.Envelope{Seq: 2})
	sub, _ := bus.Subscribe(ctx, 1) // already has seq 1, e.g. from the store
	_ = bus.Publish(ctx, events.Envelope{Seq: 2}, events.Envelope{Seq: 3})

	for range 2 {
		d := <-sub
		fmt.Println(d.Event.Seq, d.Resync)
	}
	last, _ := bus.LastSeq(ctx)
	fmt.Println("last", last)
	// Output:
	// 2 false
	// 3 false
	// last 3
}
