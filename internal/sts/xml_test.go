package sts

import (
	"bytes"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/wire")

// golden compares got with testdata/wire/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "wire", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", name, got, want)
	}
}

// TestResponsesGolden pins the documents byte for byte: element names, order and
// namespace are the wire contract (SPEC §5).
func TestResponsesGolden(t *testing.T) {
	creds := &Credentials{AccessKeyID: "ASIAEXAMPLEEXAMPLE01", SecretAccessKey: "secret/+=", SessionToken: "token<&>",
		Expiration: time.Date(2026, 11, 27, 1, 2, 3, 456, time.FixedZone("CET", 3600))}
	user := assumedRoleUser{ARN: "arn:aws:sts::111122223333:assumed-role/web/s1", AssumedRoleID: "AROAEXAMPLEEXAMPLE012:s1"}
	const rid = "c6104cbe-af31-11e0-8154-cbc7ccf896c7"
	tests := []struct {
		name string
		doc  []byte
	}{
		{"webidentity.xml", appendWebIdentityResponse(nil, &webIdentityResult{
			Subject: "system:serviceaccount:apps:web", Audience: "sts.amazonaws.com", User: user, Credentials: creds,
			Provider: "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC"}, rid)},
		{"assumerole.xml", appendAssumeRoleResponse(nil, &assumeRoleResult{SourceIdentity: "alice", User: user,
			Credentials: creds, PackedPolicySize: 6}, rid)},
		{"callerid.xml", appendCallerIdentityResponse(nil, callerIdentity{ARN: "arn:aws:iam::111122223333:user/ci",
			UserID: "AIDAEXAMPLEEXAMPLE012", Account: "111122223333"}, rid)},
		{"error.xml", appendErrorResponse(nil, newAPIError(codeAccessDenied, messageWebIdentityDeny, "why"), rid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			golden(t, tt.name, tt.doc)
			// And it is XML that a standard decoder reads.
			d := xml.NewDecoder(bytes.NewReader(tt.doc))
			for {
				if _, err := d.Token(); err != nil {
					if err.Error() != "EOF" {
						t.Fatalf("not well-formed: %v", err)
					}
					break
				}
			}
		})
	}
}

// TestAppendEscaped checks the escaping against encoding/xml's.
func TestAppendEscaped(t *testing.T) {
	for _, s := range []string{"", "plain", `<a href="x">&'</a>`, "tab\tnl\ncr\r", "\x00\x1f bad", "é ünï 日本", "\xff\xfe", "\uFFFE", "𝄞"} {
		var want bytes.Buffer
		if err := xml.EscapeText(&want, []byte(s)); err != nil {
			t.Fatal(err)
		}
		if got := appendEscaped(nil, s); string(got) != want.String() {
			t.Errorf("appendEscaped(%q) = %q, want %q", s, got, want.String())
		}
	}
}

// FuzzAppendEscaped checks that the escaping matches encoding/xml's for any text.
func FuzzAppendEscaped(f *testing.F) {
	f.Add("<&>\"' \t\n\r\x00\xff")
	f.Fuzz(func(t *testing.T, s string) {
		var want bytes.Buffer
		_ = xml.EscapeText(&want, []byte(s))
		if got := appendEscaped(nil, s); string(got) != want.String() {
			t.Fatalf("appendEscaped(%q) = %q, want %q", s, got, want.String())
		}
	})
}
