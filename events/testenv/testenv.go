// Package testenv gives tests real PostgreSQL and Redis: from TEST_DATABASE_URL
// and TEST_REDIS_URL when set, else from containers started with dockertest
// when a Docker engine answers, else the test is skipped with the reason.
// Under CI=true a missing service fails the test instead of skipping it.
//
// Each call isolates the test: Postgres creates a fresh database dropped at
// cleanup, Redis hands out a unique key prefix whose keys are deleted at cleanup.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun/driver/pgdriver"
)

// Postgres returns the URL of a new, empty PostgreSQL database for t.
func Postgres(t testing.TB) string {
	t.Helper()
	base := serviceURL(t, "TEST_DATABASE_URL", startPostgres)
	name := "gwtest_" + randomHex(6)
	admin := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(base)))
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		unavailable(t, fmt.Sprintf("PostgreSQL at TEST_DATABASE_URL: create database: %v", err))
	}
	t.Cleanup(func() {
		db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(base)))
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Redis returns the Redis URL and a key prefix no other test uses. Keys under
// the prefix are deleted when t ends.
func Redis(t testing.TB) (redisURL, prefix string) {
	t.Helper()
	redisURL = serviceURL(t, "TEST_REDIS_URL", startRedis)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("testenv: TEST_REDIS_URL: %v", err)
	}
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		unavailable(t, fmt.Sprintf("Redis at %s: %v", redisURL, err))
	}
	prefix = "gwtest:" + randomHex(6) + ":"
	t.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return redisURL, prefix
}

// RedisClient is Redis with a ready client, closed at cleanup.
func RedisClient(t testing.TB) (client *redis.Client, prefix string) {
	t.Helper()
	u, prefix := Redis(t)
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	opts.ContextTimeoutEnabled = true // as the gateway's clients
	client = redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	return client, prefix
}

func serviceURL(t testing.TB, env string, start func() (string, error)) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	u, err := dockerService(env, start)
	if err != nil {
		unavailable(t, fmt.Sprintf("%s is unset and no Docker engine answers (%v)", env, err))
	}
	return u
}

func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testenv: required service missing under CI=true: %s", reason)
	}
	t.Skipf("testenv: skipping, service unavailable: %s", reason)
}

var (
	dockerMu   sync.Mutex
	dockerURLs = map[string]string{}
	dockerErrs = map[string]error{}
)

// dockerService starts a container once per test binary. The containers are
// left to dockertest's expiry (two minutes past the binary's end at most).
func dockerService(env string, start func() (string, error)) (string, error) {
	dockerMu.Lock()
	defer dockerMu.Unlock()
	if u, ok := dockerURLs[env]; ok {
		return u, nil
	}
	if err, ok := dockerErrs[env]; ok {
		return "", err
	}
	u, err := start()
	if err != nil {
		dockerErrs[env] = err
		return "", err
	}
	dockerURLs[env] = u
	return u, nil
}

func dockerPool() (*dockertest.Pool, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, err
	}
	if err := pool.Client.Ping(); err != nil {
		return nil, err
	}
	pool.MaxWait = 60 * time.Second
	return pool, nil
}

func startPostgres() (string, error) {
	pool, err := dockerPool()
	if err != nil {
		return "", err
	}
	res, err := pool.Run("postgres", "16-alpine", []string{"POSTGRES_HOST_AUTH_METHOD=trust", "POSTGRES_DB=test"})
	if err != nil {
		return "", err
	}
	_ = res.Expire(600)
	u := "postgres://postgres@" + res.GetHostPort("5432/tcp") + "/test?sslmode=disable"
	err = pool.Retry(func() error {
		db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(u)))
		defer db.Close()
		return db.Ping()
	})
	return u, err
}

func startRedis() (string, error) {
	pool, err := dockerPool()
	if err != nil {
		return "", err
	}
	res, err := pool.Run("redis", "7-alpine", nil)
	if err != nil {
		return "", err
	}
	_ = res.Expire(600)
	u := "redis://" + res.GetHostPort("6379/tcp") + "/0"
	err = pool.Retry(func() error {
		opts, _ := redis.ParseURL(u)
		c := redis.NewClient(opts)
		defer c.Close()
		return c.Ping(context.Background()).Err()
	})
	return u, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToLower(hex.EncodeToString(b))
}
