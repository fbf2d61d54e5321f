package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// redisTarget is what REDIS_URL names: one server, a Sentinel-managed master
// or a Cluster. Exactly one of the three option sets is non-nil.
//
//	redis://[[user]:password@]host[:port][/db][?option=value...]
//	redis+sentinel://[[user]:password@]host[:port][,host[:port]...][/db]?master_name=NAME[&sentinel_password=...]
//	redis+cluster://[[user]:password@]host[:port][,host[:port]...][?option=value...]
//
// and the same with rediss for TLS. The single form is go-redis's ParseURL;
// the other two become go-redis's ParseFailoverURL and ParseClusterURL forms
// (the first address in the host, the others as addr= options), so every
// option go-redis knows works, with its name. Three differences, because
// they are what users of Redis URLs expect:
//
//   - addresses may be listed comma-separated in the host (go-redis's addr=
//     options are accepted too);
//   - a sentinel address without a port has Sentinel's port, 26379;
//   - in the sentinel form the user and password are the master's (the
//     data's), like in the other two forms; the sentinels' own credentials,
//     when they have any, are sentinel_username and sentinel_password.
//
// Options that read from replicas (read_only, route_by_latency,
// route_randomly, replica_only) are refused: the gateway reads what it
// just wrote (stream IDs, leases, counters), which a replica may not have yet.
type redisTarget struct {
	mode     string // "single", "sentinel" or "cluster"
	addrs    []string
	master   string
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// replicaReads are go-redis options that send reads to replicas.
var replicaReads = []string{"read_only", "route_by_latency", "route_randomly", "replica_only"}

// parseRedisURL parses and checks REDIS_URL. Its errors never quote the
// URL's user information, nor anything that might hold part of it when the
// URL is malformed (an address, a host): they say what is wrong and where.
func parseRedisURL(raw string) (redisTarget, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return redisTarget{}, errors.New("must be a URL such as redis://host:6379/0 (or redis+sentinel://, redis+cluster://; rediss for TLS)")
	}
	base, mode, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" || (mode != "" && mode != "sentinel" && mode != "cluster") {
		return redisTarget{}, fmt.Errorf("scheme %q: want redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster", scheme)
	}
	if mode == "" {
		mode = "single"
	}
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	var user *url.Userinfo
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		info, err := url.Parse("redis://" + authority[:at] + "@h")
		if err != nil || info.User == nil {
			return redisTarget{}, errors.New("the user or password is not validly percent-encoded")
		}
		user, authority = info.User, authority[at+1:]
	}
	hosts := strings.Split(authority, ",")
	if mode == "single" && len(hosts) > 1 {
		return redisTarget{}, errors.New("several addresses need redis+sentinel:// or redis+cluster://")
	}
	if len(hosts) == 1 && hosts[0] == "" {
		hosts[0] = "localhost" // as go-redis does
	}
	defaultPort := "6379"
	if mode == "sentinel" {
		defaultPort = "26379"
	}
	for i, h := range hosts {
		var err error
		if hosts[i], err = withPort(h, defaultPort); err != nil {
			return redisTarget{}, fmt.Errorf("address %d of %d: %w", i+1, len(hosts), err)
		}
	}
	u, err := url.Parse(base + "://" + hosts[0] + tail)
	if err != nil {
		return redisTarget{}, errors.New("is not a valid URL: check the host, port and path, and percent-encode special characters in the password")
	}
	if u.Fragment != "" {
		return redisTarget{}, errors.New("has a #fragment; options go in the query (?master_name=...)")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return redisTarget{}, errors.New("the query is not validly encoded")
	}
	for _, name := range replicaReads {
		if q.Has(name) {
			return redisTarget{}, fmt.Errorf("option %s is not supported: the gateway reads what it writes, so it talks to masters only", name)
		}
	}
	if mode != "single" {
		q["addr"] = append(hosts[1:], q["addr"]...)
	}

	switch mode {
	case "sentinel":
		return parseSentinel(u, q, user)
	case "cluster":
		if strings.Trim(u.Path, "/") != "" || q.Has("db") {
			return redisTarget{}, errors.New("a cluster has database 0 only: leave out the /db path")
		}
		u.Path, u.User, u.RawQuery = "", user, q.Encode()
		co, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return redisTarget{}, redactedParseError(err, user)
		}
		tlsPerHost(co.TLSConfig)
		return redisTarget{mode: mode, addrs: co.Addrs, cluster: co}, nil
	}
	for _, name := range []string{"master_name", "addr"} {
		if q.Has(name) {
			return redisTarget{}, fmt.Errorf("option %s needs the redis+sentinel:// or redis+cluster:// scheme", name)
		}
	}
	u.User, u.RawQuery = user, q.Encode()
	o, err := redis.ParseURL(u.String())
	if err != nil {
		return redisTarget{}, redactedParseError(err, user)
	}
	return redisTarget{mode: mode, addrs: []string{o.Addr}, single: o}, nil
}

// parseSentinel builds go-redis's failover URL: the sentinels' credentials
// in its user information, the master's as username= and password=.
func parseSentinel(u *url.URL, q url.Values, user *url.Userinfo) (redisTarget, error) {
	name := q.Get("master_name")
	if name == "" {
		return redisTarget{}, errors.New("redis+sentinel:// needs ?master_name=<the name the sentinels monitor>")
	}
	for _, p := range []string{"username", "password"} {
		if q.Has(p) {
			return redisTarget{}, fmt.Errorf("option %s is not supported: put the master's credentials before the @, the sentinels' in sentinel_username and sentinel_password", p)
		}
	}
	sentinelUser, sentinelPass := q.Get("sentinel_username"), q.Get("sentinel_password")
	delete(q, "sentinel_username")
	delete(q, "sentinel_password")
	u.User = nil
	switch {
	case sentinelPass != "":
		u.User = url.UserPassword(sentinelUser, sentinelPass)
	case sentinelUser != "":
		u.User = url.User(sentinelUser)
	}
	u.RawQuery = q.Encode()
	fo, err := redis.ParseFailoverURL(u.String())
	if err != nil {
		return redisTarget{}, redactedParseError(err, user, sentinelPass)
	}
	if user != nil {
		fo.Username = user.Username()
		fo.Password, _ = user.Password()
	}
	tlsPerHost(fo.TLSConfig)
	return redisTarget{mode: "sentinel", addrs: fo.SentinelAddrs, master: name, failover: fo}, nil
}

// tlsPerHost: with several addresses (sentinels, masters, cluster nodes)
// each TLS connection checks the certificate against the name it dialled.
// go-redis pins ServerName to the first address, which the other nodes'
// certificates need not carry; crypto/tls infers it when it is empty.
func tlsPerHost(c *tls.Config) {
	if c != nil {
		c.ServerName = ""
		c.MinVersion = tls.VersionTLS12
	}
}

// withPort is host:port, with def when h has no port.
func withPort(h, def string) (string, error) {
	if h == "" {
		return "", errors.New("empty")
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
			return "", errors.New("want host:port with a port from 1 to 65535")
		}
		return h, nil
	}
	if strings.Count(h, ":") > 1 && !strings.HasPrefix(h, "[") {
		return "", errors.New("write an IPv6 address in brackets, as [::1]:6379")
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), def), nil
}

// redactedParseError is go-redis's error without the passwords (go-redis
// does not quote them today; this keeps it so).
func redactedParseError(err error, user *url.Userinfo, more ...string) error {
	msg := strings.TrimPrefix(err.Error(), "redis: ")
	if user != nil {
		p, _ := user.Password()
		more = append(more, p)
	}
	for _, secret := range more {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "[redacted]")
		}
	}
	return errors.New(msg)
}

// client opens the client for the target; go-redis's UniversalClient hides
// which of the three it is from everything that uses it. Its calls give up
// at their context's deadline (ContextTimeoutEnabled): the rate limiter on
// the request path bounds its wait that way.
func (t redisTarget) client() redis.UniversalClient {
	switch {
	case t.failover != nil:
		t.failover.ContextTimeoutEnabled = true
		return redis.NewFailoverClient(t.failover)
	case t.cluster != nil:
		t.cluster.ContextTimeoutEnabled = true
		return redis.NewClusterClient(t.cluster)
	default:
		t.single.ContextTimeoutEnabled = true
		return redis.NewClient(t.single)
	}
}

// logAttrs describe the target for the start-up log, without credentials.
func (t redisTarget) logAttrs() []any {
	attrs := []any{"redis_mode", t.mode, "redis_addrs", strings.Join(t.addrs, ",")}
	if t.master != "" {
		attrs = append(attrs, "redis_master", t.master)
	}
	return attrs
}

// redisLogger is where go-redis's own log lines go (reconnects, sentinel
// master switches, dial failures): the log of the gateway that opened the
// last client, instead of go-redis's default, plain lines on stderr.
// go-redis's logger is one process-wide variable, so it is set once and
// follows this pointer.
var (
	redisLogger     atomic.Pointer[slog.Logger]
	redisLoggerOnce sync.Once
)

func routeRedisLogs(log *slog.Logger) {
	redisLogger.Store(log.With("component", "go-redis"))
	redisLoggerOnce.Do(func() { redis.SetLogger(redisLogLines{}) })
}

type redisLogLines struct{}

func (redisLogLines) Printf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	level := slog.LevelInfo
	if strings.Contains(msg, "fail") || strings.Contains(msg, "error") {
		level = slog.LevelWarn
	}
	redisLogger.Load().Log(ctx, level, msg)
}
