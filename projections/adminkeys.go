package projections

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tenantgate/gateway/events"
)

// AdminKey is a live named admin key. Its JSON is the contract's key object:
// the digest is never part of it. TenantIDs nil: every tenant.
type AdminKey struct {
	ID        string           `json:"id"`
	Name      string           `json:"name"`
	Role      events.AdminRole `json:"role"`
	TenantIDs []string         `json:"tenantIds,omitempty"`
	KeyPrefix string           `json:"keyPrefix"`
	Version   int64            `json:"version"`
	CreatedAt time.Time        `json:"createdAt"`
	UpdatedAt time.Time        `json:"updatedAt"`

	KeyHash [32]byte `json:"-"`
}

// NewAdminKey issues a named admin key: "gwa_" and 256 random bits,
// base64url, with the hex of its digest and its first 8 characters.
func NewAdminKey() (plain, hashHex, prefix string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	plain = "gwa_" + base64.RawURLEncoding.EncodeToString(b[:])
	sum := KeyHash([]byte(plain))
	return plain, hex.EncodeToString(sum[:]), plain[:8]
}

type adminKeyEntry struct {
	k *AdminKey
	digests
}

// AdminKeyByHash finds the live admin key with this digest.
func (s *Snapshot) AdminKeyByHash(keyHash [32]byte) (*AdminKey, bool) {
	return s.keysByHash.get(keyHash)
}

// AdminKey returns a live admin key by id.
func (s *Snapshot) AdminKey(id string) (*AdminKey, bool) {
	e, ok := s.keys.get(id)
	return e.k, ok
}

// AdminKeyByName returns the live admin key with this name.
func (s *Snapshot) AdminKeyByName(name string) (*AdminKey, bool) {
	return s.keysByName.get(name)
}

// AdminKeys returns every live admin key ordered by id.
func (s *Snapshot) AdminKeys() []*AdminKey {
	out := make([]*AdminKey, 0, s.keys.len())
	s.keys.all(func(_ string, e adminKeyEntry) bool {
		out = append(out, e.k)
		return true
	})
	slices.SortFunc(out, func(a, b *AdminKey) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// adminKeyCreated refuses (skips) a key whose name or digest a live key
// already has, so the name and digest indexes are functions of the keys
// alone and a checkpoint can rebuild them.
func (b *edit) adminKeyCreated(ev events.Envelope) error {
	if ev.AggregateID == "" {
		return errors.New("no aggregate id")
	}
	if _, ok := b.s.keys.get(ev.AggregateID); ok {
		return fmt.Errorf("admin key %q already exists", ev.AggregateID)
	}
	d, err := decodeData[events.AdminKeyCreatedData](b, ev)
	if err != nil {
		return err
	}
	switch d.Role {
	case events.RoleViewer, events.RoleOperator, events.RoleAdmin:
	default:
		return fmt.Errorf("unknown role %q", d.Role)
	}
	if d.Name == "" {
		return errors.New("admin key without a name")
	}
	kh, err := decodeKeyHash(d.KeyHash)
	if err != nil {
		return err
	}
	if _, taken := b.s.keysByName.get(d.Name); taken {
		return fmt.Errorf("admin key name %q is taken", d.Name)
	}
	if _, taken := b.s.keysByHash.get(kh); taken {
		return errors.New("admin key digest is taken")
	}
	at := eventTime(ev)
	b.addAdminKey(&AdminKey{
		ID: ev.AggregateID, Name: d.Name, Role: d.Role, TenantIDs: d.TenantIDs, KeyPrefix: d.KeyPrefix,
		Version: ev.AggregateVersion, CreatedAt: at, UpdatedAt: at, KeyHash: kh,
	})
	return nil
}

func (b *edit) adminKeyRevoked(ev events.Envelope) error {
	e, ok := b.s.keys.get(ev.AggregateID)
	if !ok {
		return fmt.Errorf("admin key %q does not exist", ev.AggregateID)
	}
	s, tok := b.s, b.tok
	e.addTo(&s.sum, &s.configSum)
	s.keys = s.keys.delete(tok, e.k.ID)
	s.keysByHash = s.keysByHash.delete(tok, e.k.KeyHash)
	s.keysByName = s.keysByName.delete(tok, e.k.Name)
	return nil
}

func (b *edit) addAdminKey(k *AdminKey) {
	s, tok := b.s, b.tok
	e := adminKeyEntry{k: k, digests: adminKeyDigests(k)}
	e.addTo(&s.sum, &s.configSum)
	s.keys = s.keys.set(tok, k.ID, e)
	s.keysByHash = s.keysByHash.set(tok, k.KeyHash, k)
	s.keysByName = s.keysByName.set(tok, k.Name, k)
}

// adminKeyDigests: keys are part of the state hash, not of the config hash
// (the declarative document holds no keys), so the config digest is zero.
func adminKeyDigests(k *AdminKey) digests {
	s := getScratch()
	defer putScratch(s)
	s.enc.adminKey(k)
	return digests{state: sha256Sum(s.enc.b)}
}

func (e *encoder) adminKey(k *AdminKey) {
	e.str("adminKey")
	e.str(k.ID)
	e.str(k.Name)
	e.str(string(k.Role))
	e.length(len(k.TenantIDs), k.TenantIDs == nil)
	for _, id := range k.TenantIDs {
		e.str(id)
	}
	e.str(k.KeyPrefix)
	e.int(k.Version)
	e.time(k.CreatedAt)
	e.time(k.UpdatedAt)
	e.b = append(e.b, k.KeyHash[:]...)
}

func (d *decoder) adminKey() *AdminKey {
	d.tag("adminKey")
	k := &AdminKey{ID: d.str(), Name: d.str(), Role: events.AdminRole(d.str())}
	if n, isNil := d.length(8, true); !isNil {
		k.TenantIDs = make([]string, n)
		for i := range k.TenantIDs {
			k.TenantIDs[i] = d.str()
		}
	}
	k.KeyPrefix = d.str()
	k.Version = d.int()
	k.CreatedAt = d.time()
	k.UpdatedAt = d.time()
	copy(k.KeyHash[:], d.bytes(int64(len(k.KeyHash))))
	return k
}

// adminKeySection is the checkpoint's section of admin keys; the name and
// digest indexes are rebuilt from them (Apply keeps both unique).
var adminKeySection = section{
	name:  "adminKeys",
	count: func(s *Snapshot) int { return s.keys.len() },
	each: func(s *Snapshot, rec func(func(*encoder)) error) error {
		for _, k := range s.AdminKeys() {
			if err := rec(func(e *encoder) { e.adminKey(k) }); err != nil {
				return err
			}
		}
		return nil
	},
	decode: func(d *decoder) (decoded, error) {
		k := d.adminKey()
		if d.err != nil {
			return decoded{}, d.err
		}
		return decoded{adminKey: k}, nil
	},
	put: func(b *edit, v decoded) error {
		k := v.adminKey
		if _, dup := b.s.keys.get(k.ID); dup {
			return fmt.Errorf("admin key %q twice", k.ID)
		}
		if _, dup := b.s.keysByName.get(k.Name); dup {
			return fmt.Errorf("admin key name %q twice", k.Name)
		}
		b.addAdminKey(k)
		return nil
	},
}
