// Package ui is the admin console: plain JavaScript modules and CSS,
// embedded in the binary and served under /admin/ui/ with no build step.
//
// The files hold no data, so they are served without a key; everything the
// console shows comes from the admin API, which the page calls with fetch
// and the X-Admin-Key header. The key lives in the tab's sessionStorage
// only. A custom header cannot be sent cross-site without a CORS preflight,
// which the gateway never grants, so the API needs no cookie and no CSRF
// token. Every answer carries a strict Content-Security-Policy: scripts and
// styles only from the console's own files, nothing inline, no frames.
package ui

import (
	"embed"
	"io/fs"
	"mime"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Prefix is where the console is served.
const Prefix = "/admin/ui/"

// CSP is the Content-Security-Policy of every console answer.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

//go:embed static
var static embed.FS

var files = mustSub(static, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// Mount serves the console at /admin/ui/ (and redirects /admin/ui there).
// Register it before any catch-all under /admin.
func Mount(r fiber.Router) {
	r.Get(strings.TrimSuffix(Prefix, "/"), serve) // without strict routing, this is /admin/ui/ too
	r.Get(Prefix+"*", serve)
}

// secure sets the headers every console answer carries.
func secure(c *fiber.Ctx) {
	c.Set("Content-Security-Policy", CSP)
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("Referrer-Policy", "no-referrer")
	c.Set("X-Frame-Options", "DENY")
	// The files change with the binary: revalidate instead of caching
	// a console that no longer matches the API.
	c.Set(fiber.HeaderCacheControl, "no-cache")
}

func serve(c *fiber.Ctx) error {
	secure(c)
	if c.Path() == strings.TrimSuffix(Prefix, "/") {
		// Relative module paths need the slash.
		return c.Redirect(Prefix, fiber.StatusMovedPermanently)
	}
	name := c.Params("*")
	if name == "" {
		name = "index.html"
	}
	name = path.Clean(name)
	body, err := fs.ReadFile(files, name)
	if err != nil || strings.HasPrefix(name, "..") {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": fiber.Map{
			"code": "not_found", "message": "no console file " + Prefix + name,
		}})
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = fiber.MIMEOctetStream
	}
	c.Set(fiber.HeaderContentType, ctype)
	return c.Send(body)
}
