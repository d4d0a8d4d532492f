package metrics

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/prometheus/client_golang/prometheus"
)

// Check is a named readiness check, as a server's /readyz runs it.
type Check struct {
	Name  string
	Ready func() bool
}

// RegisterServing registers on reg what the dashboards and alerts need to
// know of a TLS server of the given subsystem (webhook, auth) that no
// request counts:
//
//   - podiam_<subsystem>_certificate_expiry_timestamp_seconds: when the
//     certificate being served expires (its NotAfter, Unix seconds), whoever
//     issued it (podiam's own CA, cert-manager, a file); absent until one is
//     loaded;
//   - podiam_<subsystem>_ready{check}: 1 while the readiness check passes
//     (caches synced, certificate loaded), else 0.
//
// Both are read at scrape time, so they cost nothing between scrapes.
func RegisterServing(reg prometheus.Registerer, subsystem string, cert func(*tls.ClientHelloInfo) (*tls.Certificate, error), checks []Check) {
	reg.MustRegister(&servingCollector{
		expiry: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "certificate_expiry_timestamp_seconds"),
			"When the serving certificate expires (NotAfter), in seconds since the Unix epoch.", nil, nil),
		ready: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "ready"),
			"1 while the readiness check passes, else 0.", []string{"check"}, nil),
		cert: cert, checks: checks,
	})
}

type servingCollector struct {
	expiry, ready *prometheus.Desc
	cert          func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	checks        []Check
}

func (c *servingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiry
	ch <- c.ready
}

func (c *servingCollector) Collect(ch chan<- prometheus.Metric) {
	if leaf := servingLeaf(c.cert); leaf != nil {
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()))
	}
	for _, chk := range c.checks {
		v := 0.0
		if chk.Ready() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, v, chk.Name)
	}
}

// servingLeaf returns the parsed leaf of the certificate get serves, or nil
// when there is none (yet) or it does not parse.
func servingLeaf(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *x509.Certificate {
	if get == nil {
		return nil
	}
	c, err := get(nil)
	if err != nil || c == nil || len(c.Certificate) == 0 {
		return nil
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}
