package sts

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/podiam/podiam/internal/jwks"
	"github.com/podiam/podiam/internal/policy"
)

// AWS's messages for AssumeRoleWithWebIdentity (SPEC §5).
const (
	messageNotAJWT = "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)"
	// messageNoKey has two spaces after the comma, as AWS writes it.
	messageNoKey           = "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements"
	messageNoProvider      = "No OpenIDConnect provider found in your account for "
	messageBadAudience     = "Incorrect token audience"
	messageNotYetValid     = "Token is not yet valid"
	messageWebIdentityDeny = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
	messageOverRoleMax     = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
)

// Claims an OIDC provider passes a source identity and session tags with.
const (
	sourceIdentityClaim = "https://aws.amazon.com/source_identity"
	// tagsClaim is {"principal_tags": {"<key>": ["<value>"]}, "transitive_tag_keys": ["<key>"]}.
	tagsClaim = "https://aws.amazon.com/tags"
)

// assumeRoleWithWebIdentity checks, in AWS's order, the parameters, the token
// (shape, issuer, key, signature, audience, times) and the role's trust policy,
// then issues a session.
func (s *Server) assumeRoleWithWebIdentity(c *call) *apiError {
	var v validation
	roleARN, sessionName := c.roleParams(&v)
	raw, hasToken := c.param("WebIdentityToken")
	if v.required("webIdentityToken", hasToken) {
		v.length("webIdentityToken", raw, true, 4, jwks.MaxTokenSize, "", nil)
	}
	if p, ok := c.param("ProviderId"); ok {
		v.length("providerId", p, false, 4, 2048, "", nil)
	}
	duration := c.durationParam(&v)
	policyDoc, _ := c.policyParams(&v)
	if err := v.err(); err != nil {
		return err
	}
	partition, account, ok := parseRoleARN(roleARN)
	if !ok {
		return newAPIError(codeValidation, roleARN+" is invalid", "RoleArn is not an IAM role ARN")
	}
	if err := checkSessionPolicy(policyDoc); err != nil {
		return err
	}

	tok, err := jwks.Parse(raw)
	if err != nil {
		return newAPIError(codeInvalidIdentityToken, messageNotAJWT, "token: "+err.Error())
	}
	cl := &tok.Claims
	// tokenAttrs describe the token in a denial's log line (built only then).
	tokenAttrs := func() []slog.Attr {
		return []slog.Attr{slog.String("iss", cl.Issuer), slog.String("sub", cl.Subject),
			slog.Any("aud", cl.Audience), slog.String("kid", tok.Kid), slog.String("alg", tok.Alg), slog.String("roleArn", roleARN)}
	}
	// Providers are per account, as in IAM: the role's account must have one.
	provider := c.cfg.ProviderInAccount(account, cl.Issuer)
	if provider == nil {
		reason := fmt.Sprintf("no OIDC provider with url %q in account %s", cl.Issuer, account)
		if other := c.cfg.ProviderByIssuer(cl.Issuer); other != nil {
			reason += " (it is registered in account " + other.AccountID + ")"
		}
		return newAPIError(codeInvalidIdentityToken, messageNoProvider+cl.Issuer, reason, tokenAttrs()...)
	}
	ks, ksErr := s.keySets.forConfig(c.cfg).get(provider)
	if ksErr != nil {
		return newAPIError(codeIDPCommunication, messageNoKey, "key source of "+provider.URL+": "+ksErr.Error(), tokenAttrs()...)
	}
	if err := ks.Verify(c.ctx, tok); err != nil {
		return tokenError(err, tokenAttrs())
	}
	audience, ok := matchAudience(cl.Audience, provider.ClientIDs)
	if !ok {
		return newAPIError(codeInvalidIdentityToken, messageBadAudience,
			fmt.Sprintf("token aud %q is none of the provider's client IDs %q", cl.Audience, provider.ClientIDs), tokenAttrs()...)
	}
	if err := cl.CheckTime(c.now, s.leeway); err != nil {
		return timeError(err, cl, c.now, s.leeway, tokenAttrs())
	}

	role := c.cfg.RoleByARN(roleARN)
	if role == nil {
		return newAPIError(codeAccessDenied, messageWebIdentityDeny, "no role "+roleARN+" in the config", tokenAttrs()...)
	}
	sourceIdentity, tags, transitive, tagErr := tokenSessionClaims(cl)
	if tagErr != nil {
		tagErr.attrs = append(tagErr.attrs, tokenAttrs()...)
		return tagErr
	}
	req := policy.WebIdentityRequest(partition, account, cl.Issuer, cl.Subject, cl.Audience)
	addWebIdentityKeys(&req, provider.HostPath, cl)
	req.Context["sts:RoleSessionName"] = []string{sessionName}
	addTagKeys(&req, tags, transitive)
	// IAM evaluates each action the token asks for: session tags need
	// sts:TagSession, a source identity sts:SetSourceIdentity.
	actions := []string{policy.ActionAssumeRoleWithWebIdentity}
	if len(tags) > 0 {
		actions = append(actions, policy.ActionTagSession)
	}
	if sourceIdentity != "" {
		req.Context["sts:SourceIdentity"] = []string{sourceIdentity}
		actions = append(actions, actionSetSourceIdentity)
	}
	for _, action := range actions {
		req.Action = action
		if err := evaluate(role, req); err != nil {
			err.Message = messageWebIdentityDeny
			err.attrs = append(err.attrs, tokenAttrs()...)
			return err
		}
	}
	if time.Duration(duration)*time.Second > role.MaxSession() {
		return newAPIError(codeValidation, messageOverRoleMax,
			fmt.Sprintf("DurationSeconds %d over the role's maxSessionDuration %d", duration, int64(role.MaxSession()/time.Second)), tokenAttrs()...)
	}

	sess := &Session{
		AccountID:      role.AccountID,
		RoleARN:        role.ARN,
		RoleID:         role.ID,
		SessionName:    sessionName,
		IssuedAt:       c.now.UTC(),
		Expiration:     c.now.UTC().Add(time.Duration(duration) * time.Second),
		SourceIdentity: sourceIdentity,
	}
	for _, k := range sortedKeys(tags) {
		sess.Tags = append(sess.Tags, Tag{Key: k, Value: tags[k]})
	}
	sess.TransitiveTagKeys = transitive
	creds, err := s.sealer.Issue(sess)
	if err != nil {
		return internalError("issuing credentials", err)
	}
	if s.log.Enabled(c.ctx, slog.LevelDebug) {
		s.log.LogAttrs(c.ctx, slog.LevelDebug, "issued", slog.String("requestId", c.id), slog.String("action", c.action),
			slog.Any("session", sess), slog.String("sub", cl.Subject))
	}
	c.out = appendWebIdentityResponse(c.out, &webIdentityResult{
		Subject:        cl.Subject,
		SourceIdentity: sourceIdentity,
		Audience:       audience,
		User:           assumedRoleUser{ARN: sess.AssumedRoleARN(), AssumedRoleID: sess.AssumedRoleID()},
		Credentials:    creds,
		Provider:       provider.ARN,
	}, c.id)
	return nil
}

// tokenError maps a KeySet.Verify failure to AWS's answer: an issuer that cannot
// be reached is IDPCommunicationError (the SDKs retry it), a key it does not
// publish or a signature it did not make is InvalidIdentityToken.
func tokenError(err error, attrs []slog.Attr) *apiError {
	switch {
	case errors.Is(err, jwks.ErrFetch):
		return newAPIError(codeIDPCommunication, messageNoKey, err.Error(), attrs...)
	case errors.Is(err, jwks.ErrAlgorithm):
		return newAPIError(codeInvalidIdentityToken, messageNotAJWT, err.Error(), attrs...)
	default: // ErrUnknownKey, ErrSignature
		return newAPIError(codeInvalidIdentityToken, messageNoKey, err.Error(), attrs...)
	}
}

// timeError maps a CheckTime failure to AWS's answer.
func timeError(err error, cl *jwks.Claims, now time.Time, leeway time.Duration, attrs []slog.Attr) *apiError {
	// A token without exp is not one AWS accepts, but it has not expired either:
	// there is no expiration date/time to put in ExpiredTokenException's message.
	if errors.Is(err, jwks.ErrNoExpiry) || cl.Expiry == nil {
		return newAPIError(codeInvalidIdentityToken, messageNotAJWT, err.Error(), attrs...)
	}
	if errors.Is(err, jwks.ErrExpired) {
		return newAPIError(codeExpiredTokenException,
			"Token expired: current date/time "+strconv.FormatInt(now.Unix(), 10)+
				" must be before the expiration date/time "+strconv.FormatInt(cl.Expiry.Unix(), 10),
			err.Error()+" (leeway "+leeway.String()+")", attrs...)
	}
	return newAPIError(codeInvalidIdentityToken, messageNotYetValid, err.Error()+" (leeway "+leeway.String()+")", attrs...)
}

// matchAudience returns the first of the token's audiences that is one of the
// provider's client IDs.
func matchAudience(aud, clientIDs []string) (string, bool) {
	for _, a := range aud {
		for _, id := range clientIDs {
			if a == id {
				return a, true
			}
		}
	}
	return "", false
}

// addWebIdentityKeys adds the claim keys IAM maps beyond sub and aud, when the
// token carries them: <provider>:amr (a string or a list), :email, :azp.
func addWebIdentityKeys(req *policy.Request, hostPath string, cl *jwks.Claims) {
	if req.Context == nil {
		req.Context = map[string][]string{}
	}
	for _, name := range []string{"amr", "email", "azp"} {
		v, _ := cl.Claim(name)
		switch v := v.(type) {
		case string:
			req.Context[hostPath+":"+name] = []string{v}
		case []any:
			var vals []string
			for _, e := range v {
				if s, ok := e.(string); ok {
					vals = append(vals, s)
				}
			}
			if len(vals) > 0 {
				req.Context[hostPath+":"+name] = vals
			}
		}
	}
}

// messageBadTokenTags is AWS's answer to a token whose tags claim it cannot use
// (seen from AWS as "ValidationError: Unable to validate tags").
const messageBadTokenTags = "Unable to validate tags"

// tokenSessionClaims reads the source identity and the session tags a token
// carries, with the limits AssumeRole puts on the same parameters: a source
// identity of 2..64 [\w+=,.@-]; at most 50 tags, keys of 1..128 and values of
// 0..256 [\p{L}\p{Z}\p{N}_.:/=+\-@]; transitive keys among the tags. A value
// is a string or a list of exactly one string: AWS has no multi-valued session
// tags, so a longer list is refused rather than cut to its first element.
func tokenSessionClaims(cl *jwks.Claims) (sourceIdentity string, tags map[string]string, transitive []string, _ *apiError) {
	if raw, ok := cl.Claim(sourceIdentityClaim); ok {
		s, isString := raw.(string)
		var v validation
		if !isString {
			v.fail("sourceIdentity", fmt.Sprint(raw), false, "Member must be a string")
		} else {
			v.length("sourceIdentity", s, false, 2, 64, roleSessionRegex, isSessionName)
		}
		if err := v.err(); err != nil {
			err.Reason = "claim " + sourceIdentityClaim + " of the token"
			return "", nil, nil, err
		}
		sourceIdentity = s
	}
	raw, ok := cl.Claim(tagsClaim)
	if !ok {
		return sourceIdentity, nil, nil, nil
	}
	bad := func(format string, args ...any) *apiError {
		return newAPIError(codeValidation, messageBadTokenTags, "claim "+tagsClaim+" of the token: "+fmt.Sprintf(format, args...))
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return "", nil, nil, bad("not an object")
	}
	if p, has := obj["principal_tags"]; has {
		principal, ok := p.(map[string]any)
		if !ok {
			return "", nil, nil, bad("principal_tags is not an object")
		}
		if len(principal) > maxTags {
			return "", nil, nil, bad("%d principal tags, at most %d", len(principal), maxTags)
		}
		for k, v := range principal {
			value, ok := v.(string)
			if list, isList := v.([]any); isList && len(list) == 1 {
				value, ok = list[0].(string)
			}
			switch {
			case !ok:
				return "", nil, nil, bad("the value of tag %q is not a string or a list of one string", k)
			case k == "" || utf8.RuneCountInString(k) > 128 || !isTagText(k):
				return "", nil, nil, bad("tag key %q is not 1..128 of %s", k, tagKeyRegex)
			case utf8.RuneCountInString(value) > 256 || !isTagText(value):
				return "", nil, nil, bad("the value of tag %q is not 0..256 of %s", k, tagValueRegex)
			}
			if tags == nil {
				tags = make(map[string]string, len(principal))
			}
			tags[k] = value
		}
	}
	if t, has := obj["transitive_tag_keys"]; has {
		keys, ok := t.([]any)
		if !ok {
			return "", nil, nil, bad("transitive_tag_keys is not a list")
		}
		if len(keys) > maxTags {
			return "", nil, nil, bad("%d transitive tag keys, at most %d", len(keys), maxTags)
		}
		for _, k := range keys {
			key, ok := k.(string)
			if !ok {
				return "", nil, nil, bad("a transitive tag key is not a string")
			}
			if _, tagged := tags[key]; !tagged {
				return "", nil, nil, bad("transitive tag key %q names no principal tag", key)
			}
			if !slices.Contains(transitive, key) {
				transitive = append(transitive, key)
			}
		}
	}
	return sourceIdentity, tags, transitive, nil
}

// addTagKeys sets the condition keys of session tags, as
// policy.AssumeRoleRequest does: aws:RequestTag/<key>, aws:TagKeys and
// sts:TransitiveTagKeys.
func addTagKeys(req *policy.Request, tags map[string]string, transitive []string) {
	if len(tags) > 0 {
		for k, v := range tags {
			req.Context["aws:RequestTag/"+k] = []string{v}
		}
		req.Context["aws:TagKeys"] = sortedKeys(tags)
	}
	if len(transitive) > 0 {
		req.Context["sts:TransitiveTagKeys"] = transitive
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// evaluate decides req against role's trust policy. A denial (or a policy that
// cannot be evaluated) is an AccessDenied whose reason is the policy's
// explanation; the caller sets the message AWS sends.
func evaluate(role *Role, req policy.Request) *apiError {
	d, err := role.Policy.Evaluate(req)
	if err != nil {
		return newAPIError(codeAccessDenied, "", "trust policy of "+role.ARN+" cannot be evaluated: "+err.Error(),
			slog.String("evaluatedAction", req.Action))
	}
	if d.Allowed {
		return nil
	}
	return newAPIError(codeAccessDenied, "", "trust policy of "+role.ARN+" denies "+req.Action+": "+string(d.Reason),
		slog.String("evaluatedAction", req.Action), slog.String("explanation", d.Explain()))
}

// parseRoleARN splits arn:<partition>:iam::<account>:role/<path><name>.
func parseRoleARN(arn string) (partition, account string, ok bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[2] != "iam" || parts[3] != "" ||
		len(parts[4]) != 12 || !strings.HasPrefix(parts[5], "role/") || strings.HasSuffix(parts[5], "/") {
		return "", "", false
	}
	for i := 0; i < 12; i++ {
		if parts[4][i] < '0' || parts[4][i] > '9' {
			return "", "", false
		}
	}
	return parts[1], parts[4], true
}

// DefaultKeySource is the key source of an OIDC provider: the API server of its
// kubeconfig, or else its discovery document and JWKS over HTTPS, trusting its
// CA file when it has one.
func DefaultKeySource(p *OIDCProvider) (jwks.Source, error) {
	if p.Kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", p.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", p.Kubeconfig, err)
		}
		return jwks.NewKubeSource(cfg)
	}
	return jwks.NewHTTPSource(p.URL, p.Roots)
}

// keySets holds one jwks.KeySet per OIDC provider of the config in effect. They are
// created when a config is first seen and carried over to the next config for
// every provider whose URL and key source did not change, so a config reload does
// not drop cached keys.
type keySets struct {
	newSource func(*OIDCProvider) (jwks.Source, error)
	opts      jwks.Options
	log       *slog.Logger

	mu      sync.Mutex // serializes rebuilds
	current atomic.Pointer[keySetMap]
}

// keySetMap is the key sets of one config.
type keySetMap struct {
	cfg  *Config
	sets map[*OIDCProvider]*keySetEntry
	// byIdentity finds an entry of a previous config by what makes it reusable.
	byIdentity map[string]*keySetEntry
}

type keySetEntry struct {
	provider *OIDCProvider // the provider it was created for (its Roots)
	set      *jwks.KeySet
	err      error // the key source could not be created
}

func newKeySets(newSource func(*OIDCProvider) (jwks.Source, error), opts jwks.Options, log *slog.Logger) *keySets {
	return &keySets{newSource: newSource, opts: opts, log: log}
}

// forConfig returns the key sets of cfg, building them the first time cfg is seen.
func (k *keySets) forConfig(cfg *Config) *keySetMap {
	if m := k.current.Load(); m != nil && m.cfg == cfg {
		return m
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	prev := k.current.Load()
	if prev != nil && prev.cfg == cfg {
		return prev
	}
	m := &keySetMap{cfg: cfg, sets: map[*OIDCProvider]*keySetEntry{}, byIdentity: map[string]*keySetEntry{}}
	for _, a := range cfg.Accounts {
		for _, p := range a.OIDCProviders {
			id := p.URL + "\x00" + p.CAFile + "\x00" + p.Kubeconfig + "\x00" + kubeconfigSum(p.Kubeconfig)
			if prev != nil {
				if e, ok := prev.byIdentity[id]; ok && e.err == nil && sameRoots(e.provider, p) {
					m.sets[p], m.byIdentity[id] = e, e
					continue
				}
			}
			e := &keySetEntry{provider: p}
			src, err := k.newSource(p)
			if err != nil {
				e.err = err
				k.log.Error("cannot create the key source of an OIDC provider", "url", p.URL, "err", err)
			} else {
				e.set = jwks.NewKeySet(src, k.opts)
			}
			m.sets[p], m.byIdentity[id] = e, e
		}
	}
	k.current.Store(m)
	return m
}

// kubeconfigSum is the hash of a kubeconfig's content, empty without one: a
// kubeconfig rewritten in place (a CI job recreating its cluster) names another
// API server or credentials, so its key set must not be reused.
func kubeconfigSum(path string) string {
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	sum := sha256.Sum256(data)
	return string(sum[:])
}

// sameRoots tells whether two providers trust the same CAs.
func sameRoots(a, b *OIDCProvider) bool {
	if a.Roots == nil || b.Roots == nil {
		return a.Roots == b.Roots
	}
	return a.Roots.Equal(b.Roots)
}

// get returns the key set of p, a provider of the map's config.
func (m *keySetMap) get(p *OIDCProvider) (*jwks.KeySet, error) {
	e, ok := m.sets[p]
	if !ok {
		return nil, errors.New("provider not in the config")
	}
	return e.set, e.err
}

// Refresh fetches the keys of every provider of the config in effect now, so that
// the first tokens do not wait for them; failures are logged and retried on
// demand.
func (s *Server) Refresh(ctx context.Context) {
	m := s.keySets.forConfig(s.config())
	for p, e := range m.sets {
		if e.set == nil {
			continue
		}
		if err := e.set.Refresh(ctx); err != nil {
			s.log.Warn("cannot fetch the keys of an OIDC provider yet", "url", p.URL, "err", err)
		}
	}
}
