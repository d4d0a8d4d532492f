package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/spf13/cobra"

	"github.com/podiam/podiam/test/harness"
	"github.com/podiam/podiam/test/testutil"
)

// stsTestConfig is a config with one user, written to a temporary file.
func stsTestConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sts.yaml")
	cfg := `accounts:
- id: "111122223333"
  users:
  - name: ci
    accessKeyId: AKIAEXAMPLEEXAMPLE01
    secretAccessKey: c2VjcmV0LW9mLXRoZS1jaS11c2VyLWZvci10ZXN0cw
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// executeSTS runs `podiam sts args...` until ctx ends.
func executeSTS(ctx context.Context, args ...string) error {
	root := newRootCommand()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs(append([]string{"sts"}, args...))
	return root.ExecuteContext(ctx)
}

// TestSTSCommand runs `podiam sts` over plain HTTP and over HTTPS on loopback
// ports and calls it with the AWS SDK, then checks /metrics, /healthz, the state
// key file it created, and a clean stop.
func TestSTSCommand(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run("tls="+strconv.FormatBool(useTLS), func(t *testing.T) {
			ports, err := testutil.FreePorts(2)
			if err != nil {
				t.Fatal(err)
			}
			stateKey := filepath.Join(t.TempDir(), "state.key")
			args := []string{"--config", stsTestConfig(t), "--port", strconv.Itoa(ports[0]), "--metrics-port", strconv.Itoa(ports[1]),
				"--state-key-file", stateKey, "--log-level", "error"}
			scheme, httpClient := "http", &http.Client{Timeout: 5 * time.Second}
			if useTLS {
				tlsDir := t.TempDir()
				ca, err := harness.WriteServingCert(tlsDir)
				if err != nil {
					t.Fatal(err)
				}
				args = append(args, "--tls-cert", filepath.Join(tlsDir, "tls.crt"), "--tls-key", filepath.Join(tlsDir, "tls.key"))
				scheme = "https"
				httpClient.Transport = &http.Transport{TLSClientConfig: harness.TLSClientConfig(ca)}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- executeSTS(ctx, args...) }()

			client := awssts.New(awssts.Options{Region: "us-east-1", HTTPClient: httpClient,
				BaseEndpoint: aws.String(scheme + "://127.0.0.1:" + strconv.Itoa(ports[0])),
				Credentials:  credentials.NewStaticCredentialsProvider("AKIAEXAMPLEEXAMPLE01", "c2VjcmV0LW9mLXRoZS1jaS11c2VyLWZvci10ZXN0cw", "")})
			var arn string
			testutil.Eventually(t, 15*time.Second, 50*time.Millisecond, "GetCallerIdentity to answer", func() (bool, string) {
				out, err := client.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
				if err != nil {
					return false, err.Error()
				}
				arn = aws.ToString(out.Arn)
				return true, ""
			})
			if arn != "arn:aws:iam::111122223333:user/ci" {
				t.Errorf("Arn = %q", arn)
			}
			metricsURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
			for path, want := range map[string]string{
				"/healthz": "ok",
				"/metrics": `podiam_sts_calls_total{action="GetCallerIdentity",result="success"}`,
			} {
				resp, err := http.Get(metricsURL + path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(want)) {
					t.Errorf("%s: %d, body lacks %q", path, resp.StatusCode, want)
				}
			}
			if info, err := os.Stat(stateKey); err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("state key file: %v, %v", info, err)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("sts returned %v after its context ended", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("sts did not stop")
			}
		})
	}
}

// TestSTSCommandBadInput checks the flags refused before serving.
func TestSTSCommandBadInput(t *testing.T) {
	cfg := stsTestConfig(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("accounts: [{id: nope}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no config", nil, `"config" not set`},
		{"plain HTTP on all interfaces", []string{"--config", cfg, "--address", "0.0.0.0"}, "loopback"},
		{"plain HTTP on a LAN address", []string{"--config", cfg, "--address", "192.168.1.10"}, "loopback"},
		{"certificate without key", []string{"--config", cfg, "--tls-cert", "tls.crt"}, "go together"},
		{"bad log format", []string{"--config", cfg, "--log-format", "xml"}, "--log-format"},
		{"metrics address not an IP", []string{"--config", cfg, "--metrics-address", "example.com"}, "--metrics-address"},
		{"invalid config", []string{"--config", bad, "--port", "0", "--metrics-port", "0"}, "--config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := executeSTS(ctx, append([]string{"--log-level=error"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestSTSListenAddresses checks where the endpoint and the plain-HTTP metrics
// listen: the metrics stay on loopback when the TLS endpoint is on every
// interface, unless --metrics-address says otherwise.
func TestSTSListenAddresses(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		wantAPI     string
		wantMetrics string
	}{
		{"defaults", nil, "127.0.0.1:8080", "127.0.0.1:8081"},
		{"TLS on every interface", []string{"--address", "0.0.0.0", "--port", "8443", "--tls-cert", "c", "--tls-key", "k"},
			"0.0.0.0:8443", "127.0.0.1:8081"},
		{"metrics for a scraper", []string{"--address", "0.0.0.0", "--tls-cert", "c", "--tls-key", "k", "--metrics-address", "0.0.0.0", "--metrics-port", "9090"},
			"0.0.0.0:8080", "0.0.0.0:9090"},
		{"IPv6 loopback", []string{"--address", "::1", "--metrics-address", "::1"}, "[::1]:8080", "[::1]:8081"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got stsFlags
			cmd := newSTSCommand()
			cmd.RunE = func(*cobra.Command, []string) error {
				var err error
				got, err = flagsOf(cmd)
				return err
			}
			cmd.SetArgs(append([]string{"--config", "sts.yaml"}, tc.args...))
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if err := got.validate(); err != nil {
				t.Fatal(err)
			}
			api, metrics := got.listenAddresses()
			if api != tc.wantAPI || metrics != tc.wantMetrics {
				t.Errorf("listen on %s and %s, want %s and %s", api, metrics, tc.wantAPI, tc.wantMetrics)
			}
		})
	}
}

// flagsOf reads back the address flags of a parsed `podiam sts` command.
func flagsOf(cmd *cobra.Command) (stsFlags, error) {
	fs := cmd.Flags()
	var f stsFlags
	var err error
	for _, get := range []func() error{
		func() error { f.config, err = fs.GetString("config"); return err },
		func() error { f.address, err = fs.GetString("address"); return err },
		func() error { f.metricsAddress, err = fs.GetString("metrics-address"); return err },
		func() error { f.port, err = fs.GetInt("port"); return err },
		func() error { f.metricsPort, err = fs.GetInt("metrics-port"); return err },
		func() error { f.tlsCert, err = fs.GetString("tls-cert"); return err },
		func() error { f.tlsKey, err = fs.GetString("tls-key"); return err },
		func() error { f.logFormat, err = fs.GetString("log-format"); return err },
		func() error { f.logLevel, err = fs.GetString("log-level"); return err },
	} {
		if err := get(); err != nil {
			return f, err
		}
	}
	return f, nil
}
