package main

// gateway keys manages named admin keys on the store directly, like apply:
//
//	gateway keys create --name NAME --role viewer|operator|admin [--tenant ID]... [--actor NAME]
//	gateway keys list
//	gateway keys revoke ID [--actor NAME]
//
// create prints the key object with "key", shown this once (only its digest
// is stored). Running gateways pick the events up at their next head check.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/projections"
)

type tenantList []string

func (l *tenantList) String() string     { return strings.Join(*l, ",") }
func (l *tenantList) Set(v string) error { *l = append(*l, v); return nil }

func keysCommand(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: keys create|list|revoke", errUsage)
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", "", "the key's name (unique among live keys)")
	role := fs.String("role", "", "viewer, operator or admin")
	actor := fs.String("actor", "cli", "recorded as the actor of the event")
	var tenants tenantList
	fs.Var(&tenants, "tenant", "a tenant id the key is limited to (repeat for several; none: every tenant)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: keys %s: %v", errUsage, args[0], err)
	}
	if *actor == "" || utf8.RuneCountInString(*actor) > 200 {
		return fmt.Errorf("%w: --actor must be 1 to 200 characters", errUsage)
	}
	store, err := openMigratedStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	snap, err := declarative.Replay(ctx, store, -1)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	switch args[0] {
	case "list":
		return enc.Encode(map[string]any{"items": snap.AdminKeys()})
	case "create":
		ev, plain, err := newKeyEvent(snap, *name, events.AdminRole(*role), tenants, *actor)
		if err != nil {
			return fmt.Errorf("%w: keys create: %v", errUsage, err)
		}
		if _, err := store.Append(ctx, events.AppendRequest{ExpectedHead: snap.Seq(), Events: []events.Envelope{ev}}); err != nil {
			return err
		}
		after, err := declarative.Replay(ctx, store, -1)
		if err != nil {
			return err
		}
		k, _ := after.AdminKey(ev.AggregateID)
		return enc.Encode(struct {
			*projections.AdminKey
			Key string `json:"key"`
		}{k, plain})
	case "revoke":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: keys revoke ID", errUsage)
		}
		k, live := snap.AdminKey(fs.Arg(0))
		if !live {
			return fmt.Errorf("no live admin key %s", fs.Arg(0))
		}
		ev := keyEvent(events.AdminKeyRevoked, k.ID, k.Version+1, *actor, events.AdminKeyRevokedData{})
		_, err := store.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: []events.Envelope{ev}})
		return err
	}
	return fmt.Errorf("%w: keys create|list|revoke", errUsage)
}

// newKeyEvent validates a key as POST /admin/keys does and builds its event.
func newKeyEvent(snap *projections.Snapshot, name string, role events.AdminRole, tenants []string, actor string) (events.Envelope, string, error) {
	if strings.TrimSpace(name) == "" || utf8.RuneCountInString(name) > 100 {
		return events.Envelope{}, "", errors.New("--name must be 1 to 100 characters")
	}
	if _, taken := snap.AdminKeyByName(name); taken {
		return events.Envelope{}, "", fmt.Errorf("an admin key named %s already exists", name)
	}
	if role != events.RoleViewer && role != events.RoleOperator && role != events.RoleAdmin {
		return events.Envelope{}, "", errors.New("--role must be viewer, operator or admin")
	}
	var ids []string
	for _, t := range tenants {
		u, err := uuid.Parse(t)
		if _, live := snap.Tenant(u.String()); err != nil || !live {
			return events.Envelope{}, "", fmt.Errorf("--tenant %s is not a live tenant", t)
		}
		ids = append(ids, u.String())
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	plain, hash, prefix := projections.NewAdminKey()
	ev := keyEvent(events.AdminKeyCreated, uuid.Must(uuid.NewV7()).String(), 1, actor,
		events.AdminKeyCreatedData{Name: name, Role: role, TenantIDs: ids, KeyHash: hash, KeyPrefix: prefix})
	return ev, plain, nil
}

func keyEvent(t events.Type, id string, version int64, actor string, data any) events.Envelope {
	raw, _ := json.Marshal(data)
	return events.Envelope{
		ID: uuid.Must(uuid.NewV7()).String(), Type: t, AggregateType: events.AggregateAdminKey, AggregateID: id,
		AggregateVersion: version, Actor: actor, OccurredAt: time.Now().UTC(), Data: raw,
	}
}
