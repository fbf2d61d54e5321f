package main

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/gateway/events/testenv"
)

func TestParseRedisURLForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		url    string
		check  func(t *testing.T, r redisTarget)
		mode   string
		addrs  []string
		master string
	}{
		{name: "single", url: "redis://127.0.0.1:6379/0", mode: "single", addrs: []string{"127.0.0.1:6379"}},
		{name: "single defaults", url: "redis://", mode: "single", addrs: []string{"localhost:6379"}},
		{name: "single with password, db and options", url: "redis://app:s3cr%2Ft@cache.internal/2?dial_timeout=3&pool_size=20",
			mode: "single", addrs: []string{"cache.internal:6379"}, check: func(t *testing.T, r redisTarget) {
				o := r.single
				if o.Username != "app" || o.Password != "s3cr/t" || o.DB != 2 || o.DialTimeout != 3*time.Second || o.PoolSize != 20 {
					t.Fatalf("options %+v", o)
				}
			}},
		{name: "single TLS", url: "rediss://:pw@cache:6380", mode: "single", addrs: []string{"cache:6380"}, check: func(t *testing.T, r redisTarget) {
			if r.single.TLSConfig == nil || r.single.TLSConfig.ServerName != "cache" {
				t.Fatalf("TLS %+v", r.single.TLSConfig)
			}
		}},
		{name: "sentinel, comma-separated, default port", url: "redis+sentinel://:masterpw@10.0.0.1,10.0.0.2:26380,10.0.0.3/1?master_name=mymaster",
			mode: "sentinel", addrs: []string{"10.0.0.1:26379", "10.0.0.2:26380", "10.0.0.3:26379"}, master: "mymaster",
			check: func(t *testing.T, r redisTarget) {
				o := r.failover
				if o.MasterName != "mymaster" || o.Password != "masterpw" || o.Username != "" || o.DB != 1 || o.SentinelPassword != "" {
					t.Fatalf("options %+v", o)
				}
			}},
		{name: "sentinel, addr options and sentinel credentials", url: "redis+sentinel://app:pw@s1?master_name=m&addr=s2:26379&sentinel_username=sen&sentinel_password=spw&max_retries=5",
			mode: "sentinel", addrs: []string{"s1:26379", "s2:26379"}, master: "m", check: func(t *testing.T, r redisTarget) {
				o := r.failover
				if o.Username != "app" || o.Password != "pw" || o.SentinelUsername != "sen" || o.SentinelPassword != "spw" || o.MaxRetries != 5 {
					t.Fatalf("options %+v", o)
				}
			}},
		{name: "sentinel TLS checks each host", url: "rediss+sentinel://s1,s2?master_name=m", mode: "sentinel",
			addrs: []string{"s1:26379", "s2:26379"}, master: "m", check: func(t *testing.T, r redisTarget) {
				if c := r.failover.TLSConfig; c == nil || c.ServerName != "" {
					t.Fatalf("TLS %+v", c)
				}
			}},
		{name: "cluster", url: "redis+cluster://:pw@n1:7000,n2:7001,[::1]:7002?read_timeout=2s", mode: "cluster",
			addrs: []string{"n1:7000", "n2:7001", "[::1]:7002"}, check: func(t *testing.T, r redisTarget) {
				o := r.cluster
				if o.Password != "pw" || o.ReadTimeout != 2*time.Second {
					t.Fatalf("options %+v", o)
				}
			}},
		{name: "cluster, go-redis addr form", url: "rediss+cluster://n1:7000?addr=n2:7001", mode: "cluster",
			addrs: []string{"n1:7000", "n2:7001"}, check: func(t *testing.T, r redisTarget) {
				if c := r.cluster.TLSConfig; c == nil || c.ServerName != "" {
					t.Fatalf("TLS %+v", c)
				}
			}},
		{name: "cluster, one seed node", url: "redis+cluster://n1:7000/", mode: "cluster", addrs: []string{"n1:7000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := parseRedisURL(tt.url)
			if err != nil {
				t.Fatalf("parseRedisURL: %v", err)
			}
			if r.mode != tt.mode || !slices.Equal(r.addrs, tt.addrs) || r.master != tt.master {
				t.Fatalf("got mode %s addrs %v master %q", r.mode, r.addrs, r.master)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
			if c := r.client(); c == nil {
				t.Fatal("no client")
			} else {
				_ = c.Close()
			}
		})
	}
}

func TestParseRedisURLRefusesWithAReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url, want string
	}{
		{"not a URL", "127.0.0.1:6379", "must be a URL"},
		{"scheme", "http://h", `scheme "http"`},
		{"mode", "redis+ring://h", `scheme "redis+ring"`},
		{"several hosts on one server", "redis://a,b", "several addresses"},
		{"sentinel without master name", "redis+sentinel://s1,s2", "master_name"},
		{"master name on a single server", "redis://h?master_name=m", "master_name needs"},
		{"addr on a single server", "redis://h?addr=b:1", "addr needs"},
		{"cluster db", "redis+cluster://a,b/3", "database 0 only"},
		{"replica reads", "redis+cluster://a?read_only=true", "read_only"},
		{"replica only", "redis+sentinel://a?master_name=m&replica_only=true", "replica_only"},
		{"master password twice", "redis+sentinel://:pw@a?master_name=m&password=x", "option password"},
		{"empty address", "redis+cluster://a,,b", "address 2 of 3"},
		{"bad port", "redis+cluster://a,b:99999", "address 2 of 2"},
		{"bare IPv6", "redis+cluster://::1", "brackets"},
		{"unknown option", "redis://h?pool=3", "unexpected option: pool"},
		{"bad db", "redis://h/x", "database number"},
		{"fragment", "redis+sentinel://a/0#mymaster", "fragment"},
		{"bad escape in password", "redis://:p%zz@h", "percent-encoded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseRedisURL(tt.url)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tt.want)
			}
		})
	}
}

// TestRedisURLErrorsNeverShowThePassword: a wrong REDIS_URL is reported in
// the start-up error (and so in logs) without its password, however the rest
// of it is broken.
func TestRedisURLErrorsNeverShowThePassword(t *testing.T) {
	t.Parallel()
	const pw = "Hunter2Secret"
	for _, raw := range []string{
		"redis://:" + pw + "@h:notaport/0",
		"redis://:" + pw + "@h/0?pool=3",
		"redis://:" + pw + "@h/x",
		"redis://:" + pw + "/oops@h/0", // an unescaped slash in the password
		"redis://:" + pw + "?oops@h/0",
		"redis+sentinel://:" + pw + "@a,b",
		"redis+sentinel://a?master_name=m&sentinel_password=" + pw + "&bogus=1",
		"redis+cluster://:" + pw + "@a,,b",
		"redis+cluster://:" + pw + "@a/1",
		"http://:" + pw + "@h",
	} {
		_, err := loadConfig(envOf(map[string]string{"DATABASE_URL": "postgres://h/db", "ADMIN_API_KEY": "0123456789abcdef", "REDIS_URL": raw}), true)
		if err == nil {
			t.Errorf("%s: accepted", raw)
			continue
		}
		if strings.Contains(err.Error(), pw) || !strings.HasPrefix(err.Error(), "REDIS_URL: ") {
			t.Errorf("error %q shows the password or does not name REDIS_URL", err)
		}
	}
}

// FuzzParseRedisURL: any REDIS_URL is parsed or refused without a panic, and
// a password in its user information never appears in the error.
func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:6379/0", "rediss://u:p@h:1/2?dial_timeout=1", "redis+sentinel://:pw@a,b:1/0?master_name=m&addr=c:2",
		"redis+cluster://a:1,b:2?read_timeout=1s", "redis://:p@[::1]:6379", "redis+sentinel://a?master_name=m&sentinel_password=x",
		"redis://%zz", "redis://a,b", "redis+cluster://a/1", "redis://:p/q@h",
	} {
		f.Add(s, "Pa55wordXyz")
	}
	f.Fuzz(func(t *testing.T, raw, pw string) {
		_, _ = parseRedisURL(raw) // whatever the input: no panic
		if len(pw) < 8 || strings.ContainsAny(pw, "@/?#%,") || strings.Contains("[redacted]", pw) {
			return
		}
		scheme, rest, ok := strings.Cut(raw, "://")
		if !ok || strings.Contains(strconv.Quote(scheme), pw) || strings.Contains(rest, pw) {
			return // the password must only be where we put it (errors quote the scheme)
		}
		withPw := scheme + "://u:" + pw + "@" + rest
		if _, err := parseRedisURL(withPw); err != nil && strings.Contains(err.Error(), pw) {
			t.Fatalf("parseRedisURL(%q): error %q shows the password", withPw, err)
		}
	})
}

// TestRedisURLReachesASentinelSetWithPasswords: the sentinel form's
// credentials go where the README says, against real processes: the user
// information is the master's, sentinel_password the sentinels'.
func TestRedisURLReachesASentinelSetWithPasswords(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t, testenv.SentinelAuth{Password: "data-pw-1", SentinelPassword: "sentinel-pw-2"})
	base := "redis+sentinel://" + strings.Join(s.Sentinels, ",") + "/0?master_name=" + s.MasterName
	withUser := strings.Replace(base, "://", "://:data-pw-1@", 1)
	tests := []struct {
		name, url string
		works     bool
	}{
		{"both passwords", withUser + "&sentinel_password=sentinel-pw-2", true},
		{"no sentinel password", withUser, false},
		{"wrong master password", strings.Replace(withUser, "data-pw-1", "nope", 1) + "&sentinel_password=sentinel-pw-2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, err := parseRedisURL(tt.url + "&max_retries=-1&dial_timeout=1s")
			if err != nil {
				t.Fatal(err)
			}
			c := target.client()
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = c.Set(ctx, "url-test", "1", time.Minute).Err()
			if tt.works {
				role, _ := c.Info(ctx, "replication").Result()
				if err != nil || !strings.Contains(role, "role:master") {
					t.Fatalf("SET through %s: %v (%.40s)", tt.name, err, role)
				}
			} else if err == nil {
				t.Fatal("SET succeeded with a wrong password")
			}
		})
	}
}
