// Command scale measures the gateway with a large event log: it generates T
// tenants, R routes and E events in total (the rest are route and tenant
// updates) into a fresh store, then runs the real binary on it and measures:
//
//   - start to /ready: from zero (no checkpoint: the replay speed), then a
//     restart from the checkpoints, and (PostgreSQL) a second instance joining
//   - RSS once ready, against an empty gateway's, per route
//   - GET /admin/status, GET /admin/state?at=N at several N, GET /admin/diff
//   - gateway replay --verify (a replay from zero, events/s)
//   - gateway apply -f of an R-route document (YAML) into a fresh store, and
//     POST /admin/apply of the same document (JSON): time and peak RSS
//
// It prints a Markdown table. Run it with nice, one at a time:
//
//	go run ./scripts/scale -store sqlite -events 300000
//	go run ./scripts/scale -store postgres -events 1000000 -dsn postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
//
// (or: go tool -modfile=scripts/tools.mod task scale -- -store sqlite). It is
// not a test: the unit-size versions of these checks are in the packages'
// tests; this is too heavy for go test ./....
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/tenantgate/gateway/admin/declarative"
	"github.com/tenantgate/gateway/events"
	"github.com/tenantgate/gateway/migrations"
	"github.com/tenantgate/gateway/projections"
)

const adminKey = "scale-admin-key-0123456789"

type config struct {
	store   string
	dsn     string
	redis   string
	tenants int
	routes  int
	events  int
	every   int
	skip    string
	keep    bool
	logDir  string // where gateways leave their logs when they stop (with -keep)
}

func main() {
	var c config
	flag.StringVar(&c.store, "store", "sqlite", "sqlite or postgres")
	flag.StringVar(&c.dsn, "dsn", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server to create the scale databases in")
	flag.StringVar(&c.redis, "redis", "redis://127.0.0.1:6379/0", "Redis for the PostgreSQL runs")
	flag.IntVar(&c.tenants, "tenants", 10_000, "T: tenants")
	flag.IntVar(&c.routes, "routes", 100_000, "R: routes")
	flag.IntVar(&c.events, "events", 300_000, "E: events in total (at least T+R)")
	flag.IntVar(&c.every, "checkpoint-interval", projections.DefaultCheckpointInterval, "CHECKPOINT_INTERVAL of the gateways")
	flag.StringVar(&c.skip, "skip", "", "comma-separated parts to skip: apply,join,verify")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (and databases), and each gateway's log in it")
	flag.Parse()
	if c.events < c.tenants+c.routes || c.tenants < 1 || c.routes < 0 {
		log.Fatal("need events >= tenants + routes and at least one tenant")
	}
	if err := run(c); err != nil {
		log.Fatal(err)
	}
}

// figure is one row of the result table.
type figure struct{ name, value, goal string }

func run(c config) error {
	work, err := os.MkdirTemp("", "tenantgate-scale-")
	if err != nil {
		return err
	}
	if !c.keep {
		defer os.RemoveAll(work)
	} else {
		c.logDir = work
	}
	bin := filepath.Join(work, "gateway")
	log.Printf("building the gateway into %s", bin)
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/gateway").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	var figs []figure
	add := func(name, value, goal string) {
		figs = append(figs, figure{name, value, goal})
		log.Printf("%s: %s", name, value)
	}

	env, cleanup, err := freshStore(c, work, "log")
	if err != nil {
		return err
	}
	defer cleanup()
	start := time.Now()
	head, err := generate(c, env)
	if err != nil {
		return err
	}
	log.Printf("generated %d events in %s", head, time.Since(start).Round(time.Millisecond))

	empty, emptyCleanup, err := freshStore(c, work, "empty")
	if err != nil {
		return err
	}
	defer emptyCleanup()
	g, err := startGateway(bin, empty, c, "empty")
	if err != nil {
		return err
	}
	baseRSS := g.rss()
	g.stop()

	// From zero: every event applied (the replay speed), checkpoints written.
	g, err = startGateway(bin, env, c, "cold")
	if err != nil {
		return err
	}
	add("start to /ready, no checkpoint (replay of the whole log)", fmt.Sprintf("%s (%s events/s)", ms(g.ready), rate(head, g.ready)), "")
	if err := g.waitCheckpoint(head - head%int64(c.every)); err != nil {
		return err
	}
	g.stop()

	g, err = startGateway(bin, env, c, "warm")
	if err != nil {
		return err
	}
	defer g.stop()
	add("start to /ready from a checkpoint", fmt.Sprintf("%s (gateway CPU %s)", ms(g.ready), ms(g.readyCPU)), "<= 1 s")
	// The gateway gives start-up's garbage back once ready, beside serving:
	// RSS at /ready still holds it, a second later it does not.
	atReady := g.rss()
	time.Sleep(time.Second)
	rss := g.rss()
	add("RSS at /ready, 1 s later (empty gateway)", fmt.Sprintf("%s, %s (%s)", mib(atReady), mib(rss), mib(baseRSS)), "")
	add("RSS per route 1 s after ready, (RSS - empty) / R", perRoute(rss-baseRSS, c.routes), "<= 1.5 KiB")
	// The cold start wrote a checkpoint every few seconds and left the rest
	// to write once caught up; this instance writes what is missing. The
	// history queries are measured once the log has its checkpoints.
	add("every checkpoint in the store (the rest written after ready)", waitCheckpoints(env, head, int64(c.every)), "")
	time.Sleep(time.Second) // the writer gives its garbage back once done
	add("RSS per route once they are written", perRoute(g.rss()-baseRSS, c.routes), "<= 1.5 KiB")
	add("GET /admin/status, median of 50 (max)", g.timeMany("/admin/status", 50), "<= 5 ms")
	for _, at := range []int64{1000, head / 3, head/2 + 4321, head - 1, head} {
		add(fmt.Sprintf("GET /admin/state?at=%d", at), g.timeOne(fmt.Sprintf("/admin/state?at=%d", at)), "<= 500 ms")
	}
	add("GET /admin/state (current, streamed)", g.timeOne("/admin/state"), "")
	add(fmt.Sprintf("GET /admin/diff?from=1000&to=%d", head), g.timeOne(fmt.Sprintf("/admin/diff?from=1000&to=%d", head)), "<= 500 ms")
	add(fmt.Sprintf("GET /admin/diff?from=%d&to=%d", head/2, head-10), g.timeOne(fmt.Sprintf("/admin/diff?from=%d&to=%d", head/2, head-10)), "<= 500 ms")
	add("RSS after these reads (peak)", fmt.Sprintf("%s (%s)", mib(g.rss()), mib(g.hwm())), "")
	// The admin API gives the garbage of history answers back 1 s after the
	// last one, and keeps the checkpoint states its last queries loaded for
	// 15 s (the console's state, diff, rollback preview); then they go.
	time.Sleep(2 * time.Second)
	add("RSS per route 2 s after these reads (2 loaded states kept)", perRoute(g.rss()-baseRSS, c.routes), "")
	time.Sleep(15 * time.Second)
	add("RSS per route 17 s after these reads", perRoute(g.rss()-baseRSS, c.routes), "<= 1.5 KiB")

	if c.store == events.KindPostgres && !strings.Contains(c.skip, "join") {
		g2, err := startGateway(bin, env, c, "join")
		if err != nil {
			return err
		}
		add("second instance joining: start to /ready", fmt.Sprintf("%s (gateway CPU %s)", ms(g2.ready), ms(g2.readyCPU)), "<= 1 s")
		g2.stop()
	}
	g.stop()

	if !strings.Contains(c.skip, "verify") {
		t0 := time.Now()
		out, err := g.command("replay", "--verify")
		if err != nil {
			return fmt.Errorf("replay --verify: %v\n%s", err, out)
		}
		d := time.Since(t0)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		// Its last line times the replay (the store's replay speed) apart
		// from loading the checkpoints it compares.
		add("gateway replay --verify (from zero, every checkpoint compared)", fmt.Sprintf("%s in all; %s", ms(d), lines[len(lines)-1]), ">= 200,000 events/s")
	}

	if !strings.Contains(c.skip, "apply") {
		if err := measureApply(c, bin, work, add); err != nil {
			return err
		}
	}

	fmt.Printf("\n%s, T=%d tenants, R=%d routes, E=%d events, CHECKPOINT_INTERVAL=%d\n\n", c.store, c.tenants, c.routes, head, c.every)
	fmt.Println("| figure | measured | goal |")
	fmt.Println("| --- | --- | --- |")
	for _, f := range figs {
		fmt.Printf("| %s | %s | %s |\n", f.name, f.value, f.goal)
	}
	return nil
}

// measureApply applies an R-route document to fresh stores, from the
// command line (YAML) and over HTTP (JSON).
func measureApply(c config, bin, work string, add func(name, value, goal string)) error {
	doc := document(c)
	yamlPath, jsonPath := filepath.Join(work, "config.yaml"), filepath.Join(work, "config.json")
	y, err := declarative.MarshalYAML(doc)
	if err != nil {
		return err
	}
	if err := os.WriteFile(yamlPath, y, 0o600); err != nil {
		return err
	}
	j, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, j, 0o600); err != nil {
		return err
	}
	env, cleanup, err := freshStore(c, work, "apply-cli")
	if err != nil {
		return err
	}
	defer cleanup()
	t0 := time.Now()
	cmd := exec.Command(bin, "apply", "-f", yamlPath)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	peak, err := runWatchingPeak(cmd)
	d := time.Since(t0)
	name := fmt.Sprintf("gateway apply -f (YAML, %s, %d routes)", fileSize(yamlPath), c.routes)
	if err != nil {
		add(name, fmt.Sprintf("FAILED after %s: %s", ms(d), lastLine(stderr.String())), "<= 5 s, <= 400 MiB")
	} else {
		add(name, fmt.Sprintf("%s, peak RSS %s", ms(d), mib(peak)), "<= 5 s, <= 400 MiB")
	}

	env2, cleanup2, err := freshStore(c, work, "apply-http")
	if err != nil {
		return err
	}
	defer cleanup2()
	gw, err := startGateway(bin, env2, c, "apply")
	if err != nil {
		return err
	}
	defer gw.stop()
	before := gw.rss()
	j, err = os.ReadFile(jsonPath)
	if err != nil {
		return err
	}
	t0 = time.Now()
	status, body, err := gw.post("/admin/apply", j)
	d = time.Since(t0)
	name = fmt.Sprintf("POST /admin/apply (JSON, %d MiB, %d routes)", len(j)>>20, c.routes)
	if err != nil || status != http.StatusOK {
		add(name, fmt.Sprintf("FAILED after %s: %d %v %s", ms(d), status, err, truncate(body, 200)), "<= 5 s, <= 400 MiB")
		return nil
	}
	add(name, fmt.Sprintf("%s, gateway peak RSS %s (%s before)", ms(d), mib(gw.hwm()), mib(before)), "<= 5 s, <= 400 MiB")
	return nil
}

// runWatchingPeak runs cmd and returns the peak RSS of its process, read
// from its /proc status while it runs. Not from its rusage: Go starts a
// child with vfork, so the child's ru_maxrss starts at this process's own
// peak (the documents it generated, gigabytes), not at the child's.
func runWatchingPeak(cmd *exec.Cmd) (int64, error) {
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	g := &gateway{cmd: cmd}
	var peak int64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return peak, err
		case <-tick.C:
			// VmHWM only grows, so the last reading before the exit is
			// the peak up to a few milliseconds before it.
			if hwm := g.hwm(); hwm > peak {
				peak = hwm
			}
		}
	}
}

func fileSize(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return size(int(fi.Size()))
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return truncate([]byte(lines[len(lines)-1]), 300)
}

// freshStore makes an empty store and returns the environment of a gateway
// on it.
func freshStore(c config, work, name string) ([]string, func(), error) {
	env := append(os.Environ(), "ADMIN_API_KEY="+adminKey, "LOG_LEVEL=warn", "CHECKPOINT_INTERVAL="+strconv.Itoa(c.every),
		"SHUTDOWN_TIMEOUT=30s")
	switch c.store {
	case events.KindSQLite:
		dir := filepath.Join(work, name)
		return append(env, "DATA_DIR="+dir, "DATABASE_URL=", "REDIS_URL="), func() {}, nil
	case events.KindPostgres:
		db := "scale_" + name + "_" + randomHex(4)
		db = strings.ReplaceAll(db, "-", "_")
		admin := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(c.dsn)))
		if _, err := admin.Exec("CREATE DATABASE " + db); err != nil {
			_ = admin.Close()
			return nil, nil, fmt.Errorf("create database: %w", err)
		}
		u, err := url.Parse(c.dsn)
		if err != nil {
			return nil, nil, err
		}
		u.Path = "/" + db
		prefix := "scale:" + randomHex(4) + ":"
		cleanup := func() {
			if !c.keep {
				_, _ = admin.Exec("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)")
			}
			_ = admin.Close()
		}
		return append(env, "DATABASE_URL="+u.String(), "REDIS_URL="+c.redis, "REDIS_PREFIX="+prefix,
			"DATA_DIR="+filepath.Join(work, name), "SNAPSHOT_CACHE=true"), cleanup, nil
	}
	return nil, nil, fmt.Errorf("unknown store %q", c.store)
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// waitCheckpoints waits until the store holds a checkpoint of this build
// at every multiple of every up to head, and says after how long.
func waitCheckpoints(env []string, head, every int64) string {
	if every <= 0 {
		return "none (CHECKPOINT_INTERVAL=0)"
	}
	ctx := context.Background()
	store, err := openStore(ctx, env)
	if err != nil {
		return "FAILED " + err.Error()
	}
	defer store.Close()
	want := int(head / every)
	start := time.Now()
	for {
		list, err := store.Checkpoints(ctx, projections.ApplyVersion, head, want+1)
		if err != nil {
			return "FAILED " + err.Error()
		}
		if len(list) >= want {
			return fmt.Sprintf("%d checkpoints, %s after ready", len(list), ms(time.Since(start)))
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Sprintf("FAILED: %d of %d checkpoints after %s", len(list), want, ms(time.Since(start)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func openStore(ctx context.Context, env []string) (*events.SQLStore, error) {
	var s *events.SQLStore
	var err error
	if dsn := envValue(env, "DATABASE_URL"); dsn != "" {
		s, err = events.OpenPostgres(ctx, dsn)
	} else {
		s, err = events.OpenSQLite(ctx, filepath.Join(envValue(env, "DATA_DIR"), "events.db"))
	}
	if err != nil {
		return nil, err
	}
	if err := migrations.Migrate(ctx, s.DB()); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// generate appends the log: T tenants, R routes spread over them, then
// updates until E events.
func generate(c config, env []string) (int64, error) {
	ctx := context.Background()
	store, err := openStore(ctx, env)
	if err != nil {
		return 0, err
	}
	defer store.Close()
	g := newGen(c)
	var batch []events.Envelope
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := store.Append(ctx, events.AppendRequest{ExpectedHead: events.AnyHead, Events: batch})
		batch = batch[:0]
		return err
	}
	for ev := range g.events() {
		batch = append(batch, ev)
		if len(batch) == 2000 {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return store.Head(ctx)
}

// gen writes the scale log.
type gen struct {
	c        config
	tenants  []string
	routes   []string
	tenantOf map[string]string
	versions map[string]int64
	at       time.Time
}

func newGen(c config) *gen {
	return &gen{c: c, tenantOf: map[string]string{}, versions: map[string]int64{}, at: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (g *gen) event(typ events.Type, id, tenant string, data any) events.Envelope {
	raw, _ := json.Marshal(data)
	g.versions[id]++
	g.at = g.at.Add(time.Millisecond)
	return events.Envelope{ID: newID(), Type: typ, AggregateType: events.AggregateTypeOf(typ), AggregateID: id,
		AggregateVersion: g.versions[id], TenantID: tenant, Actor: "scale", OccurredAt: g.at, Data: raw}
}

// routeSpec is a typical route: two weighted upstreams, retries and a timeout.
func routeSpec(tenant string, i int) events.RouteSpec {
	return events.RouteSpec{
		TenantID: tenant, Method: []string{"GET", "*", "POST"}[i%3], Path: fmt.Sprintf("/api/v1/service%d/items", i), PathType: events.PathPrefix,
		Upstreams:     []events.Upstream{{URL: fmt.Sprintf("http://10.0.%d.1:8080", i%200), Weight: 3}, {URL: fmt.Sprintf("http://10.0.%d.2:8080/base", i%200), Weight: 1}},
		LoadBalancing: events.BalanceWeighted,
		Resilience: &events.Resilience{
			Retry:   &events.Retry{Enabled: true, MaxRetries: 3, BaseDelayMs: 100, MaxDelayMs: 2000, RetryableStatusCodes: []int{500, 502, 503, 504}},
			Timeout: &events.Timeout{Enabled: true, Default: 10000},
		},
	}
}

func (g *gen) events() func(yield func(events.Envelope) bool) {
	return func(yield func(events.Envelope) bool) {
		n := 0
		for i := range g.c.tenants {
			id := newID()
			g.tenants = append(g.tenants, id)
			sum := sha256Hex(id)
			if !yield(g.event(events.TenantCreated, id, id, events.TenantCreatedData{
				Name: fmt.Sprintf("tenant-%06d", i), Status: events.TenantActive,
				RateLimit: &events.RateLimit{Limit: 100 + i%900, WindowMs: 1000}, APIKeyHash: sum, APIKeyPrefix: "gw_" + sum[:4],
			})) {
				return
			}
			n++
		}
		for i := range g.c.routes {
			id, tenant := newID(), g.tenants[i%len(g.tenants)]
			g.routes = append(g.routes, id)
			g.tenantOf[id] = tenant
			if !yield(g.event(events.RouteCreated, id, tenant, routeSpec(tenant, i))) {
				return
			}
			n++
		}
		for i := 0; n < g.c.events; i++ {
			var ev events.Envelope
			if i%10 == 9 || len(g.routes) == 0 {
				t := g.tenants[i%len(g.tenants)]
				ev = g.event(events.TenantUpdated, t, t, events.TenantUpdatedData{RateLimit: events.NewPatch(&events.RateLimit{Limit: 100 + i%5000, WindowMs: 1000})})
			} else {
				r := g.routes[(i*7919)%len(g.routes)]
				ev = g.event(events.RouteUpdated, r, g.tenantOf[r], events.RouteUpdatedData{
					Path:      events.NewPatch(fmt.Sprintf("/api/v%d/service%d/items", 2+i%7, i%len(g.routes))),
					Upstreams: events.NewPatch([]events.Upstream{{URL: fmt.Sprintf("http://10.1.%d.1:8080", i%200), Weight: 1 + i%5}}),
				})
			}
			if !yield(ev) {
				return
			}
			n++
		}
	}
}

func sha256Hex(s string) string {
	h := projections.KeyHash([]byte(s))
	return hex.EncodeToString(h[:])
}

// document is the declarative document of T tenants and R routes.
func document(c config) declarative.Document {
	doc := declarative.Document{}
	for i := range c.tenants {
		doc.Tenants = append(doc.Tenants, declarative.TenantConfig{ID: newID(), Name: fmt.Sprintf("tenant-%06d", i),
			Status: events.TenantActive, RateLimit: &events.RateLimit{Limit: 100 + i%900, WindowMs: 1000}})
	}
	for i := range c.routes {
		t := doc.Tenants[i%len(doc.Tenants)].ID
		doc.Routes = append(doc.Routes, declarative.RouteConfig{ID: newID(), RouteSpec: routeSpec(t, i)})
	}
	return doc
}

// gateway is one running gateway process.
type gateway struct {
	bin   string
	env   []string
	cmd   *exec.Cmd
	base  string
	ready time.Duration
	// readyCPU is the CPU time the gateway used until ready.
	readyCPU time.Duration
	logs     *bytes.Buffer
	logFile  string // written when it stops, if set
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startGateway(bin string, env []string, c config, name string) (*gateway, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	g := &gateway{bin: bin, env: append(slices.Clone(env), "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "INSTANCE_ID=scale-"+name),
		base: fmt.Sprintf("http://127.0.0.1:%d", port), logs: &bytes.Buffer{}}
	if c.logDir != "" {
		g.logFile = filepath.Join(c.logDir, name+".log")
	}
	g.cmd = exec.Command(bin)
	g.cmd.Env = g.env
	g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
	start := time.Now()
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(g.base + "/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				g.ready, g.readyCPU = time.Since(start), g.cpu()
				return g, nil
			}
		}
		if g.cmd.ProcessState != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.stop()
	return nil, fmt.Errorf("gateway %s never ready:\n%s", name, lastLine(g.logs.String()))
}

func (g *gateway) stop() {
	if g.cmd == nil || g.cmd.Process == nil || g.cmd.ProcessState != nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = g.cmd.Process.Kill()
		<-done
	}
	if g.logFile != "" {
		if err := os.WriteFile(g.logFile, g.logs.Bytes(), 0o644); err != nil {
			log.Printf("%s: %v", g.logFile, err)
		}
	}
}

// command runs a subcommand of the binary on the gateway's store.
func (g *gateway) command(args ...string) ([]byte, error) {
	cmd := exec.Command(g.bin, args...)
	cmd.Env = g.env
	return cmd.CombinedOutput()
}

func (g *gateway) procStatus(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpu is the CPU time (user and system) the gateway has used so far, from
// /proc/PID/stat in clock ticks of 10 ms: on a shared machine a query's CPU
// time moves less with the load than its wall time does.
func (g *gateway) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after it don't.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func (g *gateway) rss() int64 { return g.procStatus("VmRSS") }
func (g *gateway) hwm() int64 { return g.procStatus("VmHWM") }

func (g *gateway) get(path string) (int, []byte, error) {
	req, _ := http.NewRequest(http.MethodGet, g.base+path, nil)
	req.Header.Set("X-Admin-Key", adminKey)
	return do(req)
}

func (g *gateway) post(path string, body []byte) (int, []byte, error) {
	req, _ := http.NewRequest(http.MethodPost, g.base+path, bytes.NewReader(body))
	req.Header.Set("X-Admin-Key", adminKey)
	req.Header.Set("Content-Type", "application/json")
	return do(req)
}

var client = &http.Client{Timeout: 10 * time.Minute}

func do(req *http.Request) (int, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// timeOne times one GET (the body read to its end).
func (g *gateway) timeOne(path string) string {
	cpu0, t0 := g.cpu(), time.Now()
	status, body, err := g.get(path)
	d, cpu := time.Since(t0), g.cpu()-cpu0
	if err != nil || status != http.StatusOK {
		return fmt.Sprintf("FAILED %d %v %s after %s", status, err, truncate(body, 200), ms(d))
	}
	return fmt.Sprintf("%s (%s; gateway CPU %s)", ms(d), size(len(body)), ms(cpu))
}

func (g *gateway) timeMany(path string, n int) string {
	var ds []time.Duration
	for range n {
		t0 := time.Now()
		status, body, err := g.get(path)
		if err != nil || status != http.StatusOK {
			return fmt.Sprintf("FAILED %d %v %s", status, err, truncate(body, 200))
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	return fmt.Sprintf("%s (%s)", ms(ds[len(ds)/2]), ms(ds[len(ds)-1]))
}

// waitCheckpoint waits until the store has a checkpoint at seq or beyond.
func (g *gateway) waitCheckpoint(seq int64) error {
	ctx := context.Background()
	store, err := openStore(ctx, g.env)
	if err != nil {
		return err
	}
	defer store.Close()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		list, err := store.Checkpoints(ctx, "", math.MaxInt64, 1)
		if err == nil && len(list) == 1 && list[0].Seq >= seq {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("no checkpoint was written")
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

func rate(n int64, d time.Duration) string {
	return strconv.FormatInt(int64(float64(n)/d.Seconds()), 10)
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func size(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/1024)
}

func perRoute(b int64, routes int) string {
	if routes == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f KiB", float64(b)/float64(routes)/1024)
}
