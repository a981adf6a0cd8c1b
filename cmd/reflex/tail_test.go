package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflexpb"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// grpcServer serves the events table of f over TLS with a bearer token on
// loopback, and returns its address and the files of its CA and token.
func grpcServer(t *testing.T, f fixture) (addr, caFile, tokenFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "reflex test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, tokenFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "s3cret-token"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get("authorization"); len(v) != 1 || v[0] != "Bearer "+token {
			return status.Error(codes.Unauthenticated, "invalid bearer token")
		}
		return nil
	}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	gs := grpc.NewServer(grpc.Creds(creds), grpc.ChainStreamInterceptor(
		func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}))
	rs := reflex.NewServer()
	table := rsql.NewEventsTable("events", rsql.WithEventsDialect(f.d), rsql.WithEventMetadataField("metadata"))
	reflexpb.RegisterReflexServer(gs, rs.ReflexServer(table.ToStream(f.db)))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(lis) })
	t.Cleanup(func() {
		rs.Stop()
		gs.Stop()
		wg.Wait()
		table.Close()
	})
	return lis.Addr().String(), caFile, tokenFile
}

func TestTail(t *testing.T) {
	for _, f := range fixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			f.seedEvents(t, 1, 10)
			db := []string{"--dsn", f.dsn}
			tail := func(code int, args ...string) result {
				t.Helper()
				return want(t, code, append(append([]string{"tail"}, db...), args...)...)
			}
			golden(t, "tail_all.golden", tail(exitOK).stdout)
			golden(t, "tail_from7.json.golden", tail(exitOK, "--from", "7", "--json").stdout)
			// Event 6 is at 03:05: --since finds it by the time alone.
			golden(t, "tail_since.golden", tail(exitOK, "--since", "2026-01-02T03:04:30Z").stdout)
			if r := tail(exitOK, "--since", "2026-01-02T03:05:00Z"); !strings.HasPrefix(r.stdout, "id=6 ") {
				t.Errorf("--since at event 6's time:\n%s", r.stdout)
			}
			if r := tail(exitOK, "--since", "100000h"); r.stdout != tail(exitOK).stdout {
				t.Errorf("--since before every event:\n%s", r.stdout)
			}
			if r := tail(exitOK, "--since", "1m"); r.stdout != "" {
				t.Errorf("--since after every event printed:\n%s", r.stdout)
			}
			golden(t, "tail_filtered.golden", tail(exitOK, "--type", "2", "--foreign-id", "user-2").stdout)
			if r := tail(exitOK, "--type", "1,2", "--limit", "3"); strings.Count(r.stdout, "\n") != 3 {
				t.Errorf("--limit 3:\n%s", r.stdout)
			}
			if r := tail(exitOK, "--head"); r.stdout != "" {
				t.Errorf("--head without --follow printed:\n%s", r.stdout)
			}
			tail(exitUsage, "--since", "2100-01-01T00:00:00Z")
			tail(exitUsage, "--since", "yesterday")
			tail(exitUsage, "--from", "-3")
			tail(exitUsage, "--type", "one")
			if r := tail(exitNotFound, "--events", "nope"); !strings.Contains(r.stderr, "nope") {
				t.Errorf("unknown table: %s", r.stderr)
			}
			// --follow prints events as they are committed.
			out := follow(t, func() { f.addEvents(t, 11, 12) }, append(append([]string{"tail"}, db...), "--from", "10", "--follow", "--limit", "2")...)
			if !strings.HasPrefix(out, "id=11 ") || !strings.Contains(out, "\nid=12 ") {
				t.Errorf("--follow printed:\n%s", out)
			}
		})
	}
}

// follow starts the command with args, runs add once it has printed
// nothing yet but started, and returns its output once it exits 0.
func follow(t *testing.T, add func(), args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliGuard)
	defer cancel()
	cmd := reflexCmd(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The stream starts after a given cursor: the events are delivered
	// whenever they are added.
	add()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("reflex %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func TestTailGRPC(t *testing.T) {
	f := mysqlFixture(t)
	f.seedEvents(t, 1, 10)
	addr, ca, token := grpcServer(t, f)
	g := []string{"tail", "--grpc", addr, "--tls-ca", ca, "--token-file", token}
	// The same events as read from the table.
	golden(t, "tail_all.golden", want(t, exitOK, append(g, "--from", "0")...).stdout)
	golden(t, "tail_filtered.golden", want(t, exitOK, append(g, "--type", "2", "--foreign-id", "user-2")...).stdout)
	out := follow(t, func() { f.addEvents(t, 11, 11) }, append(g, "--from", "10", "--follow", "--limit", "1", "--json")...)
	if !strings.HasPrefix(out, `{"id":"11",`) {
		t.Errorf("--follow over gRPC printed:\n%s", out)
	}
	if r := want(t, exitFailure, "tail", "--grpc", addr, "--tls-ca", ca, "--token", "wrong"); !strings.Contains(r.stderr, "invalid bearer token") {
		t.Errorf("wrong token: %s", r.stderr)
	}
	if r := want(t, exitFailure, "tail", "--grpc", addr, "--token-file", token); !strings.Contains(r.stderr, "certificate") {
		t.Errorf("untrusted certificate: %s", r.stderr)
	}
}

// TestTailWatchInterrupt checks that an interrupt ends --follow with exit 0.
func TestTailFollowInterrupt(t *testing.T) {
	f := sqliteFixture(t, "events")
	f.seedEvents(t, 1, 2)
	ctx, cancel := context.WithTimeout(t.Context(), cliGuard)
	defer cancel()
	cmd := reflexCmd(ctx, "tail", "--dsn", f.dsn, "--follow")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for range 2 {
		if !sc.Scan() {
			t.Fatalf("tail --follow ended early: %v", sc.Err())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("tail --follow after an interrupt: %v, want exit 0", err)
	}
}
