package admin

import (
	"bufio"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/projections"
)

// fail answers with the contract's error JSON.
func fail(c *fiber.Ctx, e *Error) error { return writeError(c, e) }

// ok answers with a resource and its version as ETag.
func ok(c *fiber.Ctx, status int, version int64, body any) error {
	c.Set(fiber.HeaderETag, `"`+strconv.FormatInt(version, 10)+`"`)
	return c.Status(status).JSON(body)
}

// sendResult answers 200 with the result of an apply or a rollback as
// go-json's Marshal writes it, a change at a time as the client reads it:
// marshaled whole, 100,000 changes were 70 MiB held at once, and copied
// again into the response.
func (a *API) sendResult(c *fiber.Ctx, res declarative.Result) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer func() {
			if v := recover(); v != nil {
				a.log.Error("admin: panic while streaming a result", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
		}()
		if err := declarative.WriteResultCompact(w, res); err != nil {
			a.log.Debug("admin: result stream ended early", "err", err)
		}
	})
	return nil
}

// param is a path parameter, copied: Fiber reuses its buffers.
func param(c *fiber.Ctx, name string) string { return strings.Clone(c.Params(name)) }

// tenantWithKey is the answer of create and rotate, the only two that show
// the key.
type tenantWithKey struct {
	*projections.Tenant
	APIKey string `json:"apiKey"`
}

// apiKey is a freshly issued key and what may be stored of it.
type apiKey struct {
	plain  string // returned once, never stored or logged
	hash   string // hex of projections.KeyHash
	prefix string // "gw_" and 4 characters, to recognise a key
}

// String, GoString and LogValue keep the key out of fmt and slog output,
// should an apiKey ever be logged by mistake.
func (k apiKey) String() string { return k.prefix + "…" }

func (k apiKey) GoString() string { return k.String() }

func (k apiKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// newAPIKey issues a key (projections.NewAPIKey) that logs and prints redacted.
func newAPIKey() apiKey {
	plain, hash, prefix := projections.NewAPIKey()
	return apiKey{plain: plain, hash: hash, prefix: prefix}
}
