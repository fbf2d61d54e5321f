package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tenantgate/gateway/events/testenv"
)

// testPKI is a throwaway certificate authority.
type testPKI struct {
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	caPEM []byte
	pool  *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, key: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// issue returns a leaf for hosts (IPs or DNS names) as a PEM chain (leaf,
// then the CA) and its PEM key.
func (p *testPKI) issue(t *testing.T, cn string, hosts ...string) (chainPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	chainPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), p.caPEM...)
	return chainPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsGateway is a gateway process serving HTTPS from files in dir.
type tlsGateway struct {
	*proc
	certFile, keyFile string
	addr              string // host:port of the main listener
}

// startTLSGateway starts the binary with a certificate named cn for
// 127.0.0.1 and waits until /ready answers over HTTPS.
func startTLSGateway(t *testing.T, pki *testPKI, cn string, env map[string]string) *tlsGateway {
	t.Helper()
	dir := t.TempDir()
	g := &tlsGateway{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	chain, key := pki.issue(t, cn, "127.0.0.1")
	writeFile(t, g.certFile, chain)
	writeFile(t, g.keyFile, key)
	full := map[string]string{"TLS_CERT_FILE": g.certFile, "TLS_KEY_FILE": g.keyFile}
	for k, v := range env {
		full[k] = v
	}
	g.proc = launchProc(t, "gw-tls", full)
	g.addr = strings.TrimPrefix(g.base, "http://")
	g.base = "https://" + g.addr
	g.https = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}}
	g.waitReady(20 * time.Second)
	return g
}

// handshake opens a new TLS connection to addr and returns the common name
// of the certificate it was served, or the handshake's error.
func handshake(addr string, cfg *tls.Config) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// keepAlive is one client connection sending requests one after another.
type keepAlive struct {
	conn *tls.Conn
	br   *bufio.Reader
}

func (k *keepAlive) get(t *testing.T, path string) int {
	t.Helper()
	_ = k.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(k.conn, "GET %s HTTP/1.1\r\nHost: gw\r\n\r\n", path); err != nil {
		t.Fatalf("keep-alive write: %v", err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatalf("keep-alive read: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestTLSEveryListenerHTTPSAndReloadKeepsOpenConnections(t *testing.T) {
	pki := newTestPKI(t)
	g := startTLSGateway(t, pki, "cert-a", nil)
	clientCfg := &tls.Config{RootCAs: pki.pool}

	// HTTPS only: plain HTTP on the main port gets no answer.
	raw, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(raw, "GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(raw), nil); err == nil {
		t.Fatalf("plain HTTP on the TLS port answered %d", resp.StatusCode)
	}
	raw.Close()

	// The upstream sees X-Forwarded-Proto: https.
	var proto atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Header.Get("X-Forwarded-Proto"))
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	tenantID, apiKey := createTenant(t, g.proc, "tls-tenant")
	createRoute(t, g.proc, tenantID, "/api", up.URL)
	waitServing(t, apiKey, "/api/x", g.proc)
	if got := proto.Load(); got != "https" {
		t.Fatalf("X-Forwarded-Proto %q, want https", got)
	}

	// A keep-alive connection made with the first certificate.
	conn, err := tls.Dial("tcp", g.addr, clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ka := &keepAlive{conn: conn, br: bufio.NewReader(conn)}
	if code := ka.get(t, "/health"); code != 200 {
		t.Fatalf("keep-alive /health: %d", code)
	}

	chain, key := pki.issue(t, "cert-b", "127.0.0.1")
	writeFile(t, g.keyFile, key)
	writeFile(t, g.certFile, chain)
	written := time.Now()
	testenv.WaitFor(t, "new connections get the new certificate", 5*time.Second, func() bool {
		cn, err := handshake(g.addr, clientCfg)
		return err == nil && cn == "cert-b"
	})
	t.Logf("new certificate served %v after the files were written", time.Since(written).Round(time.Millisecond))

	// The old connection was not closed and still works, on its certificate.
	for range 3 {
		if code := ka.get(t, "/health"); code != 200 {
			t.Fatalf("keep-alive after reload: %d", code)
		}
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "cert-a" {
		t.Fatalf("the open connection's certificate is %q", cn)
	}
	testenv.WaitFor(t, "the reload logged", 5*time.Second, func() bool {
		return strings.Contains(g.logs.String(), `"msg":"tls: certificate reloaded"`) && strings.Contains(g.logs.String(), "CN=cert-b")
	})
}

func TestTLSAdminListenerAndVersionsBelow12Refused(t *testing.T) {
	pki := newTestPKI(t)
	adminPort := freePort(t)
	g := startTLSGateway(t, pki, "cert-a", map[string]string{"ADMIN_PORT": strconv.Itoa(adminPort)})
	clientCfg := &tls.Config{RootCAs: pki.pool}
	// The admin listener is HTTPS too, and the cert file's chain is served.
	adminAddr := "127.0.0.1:" + strconv.Itoa(adminPort)
	c, err := tls.Dial("tcp", adminAddr, clientCfg)
	if err != nil {
		t.Fatalf("admin listener over TLS: %v", err)
	}
	if n := len(c.ConnectionState().PeerCertificates); n != 2 {
		t.Fatalf("served chain has %d certificates, want leaf and CA", n)
	}
	c.Close()
	req, _ := http.NewRequest("GET", "https://"+adminAddr+"/admin/status", nil)
	req.Header.Set("X-Admin-Key", testAdminKey)
	resp, err := g.https.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin status over TLS: %v %v", resp, err)
	}
	resp.Body.Close()

	tests := []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{name: "TLS 1.0", min: tls.VersionTLS10, max: tls.VersionTLS10},
		{name: "TLS 1.1", min: tls.VersionTLS11, max: tls.VersionTLS11},
		{name: "TLS 1.2", min: tls.VersionTLS12, max: tls.VersionTLS12, ok: true},
		{name: "TLS 1.3", min: tls.VersionTLS13, max: tls.VersionTLS13, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handshake(g.addr, &tls.Config{RootCAs: pki.pool, MinVersion: tt.min, MaxVersion: tt.max})
			if tt.ok != (err == nil) {
				t.Fatalf("handshake: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestTLSBadNewPairIsLoggedAndTheOldOneKept(t *testing.T) {
	pki := newTestPKI(t)
	g := startTLSGateway(t, pki, "cert-a", nil)
	clientCfg := &tls.Config{RootCAs: pki.pool}
	_, goodKey := pki.issue(t, "unused", "127.0.0.1")

	refusals := func() int { return strings.Count(g.logs.String(), "new certificate pair refused") }
	steps := []struct {
		name      string
		cert, key []byte
	}{
		{name: "not PEM", cert: []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), key: goodKey},
		{name: "key of another certificate", key: goodKey},
		{name: "half-written key", key: goodKey[:len(goodKey)/2]},
	}
	for i, st := range steps {
		if st.cert == nil {
			st.cert, _ = pki.issue(t, "cert-bad", "127.0.0.1")
		}
		writeFile(t, g.certFile, st.cert)
		writeFile(t, g.keyFile, st.key)
		testenv.WaitFor(t, st.name+": refusal logged", 5*time.Second, func() bool { return refusals() == i+1 })
		if cn, err := handshake(g.addr, clientCfg); err != nil || cn != "cert-a" {
			t.Fatalf("%s: a new connection got %q %v, want the old certificate", st.name, cn, err)
		}
	}
	if logs := g.logs.String(); strings.Contains(logs, "PRIVATE KEY") || strings.Contains(logs, string(goodKey[40:80])) {
		t.Fatalf("the log shows key material: %s", tail(logs, 2000))
	}
	// A good pair after bad ones is taken.
	chain, key := pki.issue(t, "cert-c", "127.0.0.1")
	writeFile(t, g.certFile, chain)
	writeFile(t, g.keyFile, key)
	testenv.WaitFor(t, "the good pair is served", 5*time.Second, func() bool {
		cn, err := handshake(g.addr, clientCfg)
		return err == nil && cn == "cert-c"
	})
}

func TestTLSBadPairAtStartExits(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	chain, key := pki.issue(t, "cert-a", "127.0.0.1")
	_, otherKey := pki.issue(t, "cert-b", "127.0.0.1")
	files := map[string][]byte{"cert.pem": chain, "key.pem": key, "other-key.pem": otherKey, "junk.pem": []byte("not pem")}
	for name, b := range files {
		writeFile(t, filepath.Join(dir, name), b)
	}
	at := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name, cert, key, want string
		code                  int
	}{
		{name: "missing cert file", cert: at("nope.pem"), key: at("key.pem"), want: "TLS_CERT_FILE", code: 1},
		{name: "missing key file", cert: at("cert.pem"), key: at("nope.pem"), want: "TLS_KEY_FILE", code: 1},
		{name: "cert not PEM", cert: at("junk.pem"), key: at("key.pem"), want: "TLS_CERT_FILE", code: 1},
		{name: "mismatched key", cert: at("cert.pem"), key: at("other-key.pem"), want: "private key does not match", code: 1},
		{name: "cert without key", cert: at("cert.pem"), want: "TLS_KEY_FILE", code: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := launchProc(t, "gw-bad-tls", map[string]string{"TLS_CERT_FILE": tt.cert, "TLS_KEY_FILE": tt.key})
			if !p.wait(20 * time.Second) {
				t.Fatal("the gateway kept running")
			}
			if code := p.exitCode(); code != tt.code || !strings.Contains(p.logs.String(), tt.want) {
				t.Fatalf("exit %d, want %d with %q: %s", code, tt.code, tt.want, tail(p.logs.String(), 1000))
			}
		})
	}
}

// httpsUpstream is an upstream serving TLS with a certificate for
// "localhost" from pki. It records the SNI it was asked for and counts
// connections and health probes.
type httpsUpstream struct {
	*httptest.Server
	url    string
	sni    atomic.Value
	conns  atomic.Int64
	probes atomic.Int64
}

func newHTTPSUpstream(t *testing.T, pki *testPKI) *httpsUpstream {
	t.Helper()
	u := &httpsUpstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			u.probes.Add(1)
		}
		io.WriteString(w, "upstream over tls")
	}))
	chain, key := pki.issue(t, "upstream", "localhost")
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	u.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		u.sni.Store(h.ServerName)
		return nil, nil
	}}
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.StartTLS()
	t.Cleanup(u.Close)
	u.url = "https://localhost:" + strconv.Itoa(u.Listener.Addr().(*net.TCPAddr).Port)
	return u
}

func TestHTTPSUpstreamVerifiedAgainstUpstreamCAFile(t *testing.T) {
	pki := newTestPKI(t)
	up := newHTTPSUpstream(t, pki)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, caFile, pki.caPEM)
	route := func(tenantID, path string, resilience map[string]any) map[string]any {
		return map[string]any{"tenantId": tenantID, "path": path, "upstreams": []map[string]any{{"url": up.url}}, "resilience": resilience}
	}

	t.Run("with the CA file", func(t *testing.T) {
		p := startProc(t, "gw-ca", map[string]string{"UPSTREAM_CA_FILE": caFile})
		tenantID, apiKey := createTenant(t, p, "with-ca")
		hc := map[string]any{"healthCheck": map[string]any{"intervalMs": 100, "timeoutMs": 100, "unhealthyThreshold": 1}}
		if code, body := p.admin("POST", "/admin/routes", route(tenantID, "/api", hc)); code != http.StatusCreated {
			t.Fatalf("create route: %d %v", code, body)
		}
		waitServing(t, apiKey, "/api/x", p)
		code, body, err := p.call("GET", "/api/x", nil, map[string]string{"X-API-Key": apiKey})
		if err != nil || code != 200 || string(body) != "upstream over tls" {
			t.Fatalf("GET: %d %q %v", code, body, err)
		}
		if sni := up.sni.Load(); sni != "localhost" {
			t.Fatalf("SNI %q, want the upstream's host", sni)
		}
		// Health probes verify against the same roots: they arrive, and the
		// upstream stays in service after several of them.
		before := up.probes.Load()
		testenv.WaitFor(t, "three verified health probes", 5*time.Second, func() bool { return up.probes.Load() >= before+3 })
		if code, _, _ := p.call("GET", "/api/x", nil, map[string]string{"X-API-Key": apiKey}); code != 200 {
			t.Fatalf("after health probes: %d", code)
		}
	})

	t.Run("without it", func(t *testing.T) {
		p := startProc(t, "gw-no-ca", nil)
		tenantID, apiKey := createTenant(t, p, "without-ca")
		res := map[string]any{
			"retry":          map[string]any{"maxRetries": 3, "baseDelayMs": 1, "maxDelayMs": 2},
			"circuitBreaker": map[string]any{"failureThreshold": 2, "timeout": 60000},
		}
		if code, body := p.admin("POST", "/admin/routes", route(tenantID, "/api", res)); code != http.StatusCreated {
			t.Fatalf("create route: %d %v", code, body)
		}
		// Until the route is applied the answer is 404, which connects nowhere.
		conns := up.conns.Load()
		var code int
		var body []byte
		testenv.WaitFor(t, "the route is served", 5*time.Second, func() bool {
			code, body, _ = p.call("GET", "/api/x", nil, map[string]string{"X-API-Key": apiKey})
			return code != 404
		})
		for i := 0; ; i++ {
			if code != 502 || !strings.Contains(string(body), "upstream_unavailable") {
				t.Fatalf("request %d: %d %s, want 502 upstream_unavailable", i, code, body)
			}
			if n := up.conns.Load() - conns; n != 1 {
				t.Fatalf("request %d reached the upstream on %d connections, want 1 (no retry on it)", i, n)
			}
			if i == 1 {
				break
			}
			conns = up.conns.Load()
			code, body, _ = p.call("GET", "/api/x", nil, map[string]string{"X-API-Key": apiKey})
		}
		// Two verification failures opened the breaker.
		conns = up.conns.Load()
		code, body, _ = p.call("GET", "/api/x", nil, map[string]string{"X-API-Key": apiKey})
		if code != 503 || !strings.Contains(string(body), "circuit_open") || up.conns.Load() != conns {
			t.Fatalf("after two failures: %d %s, want 503 circuit_open without a connection", code, body)
		}
	})
}

func TestTLSWebSocketTunnel(t *testing.T) {
	pki := newTestPKI(t)
	g := startTLSGateway(t, pki, "cert-a", nil)
	up := newWSUpstream(t)
	tenantID, apiKey := createTenant(t, g.proc, "wss-tenant")
	createRoute(t, g.proc, tenantID, "/ws", up.srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var c *websocket.Conn
	testenv.WaitFor(t, "a wss handshake through the gateway", 5*time.Second, func() bool {
		var err error
		c, _, err = websocket.Dial(ctx, "wss://"+g.addr+"/ws", &websocket.DialOptions{
			HTTPClient: g.https, HTTPHeader: http.Header{"X-Api-Key": {apiKey}},
		})
		return err == nil
	})
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	msg := strings.Repeat("over tls ", 10000)
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	typ, got, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(got) != msg {
		t.Fatalf("echo: %v %d bytes %v", typ, len(got), err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
}
