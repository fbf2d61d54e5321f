// Command bareproxy is the ceiling of this stack: a fasthttp server that
// hands every request to one fasthttp.HostClient, with no auth, routing or
// header work. The gateway is measured against it.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18082", "listen address")
	upstream := flag.String("upstream", "127.0.0.1:18081", "upstream host:port")
	flag.Parse()
	hc := &fasthttp.HostClient{Addr: *upstream, MaxConns: 1024}
	h := func(ctx *fasthttp.RequestCtx) {
		ctx.Request.Header.Del("Connection")
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("upstream error", fasthttp.StatusBadGateway)
		}
	}
	log.Fatal((&fasthttp.Server{Handler: h, NoDefaultServerHeader: true}).ListenAndServe(*addr))
}
