// Command fiberproxy is a bare Fiber reverse proxy, the way Fiber's own
// proxy middleware is usually mounted: every request forwarded with
// proxy.Do, nothing else. It is the reference the gateway is load-tested
// beside (with nginx); bareproxy, without Fiber, is the ceiling.
package main

import (
	"flag"
	"log"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/proxy"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18086", "listen address")
	upstream := flag.String("upstream", "http://127.0.0.1:18081", "upstream URL")
	flag.Parse()
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(func(c *fiber.Ctx) error {
		return proxy.Do(c, *upstream+c.OriginalURL())
	})
	log.Fatal(app.Listen(*addr))
}
