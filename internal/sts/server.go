package sts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/podiam/podiam/internal/jwks"
	"github.com/podiam/podiam/internal/policy"
)

// APIVersion is the only Version the STS query protocol has.
const APIVersion = "2011-06-15"

// The actions served.
const (
	actionWebIdentity    = "AssumeRoleWithWebIdentity"
	actionAssumeRole     = "AssumeRole"
	actionCallerIdentity = "GetCallerIdentity"
)

// DefaultMaxBodyBytes caps a request body: the largest legitimate request (a
// 20,000-character token, a 2,048-character policy, 50 tags) is far smaller.
const DefaultMaxBodyBytes = 64 << 10

// maxDrainBytes is how much of an oversized body is read and thrown away so that
// the client, still sending, reads the error instead of a reset connection; past
// it the connection is closed.
const maxDrainBytes = 8 << 20

// DefaultClockLeeway is the tolerance on a token's exp, nbf and iat for clocks
// that differ: one minute, as Kubernetes allows for its own tokens.
const DefaultClockLeeway = time.Minute

// Options configures a [Server].
type Options struct {
	// Config returns the config in effect (a Watcher's Current). Required.
	Config func() *Config
	// Sealer issues session credentials and verifies them. Required.
	Sealer *Sealer
	// Metrics, optional, records calls.
	Metrics *Metrics
	// Logger receives denials (with their reason) and failures. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// MaxBodyBytes caps request bodies; DefaultMaxBodyBytes when 0.
	MaxBodyBytes int
	// ClockLeeway is the tolerance on exp, nbf and iat; DefaultClockLeeway when 0.
	ClockLeeway time.Duration
	// NewKeySource returns the key source of an OIDC provider; nil means
	// [DefaultKeySource].
	NewKeySource func(*OIDCProvider) (jwks.Source, error)
	// KeySetOptions tune each provider's key cache.
	KeySetOptions jwks.Options
}

// Server answers the AWS STS query protocol (AssumeRoleWithWebIdentity,
// AssumeRole, GetCallerIdentity) as AWS does on the wire, and logs the reason for
// every denial, which AWS never gives.
type Server struct {
	config  func() *Config
	sealer  *Sealer
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	maxBody int
	leeway  time.Duration
	keySets *keySets
	// bodies and outs pool the buffers of request bodies and of responses.
	bodies, outs sync.Pool // *[]byte
}

// NewServer returns a Server. The key sets of the current config's OIDC providers
// are created now (nothing is fetched before the first token needs it).
func NewServer(o Options) (*Server, error) {
	if o.Config == nil || o.Config() == nil {
		return nil, errors.New("sts server: no config")
	}
	if o.Sealer == nil {
		return nil, errors.New("sts server: no sealer")
	}
	s := &Server{
		config:  o.Config,
		sealer:  o.Sealer,
		metrics: o.Metrics,
		log:     o.Logger,
		now:     o.Now,
		maxBody: o.MaxBodyBytes,
		leeway:  o.ClockLeeway,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.leeway <= 0 {
		s.leeway = DefaultClockLeeway
	}
	newSource := o.NewKeySource
	if newSource == nil {
		newSource = DefaultKeySource
	}
	s.keySets = newKeySets(newSource, o.KeySetOptions, s.log)
	s.keySets.forConfig(o.Config())
	s.bodies.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.outs.New = func() any { b := make([]byte, 0, 4096); return &b }
	return s, nil
}

// apiError is a failure answered on the wire exactly as AWS answers it. Reason
// and attrs say why, for the log only.
type apiError struct {
	Status  int
	Code    string
	Message string
	// Reason is the check that failed, with the values compared; never a whole
	// token or a secret.
	Reason string
	attrs  []slog.Attr
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message + " (" + e.Reason + ")" }

// newAPIError returns a 400 error (403 for AccessDenied, as AWS answers).
func newAPIError(code, message, reason string, attrs ...slog.Attr) *apiError {
	status := http.StatusBadRequest
	if code == codeAccessDenied {
		status = http.StatusForbidden
	}
	return &apiError{Status: status, Code: code, Message: message, Reason: reason, attrs: attrs}
}

// AWS's error codes.
const (
	codeAccessDenied            = "AccessDenied"
	codeValidation              = "ValidationError"
	codeInvalidIdentityToken    = "InvalidIdentityToken"
	codeExpiredTokenException   = "ExpiredTokenException"
	codeIDPCommunication        = "IDPCommunicationError"
	codeMalformedPolicy         = "MalformedPolicyDocument"
	codeInvalidAction           = "InvalidAction"
	codeMissingAction           = "MissingAction"
	codeMalformedQueryString    = "MalformedQueryString"
	codeInternalFailure         = "InternalFailure"
	codeExpiredToken            = "ExpiredToken"
	codeRequestEntityTooLarge   = "RequestEntityTooLarge"
	codeMethodNotAllowed        = "MethodNotAllowed"
	noVersionSpecified          = "NO_VERSION_SPECIFIED"
	messageMalformedQueryString = "The query string is malformed."
	messageInternalFailure      = "The request processing has failed because of an unknown error, exception or failure."
)

// call is one request being served.
type call struct {
	r      *http.Request
	ctx    context.Context
	id     string // request id
	action string
	params form
	body   []byte
	now    time.Time
	cfg    *Config
	// out is the response document being built (a pooled buffer).
	out []byte
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	bodyp, outp := s.bodies.Get().(*[]byte), s.outs.Get().(*[]byte)
	c := &call{r: r, ctx: r.Context(), id: newRequestID(), out: (*outp)[:0]}
	defer s.recoverPanic(c, w)
	c.now, c.cfg = s.now(), s.config()
	body, result := s.serve(c, w, (*bodyp)[:0])
	// Buffers return to the pools unless a huge body grew them.
	if cap(body) <= 2*DefaultMaxBodyBytes {
		*bodyp = body[:0]
		s.bodies.Put(bodyp)
	}
	if cap(c.out) <= 2*DefaultMaxBodyBytes {
		*outp = c.out[:0]
		s.outs.Put(outp)
	}
	action := c.action
	if action == "" {
		action = actionOther
	}
	s.metrics.observe(action, result, time.Since(start).Seconds())
}

// serve answers c and returns the body buffer and the result label.
func (s *Server) serve(c *call, w http.ResponseWriter, buf []byte) ([]byte, string) {
	body, err := s.readBody(c, w, buf)
	if err == nil {
		c.body = body
		if err = c.parse(); err == nil {
			err = s.dispatch(c)
		}
	}
	hdr := w.Header()
	hdr["Content-Type"] = contentTypeXML
	hdr["X-Amzn-Requestid"] = []string{c.id}
	status, result := http.StatusOK, resultSuccess
	if err != nil {
		s.logError(c, err)
		c.out = appendErrorResponse(c.out[:0], err, c.id)
		status, result = err.Status, err.Code
	}
	hdr["Content-Length"] = []string{strconv.Itoa(len(c.out))}
	w.WriteHeader(status)
	_, _ = w.Write(c.out)
	return body, result
}

// recoverPanic answers InternalFailure for a request whose handling panicked (a
// bug: no input is meant to get there), so that one request fails, logged with
// its stack, rather than the connection.
func (s *Server) recoverPanic(c *call, w http.ResponseWriter) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.Error("panic serving a request", "requestId", c.id, "action", c.action, "panic", v, "stack", string(debug.Stack()))
	out := appendErrorResponse(nil, internalError("panic", fmt.Errorf("%v", v)), c.id)
	hdr := w.Header()
	hdr["Content-Type"] = contentTypeXML
	hdr["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(out)
	s.metrics.observe(c.action, codeInternalFailure, 0)
}

// contentTypeXML is shared by every response; net/http only reads it.
var contentTypeXML = []string{"text/xml"}

// readBody reads the body of a POST into buf, up to the cap. An oversized body is
// answered with the length constraint of the parameter it overflows, as AWS
// answers a too-long value, after reading (a bounded part of) the rest.
func (s *Server) readBody(c *call, w http.ResponseWriter, buf []byte) ([]byte, *apiError) {
	r := c.r
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet:
		return buf, nil
	default:
		w.Header()["Allow"] = []string{"GET, POST"}
		return buf, &apiError{Status: http.StatusMethodNotAllowed, Code: codeMethodNotAllowed,
			Message: "The requested method is not allowed for this resource.", Reason: "method " + r.Method}
	}
	if r.ContentLength > 0 && r.ContentLength <= int64(s.maxBody) && int64(cap(buf)) <= r.ContentLength {
		buf = make([]byte, 0, r.ContentLength+1) // +1: EOF is seen without growing
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > s.maxBody {
			return buf, s.tooLarge(c, w, buf[:s.maxBody])
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, &apiError{Status: http.StatusBadRequest, Code: codeMalformedQueryString,
				Message: messageMalformedQueryString, Reason: "reading the body: " + err.Error()}
		}
	}
}

// tooLarge answers a body over the cap. The parameter being read when the cap was
// hit is the one too long; AWS's answer for it is its length constraint.
func (s *Server) tooLarge(c *call, w http.ResponseWriter, prefix []byte) *apiError {
	drained, _ := io.CopyN(io.Discard, c.r.Body, maxDrainBytes)
	if drained == maxDrainBytes {
		w.Header()["Connection"] = []string{"close"}
	}
	key := string(prefix[strings.LastIndexByte(string(prefix), '&')+1:])
	if i := strings.IndexByte(key, '='); i >= 0 {
		key = key[:i]
	}
	if k, err := url.QueryUnescape(key); err == nil {
		key = k
	}
	reason := fmt.Sprintf("body over %d bytes, overflowing parameter %.64q", s.maxBody, key)
	if c.action == "" {
		// The action decides nothing here, but it labels the metric.
		if f, err := appendForm(nil, cutAtLastAmp(string(prefix))); err == nil {
			c.params = f
			action, _ := c.param("Action")
			c.action = knownAction(action)
		}
	}
	if max, ok := maxLengths[key]; ok {
		return newAPIError(codeValidation, validationMessage([]string{
			fmt.Sprintf("Value at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", memberName(key), max),
		}), reason)
	}
	return &apiError{Status: http.StatusRequestEntityTooLarge, Code: codeRequestEntityTooLarge,
		Message: "Request entity too large", Reason: reason}
}

// cutAtLastAmp drops the last, truncated, parameter of a body prefix.
func cutAtLastAmp(s string) string {
	if i := strings.LastIndexByte(s, '&'); i >= 0 {
		return s[:i]
	}
	return ""
}

// maxLengths are the length limits of the parameters whose values can be long,
// from the STS API model.
var maxLengths = map[string]int{
	"WebIdentityToken": jwks.MaxTokenSize,
	"Policy":           maxPolicyLength,
	"RoleArn":          2048,
	"ProviderId":       2048,
}

// memberName is a parameter's name as AWS's validation messages spell it:
// RoleSessionName is roleSessionName.
func memberName(param string) string {
	if param == "" {
		return param
	}
	return strings.ToLower(param[:1]) + param[1:]
}

// parse decodes the parameters: the query, then the form body of a POST. It
// checks Action and Version, as AWS does before anything else.
func (c *call) parse() *apiError {
	params, err := appendForm(c.params[:0], c.r.URL.RawQuery)
	if err == nil && c.r.Method == http.MethodPost && len(c.body) > 0 {
		params, err = appendForm(params, string(c.body))
	}
	c.params = params
	action, _ := c.param("Action")
	c.action = knownAction(action)
	if err != nil {
		return &apiError{Status: http.StatusBadRequest, Code: codeMalformedQueryString,
			Message: messageMalformedQueryString, Reason: "form: " + err.Error()}
	}
	if action == "" {
		return &apiError{Status: http.StatusBadRequest, Code: codeMissingAction, Message: "Missing Action",
			Reason: "no Action parameter"}
	}
	version, _ := c.param("Version")
	if version != APIVersion || c.action == actionOther {
		v := version
		if v == "" {
			v = noVersionSpecified
		}
		return &apiError{Status: http.StatusBadRequest, Code: codeInvalidAction,
			Message: "Could not find operation " + action + " for version " + v,
			Reason:  fmt.Sprintf("action %.64q, version %.64q (want %s)", action, version, APIVersion)}
	}
	return nil
}

// form is the parameters of a request in the order sent. A handful of
// parameters are looked up by a scan, which beats building a map (as
// url.ParseQuery does) on the hot path.
type form []formParam

type formParam struct{ key, value string }

// appendForm appends the parameters of the application/x-www-form-urlencoded s
// to f, decoded as url.ParseQuery decodes them: & separates, a semicolon is an
// error, + is a space, %XX an escape (a bad one is an error).
func appendForm(f form, s string) (form, error) {
	for s != "" {
		var kv string
		kv, s, _ = strings.Cut(s, "&")
		if strings.IndexByte(kv, ';') >= 0 {
			return f, errors.New("invalid semicolon separator in query")
		}
		if kv == "" {
			continue
		}
		key, value, _ := strings.Cut(kv, "=")
		key, err := formUnescape(key)
		if err != nil {
			return f, err
		}
		if value, err = formUnescape(value); err != nil {
			return f, err
		}
		f = append(f, formParam{key, value})
	}
	return f, nil
}

// formUnescape is url.QueryUnescape, skipping the byte-by-byte scan of the common
// case, a value with nothing to unescape (a token is base64url and dots).
func formUnescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// knownAction returns action when the STS serves it, else actionOther.
func knownAction(action string) string {
	switch action {
	case actionWebIdentity, actionAssumeRole, actionCallerIdentity:
		return action
	}
	return actionOther
}

// dispatch runs the action, which appends its response to c.out.
func (s *Server) dispatch(c *call) *apiError {
	switch c.action {
	case actionWebIdentity:
		return s.assumeRoleWithWebIdentity(c)
	case actionAssumeRole:
		return s.assumeRole(c)
	case actionCallerIdentity:
		return s.getCallerIdentity(c)
	}
	return &apiError{Status: http.StatusBadRequest, Code: codeInvalidAction, Message: "Could not find operation", Reason: "unreachable"}
}

// logError logs a denial (any 4xx: the client is told AWS's answer only) with its
// reason, or a failure of the server.
func (s *Server) logError(c *call, e *apiError) {
	level, msg := slog.LevelInfo, "denied"
	if e.Status >= http.StatusInternalServerError {
		level, msg = slog.LevelError, "failed"
	}
	if !s.log.Enabled(c.ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 6+len(e.attrs))
	attrs = append(attrs,
		slog.String("requestId", c.id),
		slog.String("action", c.action),
		slog.String("code", e.Code),
		slog.String("message", e.Message),
		slog.String("reason", e.Reason),
		slog.String("remote", c.r.RemoteAddr))
	attrs = append(attrs, e.attrs...)
	s.log.LogAttrs(c.ctx, level, msg, attrs...)
}

// internalError is answered when the STS itself fails; err goes to the log.
func internalError(what string, err error) *apiError {
	return &apiError{Status: http.StatusInternalServerError, Code: codeInternalFailure,
		Message: messageInternalFailure, Reason: what + ": " + err.Error()}
}

// newRequestID returns a random UUID (version 4), the form of AWS's request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// validation collects AWS's parameter validation errors: AWS reports them all at
// once, "2 validation errors detected: …; …".
type validation struct{ errs []string }

// fail records that member (as AWS names it, roleSessionName) with value fails
// constraint. A sensitive value (a token) is not repeated, as AWS does not.
func (v *validation) fail(member, value string, sensitive bool, constraint string) {
	if sensitive {
		v.errs = append(v.errs, "Value at '"+member+"' failed to satisfy constraint: "+constraint)
		return
	}
	v.errs = append(v.errs, "Value '"+value+"' at '"+member+"' failed to satisfy constraint: "+constraint)
}

// required checks that a required parameter is present: AWS says its value is null.
func (v *validation) required(member string, present bool) bool {
	if !present {
		v.errs = append(v.errs, "Value null at '"+member+"' failed to satisfy constraint: Member must not be null")
	}
	return present
}

// length checks the length of value in characters, and its pattern when match is
// not nil.
func (v *validation) length(member, value string, sensitive bool, min, max int, pattern string, match func(string) bool) {
	n := utf8.RuneCountInString(value)
	if match != nil && !match(value) {
		v.fail(member, value, sensitive, "Member must satisfy regular expression pattern: "+pattern)
	}
	if n < min {
		v.fail(member, value, sensitive, "Member must have length greater than or equal to "+strconv.Itoa(min))
	}
	if n > max {
		v.fail(member, value, sensitive, "Member must have length less than or equal to "+strconv.Itoa(max))
	}
}

// err returns the ValidationError for what was collected, or nil.
func (v *validation) err() *apiError {
	if len(v.errs) == 0 {
		return nil
	}
	return newAPIError(codeValidation, validationMessage(v.errs), "parameter validation")
}

// validationMessage is AWS's message for a list of validation errors.
func validationMessage(errs []string) string {
	noun := " validation errors detected: "
	if len(errs) == 1 {
		noun = " validation error detected: "
	}
	return strconv.Itoa(len(errs)) + noun + strings.Join(errs, "; ")
}

// Parameter limits and patterns of the STS API model.
const (
	minDuration      = 900
	maxDuration      = 43200
	maxPolicyLength  = 2048
	maxTags          = 50
	maxPolicyArns    = 10
	roleSessionRegex = `[\w+=,.@-]*`
	externalIDRegex  = `[\w+=,.@:\/-]*`
	tagKeyRegex      = `[\p{L}\p{Z}\p{N}_.:/=+\-@]+`
	tagValueRegex    = `[\p{L}\p{Z}\p{N}_.:/=+\-@]*`
	policyRegex      = `[\u0009\u000A\u000D\u0020-\u00FF]+`
)

// isNameChar reports whether b is in [\w+=,.@-].
func isNameChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '_' || b == '+' || b == '=' || b == ',' || b == '.' || b == '@' || b == '-'
}

// isSessionName matches [\w+=,.@-]*, the pattern of RoleSessionName and
// SourceIdentity.
func isSessionName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

// isExternalID matches [\w+=,.@:\/-]*.
func isExternalID(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) && s[i] != ':' && s[i] != '/' {
			return false
		}
	}
	return true
}

// isTagText matches [\p{L}\p{Z}\p{N}_.:/=+\-@]*.
func isTagText(s string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.Is(unicode.Z, r) && !unicode.IsNumber(r) && !strings.ContainsRune("_.:/=+-@", r) {
			return false
		}
	}
	return true
}

// isPolicyText matches [\u0009\u000A\u000D\u0020-\u00FF]*.
func isPolicyText(s string) bool {
	for _, r := range s {
		if r != '\t' && r != '\n' && r != '\r' && (r < 0x20 || r > 0xFF) {
			return false
		}
	}
	return true
}

// param returns the single value of name and whether it was sent.
func (c *call) param(name string) (string, bool) {
	for _, p := range c.params {
		if p.key == name {
			return p.value, true
		}
	}
	return "", false
}

// roleParams reads RoleArn and RoleSessionName, which AssumeRole and
// AssumeRoleWithWebIdentity both require, recording their validation errors.
func (c *call) roleParams(v *validation) (roleARN, sessionName string) {
	roleARN, hasRole := c.param("RoleArn")
	if v.required("roleArn", hasRole) {
		v.length("roleArn", roleARN, false, 20, 2048, "", nil)
	}
	sessionName, hasName := c.param("RoleSessionName")
	if v.required("roleSessionName", hasName) {
		v.length("roleSessionName", sessionName, false, 2, 64, roleSessionRegex, isSessionName)
	}
	return roleARN, sessionName
}

// durationParam validates DurationSeconds (900..43200), 3600 when absent.
func (c *call) durationParam(v *validation) int {
	raw, ok := c.param("DurationSeconds")
	if !ok {
		return 3600
	}
	d, err := strconv.Atoi(raw)
	switch {
	case err != nil:
		v.fail("durationSeconds", raw, false, "Member must be an integer")
	case d < minDuration:
		v.fail("durationSeconds", raw, false, "Member must have value greater than or equal to 900")
	case d > maxDuration:
		v.fail("durationSeconds", raw, false, "Member must have value less than or equal to 43200")
	}
	return d
}

// policyParams validates Policy and PolicyArns.member.N.arn, which the STS accepts
// and checks but does not enforce: it grants no permissions itself.
func (c *call) policyParams(v *validation) (policyDoc string, arns []string) {
	if p, ok := c.param("Policy"); ok {
		v.length("policy", p, false, 1, maxPolicyLength, policyRegex, isPolicyText)
		policyDoc = p
	}
	for i := 1; ; i++ {
		arn, ok := c.param("PolicyArns.member." + strconv.Itoa(i) + ".arn")
		if !ok {
			break
		}
		v.length("policyArns."+strconv.Itoa(i)+".member.arn", arn, false, 20, 2048, "", nil)
		arns = append(arns, arn)
	}
	if len(arns) > maxPolicyArns {
		v.fail("policyArns", "["+strings.Join(arns, ", ")+"]", false, "Member must have length less than or equal to 10")
	}
	return policyDoc, arns
}

// checkSessionPolicy answers MalformedPolicyDocument for a session policy that is
// not a policy document.
func checkSessionPolicy(doc string) *apiError {
	if doc == "" {
		return nil
	}
	if _, err := policy.Parse([]byte(doc)); err != nil {
		return newAPIError(codeMalformedPolicy, "The policy is not in the valid JSON format.",
			"session policy: "+err.Error())
	}
	return nil
}
