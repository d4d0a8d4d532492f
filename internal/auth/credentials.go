package auth

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/eksauth"
	"github.com/podiam/podiam/internal/podrequest"
	"github.com/podiam/podiam/internal/policy"
)

// Defaults of CredentialsOptions.
const (
	// DefaultSessionDuration is the DurationSeconds asked of STS.
	DefaultSessionDuration = time.Hour
	// DefaultReuseWhile is how much validity cached credentials must have left
	// to be served again: an SDK refreshes credentials some minutes before
	// they expire, so it must not be handed ones about to. Shorter sessions
	// reuse while a quarter of Duration is left (see CredentialsOptions), so
	// that the cache works for every duration STS grants.
	DefaultReuseWhile = 15 * time.Minute
	// DefaultMaxCacheEntries bounds the cache (one entry per pod with an
	// association, a few hundred bytes each).
	DefaultMaxCacheEntries = 100000
	// DefaultSTSCallTimeout bounds one exchange with STS, retries and role
	// chaining included.
	DefaultSTSCallTimeout = 10 * time.Second
)

// Limits STS sets.
const (
	// maxChainedDuration is the longest session STS grants to role chaining.
	maxChainedDuration = time.Hour
	// maxSessionName is the longest RoleSessionName STS accepts.
	maxSessionName = 64
	// maxMessage caps what of an STS error message or a network error is
	// passed on, so that an odd answer cannot bloat responses and statuses.
	maxMessage = 1024
)

// cacheSweepEvery is how often, at most, the cache is scanned for entries that
// can no longer be served.
const cacheSweepEvery = time.Minute

// STS's refusal to let podiam auth assume an association's role (its trust
// policy does not allow it, say) is remembered for refusalTTL per association
// and spec, for every pod: otherwise every request of every pod of that
// association would call STS again, and one tenant's mistake could use up the
// account's STS quota for all. At most maxRefusals are remembered.
const (
	refusalTTL  = 30 * time.Second
	maxRefusals = 10000
)

// ownFaultMessage is the answer when STS refused podiam auth's own
// credentials or configuration: the association is not at fault.
const ownFaultMessage = "podiam auth's own AWS credentials were refused by STS: "

// ownFaultCodes are the STS error codes that mean podiam auth's own
// credentials or configuration are wrong (expired, unknown, badly signed,
// region disabled), whatever the association.
var ownFaultCodes = map[string]bool{
	"ExpiredToken":                true,
	"ExpiredTokenException":       true,
	"InvalidClientTokenId":        true,
	"SignatureDoesNotMatch":       true,
	"IncompleteSignature":         true,
	"MissingAuthenticationToken":  true,
	"UnrecognizedClientException": true,
	"RegionDisabledException":     true,
}

// chainingLimitText is in STS's ValidationError when the DurationSeconds
// asked exceeds role chaining's hour: podiam auth's own identity is a role
// session and --session-duration is over an hour.
const chainingLimitText = "role chaining"

// STS results counted besides ResultOK, ResultUnreachable and STS's error
// codes.
const (
	// resultInvalid counts answers without credentials (never seen from a
	// working STS), and resultOther error codes too odd to be a label.
	resultInvalid = "InvalidResponse"
	resultOther   = "other"
)

// STSAPI is the part of the STS client that issuing credentials needs;
// *sts.Client implements it.
type STSAPI interface {
	AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)
}

// CredentialsOptions configure NewCredentials. Zero values take the defaults.
type CredentialsOptions struct {
	// STS is the client that assumes the roles. Required.
	STS STSAPI
	// Cluster names the cluster in session names, session tags and external ids.
	Cluster Cluster
	// Duration is the DurationSeconds asked for (DefaultSessionDuration); a
	// chained target role gets at most an hour, STS's limit for role chaining.
	Duration time.Duration
	// ReuseWhile is the validity cached credentials must have left to be
	// served: DefaultReuseWhile, or a quarter of Duration when that is less.
	ReuseWhile time.Duration
	// MaxEntries bounds the cache; the least recently used entry goes first
	// (DefaultMaxCacheEntries).
	MaxEntries int
	// Status, optional, learns the outcome of every STS exchange.
	Status StatusReporter
	// Metrics, optional, counts STS calls, issuances and cache entries.
	Metrics *Metrics
	// Logger gets an error line when STS refuses podiam auth's own
	// credentials (slog.Default()).
	Logger *slog.Logger
	// Now is the clock of the cache (time.Now).
	Now func() time.Time
	// NewSessionID returns the unique part of session names (uuid.NewString).
	NewSessionID func() string
	// CallTimeout bounds one exchange with STS, whoever waits for it
	// (DefaultSTSCallTimeout).
	CallTimeout time.Duration
}

// STSCredentials issues credentials of associations with STS AssumeRole, as
// EKS Auth does: session tags or an external id, the EKS session name, role
// chaining to a target role and a session policy. Credentials are cached per
// association (and its spec) and pod, and concurrent misses of one entry make
// one exchange. It implements Credentialer and is safe for concurrent use.
//
// STS's answers map to EKS Auth errors so (see stsError):
//
//	STS answer                                       EKS Auth error               status report  remembered
//	AccessDenied, other 4xx (the role's trust, the   AccessDeniedException        yes            refusalTTL
//	  role's maximum duration, a bad session policy)
//	Throttling, ThrottlingException,                 ThrottlingException          yes            no
//	  RequestLimitExceeded, any 429
//	5xx, unreachable, timeout                        ServiceUnavailableException  yes            no
//	ExpiredToken, ExpiredTokenException,             ServiceUnavailableException  no (logged    no
//	  InvalidClientTokenId, SignatureDoesNotMatch,     ("podiam auth's own AWS      at Error)
//	  IncompleteSignature, MissingAuthenticationToken, credentials were refused
//	  UnrecognizedClientException,                     by STS: <code>")
//	  RegionDisabledException, and ValidationError
//	  on role chaining's hour: podiam auth's own
//	  credentials or configuration, not the tenant's
type STSCredentials struct {
	o      CredentialsOptions
	flight singleflight.Group

	mu        sync.Mutex
	entries   map[string]*list.Element // of *cacheEntry
	lru       *list.List               // most recently used first
	lastSweep time.Time
	refusals  map[string]refusal // by association UID and spec
}

// refusal is STS's refusal of an association's role, served until expires.
type refusal struct {
	err     *eksauth.Error
	expires time.Time
}

func (r refusal) expiry() time.Time { return r.expires }

// cacheEntry is one cached issuance.
type cacheEntry struct {
	key    string
	issued Issued
}

var _ Credentialer = (*STSCredentials)(nil)

// NewCredentials returns an STSCredentials with o's defaults filled in.
func NewCredentials(o CredentialsOptions) *STSCredentials {
	if o.Duration <= 0 {
		o.Duration = DefaultSessionDuration
	}
	if o.ReuseWhile <= 0 {
		// A quarter of short sessions: with 15 minutes (STS's least) the
		// default would never let cached credentials be served.
		o.ReuseWhile = min(DefaultReuseWhile, o.Duration/4)
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxCacheEntries
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewSessionID == nil {
		o.NewSessionID = uuid.NewString
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultSTSCallTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &STSCredentials{o: o, entries: map[string]*list.Element{}, lru: list.New(), refusals: map[string]refusal{}}
}

// flightResult is what one exchange hands every caller waiting for it.
type flightResult struct {
	issued *Issued
	err    *eksauth.Error
	// cached is true when the exchange found the entry already cached (it was
	// stored between the caller's lookup and the start of the exchange).
	cached bool
}

// Credentials returns credentials of a for pod: cached ones while they have
// ReuseWhile of validity left, else fresh ones from one STS exchange shared
// with every concurrent caller for the same entry. The exchange runs on its
// own context, bounded by CallTimeout, so that a caller that gives up does not
// fail the others; the caller itself stops waiting when ctx ends.
func (c *STSCredentials) Credentials(ctx context.Context, a *association.Association, pod Pod) (*Issued, *eksauth.Error) {
	// The lookup that found a was by the pod's namespace and ServiceAccount;
	// checked again here, where the credentials are, so that no other path
	// can lend one namespace's role to another. The handler refuses such a
	// pair first (ResourceNotFoundException, as for no association): this
	// second check is defence in depth, hence its other code.
	if a.Namespace != pod.Namespace || a.ServiceAccount != pod.ServiceAccount {
		return nil, eksauth.NewError(eksauth.CodeAccessDenied,
			"association %s is for ServiceAccount %s/%s, not the pod's %s/%s",
			a.Key(), a.Namespace, a.ServiceAccount, pod.Namespace, pod.ServiceAccount)
	}
	spec := specKey(a)
	key := spec + "/" + pod.UID
	if iss, ok := c.lookup(key); ok {
		return c.served(iss, true), nil
	}
	// A refusal remembered is served without STS and without a status
	// report: the status already has it.
	if err, ok := c.refused(spec); ok {
		return nil, err
	}
	ch := c.flight.DoChan(key, func() (any, error) {
		// Another exchange may have stored the entry, or a refusal, since
		// the lookups above.
		if iss, ok := c.lookup(key); ok {
			return flightResult{issued: iss, cached: true}, nil
		}
		if err, ok := c.refused(spec); ok {
			return flightResult{err: err}, nil
		}
		// The caller's values (a request's logger, say) go along, its
		// cancellation does not.
		xctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.CallTimeout)
		defer cancel()
		iss, err, own := c.exchange(xctx, a, pod)
		// A fault of podiam auth's own credentials says nothing of the
		// association: its status is left as it was.
		if c.o.Status != nil && !own {
			c.o.Status.Report(a, err)
		}
		if err != nil {
			if !own && err.Code == eksauth.CodeAccessDenied {
				c.refuse(spec, err)
			}
			return flightResult{err: err}, nil
		}
		c.store(key, iss)
		return flightResult{issued: iss}, nil
	})
	select {
	case res := <-ch:
		r := res.Val.(flightResult)
		if r.err != nil {
			e := *r.err // each caller gets its own copy
			return nil, &e
		}
		return c.served(r.issued, r.cached), nil
	case <-ctx.Done():
		return nil, eksauth.NewError(eksauth.CodeServiceUnavailable,
			"gave up waiting for STS to assume %s: %v", a.RoleARN, context.Cause(ctx))
	}
}

// served returns the caller's copy of iss and counts the issuance.
func (c *STSCredentials) served(iss *Issued, cached bool) *Issued {
	out := *iss
	out.Cached = cached
	if m := c.o.Metrics; m != nil {
		source := SourceSTS
		if cached {
			source = SourceCache
		}
		m.Issuances.WithLabelValues(source).Inc()
	}
	return &out
}

// cacheKey identifies the credentials of association a for the pod with
// podUID: specKey(a), then the pod.
func cacheKey(a *association.Association, podUID string) string {
	return specKey(a) + "/" + podUID
}

// specKey identifies association a as it is now: its UID and a fingerprint
// of the spec's fields that shape the credentials, so that an edited
// association misses the cache (and forgets STS's refusal).
func specKey(a *association.Association) string {
	h := sha256.New()
	for _, f := range []string{a.RoleARN, a.TargetRoleARN, strconv.FormatBool(a.DisableSessionTags), a.Policy} {
		// Length-prefixed, so that no two different specs hash the same input.
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return string(a.UID) + "/" + hex.EncodeToString(h.Sum(nil)[:16])
}

// refused returns a copy of the refusal remembered for spec, if it has not
// expired.
func (c *STSCredentials) refused(spec string) (*eksauth.Error, bool) {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.refusals[spec]
	if !ok || !now.Before(r.expires) {
		return nil, false
	}
	e := *r.err // each caller gets its own copy
	return &e, true
}

// refuse remembers STS's refusal err of spec for refusalTTL. When
// maxRefusals live refusals are held, it is not remembered rather than the
// map grow.
func (c *STSCredentials) refuse(spec string, err *eksauth.Error) {
	now := c.o.Now()
	e := *err
	c.mu.Lock()
	defer c.mu.Unlock()
	putBounded(c.refusals, spec, refusal{err: &e, expires: now.Add(refusalTTL)}, maxRefusals, now)
}

// servable reports whether credentials expiring at exp may still be served at now.
func (c *STSCredentials) servable(exp, now time.Time) bool {
	return !exp.Before(now.Add(c.o.ReuseWhile))
}

// lookup returns the cached issuance of key if it may still be served; one
// that may not is dropped.
func (c *STSCredentials) lookup(key string) (*Issued, bool) {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.servable(e.issued.Credentials.Expiration, now) {
		c.removeLocked(el)
		c.setGaugeLocked()
		return nil, false
	}
	c.lru.MoveToFront(el)
	iss := e.issued
	return &iss, true
}

// store caches iss under key, evicting the least recently used entries over
// MaxEntries and, at most once per cacheSweepEvery, every entry that can no
// longer be served (those of pods gone would otherwise stay until evicted).
func (c *STSCredentials) store(key string, iss *Issued) {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastSweep) >= cacheSweepEvery {
		c.lastSweep = now
		for el := c.lru.Front(); el != nil; {
			next := el.Next()
			if !c.servable(el.Value.(*cacheEntry).issued.Credentials.Expiration, now) {
				c.removeLocked(el)
			}
			el = next
		}
	}
	if el, ok := c.entries[key]; ok {
		el.Value.(*cacheEntry).issued = *iss
		c.lru.MoveToFront(el)
	} else {
		c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, issued: *iss})
	}
	for c.lru.Len() > c.o.MaxEntries {
		c.removeLocked(c.lru.Back())
	}
	c.setGaugeLocked()
}

func (c *STSCredentials) removeLocked(el *list.Element) {
	c.lru.Remove(el)
	delete(c.entries, el.Value.(*cacheEntry).key)
}

func (c *STSCredentials) setGaugeLocked() {
	if m := c.o.Metrics; m != nil {
		m.CacheEntries.Set(float64(c.lru.Len()))
	}
}

// SessionName is the role session name EKS gives pod's sessions:
// "eks-<cluster>-<pod>-<id>", cut to STS's 64 characters.
func SessionName(cluster, pod, id string) string {
	s := "eks-" + cluster + "-" + pod + "-" + id
	if len(s) > maxSessionName {
		s = s[:maxSessionName]
	}
	return s
}

// exchange assumes a's role for pod, then its target role if it has one.
// own is true when the error is a fault of podiam auth's own credentials or
// configuration rather than of the association.
func (c *STSCredentials) exchange(ctx context.Context, a *association.Association, pod Pod) (iss *Issued, err *eksauth.Error, own bool) {
	session := SessionName(c.o.Cluster.Name, pod.Name, c.o.NewSessionID())
	first := &sts.AssumeRoleInput{
		RoleArn:         aws.String(a.RoleARN),
		RoleSessionName: aws.String(session),
		DurationSeconds: aws.Int32(int32(c.o.Duration / time.Second)),
	}
	if a.DisableSessionTags {
		first.ExternalId = aws.String(c.o.Cluster.ExternalID(a.Namespace, a.ServiceAccount))
	} else {
		facts := podrequest.Facts{
			ServiceAccount: policy.ServiceAccount{Namespace: pod.Namespace, Name: pod.ServiceAccount},
			PodName:        pod.Name,
			PodUID:         pod.UID,
		}
		tags := facts.SessionTags(podrequest.Cluster{Name: c.o.Cluster.Name, ARN: c.o.Cluster.ARN})
		keys := podrequest.TransitiveTagKeys(tags)
		for _, k := range keys {
			first.Tags = append(first.Tags, ststypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
		}
		first.TransitiveTagKeys = keys
	}
	if a.TargetRoleARN == "" {
		if a.Policy != "" {
			first.Policy = aws.String(a.Policy)
		}
		return c.assumeRole(ctx, first)
	}
	via, err, own := c.assumeRole(ctx, first)
	if err != nil {
		return nil, err, own
	}
	// The target role is assumed with the first role's session: no tags of
	// its own (the transitive ones carry over), at most an hour.
	target := &sts.AssumeRoleInput{
		RoleArn:         aws.String(a.TargetRoleARN),
		RoleSessionName: aws.String(session),
		DurationSeconds: aws.Int32(int32(min(c.o.Duration, maxChainedDuration) / time.Second)),
	}
	if a.Policy != "" {
		target.Policy = aws.String(a.Policy)
	}
	viaCreds := awscreds.NewStaticCredentialsProvider(via.Credentials.AccessKeyID,
		via.Credentials.SecretAccessKey, via.Credentials.SessionToken)
	return c.assumeRole(ctx, target, func(o *sts.Options) { o.Credentials = viaCreds })
}

// assumeRole makes one AssumeRole call, counts it and turns its answer into
// an Issued or an EKS Auth error; own is stsError's. A fault of podiam auth's
// own is logged here, once per call: nothing else tells its operator.
func (c *STSCredentials) assumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (_ *Issued, _ *eksauth.Error, own bool) {
	role := aws.ToString(in.RoleArn)
	start := time.Now()
	out, err := c.o.STS.AssumeRole(ctx, in, optFns...)
	elapsed := time.Since(start)
	var iss *Issued
	var result string
	var eerr *eksauth.Error
	if err == nil {
		iss, eerr = issuedFrom(role, aws.ToString(in.RoleSessionName), out)
		result = ResultOK
		if eerr != nil {
			result = resultInvalid
		}
	} else {
		result, eerr, own = stsError(role, err)
	}
	if own {
		var ae smithy.APIError
		errors.As(err, &ae) // own implies an API error
		c.o.Logger.ErrorContext(ctx, "STS refused podiam auth's own AWS credentials or configuration",
			"role", role, "code", cut(ae.ErrorCode()), "message", cut(ae.ErrorMessage()))
	}
	if m := c.o.Metrics; m != nil {
		m.STSCalls.WithLabelValues(result).Inc()
		m.STSCallDuration.Observe(elapsed.Seconds())
	}
	return iss, eerr, own
}

// issuedFrom reads the credentials and session of an AssumeRole answer.
func issuedFrom(role, session string, out *sts.AssumeRoleOutput) (*Issued, *eksauth.Error) {
	cr, u := out.Credentials, out.AssumedRoleUser
	if cr == nil || cr.AccessKeyId == nil || cr.SecretAccessKey == nil || cr.SessionToken == nil || cr.Expiration == nil || u == nil {
		return nil, eksauth.NewError(eksauth.CodeServiceUnavailable, "assuming %s: STS answered without credentials", role)
	}
	return &Issued{
		Credentials: eksauth.Credentials{
			AccessKeyID:     *cr.AccessKeyId,
			SecretAccessKey: *cr.SecretAccessKey,
			SessionToken:    *cr.SessionToken,
			Expiration:      cr.Expiration.UTC(),
		},
		AssumedRoleUser: eksauth.AssumedRoleUser{Arn: aws.ToString(u.Arn), AssumeRoleID: aws.ToString(u.AssumedRoleId)},
		SessionName:     session,
		RoleARN:         role,
	}, nil
}

// stsError maps a failed AssumeRole of role to the STS result label and the
// EKS Auth error (the table is STSCredentials'): throttling (Throttling,
// ThrottlingException, RequestLimitExceeded, any 429) is ThrottlingException;
// faults of podiam auth's own credentials or configuration (ownFaultCodes,
// and a ValidationError on role chaining's hour) are
// ServiceUnavailableException with own true; STS's other refusals
// (AccessDenied, any other 4xx) are AccessDeniedException naming STS's code
// and message; 5xx, timeouts and network failures are
// ServiceUnavailableException.
func stsError(role string, err error) (label string, _ *eksauth.Error, own bool) {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return ResultUnreachable, eksauth.NewError(eksauth.CodeServiceUnavailable,
			"assuming %s: STS unreachable: %s", role, cut(err.Error())), false
	}
	code := ae.ErrorCode()
	status := 0
	var hs interface{ HTTPStatusCode() int }
	if errors.As(err, &hs) {
		status = hs.HTTPStatusCode()
	}
	label = code
	if !labelSafe(code) {
		label = resultOther
	}
	msg := fmt.Sprintf("assuming %s: %s: %s", role, cut(code), cut(ae.ErrorMessage()))
	switch {
	case code == "Throttling" || code == "ThrottlingException" || code == "RequestLimitExceeded" || status == http.StatusTooManyRequests:
		return label, &eksauth.Error{Code: eksauth.CodeThrottling, Message: msg}, false
	case ownFaultCodes[code] || (code == "ValidationError" && strings.Contains(ae.ErrorMessage(), chainingLimitText)):
		return label, &eksauth.Error{Code: eksauth.CodeServiceUnavailable, Message: ownFaultMessage + code}, true
	case status >= 500 || (status == 0 && ae.ErrorFault() == smithy.FaultServer):
		return label, &eksauth.Error{Code: eksauth.CodeServiceUnavailable, Message: msg}, false
	default:
		return label, &eksauth.Error{Code: eksauth.CodeAccessDenied, Message: msg}, false
	}
}

// labelSafe reports whether an error code may be a metric label: AWS's codes
// are short words; anything else would let a broken server add series.
func labelSafe(code string) bool {
	if code == "" || len(code) > 64 {
		return false
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// cut caps s at maxMessage bytes.
func cut(s string) string {
	if len(s) > maxMessage {
		return s[:maxMessage]
	}
	return s
}
