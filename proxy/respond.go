package proxy

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/tenantgate/gateway/events"
)

// errorBody is the contract's error JSON.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError answers with the contract's error JSON:
// {"error":{"code":...,"message":...}} and Content-Type application/json.
func WriteError(c *fiber.Ctx, status int, code, message string) error {
	return writeError(c.Context(), status, code, message)
}

func writeError(c *fasthttp.RequestCtx, status int, code, message string) error {
	b, err := json.Marshal(errorBody{Error: errorDetail{Code: code, Message: message}})
	if err != nil {
		return err
	}
	c.Response.SetStatusCode(status)
	c.Response.Header.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Response.SetBodyRaw(b)
	return nil
}

// FiberConfig is what the main listener's fiber.App needs: the request body
// streamed (never buffered whole), the header limit as the read buffer, the
// slowloris timeouts, the connection cap, and an error handler that renders
// the contract's JSON (431 for oversized headers, 413, 408, 400 ...).
func (p *Proxy) FiberConfig() fiber.Config {
	return fiber.Config{
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		// With streaming, BodyLimit only caps what is read ahead; the
		// handler enforces MaxBodyBytes itself.
		BodyLimit:                 int(p.cfg.MaxBodyBytes),
		ReadBufferSize:            p.cfg.MaxHeaderBytes + headerSlack,
		ReadTimeout:               p.cfg.ReadTimeout,
		WriteTimeout:              p.cfg.WriteTimeout,
		IdleTimeout:               p.cfg.IdleTimeout,
		Concurrency:               p.cfg.MaxConns,
		DisableStartupMessage:     true,
		DisableDefaultContentType: true,
		ErrorHandler:              ErrorHandler,
	}
}

// ErrorHandler renders errors that reach Fiber (malformed requests, limits,
// unknown routes of other handlers) as the contract's error JSON.
func ErrorHandler(c *fiber.Ctx, err error) error {
	status, code, msg := fiber.StatusInternalServerError, "internal_error", "internal error"
	var fe *fiber.Error
	if errors.As(err, &fe) {
		status, msg = fe.Code, fe.Message
		switch fe.Code {
		case fiber.StatusBadRequest:
			code, msg = "invalid_request", "malformed request"
		case fiber.StatusUnauthorized:
			code = "unauthorized"
		case fiber.StatusNotFound:
			code = "not_found"
		case fiber.StatusMethodNotAllowed:
			code = "method_not_allowed"
		case fiber.StatusRequestTimeout:
			code = "request_timeout"
		case fiber.StatusRequestEntityTooLarge:
			code, msg = "payload_too_large", "request body too large"
		case fiber.StatusRequestHeaderFieldsTooLarge:
			code, msg = "headers_too_large", "request headers too large"
		default:
			code = "error"
		}
	}
	c.Response().Reset()
	return WriteError(c, status, code, msg)
}

// reject answers with the gateway's own error.
func (p *Proxy) reject(c *fasthttp.RequestCtx, x *exchange, status int, code, msg string) {
	c.Response.Reset()
	x.status, x.code = status, code
	_ = writeError(c, status, code, msg)
	p.decorate(c, x)
}

// serveFallback answers with the route's fallback, exactly as configured.
func (p *Proxy) serveFallback(c *fasthttp.RequestCtx, x *exchange, fb *events.Fallback) {
	resp := &c.Response
	resp.Reset()
	x.status, x.code = fb.StatusCode, "fallback"
	resp.SetStatusCode(fb.StatusCode)
	if fb.ContentType != "" {
		resp.Header.SetContentType(fb.ContentType)
	}
	resp.SetBodyString(fb.Body)
	p.decorate(c, x)
}

// decorate adds what every response carries: the request id, and the rate
// limit headers for a tenant with a limit.
func (p *Proxy) decorate(c *fasthttp.RequestCtx, x *exchange) {
	h := &c.Response.Header
	h.SetCanonical(canonXRequestID, x.requestID)
	if !x.limited {
		return
	}
	b := strconv.AppendInt(x.buf[:0], int64(x.limit.Limit), 10)
	h.SetCanonical(canonRateLimitLimit, b)
	b = strconv.AppendInt(b[:0], int64(x.limit.Remaining), 10)
	h.SetCanonical(canonRateLimitRemaining, b)
	b = strconv.AppendInt(b[:0], x.limit.ResetUnix(), 10)
	h.SetCanonical(canonRateLimitReset, b)
	if !x.limit.Allowed {
		b = strconv.AppendInt(b[:0], x.limit.RetryAfterSeconds(), 10)
		h.SetCanonical(canonRetryAfter, b)
	}
	x.buf = b
}

// Header names the request path sets on every request, in fasthttp's
// normalized form, so SetCanonical skips normalizing them per call.
var (
	canonXRequestID         = canonicalName(fiber.HeaderXRequestID)
	canonXForwardedFor      = canonicalName(fiber.HeaderXForwardedFor)
	canonXForwardedProto    = canonicalName(fiber.HeaderXForwardedProto)
	canonXForwardedHost     = canonicalName(fiber.HeaderXForwardedHost)
	canonRateLimitLimit     = canonicalName("X-RateLimit-Limit")
	canonRateLimitRemaining = canonicalName("X-RateLimit-Remaining")
	canonRateLimitReset     = canonicalName("X-RateLimit-Reset")
	canonRetryAfter         = canonicalName(fiber.HeaderRetryAfter)

	schemeHTTP, schemeHTTPS = []byte("http"), []byte("https")
)

// canonicalName is name as fasthttp stores it (and writes it on the wire).
func canonicalName(name string) []byte {
	var h fasthttp.ResponseHeader
	h.Set(name, "x")
	for k := range h.All() {
		if string(k) != fiber.HeaderContentType && string(k) != "Server" {
			return append([]byte(nil), k...)
		}
	}
	return []byte(name)
}
