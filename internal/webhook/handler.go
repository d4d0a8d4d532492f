// Package webhook speaks HTTP for the admission webhook: it decodes
// AdmissionReviews, asks identity and inject for the answer, and serves it over TLS
// with health, readiness and metrics endpoints.
package webhook

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/inject"
	"github.com/podiam/podiam/internal/jsonscan"
	"github.com/podiam/podiam/internal/metrics"
)

// MaxBodyBytes bounds an AdmissionReview body. The API server caps objects at
// 1.5 MiB in etcd; an AdmissionReview may hold the object twice on updates.
const MaxBodyBytes = 3 << 20

// Admission API versions the handler accepts. The response echoes the request's.
const (
	admissionV1      = "admission.k8s.io/v1"
	admissionV1beta1 = "admission.k8s.io/v1beta1"
)

// ServiceAccounts finds a ServiceAccount's annotations; found is false when the
// ServiceAccount does not exist, err is set when that could not be told in time.
type ServiceAccounts interface {
	Lookup(ctx context.Context, namespace, name string) (annotations map[string]string, found bool, err error)
}

// HandlerOptions configure a Handler. cmd/podiam fills them from its flags; the
// bench server and the tests set what they need.
type HandlerOptions struct {
	// AnnotationPrefix of the ServiceAccount and pod annotations; empty means
	// identity.DefaultAnnotationPrefix.
	AnnotationPrefix string
	// Defaults apply when neither annotations nor the mapping say otherwise. A
	// zero TokenExpiration means DefaultTokenExpiration; the audiences are used
	// as given.
	Defaults identity.Defaults
	// TokenMountPath is where the IRSA token is mounted; empty means
	// inject.DefaultTokenMountPath.
	TokenMountPath string
	// Region, when set, is injected as AWS_DEFAULT_REGION and AWS_REGION.
	Region string
	// The Pod Identity token volume and agent endpoint; empty means the Amazon
	// webhook's defaults (inject.DefaultContainerCreds*).
	ContainerCredsMountPath, ContainerCredsVolumeName string
	ContainerCredsTokenPath, ContainerCredsFullURI    string
	// ServiceAccounts looks ServiceAccounts up; nil means none exists.
	ServiceAccounts ServiceAccounts
	// Mapping and ContainerCredentials return the current snapshots; nil funcs or
	// nil results mean empty.
	Mapping              func() *identity.Mapping
	ContainerCredentials func() *identity.ContainerCredentials
	// Metrics, when set, receives the handler's counters.
	Metrics *metrics.Webhook
	// Logger receives one line per admitted pod and rejected request; nil means
	// slog.Default().
	Logger *slog.Logger
}

// DefaultTokenExpiration is the token lifetime, in seconds, of the Amazon
// webhook's --token-expiration default.
const DefaultTokenExpiration = 86400

// Handler serves POST /mutate. Build it with NewHandler.
type Handler struct {
	resolver             *identity.Resolver
	injector             *inject.Config
	serviceAccounts      ServiceAccounts
	mapping              func() *identity.Mapping
	containerCredentials func() *identity.ContainerCredentials
	metrics              *metrics.Webhook
	logger               *slog.Logger
	// Counters resolved once: a label lookup hashes its values on every request.
	requestsOK        prometheus.Counter
	pods              map[podsKey]prometheus.Counter
	skippedAnnotation prometheus.Counter
	skippedConflict   prometheus.Counter
}

type podsKey struct {
	mode    identity.Mode
	patched bool
}

// NewHandler returns the admission handler for o. The resolver and the injector
// share one set of annotation keys.
func NewHandler(o HandlerOptions) *Handler {
	prefix := cmp.Or(o.AnnotationPrefix, identity.DefaultAnnotationPrefix)
	keys := identity.NewKeys(prefix)
	defaults := o.Defaults
	if defaults.TokenExpiration == 0 {
		defaults.TokenExpiration = DefaultTokenExpiration
	}
	h := &Handler{
		resolver: &identity.Resolver{Keys: keys, Defaults: defaults},
		injector: &inject.Config{
			Keys:                     keys,
			TokenMountPath:           cmp.Or(o.TokenMountPath, inject.DefaultTokenMountPath),
			Region:                   o.Region,
			ContainerCredsMountPath:  cmp.Or(o.ContainerCredsMountPath, inject.DefaultContainerCredsMountPath),
			ContainerCredsVolumeName: cmp.Or(o.ContainerCredsVolumeName, inject.DefaultContainerCredsVolumeName),
			ContainerCredsTokenPath:  cmp.Or(o.ContainerCredsTokenPath, inject.DefaultContainerCredsTokenPath),
			ContainerCredsFullURI:    cmp.Or(o.ContainerCredsFullURI, inject.DefaultContainerCredsFullURI),
		},
		serviceAccounts:      o.ServiceAccounts,
		mapping:              o.Mapping,
		containerCredentials: o.ContainerCredentials,
		metrics:              o.Metrics,
		logger:               cmp.Or(o.Logger, slog.Default()),
	}
	if m := o.Metrics; m != nil {
		h.requestsOK = m.Requests.WithLabelValues(strconv.Itoa(http.StatusOK))
		h.pods = map[podsKey]prometheus.Counter{}
		for _, mode := range []identity.Mode{identity.ModeNone, identity.ModeIRSA, identity.ModePodIdentity} {
			for _, patched := range []bool{false, true} {
				h.pods[podsKey{mode, patched}] = m.Mutations.WithLabelValues(string(mode), strconv.FormatBool(patched))
			}
		}
		h.skippedAnnotation = m.ContainersSkipped.WithLabelValues("annotation")
		h.skippedConflict = m.ContainersSkipped.WithLabelValues("conflict")
	}
	return h
}

// requestError is an HTTP error for a request we cannot answer with an
// AdmissionReview at all.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

// bodyPool recycles request and response buffers between requests.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 { // do not keep rare huge buffers alive
		bodyPool.Put(b)
	}
}

// Bounds on what a request can put into logs and answers: a client must not be
// able to inflate either by sending huge strings.
const (
	// maxEchoBytes bounds each request-derived string (apiVersion, kind, names,
	// the Content-Type) in an error, a warning or a log attribute: 253 bytes is
	// the longest Kubernetes object name.
	maxEchoBytes = 253
	// maxMessageBytes bounds a whole error or warning message, which may hold
	// several such strings or a JSON decoder's message that quotes the request.
	maxMessageBytes = 1024
	// maxWarnings bounds the warnings of one answer (a pod with hundreds of
	// conflicting containers would get one each); the API server keeps only a
	// few KiB of them anyway. Injection builds no more than this many either.
	maxWarnings = inject.MaxWarnings
	// maxUIDBytes bounds the request uid, which the answer must echo verbatim:
	// the API server sends a 36-byte UUID, so a longer one is refused rather
	// than copied into the answer.
	maxUIDBytes = 253
	// Kubernetes name limits: a namespace is a DNS label, a ServiceAccount name
	// a DNS subdomain. Longer names cannot exist, so they are not looked up.
	maxNamespaceBytes      = 63
	maxServiceAccountBytes = 253
)

// clip returns s cut to at most max bytes (on a UTF-8 boundary) followed by a
// marker with its full length, or s itself when it fits.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(truncated, " + strconv.Itoa(len(s)) + " bytes)"
}

// ServeHTTP implements /mutate.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status := h.serve(w, r)
	if m := h.metrics; m != nil {
		if status == http.StatusOK {
			h.requestsOK.Inc()
		} else {
			m.Requests.WithLabelValues(strconv.Itoa(status)).Inc()
		}
		m.RequestDuration.Observe(time.Since(start).Seconds())
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return h.fail(w, &requestError{http.StatusMethodNotAllowed, "method not allowed: use POST"})
	}
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		return h.fail(w, &requestError{http.StatusUnsupportedMediaType,
			fmt.Sprintf("unsupported content type %q: want application/json", clip(ct, maxEchoBytes))})
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return h.fail(w, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxBodyBytes)})
		}
		return h.fail(w, &requestError{http.StatusBadRequest, "reading request body: " + err.Error()})
	}
	out := bodyPool.Get().(*bytes.Buffer)
	defer putBuffer(out)
	out.Reset()
	if err := h.review(r.Context(), buf.Bytes(), out); err != nil {
		return h.fail(w, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	_, _ = w.Write(out.Bytes())
	return http.StatusOK
}

// isJSON reports whether a Content-Type is application/json, with any
// parameters. The API server always sends exactly "application/json", which is
// checked first without parsing.
func isJSON(contentType string) bool {
	if contentType == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// fail answers a request that gets no AdmissionReview. The message is clipped
// as a whole too: a JSON decoder's error quotes member names of the request.
func (h *Handler) fail(w http.ResponseWriter, err error) int {
	status := http.StatusInternalServerError
	var re *requestError
	if errors.As(err, &re) {
		status = re.status
	}
	msg := clip(err.Error(), maxMessageBytes)
	h.logger.LogAttrs(context.Background(), slog.LevelWarn, "rejected admission request",
		slog.Int("status", status), slog.String("error", msg))
	http.Error(w, msg, status)
	return status
}

// Review answers one encoded AdmissionReview. An error means the review itself is
// malformed; its message is safe to return to the client.
func (h *Handler) Review(ctx context.Context, body []byte) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(8 << 10) // a 3-container response is about 5 KiB
	if err := h.review(ctx, body, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func (h *Handler) review(ctx context.Context, body []byte, out *bytes.Buffer) error {
	var review admissionReview
	if err := json.Unmarshal(body, &review, jsonscan.Options); err != nil {
		return &requestError{http.StatusBadRequest, "decoding AdmissionReview: " + err.Error()}
	}
	if review.APIVersion != admissionV1 && review.APIVersion != admissionV1beta1 {
		return &requestError{http.StatusBadRequest,
			fmt.Sprintf("unsupported apiVersion %q: want %s or %s", clip(review.APIVersion, maxEchoBytes), admissionV1, admissionV1beta1)}
	}
	if review.Kind != "AdmissionReview" {
		return &requestError{http.StatusBadRequest, fmt.Sprintf("unsupported kind %q: want AdmissionReview", clip(review.Kind, maxEchoBytes))}
	}
	req := review.Request
	if req == nil {
		return &requestError{http.StatusBadRequest, "AdmissionReview has no request"}
	}
	if len(req.UID) > maxUIDBytes {
		return &requestError{http.StatusBadRequest, fmt.Sprintf("request uid is %d bytes, longer than %d", len(req.UID), maxUIDBytes)}
	}
	resp, res, err := h.admit(ctx, req)
	if err != nil {
		return err
	}
	// The patch is copied into out (base64); its buffer is then free to reuse.
	defer res.Release()
	resp.UID = req.UID
	if err := json.MarshalWrite(out, admissionReviewResponse{APIVersion: review.APIVersion, Kind: review.Kind, Response: resp}); err != nil {
		return fmt.Errorf("encoding AdmissionReview: %w", err)
	}
	return nil
}

// admit decides the answer to req. The patch of the answer is the result's:
// the caller releases the result once the answer is encoded.
func (h *Handler) admit(ctx context.Context, req *admissionRequest) (admissionResponse, *inject.Result, error) {
	allowed := admissionResponse{Allowed: true}
	// Only pod creation is ours; the webhook configuration should send nothing else,
	// but a broad rule must not break other objects.
	if !req.isPodCreate() {
		return allowed, &inject.Result{}, nil
	}
	if req.Object.err != nil {
		return allowed, nil, &requestError{http.StatusBadRequest, req.Object.err.Error()}
	}
	pod := req.Object.pod
	if pod == nil {
		return allowed, nil, &requestError{http.StatusBadRequest, "AdmissionRequest has no object"}
	}
	namespace := req.Namespace
	if namespace == "" {
		namespace = pod.Namespace()
	}
	saName := pod.ServiceAccountName()

	in := identity.Input{
		Namespace:      namespace,
		ServiceAccount: saName,
		PodAnnotations: pod.Annotations(),
	}
	var lookupErr error
	// A name over the Kubernetes limits cannot exist: do not send it to the
	// cache (which would ask the API server and log it).
	if h.serviceAccounts != nil && len(namespace) <= maxNamespaceBytes && len(saName) <= maxServiceAccountBytes {
		in.SAAnnotations, _, lookupErr = h.serviceAccounts.Lookup(ctx, namespace, saName)
	}
	if h.mapping != nil {
		in.Mapping = h.mapping()
	}
	if h.containerCredentials != nil {
		in.ContainerCredentials = h.containerCredentials()
	}
	id, warnings := h.resolver.Resolve(in)
	if lookupErr != nil {
		// Admit anyway (never block pods on our side), but say so: the pod may
		// be missing the identity its ServiceAccount's annotations give.
		warnings = append(warnings, fmt.Sprintf("ServiceAccount %s/%s could not be read in time; its annotations were not applied",
			clip(namespace, maxEchoBytes), clip(saName, maxEchoBytes)))
	}
	res := h.injector.Inject(pod, id)
	warnings = append(warnings, res.Warnings...)

	if m := h.metrics; m != nil {
		if c := h.pods[podsKey{id.Mode, res.Patch != nil}]; c != nil {
			c.Inc()
		}
		if res.SkippedByAnnotation > 0 {
			h.skippedAnnotation.Add(float64(res.SkippedByAnnotation))
		}
		if res.SkippedByConflict > 0 {
			h.skippedConflict.Add(float64(res.SkippedByConflict))
		}
		if n := len(warnings) + res.OmittedWarnings; n > 0 {
			m.Warnings.Add(float64(n))
		}
	}
	if id.Mode != identity.ModeNone {
		// One info line per mutated pod; a reinvocation that changes nothing
		// (or a pod that already had everything) only at debug level.
		// A pod left alone because it is over a bound is a warning: its
		// containers do not get the identity they are meant to.
		level := slog.LevelInfo
		switch {
		case res.OverLimit != "":
			level = slog.LevelWarn
		case res.Patch == nil:
			level = slog.LevelDebug
		}
		if h.logger.Enabled(ctx, level) {
			// The record goes to the handler directly: Logger.LogAttrs would
			// also walk the stack for the caller's source line, which no
			// handler of ours prints and which costs as much as the attributes.
			r := slog.NewRecord(time.Now(), level, "pod admitted", 0)
			r.AddAttrs(
				slog.String("namespace", clip(namespace, maxEchoBytes)),
				slog.String("pod", clip(pod.DisplayName(), maxEchoBytes)),
				slog.String("serviceAccount", clip(saName, maxEchoBytes)),
				slog.String("mode", string(id.Mode)),
				slog.String("role", clip(id.RoleARN, maxMessageBytes)),
				slog.String("source", clip(id.Source, maxMessageBytes)),
				slog.Int("containers", res.Injected),
				slog.Bool("patched", res.Patch != nil),
				slog.Int("warnings", len(warnings)+res.OmittedWarnings),
			)
			if res.OverLimit != "" {
				r.AddAttrs(slog.String("notInjected", res.OverLimit))
			}
			_ = h.logger.Handler().Handle(ctx, r)
		}
	}
	allowed.Warnings = userWarnings(warnings, res.OmittedWarnings)
	if res.Patch != nil {
		allowed.Patch = res.Patch
		allowed.PatchType = "JSONPatch"
	}
	return allowed, &res, nil
}

// userWarnings prefixes the warnings for the user and bounds them: each to
// maxMessageBytes (they quote annotation values, container names and paths of
// the request), and their number to maxWarnings. omitted counts warnings that
// were not even built (inject stops at inject.MaxWarnings).
func userWarnings(warnings []string, omitted int) []string {
	if len(warnings) == 0 {
		return nil
	}
	n := min(len(warnings), maxWarnings)
	out := make([]string, n, n+1)
	for i, w := range warnings[:n] {
		out[i] = "podiam: " + clip(w, maxMessageBytes)
	}
	if more := len(warnings) - n + omitted; more > 0 {
		out = append(out, fmt.Sprintf("podiam: %d more warnings not shown", more))
	}
	return out
}
