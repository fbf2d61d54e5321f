// Command gateway runs the multi-tenant API gateway.
//
//	gateway [serve]                 run the gateway (default)
//	gateway migrate                 apply the event store's migrations and exit
//	gateway replay [--until-seq N]  rebuild the state from the store, print it as /admin/state's JSON
//	gateway replay --verify         compare every checkpoint with a replay from zero
//	gateway export [--at SEQ] [-o yaml|json]   write the declarative config (tenants without keys, routes)
//	gateway apply -f FILE [--dry-run]          append one event per difference between FILE and the store
//
// Configuration comes from the environment; see the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: gateway [serve | migrate | replay [--until-seq N | --verify] | export [--at SEQ] [-o yaml|json] | apply -f FILE [--dry-run] | keys create|list|revoke]
configuration is read from the environment (see README.md)`

// errUsage marks errors caused by the command line rather than by running.
var errUsage = errors.New("usage")

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "help" || (len(args) > 0 && (args[0] == "-h" || args[0] == "--help")) {
		fmt.Fprintln(stdout, usage)
		return 0
	}
	cfg, err := loadConfig(getenv, cmd == "serve")
	if err != nil {
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 2
	}
	logOut := newLogWriter(stderr)
	log := newLogger(cfg, logOut)
	switch cmd {
	case "serve":
		err = serve(ctx, cfg, log, accessLogWriter(cfg, logOut), stdout)
	case "migrate":
		err = migrateCommand(ctx, cfg, log)
	case "replay":
		err = replayCommand(ctx, cfg, args, stdout)
	case "export":
		err = exportCommand(ctx, cfg, args, stdout)
	case "apply":
		err = applyCommand(ctx, cfg, args, stdout)
	case "keys":
		err = keysCommand(ctx, cfg, args, stdout)
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	_ = logOut.Close() // the logs come out before the final error line
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "gateway: %v\n%s\n", err, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "gateway: %v\n", err)
		return 1
	}
}

// accessLogWriter is where the proxy writes its access log directly: the
// batched log output when the logs are JSON at info level or below (the
// proxy's encoder writes the same JSON as slog's, much cheaper), else nil
// so the lines go through the logger.
func accessLogWriter(cfg Config, w io.Writer) io.Writer {
	if cfg.LogFormat != "json" || cfg.LogLevel > slog.LevelInfo {
		return nil
	}
	return w
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("instance", cfg.InstanceID)
}
