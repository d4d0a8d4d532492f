package metrics

import (
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	podiamtestutil "github.com/podiam/podiam/test/testutil"
)

func TestRegisterServing(t *testing.T) {
	ca := podiamtestutil.NewCert(t, "ca", nil, false)
	leaf := podiamtestutil.NewCert(t, "leaf", ca, true)
	served := leaf.TLSCertificate(ca) // Leaf not set: parsed at scrape time
	// A Leaf set by the loader is used as it is: one whose NotAfter differs
	// from the DER's shows which was read.
	withLeaf := leaf.TLSCertificate()
	parsedLeaf := *leaf.Cert
	parsedLeaf.NotAfter = leaf.Cert.NotAfter.Add(time.Hour).Truncate(time.Second)
	withLeaf.Leaf = &parsedLeaf
	expiry := leaf.Cert.NotAfter.Unix()

	none := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no serving certificate yet")
	}
	serve := func(c *tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c, nil }
	}
	garbage := tls.Certificate{Certificate: [][]byte{[]byte("not DER")}}
	checks := []Check{{Name: "cache", Ready: func() bool { return true }}, {Name: "certificate", Ready: func() bool { return false }}}
	const ready = `
# HELP podiam_webhook_ready 1 while the readiness check passes, else 0.
# TYPE podiam_webhook_ready gauge
podiam_webhook_ready{check="cache"} 1
podiam_webhook_ready{check="certificate"} 0
`
	expiryText := func(v int64) string {
		return `
# HELP podiam_webhook_certificate_expiry_timestamp_seconds When the serving certificate expires (NotAfter), in seconds since the Unix epoch.
# TYPE podiam_webhook_certificate_expiry_timestamp_seconds gauge
podiam_webhook_certificate_expiry_timestamp_seconds ` + strconv.FormatInt(v, 10) + "\n"
	}
	tests := []struct {
		name string
		cert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
		want string
	}{
		{name: "certificate to parse", cert: serve(&served), want: expiryText(expiry) + ready},
		{name: "certificate with its leaf", cert: serve(&withLeaf), want: expiryText(parsedLeaf.NotAfter.Unix()) + ready},
		{name: "no certificate yet", cert: none, want: ready},
		{name: "no certificate source", want: ready},
		{name: "certificate that does not parse", cert: serve(&garbage), want: ready},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			RegisterServing(reg, "webhook", tc.cert, checks)
			if err := testutil.GatherAndCompare(reg, strings.NewReader(tc.want)); err != nil {
				t.Error(err)
			}
		})
	}
}
