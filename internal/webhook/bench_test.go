package webhook

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podiam/podiam/internal/identity"
	"github.com/podiam/podiam/internal/metrics"
)

// BenchmarkHandlerIRSA measures the full handler as production runs it for a
// 3-container Deployment pod with IRSA: body read, AdmissionReview decoding,
// resolution, patch, response encoding and write, metrics and the log line.
func BenchmarkHandlerIRSA(b *testing.B) {
	body, err := os.ReadFile("testdata/review-deployment-3c.json")
	if err != nil {
		b.Fatal(err)
	}
	keys := identity.NewKeys(identity.DefaultAnnotationPrefix)
	h := NewHandler(HandlerOptions{
		Defaults:        identity.Defaults{Audience: "sts.amazonaws.com", ContainerCredentialsAudience: "pods.eks.amazonaws.com"},
		Region:          "eu-west-1",
		ServiceAccounts: staticSAs{"shop/orders-api": {keys.RoleARN: "arn:aws:iam::111122223333:role/orders-api", keys.RegionalSTS: "true"}},
		Metrics:         metrics.NewWebhook(prometheus.NewRegistry()),
		Logger:          slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		r, _ := http.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
		clear(w.h)
		w.status = 0
	}
}

type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(code int) { w.status = code }
