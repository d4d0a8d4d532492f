package e2e

import (
	"crypto/sha1" // #nosec G505 -- the IAM thumbprint is defined as SHA-1
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/test/testutil"
)

// TestOIDCServeThumbprint serves an issuer with the real binary behind a
// two-level chain (root CA → intermediate CA → leaf, the server sending leaf
// and intermediate), asks the real binary for its thumbprint, which must be
// the intermediate's SHA-1 computed here from its DER, and stops the server
// with SIGTERM, which must exit 0.
func TestOIDCServeThumbprint(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	ports, err := testutil.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	issuer := fmt.Sprintf("https://127.0.0.1:%d/cluster-serve", ports[0])
	tmp := t.TempDir()
	docs := filepath.Join(tmp, "docs")
	if err := os.MkdirAll(filepath.Join(docs, ".well-known"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		oidc.DiscoveryPath: `{"issuer":"` + issuer + `","jwks_uri":"` + issuer + `/keys.json"}`,
		"keys.json":        `{"keys":[]}`,
	} {
		if err := os.WriteFile(filepath.Join(docs, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	root := testutil.NewCert(t, "e2e root", nil, false)
	inter := testutil.NewCert(t, "e2e intermediate", root, false)
	leaf := testutil.NewCert(t, "127.0.0.1", inter, true)
	files := map[string][]byte{
		"tls.crt":  append(leaf.CertPEM(), inter.CertPEM()...),
		"tls.key":  leaf.KeyPEM(t),
		"root.crt": root.CertPEM(),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	serve, logs := startPodiam(t, "oidc", "serve", "--dir", docs, "--address", "127.0.0.1",
		"--port", strconv.Itoa(ports[0]), "--tls-cert", filepath.Join(tmp, "tls.crt"), "--tls-key", filepath.Join(tmp, "tls.key"),
		"--log-format", "text")

	sum := sha1.Sum(inter.Cert.Raw) // #nosec G401 -- IAM's definition
	want := hex.EncodeToString(sum[:]) + "\n"
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, "podiam oidc thumbprint to answer", func() (bool, string) {
		out, errOut, code := runPodiamEnv(t, ctx, nil, "oidc", "thumbprint", "--ca-file", filepath.Join(tmp, "root.crt"), issuer)
		return code == 0 && out == want, fmt.Sprintf("exit %d, stdout %q, stderr %q", code, out, errOut)
	})

	// Without the private root the chain is refused: no thumbprint from an
	// unverified server.
	if out, errOut, code := runPodiamEnv(t, ctx, nil, "oidc", "thumbprint", issuer); code == 0 || !strings.Contains(errOut, "certificate") {
		t.Errorf("without --ca-file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	serve.Signal(syscall.SIGTERM, 15*time.Second) // then SIGKILL: exit code -1
	if code := serve.ExitCode(); code != 0 {
		t.Errorf("podiam oidc serve exited %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown in the log:\n%s", logs.String())
	}
}
