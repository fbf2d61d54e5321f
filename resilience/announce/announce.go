// Package announce keeps the Redis pub/sub subscription through which the
// shared forms of the resilience mechanisms (breakers, health) hear each
// other's state changes. Each instance keeps a local copy that its request
// path reads; announcements keep the copies current, and a reload after each
// (re)subscription repairs what was missed while Redis was away.
package announce

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RetryEvery is the pause before subscribing again after a failure.
const RetryEvery = time.Second

// Listener applies the announcements of one channel until its context ends.
type Listener struct {
	Client  redis.UniversalClient
	Channel string
	// OnSubscribed runs after each (re)subscription, before any message is
	// applied: subscribed first, then read, so nothing announced in between
	// is missed. An error ends that subscription. Optional.
	OnSubscribed func(ctx context.Context) error
	// OnMessage applies one announcement.
	OnMessage func(payload string)
	// OnError is told why a subscription ended while ctx was live. Optional.
	OnError func(err error)

	subscribed atomic.Bool
}

// Subscribed reports whether a subscription is live (and reloaded).
func (l *Listener) Subscribed() bool { return l.subscribed.Load() }

// Run subscribes, and subscribes again RetryEvery after each failure, until
// ctx ends.
func (l *Listener) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := l.listen(ctx)
		l.subscribed.Store(false)
		if ctx.Err() != nil {
			break
		}
		if l.OnError != nil {
			l.OnError(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(RetryEvery):
		}
	}
	return nil
}

func (l *Listener) listen(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("announce %s: panic: %v", l.Channel, p)
		}
	}()
	ps := l.Client.Subscribe(ctx, l.Channel)
	// Receive does not always return when ctx ends (go-redis honours
	// deadlines only with ContextTimeoutEnabled); closing the PubSub does.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		stop()
		_ = ps.Close()
	}()
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				l.subscribed.Store(false)
				continue
			}
			if l.OnSubscribed != nil {
				if err := l.OnSubscribed(ctx); err != nil {
					return err
				}
			}
			l.subscribed.Store(true)
		case *redis.Message:
			l.OnMessage(m.Payload)
		}
	}
}
