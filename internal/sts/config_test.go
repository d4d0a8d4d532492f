package sts

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validTrustPolicy is a valid inline trust policy in YAML flow style.
const validTrustPolicy = `{Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {AWS: "111122223333"}, Action: "sts:AssumeRole"}]}`

// withTrustPolicy replaces $TP by a valid trust policy, so each case shows only what it breaks.
func withTrustPolicy(doc string) string { return strings.ReplaceAll(doc, "$TP", validTrustPolicy) }

// writeFiles writes name → content into a new directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseRejects(t *testing.T) {
	caPEM, err := os.ReadFile("testdata/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"ca.pem":        string(caPEM),
		"not-a-ca.pem":  "hello\n",
		"kubeconfig":    "apiVersion: v1\nkind: Config\n",
		"trust.json":    `{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}}`,
		"trust-bad.txt": "[1, 2]",
	}
	const acct = "accounts:\n- id: \"111122223333\"\n"
	tests := []struct {
		name string
		doc  string
		want []string // every one must appear in the error
	}{
		{"not YAML", "accounts: [", []string{"not valid YAML"}},
		{"key twice", acct + "  id: \"111122223333\"\n", []string{`key "id" already set in map`}},
		{"unknown top-level field", acct + "region: us-east-1\n", []string{"region: unknown field"}},
		{"unknown nested field", acct + "  roles:\n  - {name: app, maxSession: 1, trustPolicy: $TP}\n",
			[]string{"accounts[0].roles[0].maxSession: unknown field"}},
		{"field names are case-sensitive", "accounts:\n- ID: \"111122223333\"\n", []string{"accounts[0].ID: unknown field"}},
		{"document not a mapping", "[1]", []string{"the document must be a mapping"}},
		{"accounts not a list", "accounts: 3", []string{"accounts: a number is not valid here (want a list)"}},
		{"duration not a number", acct + "  roles:\n  - {name: app, maxSessionDuration: long, trustPolicy: $TP}\n",
			[]string{"accounts[0].roles[0].maxSessionDuration: a string is not valid here (want an integer)"}},
		{"no accounts", "accounts: []", []string{"accounts: at least one account is required"}},
		{"empty document", "", []string{"accounts: at least one account is required"}},
		{"empty account", "accounts: [null]", []string{"accounts[0]: empty entry"}},
		{"account id unquoted", "accounts:\n- id: 111122223333\n", []string{`accounts[0].id: a number is not valid here (want a string: quote it, e.g. "111122223333")`}},
		{"account id short", "accounts:\n- id: \"12345\"\n", []string{`accounts[0].id: "12345" is not a 12-digit account id`}},
		{"account id letters", "accounts:\n- id: \"11112222333a\"\n", []string{`accounts[0].id: "11112222333a" is not a 12-digit account id`}},
		{"duplicate account", acct + acct[len("accounts:\n"):], []string{"accounts[1].id: duplicate account 111122223333 (also accounts[0])"}},
		{"provider not https", acct + "  oidcProviders:\n  - {url: http://oidc.example.com, clientIDs: [sts.amazonaws.com]}\n",
			[]string{`accounts[0].oidcProviders[0].url: issuer "http://oidc.example.com" must start with https://`}},
		{"provider trailing slash", acct + "  oidcProviders:\n  - {url: https://oidc.example.com/, clientIDs: [a]}\n",
			[]string{`accounts[0].oidcProviders[0].url: issuer "https://oidc.example.com/" ends with "/"`}},
		{"provider without client ids", acct + "  oidcProviders:\n  - {url: https://oidc.example.com}\n",
			[]string{"accounts[0].oidcProviders[0].clientIDs: at least one client id (audience) is required"}},
		{"empty client id", acct + "  oidcProviders:\n  - {url: https://oidc.example.com, clientIDs: [a, \"\"]}\n",
			[]string{"accounts[0].oidcProviders[0].clientIDs[1]: empty client id"}},
		{"client id too long", acct + "  oidcProviders:\n  - {url: https://oidc.example.com, clientIDs: [" + strings.Repeat("a", 256) + "]}\n",
			[]string{"accounts[0].oidcProviders[0].clientIDs[0]: longer than 255 characters"}},
		{"caFile missing", acct + "  oidcProviders:\n  - {url: https://oidc.example.com, clientIDs: [a], caFile: nope.pem}\n",
			[]string{"accounts[0].oidcProviders[0].caFile: open ", "nope.pem: no such file or directory"}},
		{"caFile not PEM", acct + "  oidcProviders:\n  - {url: https://oidc.example.com, clientIDs: [a], caFile: not-a-ca.pem}\n",
			[]string{"accounts[0].oidcProviders[0].caFile: ", "not-a-ca.pem holds no PEM certificate"}},
		{"caFile and kubeconfig", acct + "  oidcProviders:\n  - {url: https://oidc.example.com, clientIDs: [a], caFile: ca.pem, kubeconfig: kubeconfig}\n",
			[]string{"accounts[0].oidcProviders[0]: caFile and kubeconfig exclude each other"}},
		{"kubeconfig missing", acct + "  oidcProviders:\n  - {url: https://oidc.example.com, clientIDs: [a], kubeconfig: nope}\n",
			[]string{"accounts[0].oidcProviders[0].kubeconfig: open ", "no such file or directory"}},
		{"kubeconfig a directory", acct + "  oidcProviders:\n  - {url: https://oidc.example.com, clientIDs: [a], kubeconfig: .}\n",
			[]string{"accounts[0].oidcProviders[0].kubeconfig: ", "is a directory"}},
		{"duplicate provider", acct + "  oidcProviders:\n  - {url: https://oidc.example.com, clientIDs: [a]}\n  - {url: https://oidc.example.com, clientIDs: [b]}\n",
			[]string{"accounts[0].oidcProviders[1].url: duplicate provider https://oidc.example.com (also accounts[0].oidcProviders[0])"}},
		{"empty role", acct + "  roles: [null]\n", []string{"accounts[0].roles[0]: empty entry"}},
		{"role name with slash", acct + "  roles:\n  - {name: app/x, trustPolicy: $TP}\n",
			[]string{`accounts[0].roles[0].name: "app/x" is not a role name`}},
		{"role name missing", acct + "  roles:\n  - {trustPolicy: $TP}\n", []string{`accounts[0].roles[0].name: "" is not a role name`}},
		{"role name too long", acct + "  roles:\n  - {name: " + strings.Repeat("r", 65) + ", trustPolicy: $TP}\n",
			[]string{"accounts[0].roles[0].name: ", "is not a role name"}},
		{"role path without slashes", acct + "  roles:\n  - {name: app, path: team, trustPolicy: $TP}\n",
			[]string{`accounts[0].roles[0].path: "team" is not an IAM path`}},
		{"role path without trailing slash", acct + "  roles:\n  - {name: app, path: /team, trustPolicy: $TP}\n",
			[]string{`accounts[0].roles[0].path: "/team" is not an IAM path`}},
		{"role path with space", acct + "  roles:\n  - {name: app, path: /my team/, trustPolicy: $TP}\n",
			[]string{`accounts[0].roles[0].path: "/my team/" is not an IAM path`}},
		{"duration over maximum", acct + "  roles:\n  - {name: a, trustPolicy: $TP}\n  - {name: b, maxSessionDuration: 50000, trustPolicy: $TP}\n",
			[]string{"accounts[0].roles[1].maxSessionDuration: 50000 is outside 3600..43200"}},
		{"duration under minimum", acct + "  roles:\n  - {name: a, maxSessionDuration: 900, trustPolicy: $TP}\n",
			[]string{"accounts[0].roles[0].maxSessionDuration: 900 is outside 3600..43200"}},
		{"no trust policy", acct + "  roles:\n  - {name: app}\n",
			[]string{"accounts[0].roles[0]: a trust policy is required: trustPolicy (inline) or trustPolicyFile"}},
		{"two trust policies", acct + "  roles:\n  - {name: app, trustPolicy: $TP, trustPolicyFile: trust.json}\n",
			[]string{"accounts[0].roles[0]: trustPolicy and trustPolicyFile exclude each other"}},
		{"trust policy a number", acct + "  roles:\n  - {name: app, trustPolicy: 3}\n",
			[]string{"accounts[0].roles[0].trustPolicy: a number is not a policy document"}},
		{"trust policy string not JSON", acct + "  roles:\n  - {name: app, trustPolicy: '{\"Version\": '}\n",
			[]string{"accounts[0].roles[0].trustPolicy: ", "not JSON"}},
		{"trust policy string not an object", acct + "  roles:\n  - {name: app, trustPolicy: 'allow everyone'}\n",
			[]string{"accounts[0].roles[0].trustPolicy: not a policy document"}},
		{"trust policy bad effect", acct + "  roles:\n  - {name: app, trustPolicy: {Statement: [{Effect: Maybe, Principal: '*', Action: 'sts:AssumeRole'}]}}\n",
			[]string{"accounts[0].roles[0].trustPolicy: Statement[0].Effect"}},
		{"trust policy unknown element", acct + "  roles:\n  - {name: app, trustPolicy: {Statment: []}}\n",
			[]string{"accounts[0].roles[0].trustPolicy: ", "Statment"}},
		{"trust policy NotPrincipal", acct + "  roles:\n  - {name: app, trustPolicy: {Statement: [{Effect: Allow, NotPrincipal: '*', Action: 'sts:AssumeRole'}]}}\n",
			[]string{"accounts[0].roles[0].trustPolicy: Statement[0].NotPrincipal: not allowed in a role trust policy"}},
		{"trust policy without principal", acct + "  roles:\n  - {name: app, trustPolicy: {Statement: [{Effect: Allow, Action: 'sts:AssumeRole'}]}}\n",
			[]string{"accounts[0].roles[0].trustPolicy: Statement[0].Principal: missing"}},
		{"trust policy with resource", acct + "  roles:\n  - {name: app, trustPolicy: {Statement: [{Effect: Allow, Principal: '*', Action: 'sts:AssumeRole', Resource: '*'}]}}\n",
			[]string{"accounts[0].roles[0].trustPolicy: Statement[0].Resource: not allowed in a role trust policy"}},
		{"trust policy without statements", acct + "  roles:\n  - {name: app, trustPolicy: {Version: '2012-10-17', Statement: []}}\n",
			[]string{"accounts[0].roles[0].trustPolicy: Statement: "}},
		{"trust policy file missing", acct + "  roles:\n  - {name: app, trustPolicyFile: nope.json}\n",
			[]string{"accounts[0].roles[0].trustPolicyFile: open ", "nope.json: no such file or directory"}},
		{"trust policy file not a policy", acct + "  roles:\n  - {name: app, trustPolicyFile: trust-bad.txt}\n",
			[]string{"accounts[0].roles[0].trustPolicyFile: ", "trust-bad.txt: not a policy document"}},
		{"duplicate role ignoring case and path", acct + "  roles:\n  - {name: app, trustPolicy: $TP}\n  - {name: App, path: /x/, trustPolicy: $TP}\n",
			[]string{`accounts[0].roles[1].name: duplicate role "App" (also accounts[0].roles[0]`}},
		{"empty user", acct + "  users: [null]\n", []string{"accounts[0].users[0]: empty entry"}},
		{"user name bad", acct + "  users:\n  - {name: 'c i', accessKeyId: AKIAEXAMPLEEXAMPLE01, secretAccessKey: s}\n",
			[]string{`accounts[0].users[0].name: "c i" is not a user name`}},
		{"session key id for a user", acct + "  users:\n  - {name: ci, accessKeyId: ASIAEXAMPLEEXAMPLE01, secretAccessKey: s}\n",
			[]string{`accounts[0].users[0].accessKeyId: "ASIAEXAMPLEEXAMPLE01" is not a user's access key id`}},
		{"key id too short", acct + "  users:\n  - {name: ci, accessKeyId: AKIA12345678901, secretAccessKey: s}\n",
			[]string{`accounts[0].users[0].accessKeyId: "AKIA12345678901" is not a user's access key id`}},
		{"key id too long", acct + "  users:\n  - {name: ci, accessKeyId: AKIA" + strings.Repeat("A", 125) + ", secretAccessKey: s}\n",
			[]string{"accounts[0].users[0].accessKeyId: ", "is not a user's access key id"}},
		{"secret missing", acct + "  users:\n  - {name: ci, accessKeyId: AKIAEXAMPLEEXAMPLE01}\n",
			[]string{"accounts[0].users[0].secretAccessKey: required"}},
		{"duplicate user", acct + "  users:\n  - {name: ci, accessKeyId: AKIAEXAMPLEEXAMPLE01, secretAccessKey: s}\n  - {name: CI, accessKeyId: AKIAEXAMPLEEXAMPLE02, secretAccessKey: s}\n",
			[]string{`accounts[0].users[1].name: duplicate user "CI" (also accounts[0].users[0])`}},
		{"duplicate key id across accounts", acct + "  users:\n  - {name: ci, accessKeyId: AKIAEXAMPLEEXAMPLE01, secretAccessKey: s}\n" +
			"- id: \"444455556666\"\n  users:\n  - {name: ci, accessKeyId: AKIAEXAMPLEEXAMPLE01, secretAccessKey: t}\n",
			[]string{"accounts[1].users[0].accessKeyId: duplicate access key id AKIAEXAMPLEEXAMPLE01 (also accounts[0].users[0].accessKeyId)"}},
		{"every problem reported", "accounts:\n- id: \"1\"\n  roles:\n  - {name: a, maxSessionDuration: 1, trustPolicy: $TP}\n  - {name: b/c, trustPolicy: $TP}\n",
			[]string{"accounts[0].id: ", "accounts[0].roles[0].maxSessionDuration: 1 is outside", "accounts[0].roles[1].name: "}},
	}
	dir := writeFiles(t, files)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(withTrustPolicy(tc.doc)), dir)
			if err == nil {
				t.Fatalf("Parse accepted the config (%d accounts); want an error containing %q", len(c.Accounts), tc.want)
			}
			if testing.Verbose() {
				t.Log(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// A rejected user keeps its secret out of the error, which ends up in logs.
func TestParseErrorsHideSecrets(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG bPxRfiCYEXAMPLEKEY"
	doc := "accounts:\n- id: \"111122223333\"\n  users:\n  - {name: 'c i', accessKeyId: AKIA1, secretAccessKey: '" + secret + "'}\n"
	_, err := Parse([]byte(doc), "")
	if err == nil {
		t.Fatal("Parse accepted the config")
	}
	if !strings.Contains(err.Error(), "secretAccessKey: contains white space") {
		t.Errorf("error %q does not name the secret's problem", err)
	}
	if strings.Contains(err.Error(), "EXAMPLEKEY") {
		t.Errorf("error %q contains the secret", err)
	}
}

func TestLoadExample(t *testing.T) {
	c, err := Load("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata")
	if c.Path() != filepath.Join(abs, "config.yaml") {
		t.Errorf("Path() = %q", c.Path())
	}
	const acct = "111122223333"
	if a := c.Account(acct); a == nil || len(a.Roles) != 3 || len(a.OIDCProviders) != 2 || len(a.Users) != 1 {
		t.Fatalf("Account(%s) = %+v", acct, a)
	}

	p := c.ProviderInAccount(acct, "https://oidc.example.com")
	switch {
	case p == nil:
		t.Fatal("provider https://oidc.example.com not found")
	case p.ARN != "arn:aws:iam::111122223333:oidc-provider/oidc.example.com" || p.HostPath != "oidc.example.com":
		t.Errorf("provider ARN %q, host path %q", p.ARN, p.HostPath)
	case p.CAFile != filepath.Join(abs, "ca.pem") || p.Roots == nil:
		t.Errorf("caFile %q not resolved against the config's directory, or roots %v not loaded", p.CAFile, p.Roots)
	}
	if k := c.ProviderInAccount(acct, "https://kubernetes.default.svc"); k == nil || k.Kubeconfig != filepath.Join(abs, "kubeconfig.yaml") || k.Roots != nil {
		t.Errorf("kubeconfig provider = %+v", k)
	}
	// The issuer must match exactly, and providers belong to their account.
	for _, iss := range []string{"https://oidc.example.com/", "https://OIDC.example.com", "oidc.example.com"} {
		if c.ProviderInAccount(acct, iss) != nil {
			t.Errorf("ProviderInAccount(%q) found a provider", iss)
		}
		if c.ProviderByIssuer(iss) != nil {
			t.Errorf("ProviderByIssuer(%q) found a provider", iss)
		}
	}
	if c.ProviderInAccount("444455556666", "https://oidc.example.com") != nil {
		t.Error("provider found in another account")
	}

	roles := []struct {
		arn, name, path string
		max             time.Duration
	}{
		{"arn:aws:iam::111122223333:role/app", "app", "/", time.Hour},
		{"arn:aws:iam::111122223333:role/team/from-file", "from-file", "/team/", 12 * time.Hour},
		{"arn:aws:iam::111122223333:role/ci-target", "ci-target", "/", DefaultMaxSessionDuration},
	}
	for _, want := range roles {
		r := c.RoleByARN(want.arn)
		if r == nil {
			t.Errorf("role %s not found", want.arn)
			continue
		}
		if r.Name != want.name || r.Path != want.path || r.MaxSession() != want.max || r.AccountID != acct {
			t.Errorf("role %s = name %q path %q max %v account %q", want.arn, r.Name, r.Path, r.MaxSession(), r.AccountID)
		}
		if r.ID != RoleID(acct, want.path, want.name) || r.Policy == nil || len(r.PolicyDocument) == 0 {
			t.Errorf("role %s: id %q, policy %v", want.arn, r.ID, r.Policy)
		}
	}
	if c.RoleByARN("arn:aws:iam::111122223333:role/from-file") != nil {
		t.Error("a role was found without its path")
	}

	u := c.UserByAccessKeyID("AKIAEXAMPLEEXAMPLE01")
	if u == nil || u.ARN != "arn:aws:iam::111122223333:user/ci" || u.ID != UserID(acct, "ci") || u.SecretAccessKey == "" {
		t.Fatalf("user = %v", u)
	}
	// Neither the user nor the config shows a secret when logged or printed.
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "user", u, "config", c)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "user", u, "config", c)
	for _, text := range []string{u.String(), fmt.Sprint(u), logged.String()} {
		if strings.Contains(text, u.SecretAccessKey) {
			t.Errorf("%q shows the secret", text)
		}
	}
	if !strings.Contains(logged.String(), u.AccessKeyID) {
		t.Errorf("log %s lacks the user's key id", logged.String())
	}
	if c.UserByAccessKeyID("AKIAEXAMPLEEXAMPLE02") != nil {
		t.Error("unknown key id found")
	}
}

// The README's example, as the issue shows it, loads with its CA file next to it.
func TestParseIssueExample(t *testing.T) {
	caPEM, err := os.ReadFile("testdata/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	dir := writeFiles(t, map[string]string{"ca.pem": string(caPEM)})
	doc := `accounts:
- id: "111122223333"
  oidcProviders:
  - url: https://oidc.example.com        # must equal the token's iss
    clientIDs: [sts.amazonaws.com]
    caFile: ca.pem                       # optional: private CA of the issuer's host
  roles:
  - name: app                            # arn:aws:iam::111122223333:role/app
    path: /                              # optional
    maxSessionDuration: 3600             # optional, 3600..43200
    trustPolicy: {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/oidc.example.com"}, "Action": "sts:AssumeRoleWithWebIdentity"}]}
  users:
  - name: ci                             # arn:aws:iam::111122223333:user/ci
    accessKeyId: AKIAEXAMPLEEXAMPLE01
    secretAccessKey: secret
`
	c, err := Parse([]byte(doc), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.RoleByARN("arn:aws:iam::111122223333:role/app") == nil || c.UserByAccessKeyID("AKIAEXAMPLEEXAMPLE01") == nil {
		t.Error("role or user of the example missing")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{"bad.yaml": "accounts: []\n"})
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.yaml"), "no such file or directory"},
		{filepath.Join(dir, "bad.yaml"), "sts config " + filepath.Join(dir, "bad.yaml") + ": accounts: at least one account is required"},
	} {
		if _, err := Load(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%s) = %v, want an error containing %q", tc.path, err, tc.want)
		}
	}
}

// The same issuer may be trusted by several accounts, each with its own provider.
func TestProviderInSeveralAccounts(t *testing.T) {
	doc := `accounts:
- id: "111122223333"
  oidcProviders: [{url: "https://oidc.example.com", clientIDs: [a]}]
- id: "444455556666"
  oidcProviders: [{url: "https://oidc.example.com", clientIDs: [b]}]
`
	c, err := Parse([]byte(doc), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ account, clientID string }{{"111122223333", "a"}, {"444455556666", "b"}} {
		p := c.ProviderInAccount(tc.account, "https://oidc.example.com")
		if p == nil || p.AccountID != tc.account || p.ClientIDs[0] != tc.clientID ||
			p.ARN != "arn:aws:iam::"+tc.account+":oidc-provider/oidc.example.com" {
			t.Errorf("ProviderInAccount(%s) = %+v", tc.account, p)
		}
	}
	if p := c.ProviderByIssuer("https://oidc.example.com"); p == nil || p.AccountID != "111122223333" {
		t.Errorf("ProviderByIssuer = %+v, want the first account's", p)
	}
}
