package admin

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/invopop/validation"
)

// Detail is one field-level problem of a validation error.
type Detail struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error the admin API answers with: an HTTP status and the
// contract's error JSON.
type Error struct {
	Status  int      `json:"-"`
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []Detail `json:"details,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func errInvalidJSON(msg string) *Error {
	return &Error{Status: fiber.StatusBadRequest, Code: "invalid_json", Message: msg}
}

func errValidation(details ...Detail) *Error {
	sortDetails(details)
	return &Error{Status: fiber.StatusBadRequest, Code: "validation_failed", Message: "the request is invalid", Details: details}
}

func errNotFound(what string) *Error {
	return &Error{Status: fiber.StatusNotFound, Code: "not_found", Message: what + " not found"}
}

func errConflict(msg string) *Error {
	return &Error{Status: fiber.StatusConflict, Code: "conflict", Message: msg}
}

func errVersionMismatch(current int64) *Error {
	return &Error{Status: fiber.StatusPreconditionFailed, Code: "version_mismatch",
		Message: "If-Match does not match the current version " + strconv.FormatInt(current, 10)}
}

func errUnavailable() *Error {
	return &Error{Status: fiber.StatusServiceUnavailable, Code: "store_unavailable", Message: "the event store is unavailable; try again"}
}

func errStoreTimeout() *Error {
	return &Error{Status: fiber.StatusGatewayTimeout, Code: "store_timeout", Message: "the event store did not finish in time; it is reachable, try again (a large change may need a longer wait)"}
}

var errUnauthorized = &Error{Status: fiber.StatusUnauthorized, Code: "unauthorized", Message: "missing or invalid admin key"}

var errInternal = &Error{Status: fiber.StatusInternalServerError, Code: "internal_error", Message: "internal error"}

func errTooLarge(limit int) *Error {
	return &Error{Status: fiber.StatusRequestEntityTooLarge, Code: "payload_too_large",
		Message: "request body exceeds " + strconv.Itoa(limit) + " bytes"}
}

// writeError answers with e as the contract's error JSON. It does not rely on
// the app's ErrorHandler, which belongs to whoever built the app.
func writeError(c *fiber.Ctx, e *Error) error {
	c.Status(e.Status)
	return c.JSON(fiber.Map{"error": e})
}

// validationDetails flattens invopop/validation errors into details whose
// field names are JSON paths: "rateLimit.limit", "upstreams[0].url".
func validationDetails(prefix string, err error) []Detail {
	var out []Detail
	var errs validation.Errors
	if !errors.As(err, &errs) {
		return []Detail{{Field: prefix, Message: err.Error()}}
	}
	for key, e := range errs {
		if e == nil {
			continue
		}
		out = append(out, validationDetails(joinPath(prefix, key), e)...)
	}
	return out
}

// joinPath appends a struct field or an index (all digits) to a JSON path.
func joinPath(prefix, key string) string {
	if key != "" && strings.Trim(key, "0123456789") == "" {
		return prefix + "[" + key + "]"
	}
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func sortDetails(d []Detail) {
	sort.SliceStable(d, func(i, j int) bool { return d[i].Field < d[j].Field })
}
