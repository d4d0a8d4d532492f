package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/podiam/podiam/internal/oidc"
)

// TestOIDCPublishFlags: bad flags fail before anything connects (the
// kubeconfig named does not exist, so getting further would fail otherwise).
func TestOIDCPublishFlags(t *testing.T) {
	t.Parallel()
	base := []string{"oidc", "publish", "--kubeconfig=/nonexistent/kubeconfig", "--to=" + t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{"no issuer", []string{"oidc", "publish", "--to=/tmp/x"}, `"issuer" not set`},
		{"no destination", []string{"oidc", "publish", "--issuer=https://oidc.example.com"}, `"to" not set`},
		{"http issuer", append(base, "--issuer=http://oidc.example.com"), "--issuer"},
		{"negative interval", append(base, "--issuer=https://oidc.example.com", "--interval=-1s"), "--interval"},
		{"tiny interval", append(base, "--issuer=https://oidc.example.com", "--interval=10ms"), "--interval"},
		{"log format", append(base, "--issuer=https://oidc.example.com", "--log-format=xml"), "--log-format"},
		{"log level", append(base, "--issuer=https://oidc.example.com", "--log-level=loud"), "--log-level"},
		// Valid flags get as far as the kubeconfig.
		{"valid", append(base, "--issuer=https://oidc.example.com"), "kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRootCommand()
			root.SetArgs(tc.args)
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// staticSource serves fixed documents.
type staticSource struct{ live oidc.Live }

func (s staticSource) Fetch(context.Context) (oidc.Live, error) { return s.live, nil }

func liveFor(t *testing.T, issuer string, keys ...crypto.PublicKey) oidc.Live {
	t.Helper()
	jwks, err := oidc.NewJWKS(keys, false)
	if err != nil {
		t.Fatal(err)
	}
	d, err := oidc.NewDiscovery(issuer, "", jwks, oidc.StyleAPIServer)
	if err != nil {
		t.Fatal(err)
	}
	var l oidc.Live
	if l.JWKS, err = jwks.Marshal(); err != nil {
		t.Fatal(err)
	}
	if l.Discovery, err = d.Marshal(); err != nil {
		t.Fatal(err)
	}
	return l
}

func newECKey(t *testing.T) crypto.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// TestPublishOnceOutput checks what an operator reads: the paths written,
// then the registration command and Terraform resource on stdout; warnings
// (no thumbprint, a retained or removed key) on stderr only.
func TestPublishOnceOutput(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: the thumbprint fails at once.
	const issuer = "https://127.0.0.1:1/cluster-1"
	k1, k2 := newECKey(t), newECKey(t)
	kid1, err := oidc.KeyID(k1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dest := &oidc.DirDestination{Root: dir}
	f := publishFlags{issuer: issuer, to: dir, jwksPath: "keys.json", clientIDs: []string{oidc.DefaultClientID}}

	for _, tc := range []struct {
		name                  string
		keys                  []crypto.PublicKey
		allowRemoval, noHints bool
		stdout, notStdout     []string
		stderr, notStderr     []string
	}{
		{name: "first publish", keys: []crypto.PublicKey{k1},
			stdout: []string{"jwks_uri: " + issuer + "/keys.json", "written   " + dir + "/keys.json", "written   " + dir + "/.well-known/openid-configuration",
				"aws iam create-open-id-connect-provider", "--url " + issuer, "--client-id-list sts.amazonaws.com",
				`resource "aws_iam_openid_connect_provider"`},
			notStdout: []string{"warning", "--thumbprint-list"},
			stderr:    []string{"warning: no thumbprint", "podiam oidc thumbprint " + issuer}},
		{name: "unchanged, no hints", keys: []crypto.PublicKey{k1}, noHints: true,
			stdout:    []string{"unchanged " + dir + "/keys.json", "unchanged " + dir + "/.well-known/openid-configuration"},
			notStdout: []string{"aws iam", "written"}, notStderr: []string{"warning"}},
		// k1 left the cluster, k2 is new: k2 is published, k1 kept, with a
		// warning on every run.
		{name: "key left the cluster", keys: []crypto.PublicKey{k2}, noHints: true,
			stdout: []string{"written   " + dir + "/keys.json"},
			stderr: []string{"warning: " + oidc.RetainedKeyWarning(kid1)}},
		{name: "retained again", keys: []crypto.PublicKey{k2}, noHints: true,
			stdout: []string{"unchanged " + dir + "/keys.json"},
			stderr: []string{"warning: " + oidc.RetainedKeyWarning(kid1)}},
		{name: "removal allowed", keys: []crypto.PublicKey{k2}, noHints: true, allowRemoval: true,
			stdout: []string{"written   " + dir + "/keys.json"},
			stderr: []string{`warning: removed the published key with kid "` + kid1 + `"`, "tokens signed by it no longer verify"}},
		{name: "after the removal", keys: []crypto.PublicKey{k2}, noHints: true,
			stdout: []string{"unchanged " + dir + "/keys.json"}, notStderr: []string{"warning"}},
	} {
		var stdout, stderr bytes.Buffer
		f.allowKeyRemoval, f.noRegisterHints = tc.allowRemoval, tc.noHints
		err := publishOnce(t.Context(), staticSource{liveFor(t, issuer, tc.keys...)}, dest, f, &stdout, &stderr)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		check := func(stream, out string, want []string, present bool) {
			for _, w := range want {
				if strings.Contains(out, w) != present {
					t.Errorf("%s: %s contains %q: %v, want %v\n%s", tc.name, stream, w, !present, present, out)
				}
			}
		}
		check("stdout", stdout.String(), tc.stdout, true)
		check("stdout", stdout.String(), tc.notStdout, false)
		check("stderr", stderr.String(), tc.stderr, true)
		check("stderr", stderr.String(), tc.notStderr, false)
	}
}

// TestPublishOnceBadPublishedJWKS: an invalid entry at the destination
// fails the publish with an error naming it and the way out, writing
// nothing; with --allow-key-removal the entry is dropped and named on
// stderr.
func TestPublishOnceBadPublishedJWKS(t *testing.T) {
	t.Parallel()
	const issuer = "https://127.0.0.1:1/cluster-1"
	dir := t.TempDir()
	dest := &oidc.DirDestination{Root: dir}
	const held = `{"keys":[{"kty":"oct","alg":"none","kid":"sym","k":"c2VjcmV0"}]}`
	if err := dest.Put(t.Context(), "keys.json", []byte(held)); err != nil {
		t.Fatal(err)
	}
	f := publishFlags{issuer: issuer, to: dir, jwksPath: "keys.json", noRegisterHints: true}
	live := staticSource{liveFor(t, issuer, newECKey(t))}

	var stdout, stderr bytes.Buffer
	err := publishOnce(t.Context(), live, dest, f, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), `kid "sym"`) || !strings.Contains(err.Error(), "--allow-key-removal") {
		t.Fatalf("error %v, want one naming the entry and --allow-key-removal", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q for a refused publish", stdout.String())
	}

	f.allowKeyRemoval = true
	stdout.Reset()
	if err := publishOnce(t.Context(), live, dest, f, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if want := `warning: dropped key 1 (kid "sym") of the published JWKS ` + dir + `/keys.json`; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
	if !strings.Contains(stdout.String(), "written   "+dir+"/keys.json") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
}

// TestOIDCPublishHelp: --help says that retention trusts the destination
// and how to clean it.
func TestOIDCPublishHelp(t *testing.T) {
	t.Parallel()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetArgs([]string{"oidc", "publish", "--help"})
	root.SetOut(&out)
	root.SetErr(&out)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Retention trusts the destination's content", "To clean the destination", "--allow-key-removal"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}
