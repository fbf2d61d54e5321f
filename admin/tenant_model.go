package admin

import (
	"github.com/tenantgate/gateway/events"
)

// tenantBody is the create body of a tenant, and what a PATCH merge patch is
// applied to. Pointers tell an absent field from a zero one.
type tenantBody struct {
	Name      *string        `json:"name"`
	Status    *string        `json:"status"`
	RateLimit *rateLimitBody `json:"rateLimit"`
}

type rateLimitBody struct {
	Limit    *int64 `json:"limit"`
	WindowMs *int64 `json:"windowMs"`
}

// Tenant rules:
//
//	name       required, not blank, 1..100 characters, unique among live tenants (409)
//	status     active | suspended, default active
//	rateLimit  optional, null means unlimited; limit 1..1,000,000; windowMs 100..86,400,000
func (b tenantBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.Name, required, notBlank, maxChars(100)),
		fieldRule(&b.Status, oneOf(string(events.TenantActive), string(events.TenantSuspended))),
		fieldRule(&b.RateLimit),
	)
}

func (b rateLimitBody) Validate() error {
	return validateStruct(&b,
		fieldRule(&b.Limit, required, between(1, 1_000_000)),
		fieldRule(&b.WindowMs, required, between(100, 86_400_000)),
	)
}

// tenantFields is a validated tenant body with defaults filled.
type tenantFields struct {
	Name      string              `json:"name"`
	Status    events.TenantStatus `json:"status"`
	RateLimit *events.RateLimit   `json:"rateLimit"`
}

func (b tenantBody) normalize() tenantFields {
	f := tenantFields{Status: events.TenantActive}
	if b.Name != nil {
		f.Name = *b.Name
	}
	if b.Status != nil {
		f.Status = events.TenantStatus(*b.Status)
	}
	if b.RateLimit != nil && b.RateLimit.Limit != nil && b.RateLimit.WindowMs != nil {
		f.RateLimit = &events.RateLimit{Limit: int(*b.RateLimit.Limit), WindowMs: *b.RateLimit.WindowMs}
	}
	return f
}

// decodeTenant turns a parsed JSON value into validated tenant fields.
func decodeTenant(v any) (tenantFields, *Error) {
	var b tenantBody
	if err := bind(v, &b); err != nil {
		return tenantFields{}, err
	}
	if err := b.Validate(); err != nil {
		return tenantFields{}, errValidation(validationDetails("", err)...)
	}
	return b.normalize(), nil
}
