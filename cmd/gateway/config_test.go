package main

import (
	"strings"
	"testing"
	"time"
)

func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadConfigDefaultsToEmbedded(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envOf(nil), true)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if cfg.Distributed() || cfg.Port != 3000 || cfg.DataDir != "data" || cfg.LogFormat != "text" {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if !cfg.adminKeyGenerated || len(cfg.AdminAPIKey) < 16 {
		t.Fatalf("embedded mode must generate an admin key, got %q", cfg.AdminAPIKey)
	}
	if cfg.ShutdownTimeout != 10*time.Second || cfg.MaxHeaderBytes != 16<<10 || cfg.MaxBodyBytes != 32<<20 {
		t.Fatalf("unexpected limits: %+v", cfg)
	}
}

func TestLoadConfigRejectsBadValuesNamingTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{name: "port not a number", env: map[string]string{"PORT": "http"}, wantVar: "PORT"},
		{name: "port out of range", env: map[string]string{"PORT": "70000"}, wantVar: "PORT"},
		{name: "admin port equals port", env: map[string]string{"PORT": "3000", "ADMIN_PORT": "3000"}, wantVar: "ADMIN_PORT"},
		{name: "database url scheme", env: map[string]string{"DATABASE_URL": "mysql://x", "ADMIN_API_KEY": "0123456789abcdef"}, wantVar: "DATABASE_URL"},
		{name: "redis without database", env: map[string]string{"REDIS_URL": "redis://127.0.0.1:6379"}, wantVar: "REDIS_URL"},
		{name: "redis url scheme", env: map[string]string{"DATABASE_URL": "postgres://h/db", "REDIS_URL": "http://x", "ADMIN_API_KEY": "0123456789abcdef"}, wantVar: "REDIS_URL"},
		{name: "distributed needs admin key", env: map[string]string{"DATABASE_URL": "postgres://h/db"}, wantVar: "ADMIN_API_KEY"},
		{name: "short admin key", env: map[string]string{"ADMIN_API_KEY": "short"}, wantVar: "ADMIN_API_KEY"},
		{name: "log level", env: map[string]string{"LOG_LEVEL": "loud"}, wantVar: "LOG_LEVEL"},
		{name: "log format", env: map[string]string{"LOG_FORMAT": "xml"}, wantVar: "LOG_FORMAT"},
		{name: "duration", env: map[string]string{"SHUTDOWN_TIMEOUT": "ten"}, wantVar: "SHUTDOWN_TIMEOUT"},
		{name: "bool", env: map[string]string{"RATE_LIMIT_FAIL_CLOSED": "maybe"}, wantVar: "RATE_LIMIT_FAIL_CLOSED"},
		{name: "trusted proxies", env: map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8, not-an-ip"}, wantVar: "TRUSTED_PROXIES"},
		{name: "tls cert without key", env: map[string]string{"TLS_CERT_FILE": "/etc/gw/cert.pem"}, wantVar: "TLS_KEY_FILE"},
		{name: "tls key without cert", env: map[string]string{"TLS_KEY_FILE": "/etc/gw/key.pem"}, wantVar: "TLS_CERT_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig(envOf(tt.env), true)
			if err == nil {
				t.Fatal("want an error")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tt.wantVar+":") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q must be one line starting with %s:", msg, tt.wantVar)
			}
		})
	}
}

func TestLoadConfigDistributed(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envOf(map[string]string{
		"DATABASE_URL": "postgres://postgres@127.0.0.1/test", "REDIS_URL": "redis://127.0.0.1:6379/0",
		"ADMIN_API_KEY": "0123456789abcdef", "TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1",
	}), true)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if !cfg.Distributed() || cfg.LogFormat != "json" || cfg.adminKeyGenerated || len(cfg.TrustedProxies) != 2 {
		t.Fatalf("unexpected config: %+v", cfg)
	}
}

func TestOfflineCommandsNeedNoAdminKey(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envOf(map[string]string{"DATABASE_URL": "postgres://h/db"}), false)
	if err != nil {
		t.Fatalf("offline commands must not need ADMIN_API_KEY: %v", err)
	}
	if cfg.AdminAPIKey != "" || cfg.adminKeyGenerated {
		t.Fatalf("no key may be generated for offline commands: %+v", cfg)
	}
}
