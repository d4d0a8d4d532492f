package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/sts"
)

// startSTS runs the STS server of internal/sts on the config stsload wrote to
// dir, over HTTP on 127.0.0.1.
func startSTS(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	cfg, err := sts.Load(filepath.Join(dir, "sts.yaml"))
	if err != nil {
		t.Fatalf("the generated config: %v", err)
	}
	key, err := sts.GenerateStateKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := sts.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sts.NewServer(sts.Options{Config: func() *sts.Config { return cfg }, Sealer: sealer,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts
}

// newIssuer starts an issuer that writes its files to a new directory.
func newIssuer(t *testing.T) (*issuer, string) {
	t.Helper()
	iss, err := startIssuer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.srv.Close)
	dir := t.TempDir()
	if err := iss.writeFiles(dir); err != nil {
		t.Fatal(err)
	}
	return iss, dir
}

// TestMeasure checks that the generated issuer, config and tokens are accepted
// by the STS, that both runs count successes, and that a rejected token is
// counted as an error with its body.
func TestMeasure(t *testing.T) {
	iss, dir := newIssuer(t)
	ts := startSTS(t, dir)
	bodies, err := iss.webIdentityBodies(5)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := firstCall(ts.URL, bodies[0], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Tokens of another issuer, unknown to the STS.
	other, _ := newIssuer(t)
	foreign, err := other.webIdentityBodies(2)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		req      requestFunc
		wantFail bool
		wantErr  string
	}{
		{name: "web", req: webIdentityRequests(ts.URL, bodies)},
		{name: "caller", req: callerIdentityRequests(ts.URL, creds)},
		{name: "foreign tokens", req: webIdentityRequests(ts.URL, foreign), wantFail: true, wantErr: "InvalidIdentityToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := measure(tt.name, tt.req, 2, 50*time.Millisecond, 200*time.Millisecond, os.Getpid())
			if tt.wantFail {
				if res.failed == 0 || res.ok != 0 || !strings.Contains(res.firstErr, tt.wantErr) {
					t.Fatalf("ok %d, failed %d, first error %q; want only failures with %q", res.ok, res.failed, res.firstErr, tt.wantErr)
				}
				return
			}
			if res.failed != 0 || res.ok == 0 || res.rps() <= 0 || res.serverCPU < 0 {
				t.Fatalf("ok %d, failed %d (%s), %.0f/s, cpu %s", res.ok, res.failed, res.firstErr, res.rps(), res.serverCPU)
			}
			var out bytes.Buffer
			res.write(&out)
			for _, want := range []string{"requests/s", "p50", "p99", "server CPU"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, &out)
				}
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	lat := make([]time.Duration, 100)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Microsecond
	}
	tests := []struct {
		lat  []time.Duration
		p    float64
		want time.Duration
	}{
		{lat: nil, p: 50, want: 0},
		{lat: lat, p: 50, want: 50 * time.Microsecond},
		{lat: lat, p: 99, want: 99 * time.Microsecond},
		{lat: lat, p: 100, want: 100 * time.Microsecond},
		{lat: lat[:1], p: 99, want: time.Microsecond},
	}
	for _, tt := range tests {
		r := &result{lat: tt.lat}
		if got := r.percentile(tt.p); got != tt.want {
			t.Errorf("p%v of %d samples = %s, want %s", tt.p, len(tt.lat), got, tt.want)
		}
	}
}

func TestReadPID(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          int
	}{
		{name: "pid", content: strconv.Itoa(os.Getpid()) + "\n", want: os.Getpid()},
		{name: "garbage", content: "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readPID(p)
			if got != tt.want || (err != nil) != (tt.want == 0) {
				t.Fatalf("readPID = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}
