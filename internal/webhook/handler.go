// Package webhook speaks HTTP for the admission webhook: it decodes
// AdmissionReviews, asks identity and inject for the answer, and serves it over TLS
// with health, readiness and metrics endpoints.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/inject"
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

// Handler serves POST /mutate.
type Handler struct {
	Resolver        *identity.Resolver
	Injector        *inject.Config
	ServiceAccounts ServiceAccounts
	// Mapping and ContainerCredentials return the current snapshots; nil funcs or
	// nil results mean empty.
	Mapping              func() *identity.Mapping
	ContainerCredentials func() *identity.ContainerCredentials
	Metrics              *metrics.Webhook
	Logger               *slog.Logger
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

// ServeHTTP implements /mutate.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status := h.serve(w, r)
	if h.Metrics != nil {
		h.Metrics.Requests.WithLabelValues(strconv.Itoa(status)).Inc()
		h.Metrics.RequestDuration.Observe(time.Since(start).Seconds())
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return h.fail(w, &requestError{http.StatusMethodNotAllowed, "method not allowed: use POST"})
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return h.fail(w, &requestError{http.StatusUnsupportedMediaType,
			fmt.Sprintf("unsupported content type %q: want application/json", r.Header.Get("Content-Type"))})
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

func (h *Handler) fail(w http.ResponseWriter, err error) int {
	status := http.StatusInternalServerError
	var re *requestError
	if errors.As(err, &re) {
		status = re.status
	}
	h.logger().Warn("rejected admission request", "status", status, "error", err.Error())
	http.Error(w, err.Error(), status)
	return status
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.Default()
	}
	return h.Logger
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
	if err := json.Unmarshal(body, &review, decodeOptions); err != nil {
		return &requestError{http.StatusBadRequest, "decoding AdmissionReview: " + err.Error()}
	}
	if review.APIVersion != admissionV1 && review.APIVersion != admissionV1beta1 {
		return &requestError{http.StatusBadRequest,
			fmt.Sprintf("unsupported apiVersion %q: want %s or %s", review.APIVersion, admissionV1, admissionV1beta1)}
	}
	if review.Kind != "AdmissionReview" {
		return &requestError{http.StatusBadRequest, fmt.Sprintf("unsupported kind %q: want AdmissionReview", review.Kind)}
	}
	req := review.Request
	if req == nil {
		return &requestError{http.StatusBadRequest, "AdmissionReview has no request"}
	}
	resp, err := h.admit(ctx, req)
	if err != nil {
		return err
	}
	resp.UID = req.UID
	if err := json.MarshalWrite(out, admissionReviewResponse{APIVersion: review.APIVersion, Kind: review.Kind, Response: resp}); err != nil {
		return fmt.Errorf("encoding AdmissionReview: %w", err)
	}
	return nil
}

func (h *Handler) admit(ctx context.Context, req *admissionRequest) (admissionResponse, error) {
	allowed := admissionResponse{Allowed: true}
	// Only pod creation is ours; the webhook configuration should send nothing else,
	// but a broad rule must not break other objects.
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != "CREATE" {
		return allowed, nil
	}
	if req.Object.err != nil {
		return allowed, &requestError{http.StatusBadRequest, req.Object.err.Error()}
	}
	pod := req.Object.pod
	if pod == nil {
		return allowed, &requestError{http.StatusBadRequest, "AdmissionRequest has no object"}
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
	if h.ServiceAccounts != nil {
		in.SAAnnotations, _, lookupErr = h.ServiceAccounts.Lookup(ctx, namespace, saName)
	}
	if h.Mapping != nil {
		in.Mapping = h.Mapping()
	}
	if h.ContainerCredentials != nil {
		in.ContainerCredentials = h.ContainerCredentials()
	}
	id, warnings := h.Resolver.Resolve(in)
	if lookupErr != nil {
		// Admit anyway (never block pods on our side), but say so: the pod may
		// be missing the identity its ServiceAccount's annotations give.
		warnings = append(warnings, fmt.Sprintf("ServiceAccount %s/%s could not be read in time; its annotations were not applied", namespace, saName))
	}
	res := h.Injector.Inject(pod, id)
	warnings = append(warnings, res.Warnings...)

	if m := h.Metrics; m != nil {
		m.Mutations.WithLabelValues(string(id.Mode), strconv.FormatBool(res.Patch != nil)).Inc()
		if res.SkippedByAnnotation > 0 {
			m.ContainersSkipped.WithLabelValues("annotation").Add(float64(res.SkippedByAnnotation))
		}
		if res.SkippedByConflict > 0 {
			m.ContainersSkipped.WithLabelValues("conflict").Add(float64(res.SkippedByConflict))
		}
		if len(warnings) > 0 {
			m.Warnings.Add(float64(len(warnings)))
		}
	}
	if id.Mode != identity.ModeNone {
		// One info line per mutated pod; a reinvocation that changes nothing
		// (or a pod that already had everything) only at debug level.
		level := slog.LevelInfo
		if res.Patch == nil {
			level = slog.LevelDebug
		}
		h.logger().LogAttrs(ctx, level, "pod admitted",
			slog.String("namespace", namespace),
			slog.String("pod", pod.DisplayName()),
			slog.String("serviceAccount", saName),
			slog.String("mode", string(id.Mode)),
			slog.String("role", id.RoleARN),
			slog.String("source", id.Source),
			slog.Int("containers", res.Injected),
			slog.Bool("patched", res.Patch != nil),
			slog.Int("warnings", len(warnings)),
		)
	}
	for i, w := range warnings {
		warnings[i] = "podiam: " + w
	}
	allowed.Warnings = warnings
	if res.Patch != nil {
		allowed.Patch = res.Patch
		allowed.PatchType = "JSONPatch"
	}
	return allowed, nil
}
