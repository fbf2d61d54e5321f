package proxy

import (
	"encoding/json"
	"errors"
	"net"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// failure maps a transport error to the contract's error.
func (p *Proxy) failure(x *exchange, err error) outcome {
	var ne net.Error
	switch {
	case x.body.stream.exceeded:
		return outcome{status: fiber.StatusRequestEntityTooLarge, code: "payload_too_large", message: "request body too large"}
	case x.body.stream.readErr != nil:
		return outcome{status: fiber.StatusBadRequest, code: "invalid_request", message: "malformed or incomplete request body"}
	case certRejected(err):
		x.untrusted = x.untrusted.With(x.upstream)
		p.metrics.upstreamError(x, "tls")
		return outcome{status: fiber.StatusBadGateway, code: "upstream_unavailable", message: "the upstream's certificate did not verify"}
	case errors.Is(err, fasthttp.ErrDialTimeout):
		p.metrics.upstreamError(x, "connect")
		return outcome{status: fiber.StatusBadGateway, code: "upstream_unavailable", message: "could not connect to the upstream"}
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &ne) && ne.Timeout():
		p.metrics.upstreamError(x, "timeout")
		return outcome{status: fiber.StatusGatewayTimeout, code: "upstream_timeout", message: "the upstream did not answer in time"}
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		p.metrics.upstreamError(x, "no_free_connection")
		return outcome{status: fiber.StatusBadGateway, code: "upstream_unavailable", message: "every connection to the upstream is in use (UPSTREAM_MAX_CONNS)"}
	default:
		p.metrics.upstreamError(x, "connect")
		return outcome{status: fiber.StatusBadGateway, code: "upstream_unavailable", message: "the upstream is unavailable"}
	}
}

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
