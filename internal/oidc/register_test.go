package oidc

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// registerCases are shared by the golden test and the shell test, so every
// golden command is also proven to reach aws with the intended arguments.
var registerCases = []struct {
	golden      string // testdata/register/<golden>.sh and .tf
	issuer      string
	clientIDs   []string
	thumbprints []string
	// wantArgs are the arguments aws must receive.
	wantArgs []string
}{
	{
		golden:      "two-thumbprints",
		issuer:      "https://oidc.example.com/clusters/prod",
		thumbprints: []string{"9e99a48a9960b14926bb7f3b02e22da2b0ab7280", "0123456789abcdef0123456789abcdef01234567", "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"},
		wantArgs: []string{"iam", "create-open-id-connect-provider", "--url", "https://oidc.example.com/clusters/prod",
			"--client-id-list", "sts.amazonaws.com", "--thumbprint-list",
			"9e99a48a9960b14926bb7f3b02e22da2b0ab7280", "0123456789abcdef0123456789abcdef01234567"},
	},
	{
		golden:    "no-thumbprint",
		issuer:    "https://my-bucket.s3.us-west-2.amazonaws.com",
		clientIDs: []string{"sts.amazonaws.com", "", "my-audience", "sts.amazonaws.com"},
		wantArgs: []string{"iam", "create-open-id-connect-provider", "--url", "https://my-bucket.s3.us-west-2.amazonaws.com",
			"--client-id-list", "sts.amazonaws.com", "my-audience"},
	},
	{
		// Values no real issuer has, to prove nothing is ever interpreted.
		golden:      "special-characters",
		issuer:      "https://example.com/it's $(id) ${HOME}",
		clientIDs:   []string{"a b", `"q"\`},
		thumbprints: []string{"0123456789abcdef0123456789abcdef01234567"},
		wantArgs: []string{"iam", "create-open-id-connect-provider", "--url", "https://example.com/it's $(id) ${HOME}",
			"--client-id-list", "a b", `"q"\`, "--thumbprint-list", "0123456789abcdef0123456789abcdef01234567"},
	},
}

func TestRegisterSnippetsGolden(t *testing.T) {
	for _, tc := range registerCases {
		t.Run(tc.golden, func(t *testing.T) {
			cli, tf := RegisterSnippets(tc.issuer, tc.clientIDs, tc.thumbprints)
			for _, g := range []struct{ ext, got string }{{"sh", cli}, {"tf", tf}} {
				path := filepath.Join("testdata", "register", tc.golden+"."+g.ext)
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if g.got != string(want) {
					t.Errorf("%s differs:\n--- got\n%s--- want\n%s", path, g.got, want)
				}
			}
		})
	}
}

// TestRegisterSnippetsShell runs each command in a real shell with aws
// replaced by a function that prints its arguments: quoting is right only if
// every argument arrives whole and unexpanded.
func TestRegisterSnippetsShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	for _, tc := range registerCases {
		t.Run(tc.golden, func(t *testing.T) {
			cli, _ := RegisterSnippets(tc.issuer, tc.clientIDs, tc.thumbprints)
			script := "aws() { printf '%s\\n' \"$@\"; }\n" + cli
			out, err := exec.Command(sh, "-c", script).Output()
			if err != nil {
				t.Fatalf("sh: %v\n%s", err, script)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if !slices.Equal(got, tc.wantArgs) {
				t.Errorf("aws got arguments\n%q\nwant\n%q", got, tc.wantArgs)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"sts.amazonaws.com", "sts.amazonaws.com"},
		{"https://h:8443/p_a-t.h,x=y@z%20+", "https://h:8443/p_a-t.h,x=y@z%20+"},
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$HOME", "'$HOME'"},
		{"a\nb", "'a\nb'"},
		{"*", "'*'"},
	}
	for _, tc := range tests {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestHCLString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://h/p", `"https://h/p"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"${x} %{if} $x %x", `"$${x} %%{if} $x %x"`},
		{"a\nb\tc\x01", `"a\nb\tc\u0001"`},
	}
	for _, tc := range tests {
		if got := hclString(tc.in); got != tc.want {
			t.Errorf("hclString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
