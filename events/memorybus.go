package events

import (
	"context"
	"errors"
	"sort"
	"sync"
)

// memoryRetain is how many events a MemoryBus keeps for subscribers that start
// behind; one further behind gets a Resync and catches up from the store.
const memoryRetain = 10000

// ErrBusClosed is returned by a closed bus.
var ErrBusClosed = errors.New("events: bus closed")

// MemoryBus is the in-process Bus of the embedded deployment: publishing
// appends to a bounded history, each subscriber reads it in order.
type MemoryBus struct {
	mu     sync.Mutex
	events []Envelope    // seq ascending, the newest memoryRetain or so
	last   int64         // highest published seq
	wake   chan struct{} // closed and replaced on every publish
	done   chan struct{} // closed by Close
	closed bool
}

var _ Bus = (*MemoryBus)(nil)

// NewMemoryBus returns an empty in-process bus.
func NewMemoryBus() *MemoryBus {
	return &MemoryBus{wake: make(chan struct{}), done: make(chan struct{})}
}

// Kind returns "memory".
func (b *MemoryBus) Kind() string { return "memory" }

// Publish appends the events whose seq is beyond the last published one;
// the others were published already and are skipped.
func (b *MemoryBus) Publish(_ context.Context, evs ...Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.publishLocked(evs)
}

// PublishAfter publishes the events, which follow seq after, only if the
// last published seq is still after; it reports false otherwise.
func (b *MemoryBus) PublishAfter(_ context.Context, after int64, evs ...Envelope) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last != after {
		return false, nil
	}
	return true, b.publishLocked(evs)
}

func (b *MemoryBus) publishLocked(evs []Envelope) error {
	if b.closed {
		return ErrBusClosed
	}
	added := false
	for _, ev := range evs {
		if ev.Seq <= b.last {
			continue
		}
		b.events = append(b.events, ev)
		b.last = ev.Seq
		added = true
	}
	if !added {
		return nil
	}
	if n := len(b.events); n > 2*memoryRetain {
		// Copy rather than reslice so the dropped events can be collected.
		b.events = append([]Envelope(nil), b.events[n-memoryRetain:]...)
	}
	close(b.wake)
	b.wake = make(chan struct{})
	return nil
}

// Keeps is how many of the newest events the bus keeps for subscribers
// that start behind.
func (b *MemoryBus) Keeps() int64 { return memoryRetain }

// LastSeq returns the highest published seq.
func (b *MemoryBus) LastSeq(context.Context) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last, nil
}

// DropAfter removes the events after seq; the next publish may be seq+1.
func (b *MemoryBus) DropAfter(_ context.Context, seq int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last <= seq {
		return 0, nil
	}
	i := sort.Search(len(b.events), func(i int) bool { return b.events[i].Seq > seq })
	n := len(b.events) - i
	b.events = b.events[:i]
	b.last = seq
	return n, nil
}

// Subscribe delivers the events published after seq `after`, in order, until
// ctx ends or the bus is closed. A subscriber further behind than the
// retained history first gets a Resync.
func (b *MemoryBus) Subscribe(ctx context.Context, after int64) (<-chan Delivery, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, ErrBusClosed
	}
	ch := make(chan Delivery, 64)
	go func() {
		defer close(ch)
		send := func(d Delivery) bool {
			select {
			case ch <- d:
				return true
			case <-ctx.Done():
				return false
			case <-b.done:
				return false
			}
		}
		last := after
		for {
			batch, wake := b.since(last)
			for _, ev := range batch {
				if ev.Seq != last+1 && !send(Delivery{Resync: true}) {
					return
				}
				if !send(Delivery{Event: ev}) {
					return
				}
				last = ev.Seq
			}
			if len(batch) > 0 {
				continue // there may be more than one batch's worth
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			case <-b.done:
				return
			}
		}
	}()
	return ch, nil
}

// since returns up to 256 events after seq, and the channel closed on the
// next publish.
func (b *MemoryBus) since(seq int64) ([]Envelope, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sort.Search(len(b.events), func(i int) bool { return b.events[i].Seq > seq })
	j := min(len(b.events), i+256)
	return append([]Envelope(nil), b.events[i:j]...), b.wake
}

// Close ends every subscription; Publish then fails.
func (b *MemoryBus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
	return nil
}
