package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// certPollInterval is how often the certificate files are read for a
// change. A change is loaded once two reads in a row agree (so a pair
// caught half-written is not even tried), within about two intervals.
const certPollInterval = time.Second

// certReloader hands every TLS handshake the pair it last loaded from
// TLS_CERT_FILE and TLS_KEY_FILE, and loads the pair again when the files
// change. A pair that does not load is logged and the previous one kept;
// open connections are never touched (they keep the certificate they
// shook hands with).
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]

	// The Run goroutine's only: digests of what the files held.
	settling [32]byte // at the last poll
	tried    [32]byte // when last loaded or refused
}

// newCertReloader loads the pair, or says why it cannot: at start a pair
// that does not load is an error, not something to wait out.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	certPEM, keyPEM, sum, err := r.read()
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %s and %s: %w", certFile, keyFile, err)
	}
	r.cert.Store(&cert)
	r.settling, r.tried = sum, sum
	log.Info("tls: certificate loaded", certAttrs(&cert)...)
	return r, nil
}

// read returns both files and a digest of the pair. An unreadable file
// reads as its error, so a lasting error is reported once, like a bad pair.
func (r *certReloader) read() (certPEM, keyPEM []byte, sum [32]byte, err error) {
	if certPEM, err = os.ReadFile(r.certFile); err != nil {
		err = fmt.Errorf("TLS_CERT_FILE: %w", err)
	} else if keyPEM, err = os.ReadFile(r.keyFile); err != nil {
		err = fmt.Errorf("TLS_KEY_FILE: %w", err)
	}
	h := sha256.New()
	if err != nil {
		h.Write([]byte(err.Error()))
	} else {
		h.Write(certPEM)
		h.Write([]byte{0}) // no pair of contents hashes like another's split elsewhere
		h.Write(keyPEM)
	}
	h.Sum(sum[:0])
	return certPEM, keyPEM, sum, err
}

// GetCertificate is tls.Config's hook: one atomic load per handshake.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// serverConfig is what every listener terminates TLS with: TLS 1.2 and
// newer, HTTP/1.1 only (fasthttp has no HTTP/2).
func (r *certReloader) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// Run polls the files until ctx ends.
func (r *certReloader) Run(ctx context.Context) error {
	t := time.NewTicker(certPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			r.poll()
		}
	}
}

// poll loads the pair when it differs from the one last tried and has not
// changed since the previous poll.
func (r *certReloader) poll() {
	certPEM, keyPEM, sum, err := r.read()
	if sum == r.tried {
		r.settling = sum
		return
	}
	if sum != r.settling {
		r.settling = sum // changing: look again next time
		return
	}
	r.tried = sum
	if err != nil {
		r.log.Error("tls: certificate files unreadable; still serving the previous certificate", "err", err)
		return
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors name what is wrong, never the key's bytes.
		r.log.Error("tls: new certificate pair refused; still serving the previous certificate",
			"cert_file", r.certFile, "key_file", r.keyFile, "err", err)
		return
	}
	r.cert.Store(&cert)
	r.log.Info("tls: certificate reloaded", certAttrs(&cert)...)
}

// certAttrs describe a certificate for the log: public facts only.
func certAttrs(c *tls.Certificate) []any {
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil
		}
	}
	fp := sha256.Sum256(leaf.Raw)
	return []any{"subject", leaf.Subject.String(), "dns_names", leaf.DNSNames,
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "sha256", hex.EncodeToString(fp[:]),
		"chain", len(c.Certificate)}
}

// tlsListeners wraps every listener in TLS with r's configuration; nil r
// leaves them plain. The proxy's own wrappers (framing guard, timeouts) go
// around these, so they see the decrypted stream.
func tlsListeners(lns []net.Listener, r *certReloader) []net.Listener {
	if r == nil {
		return lns
	}
	cfg := r.serverConfig()
	out := make([]net.Listener, len(lns))
	for i, ln := range lns {
		out[i] = tls.NewListener(ln, cfg)
	}
	return out
}

// loadUpstreamRoots is the system roots plus the PEM bundle in file, which
// https upstreams and their health checks are verified against; nil (the
// system roots alone) when file is empty.
func loadUpstreamRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("UPSTREAM_CA_FILE: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // no system roots on this host: the bundle alone
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("UPSTREAM_CA_FILE: " + file + ": no PEM certificate in it")
	}
	return pool, nil
}
