package sts

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"sigs.k8s.io/yaml"

	"github.com/podiam/podiam/internal/oidc"
	"github.com/podiam/podiam/internal/policy"
)

// Session duration bounds of a role (IAM's MaxSessionDuration) and of a request.
const (
	// DefaultMaxSessionDuration is a role's maximum session duration when the config
	// does not set one.
	DefaultMaxSessionDuration = time.Hour
	// MinMaxSessionDuration and MaxMaxSessionDuration bound a role's maxSessionDuration.
	MinMaxSessionDuration = time.Hour
	MaxMaxSessionDuration = 12 * time.Hour
	// RoleChainingMaxDuration caps a session whose credentials came from a role session.
	RoleChainingMaxDuration = time.Hour
)

// Config is a validated STS configuration: the accounts with their OIDC providers,
// roles and users, and lookups by what requests name. Obtain one with [Load] or
// [Parse]; a Config is immutable afterwards and safe for concurrent use.
type Config struct {
	// Accounts in file order.
	Accounts []*Account `json:"accounts"`

	// path is the absolute path of the file the config was read from ("" for Parse
	// without a base directory).
	path string

	rolesByARN         map[string]*Role
	providersByIssuer  map[string]*OIDCProvider // first account registering the issuer
	providersByAccount map[string]*OIDCProvider // by account id + " " + issuer
	usersByKeyID       map[string]*User
}

// Account is one AWS account emulated by the STS.
type Account struct {
	// ID is the 12-digit account id.
	ID            string          `json:"id"`
	OIDCProviders []*OIDCProvider `json:"oidcProviders,omitempty"`
	Roles         []*Role         `json:"roles,omitempty"`
	Users         []*User         `json:"users,omitempty"`
}

// OIDCProvider is an IAM OIDC identity provider: the issuer whose tokens
// AssumeRoleWithWebIdentity accepts.
type OIDCProvider struct {
	// URL is the issuer; it must equal a token's iss claim exactly.
	URL string `json:"url"`
	// ClientIDs are the accepted audiences (aud) of the provider's tokens.
	ClientIDs []string `json:"clientIDs"`
	// CAFile, optional, is a PEM bundle of the CA of the issuer's HTTPS host. A relative
	// path is resolved against the config file's directory; after loading it is absolute.
	CAFile string `json:"caFile,omitempty"`
	// Kubeconfig, optional, makes the STS read the keys from the API server it names
	// (/openid/v1/jwks) instead of fetching the discovery document over HTTPS. Resolved
	// like CAFile.
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// AccountID is the id of the account the provider belongs to.
	AccountID string `json:"-"`
	// ARN is arn:aws:iam::<account>:oidc-provider/<url without https://>.
	ARN string `json:"-"`
	// HostPath is URL without its scheme: the prefix of the web identity condition keys
	// (<HostPath>:sub, <HostPath>:aud).
	HostPath string `json:"-"`
	// Roots holds the certificates of CAFile; nil when CAFile is empty (system roots).
	Roots *x509.CertPool `json:"-"`
}

// Role is an IAM role that sessions can assume.
type Role struct {
	// Name is the role's name ([\w+=,.@-]{1,64}).
	Name string `json:"name"`
	// Path is the role's path, "/" or "/…/"; "/" when unset.
	Path string `json:"path,omitempty"`
	// MaxSessionDuration is the maximum session duration in seconds (3600..43200);
	// 3600 when unset.
	MaxSessionDuration int64 `json:"maxSessionDuration,omitempty"`
	// TrustPolicy is the inline trust policy (an object in JSON or YAML, or a string
	// holding the JSON document). Exactly one of TrustPolicy and TrustPolicyFile is set.
	TrustPolicy jsontext.Value `json:"trustPolicy,omitempty"`
	// TrustPolicyFile names a file holding the trust policy (JSON). Resolved like
	// OIDCProvider.CAFile.
	TrustPolicyFile string `json:"trustPolicyFile,omitempty"`

	// AccountID is the id of the account the role belongs to.
	AccountID string `json:"-"`
	// ARN is arn:aws:iam::<account>:role<path><name>.
	ARN string `json:"-"`
	// ID is the role's stable unique id (AROA…), see [RoleID].
	ID string `json:"-"`
	// Policy is the parsed trust policy.
	Policy *policy.Policy `json:"-"`
	// PolicyDocument is the trust policy as JSON, as it was parsed.
	PolicyDocument []byte `json:"-"`
}

// MaxSession returns the role's maximum session duration.
func (r *Role) MaxSession() time.Duration {
	if r.MaxSessionDuration == 0 {
		return DefaultMaxSessionDuration
	}
	return time.Duration(r.MaxSessionDuration) * time.Second
}

// User is an IAM user with long-term credentials that can sign AssumeRole and
// GetCallerIdentity.
type User struct {
	// Name is the user's name ([\w+=,.@-]{1,64}).
	Name string `json:"name"`
	// AccessKeyID is the user's access key id (AKIA…, 16..128 characters).
	AccessKeyID string `json:"accessKeyId"`
	// SecretAccessKey is the user's secret. Never logged.
	SecretAccessKey string `json:"secretAccessKey"`

	// AccountID is the id of the account the user belongs to.
	AccountID string `json:"-"`
	// ARN is arn:aws:iam::<account>:user/<name>.
	ARN string `json:"-"`
	// ID is the user's stable unique id (AIDA…), see [UserID].
	ID string `json:"-"`
}

// String identifies the user without its secret.
func (u *User) String() string { return u.ARN + " (" + u.AccessKeyID + ")" }

// LogValue identifies the user for slog without its secret (the JSON handler would
// otherwise write every exported field).
func (u *User) LogValue() slog.Value {
	return slog.GroupValue(slog.String("arn", u.ARN), slog.String("accessKeyId", u.AccessKeyID))
}

// LogValue summarises the config for slog; it never writes the users' secrets.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("path", c.path), slog.Int("accounts", len(c.Accounts)),
		slog.Int("roles", len(c.rolesByARN)), slog.Int("users", len(c.usersByKeyID)))
}

// Path returns the absolute path of the file the config was loaded from, or "".
func (c *Config) Path() string { return c.path }

// Account returns the account with that id, or nil.
func (c *Config) Account(id string) *Account {
	for _, a := range c.Accounts {
		if a.ID == id {
			return a
		}
	}
	return nil
}

// RoleByARN returns the role with exactly that ARN, or nil.
func (c *Config) RoleByARN(arn string) *Role { return c.rolesByARN[arn] }

// ProviderByIssuer returns an OIDC provider whose URL is exactly iss (a token's iss
// claim), or nil. When several accounts register the same issuer it returns the one
// of the first such account; [Config.ProviderInAccount] finds the one of a given
// account.
func (c *Config) ProviderByIssuer(iss string) *OIDCProvider { return c.providersByIssuer[iss] }

// ProviderInAccount returns the OIDC provider registered in accountID whose URL is
// exactly iss, or nil. Providers are per account, as in IAM: the role being assumed
// names the account, and the same cluster may be trusted by several accounts.
func (c *Config) ProviderInAccount(accountID, iss string) *OIDCProvider {
	return c.providersByAccount[accountID+" "+iss]
}

// UserByAccessKeyID returns the user owning that access key id, or nil.
func (c *Config) UserByAccessKeyID(id string) *User { return c.usersByKeyID[id] }

// maxConfigSize caps the config file read by Load; a real one is a few KiB.
const maxConfigSize = 8 << 20

// Load reads, parses and validates the config file at path. Relative file names in
// it are resolved against path's directory. Errors name the offending field by its
// path, e.g. "accounts[0].roles[1].maxSessionDuration: 50000 is outside 3600..43200";
// several problems are reported together, one a line.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sts config %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("sts config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("sts config: reading %s: %w", abs, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("sts config %s: larger than %d bytes", abs, maxConfigSize)
	}
	c, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("sts config %s: %w", abs, err)
	}
	c.path = abs
	return c, nil
}

// Parse parses and validates a config document (YAML or JSON). Unknown fields are
// errors. Relative file names in it are resolved against baseDir (the working
// directory when baseDir is "").
func Parse(data []byte, baseDir string) (*Config, error) {
	c, _, err := parse(data, baseDir)
	return c, err
}

// parse is Parse that also returns the files the document refers to (CA files,
// kubeconfigs, trust policy files), even when it is invalid, so that a watcher can
// notice when one of them changes.
func parse(data []byte, baseDir string) (*Config, []string, error) {
	// Strict: a key given twice is an error rather than the last one silently winning.
	doc, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var c Config
	if err := json.Unmarshal(doc, &c, json.RejectUnknownMembers(true)); err != nil {
		return nil, nil, decodeError(err)
	}
	v := validator{base: baseDir, c: &c}
	v.config()
	if err := errors.Join(v.errs...); err != nil {
		return nil, v.files, err
	}
	return &c, v.files, nil
}

// decodeError turns a JSON decoding error into one naming the field's path.
func decodeError(err error) error {
	var se *json.SemanticError
	if !errors.As(err, &se) {
		return fmt.Errorf("not a valid config: %w", err)
	}
	path := pointerPath(se.JSONPointer)
	switch {
	case errors.Is(se.Err, json.ErrUnknownName):
		return fmt.Errorf("%s: unknown field", path)
	case path == "":
		return fmt.Errorf("the document must be a mapping with an accounts list, not a %s", kindName(se.JSONKind))
	case se.JSONKind == '0' && se.GoType != nil && se.GoType.Kind() == reflect.String:
		// YAML reads an unquoted account id as a number (and one with a leading zero as
		// an octal number).
		return fmt.Errorf("%s: a number is not valid here (want a string: quote it, e.g. \"111122223333\")", path)
	case se.GoType != nil:
		return fmt.Errorf("%s: a %s is not valid here (want %s)", path, kindName(se.JSONKind), typeName(se.GoType.String()))
	default:
		return fmt.Errorf("%s: %w", path, err)
	}
}

// pointerPath writes a JSON pointer (/accounts/0/roles/1) as a field path
// (accounts[0].roles[1]).
func pointerPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// kindName names a JSON kind for a message.
func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "mapping"
	case '[':
		return "list"
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "value"
}

// typeName describes the Go type a field wants in the config's terms.
func typeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "*sts.") || strings.HasPrefix(t, "sts."):
		return "a mapping"
	case strings.HasPrefix(t, "int"):
		return "an integer"
	case t == "string":
		return "a string"
	}
	return t
}

// IAM's grammar for names and paths (CreateRole, CreateUser, CreateAccessKey).
var (
	nameRE        = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	pathRE        = regexp.MustCompile(`^/([\x21-\x7e]*/)?$`)
	accessKeyIDRE = regexp.MustCompile(`^AKIA[A-Z0-9]{12,124}$`)
)

// maxPathLen is IAM's limit on a role path.
const maxPathLen = 512

// maxClientIDLen is IAM's limit on an OIDC provider's client id.
const maxClientIDLen = 255

// validator checks a decoded config, fills in its derived fields and collects every
// problem with its path.
type validator struct {
	base  string
	c     *Config
	errs  []error
	files []string // files referred to, resolved
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (v *validator) config() {
	c := v.c
	c.rolesByARN = map[string]*Role{}
	c.providersByIssuer = map[string]*OIDCProvider{}
	c.providersByAccount = map[string]*OIDCProvider{}
	c.usersByKeyID = map[string]*User{}
	if len(c.Accounts) == 0 {
		v.fail("accounts", "at least one account is required")
		return
	}
	accounts := map[string]string{}
	keys := map[string]string{}
	for i, a := range c.Accounts {
		path := fmt.Sprintf("accounts[%d]", i)
		if a == nil {
			v.fail(path, "empty entry")
			continue
		}
		if err := policy.ValidateAccount(a.ID); err != nil {
			v.fail(path+".id", "%q is not a 12-digit account id", a.ID)
		} else if prev, dup := accounts[a.ID]; dup {
			v.fail(path+".id", "duplicate account %s (also %s)", a.ID, prev)
		} else {
			accounts[a.ID] = path
		}
		v.account(path, a, keys)
	}
}

func (v *validator) account(path string, a *Account, keys map[string]string) {
	urls := map[string]string{}
	for i, p := range a.OIDCProviders {
		pp := fmt.Sprintf("%s.oidcProviders[%d]", path, i)
		if p == nil {
			v.fail(pp, "empty entry")
			continue
		}
		v.provider(pp, a.ID, p)
		if p.URL == "" {
			continue
		}
		if prev, dup := urls[p.URL]; dup {
			v.fail(pp+".url", "duplicate provider %s (also %s)", p.URL, prev)
			continue
		}
		urls[p.URL] = pp
		v.c.providersByAccount[a.ID+" "+p.URL] = p
		if _, ok := v.c.providersByIssuer[p.URL]; !ok {
			v.c.providersByIssuer[p.URL] = p
		}
	}

	roles := map[string]string{}
	for i, r := range a.Roles {
		rp := fmt.Sprintf("%s.roles[%d]", path, i)
		if r == nil {
			v.fail(rp, "empty entry")
			continue
		}
		v.role(rp, a.ID, r)
		// IAM role names are unique in an account regardless of path and of case.
		lower := strings.ToLower(r.Name)
		if prev, dup := roles[lower]; dup && r.Name != "" {
			v.fail(rp+".name", "duplicate role %q (also %s; role names are unique in an account, ignoring case and path)", r.Name, prev)
			continue
		}
		roles[lower] = rp
		v.c.rolesByARN[r.ARN] = r
	}

	users := map[string]string{}
	for i, u := range a.Users {
		up := fmt.Sprintf("%s.users[%d]", path, i)
		if u == nil {
			v.fail(up, "empty entry")
			continue
		}
		v.user(up, a.ID, u)
		lower := strings.ToLower(u.Name)
		if prev, dup := users[lower]; dup && u.Name != "" {
			v.fail(up+".name", "duplicate user %q (also %s)", u.Name, prev)
		} else {
			users[lower] = up
		}
		if u.AccessKeyID == "" {
			continue
		}
		if prev, dup := keys[u.AccessKeyID]; dup {
			v.fail(up+".accessKeyId", "duplicate access key id %s (also %s)", u.AccessKeyID, prev)
			continue
		}
		keys[u.AccessKeyID] = up + ".accessKeyId"
		v.c.usersByKeyID[u.AccessKeyID] = u
	}
}

func (v *validator) provider(path, account string, p *OIDCProvider) {
	p.AccountID = account
	if err := oidc.ValidateIssuer(p.URL); err != nil {
		v.fail(path+".url", "%v", err)
	} else {
		p.HostPath = oidc.HostPath(p.URL)
		p.ARN = "arn:aws:iam::" + account + ":oidc-provider/" + p.HostPath
	}
	if len(p.ClientIDs) == 0 {
		v.fail(path+".clientIDs", "at least one client id (audience) is required, e.g. sts.amazonaws.com")
	}
	for i, id := range p.ClientIDs {
		switch {
		case id == "":
			v.fail(fmt.Sprintf("%s.clientIDs[%d]", path, i), "empty client id")
		case len(id) > maxClientIDLen:
			v.fail(fmt.Sprintf("%s.clientIDs[%d]", path, i), "longer than %d characters", maxClientIDLen)
		}
	}
	if p.CAFile != "" && p.Kubeconfig != "" {
		v.fail(path, "caFile and kubeconfig exclude each other: the keys come either from the issuer over HTTPS or from the API server")
	}
	if p.CAFile != "" {
		p.CAFile = v.resolve(p.CAFile)
		pem, err := os.ReadFile(p.CAFile)
		switch {
		case err != nil:
			v.fail(path+".caFile", "%v", err)
		default:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				v.fail(path+".caFile", "%s holds no PEM certificate", p.CAFile)
			} else {
				p.Roots = pool
			}
		}
	}
	if p.Kubeconfig != "" {
		p.Kubeconfig = v.resolve(p.Kubeconfig)
		if err := readableFile(p.Kubeconfig); err != nil {
			v.fail(path+".kubeconfig", "%v", err)
		}
	}
}

func (v *validator) role(path, account string, r *Role) {
	r.AccountID = account
	if !nameRE.MatchString(r.Name) {
		v.fail(path+".name", "%q is not a role name (1..64 of letters, digits and +=,.@_-)", r.Name)
	}
	if r.Path == "" {
		r.Path = "/"
	}
	if len(r.Path) > maxPathLen || !pathRE.MatchString(r.Path) {
		v.fail(path+".path", "%q is not an IAM path (\"/\" or \"/division/team/\", at most %d printable ASCII characters)", r.Path, maxPathLen)
	}
	if d := r.MaxSessionDuration; d != 0 && (d < int64(MinMaxSessionDuration/time.Second) || d > int64(MaxMaxSessionDuration/time.Second)) {
		v.fail(path+".maxSessionDuration", "%d is outside %d..%d", d, int64(MinMaxSessionDuration/time.Second), int64(MaxMaxSessionDuration/time.Second))
	}
	r.ARN = "arn:aws:iam::" + account + ":role" + r.Path + r.Name
	r.ID = RoleID(account, r.Path, r.Name)
	v.trustPolicy(path, r)
}

// trustPolicy reads and parses the role's trust policy. A policy IAM would refuse
// rejects the config: at load it is the operator's error, not a request's.
func (v *validator) trustPolicy(path string, r *Role) {
	var doc []byte
	field := path + ".trustPolicy"
	switch inline := len(r.TrustPolicy) > 0 && r.TrustPolicy.Kind() != 'n'; {
	case inline && r.TrustPolicyFile != "":
		v.fail(path, "trustPolicy and trustPolicyFile exclude each other")
		return
	case !inline && r.TrustPolicyFile == "":
		v.fail(path, "a trust policy is required: trustPolicy (inline) or trustPolicyFile")
		return
	case inline && r.TrustPolicy.Kind() == '{':
		doc = r.TrustPolicy
	case inline && r.TrustPolicy.Kind() == '"':
		var s string
		if err := json.Unmarshal(r.TrustPolicy, &s); err != nil {
			v.fail(field, "%v", err)
			return
		}
		var err error
		if doc, err = policyJSON([]byte(s)); err != nil {
			v.fail(field, "%v", err)
			return
		}
	case inline:
		v.fail(field, "a %s is not a policy document (want a mapping, or a string holding the JSON)", kindName(r.TrustPolicy.Kind()))
		return
	default:
		field = path + ".trustPolicyFile"
		r.TrustPolicyFile = v.resolve(r.TrustPolicyFile)
		data, err := os.ReadFile(r.TrustPolicyFile)
		if err != nil {
			v.fail(field, "%v", err)
			return
		}
		if doc, err = policyJSON(data); err != nil {
			v.fail(field, "%s: %v", r.TrustPolicyFile, err)
			return
		}
	}
	p, err := policy.Parse(doc)
	if err != nil {
		v.fail(field, "%v", err)
		return
	}
	if err := trustRules(p); err != nil {
		v.fail(field, "%v", err)
		return
	}
	r.Policy, r.PolicyDocument = p, doc
}

// policyJSON returns a policy document as JSON: as is when it is JSON (so that
// policy.Parse reports positions in the operator's text), converted when YAML.
func policyJSON(data []byte) ([]byte, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		return t, nil
	}
	doc, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("neither a JSON object nor YAML: %w", err)
	}
	if t := bytes.TrimSpace(doc); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("not a policy document (want a JSON or YAML object)")
	}
	return doc, nil
}

// trustRules refuses what IAM refuses in a role trust policy (MalformedPolicyDocument
// from CreateRole), which policy.Parse accepts because it reads any policy.
func trustRules(p *policy.Policy) error {
	if len(p.Statements) == 0 {
		return errors.New("Statement: a trust policy needs at least one statement")
	}
	for i := range p.Statements {
		s := &p.Statements[i]
		switch {
		case s.NotPrincipal != nil:
			return fmt.Errorf("%s.NotPrincipal: not allowed in a role trust policy", s.Path())
		case s.Principal == nil:
			return fmt.Errorf("%s.Principal: missing; a role trust policy names who may assume the role", s.Path())
		case s.Resource.List != nil || s.NotResource.List != nil:
			return fmt.Errorf("%s.Resource: not allowed in a role trust policy; the role itself is the resource", s.Path())
		}
	}
	return nil
}

func (v *validator) user(path, account string, u *User) {
	u.AccountID = account
	if !nameRE.MatchString(u.Name) {
		v.fail(path+".name", "%q is not a user name (1..64 of letters, digits and +=,.@_-)", u.Name)
	}
	// The key id is not secret (AWS logs it); the secret never appears in an error.
	if !accessKeyIDRE.MatchString(u.AccessKeyID) {
		v.fail(path+".accessKeyId", "%q is not a user's access key id (AKIA and upper-case letters or digits, 16..128 characters)", u.AccessKeyID)
	}
	switch {
	case u.SecretAccessKey == "":
		v.fail(path+".secretAccessKey", "required")
	case strings.TrimSpace(u.SecretAccessKey) != u.SecretAccessKey || strings.ContainsAny(u.SecretAccessKey, " \t\r\n"):
		v.fail(path+".secretAccessKey", "contains white space")
	}
	u.ARN = "arn:aws:iam::" + account + ":user/" + u.Name
	u.ID = UserID(account, u.Name)
}

// resolve makes a file name from the config absolute against the config's directory.
func (v *validator) resolve(p string) string {
	if !filepath.IsAbs(p) && v.base != "" {
		p = filepath.Join(v.base, p)
	}
	v.files = append(v.files, p)
	return p
}

// readableFile checks that p is a regular file that can be opened for reading.
func readableFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory", p)
	}
	return nil
}
