package admin

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

// openAPIDocument is the OpenAPI 3.1 description of this admin API,
// hand-written; openapi_test.go keeps it true to the router and checks each
// example against its schema.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3.1 document of the admin API (a copy).
func OpenAPI() []byte { return append([]byte(nil), openAPIDocument...) }

// openAPI handles GET /admin/openapi.json.
func (a *API) openAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(openAPIDocument)
}
