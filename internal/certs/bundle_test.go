package certs

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

var (
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pol = Policy{CAValidity: 300 * time.Hour, CertValidity: 30 * time.Hour,
		DNSNames: []string{"podiam.podiam-system.svc"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
)

func fresh(t *testing.T, now time.Time) *Bundle {
	t.Helper()
	b, err := NewBundle(pol, now)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecide(t *testing.T) {
	b := fresh(t, t0)
	renamed := pol
	renamed.DNSNames = []string{"other.svc"}
	tests := []struct {
		name   string
		b      *Bundle
		pol    Policy
		at     time.Time
		want   Plan
		reason string
	}{
		{name: "nothing yet", b: nil, pol: pol, at: t0, want: Plan{NewCA: true, NewCert: true}, reason: "no certificates"},
		{name: "fresh", b: b, pol: pol, at: t0.Add(time.Hour), want: Plan{}},
		{name: "cert just before its last third", b: b, pol: pol, at: t0.Add(19 * time.Hour), want: Plan{}},
		{name: "cert in its last third", b: b, pol: pol, at: t0.Add(21 * time.Hour), want: Plan{NewCert: true}, reason: "serving certificate enters"},
		{name: "names changed", b: b, pol: renamed, at: t0.Add(time.Hour), want: Plan{NewCert: true}, reason: "names changed"},
		{name: "CA in its last third", b: b, pol: pol, at: t0.Add(201 * time.Hour), want: Plan{NewCA: true, NewCert: true}, reason: "serving certificate enters"},
		{name: "CA expired", b: b, pol: pol, at: t0.Add(301 * time.Hour), want: Plan{NewCA: true, NewCert: true, PrunedCAs: 1}, reason: "CA expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.b, tt.pol, tt.at)
			reason := got.Reason
			got.Reason = ""
			if got != tt.want {
				t.Fatalf("Decide = %+v, want %+v", got, tt.want)
			}
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", reason, tt.reason)
			}
			if got.Changed() != (tt.want != Plan{}) {
				t.Errorf("Changed() = %v", got.Changed())
			}
		})
	}
}

func TestCARotationKeepsOldCATrusted(t *testing.T) {
	b := fresh(t, t0)
	// The CA enters its last third while the serving certificate is fresh:
	// a new CA is added, the old one stays trusted, the certificate stays.
	at := t0.Add(200*time.Hour + time.Minute)
	b2 := b
	// Renew the serving cert shortly before so only the CA is due.
	b2, err := Apply(b2, Plan{NewCert: true}, pol, at.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := Decide(b2, pol, at)
	if !p.NewCA || p.NewCert {
		t.Fatalf("plan %+v: want a new CA only", p)
	}
	b3, err := Apply(b2, p, pol, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(b3.CAs) != 2 || b3.CAs[1] != b2.CAs[0] {
		t.Fatalf("CA bundle has %d CAs; want the new one first and the old one kept", len(b3.CAs))
	}
	if b3.Cert != b2.Cert || !signedByAny(b3.Cert, b3.CAs, at) {
		t.Fatal("serving certificate changed or no longer trusted after CA rotation")
	}
	if len(b2.CAs) != 1 {
		t.Fatal("Apply modified its input")
	}
	// At the certificate's renewal it is issued by the new CA.
	later := at.Add(25 * time.Hour)
	b4, err := Apply(b3, Decide(b3, pol, later), pol, later)
	if err != nil {
		t.Fatal(err)
	}
	if err := b4.Cert.CheckSignatureFrom(b4.CAs[0]); err != nil {
		t.Fatalf("renewed certificate not signed by the new CA: %v", err)
	}
	// Once the old CA expires it is pruned.
	end := t0.Add(301 * time.Hour)
	p = Decide(b4, pol, end)
	if p.PrunedCAs != 1 {
		t.Fatalf("plan %+v: want the expired CA pruned", p)
	}
	b5, err := Apply(b4, p, pol, end)
	if err != nil {
		t.Fatal(err)
	}
	if len(b5.CAs) != 1 || b5.CAs[0] != b4.CAs[0] {
		t.Fatalf("after pruning: %d CAs", len(b5.CAs))
	}
}

func TestIssuedCertificate(t *testing.T) {
	b := fresh(t, t0)
	c := b.Cert
	if err := c.CheckSignatureFrom(b.CAs[0]); err != nil {
		t.Fatal(err)
	}
	if c.DNSNames[0] != "podiam.podiam-system.svc" || !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("names %v %v", c.DNSNames, c.IPAddresses)
	}
	if c.IsCA || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("serving certificate usage wrong: IsCA=%v ExtKeyUsage=%v", c.IsCA, c.ExtKeyUsage)
	}
	if got := c.NotAfter.Sub(t0); got != 30*time.Hour {
		t.Errorf("validity %v, want 30h", got)
	}
	// A certificate never outlives its CA.
	late := t0.Add(290 * time.Hour)
	b2, err := Apply(b, Plan{NewCert: true}, pol, late)
	if err != nil {
		t.Fatal(err)
	}
	if !b2.Cert.NotAfter.Equal(b.CAs[0].NotAfter) {
		t.Errorf("cert NotAfter %v, want capped at CA NotAfter %v", b2.Cert.NotAfter, b.CAs[0].NotAfter)
	}
	if _, err := b.TLSCertificate(); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	b := fresh(t, t0)
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(b.Cert) || !got.CAs[0].Equal(b.CAs[0]) || Decide(got, pol, t0).Changed() {
		t.Fatal("round trip changed the bundle")
	}
}

func TestDecodeRejectsCorruptData(t *testing.T) {
	good, err := fresh(t, t0).Encode()
	if err != nil {
		t.Fatal(err)
	}
	other, err := fresh(t, t0).Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		modify func(map[string][]byte)
		want   string
	}{
		{"empty", func(d map[string][]byte) { clear(d) }, "ca.crt: no certificate"},
		{"garbage CA", func(d map[string][]byte) { d[KeyCACert] = []byte("not pem") }, "ca.crt"},
		{"missing CA key", func(d map[string][]byte) { delete(d, KeyCAKey) }, "ca.key: no PEM key"},
		{"CA key of another CA", func(d map[string][]byte) { d[KeyCAKey] = other[KeyCAKey] }, "ca.key does not match"},
		{"missing cert", func(d map[string][]byte) { delete(d, KeyTLSCert) }, "tls.crt"},
		{"key of another cert", func(d map[string][]byte) { d[KeyTLSKey] = other[KeyTLSKey] }, "tls.key does not match"},
		{"truncated key", func(d map[string][]byte) { d[KeyTLSKey] = d[KeyTLSKey][:40] }, "tls.key"},
		{"key in the cert slot", func(d map[string][]byte) { d[KeyTLSCert] = d[KeyTLSKey] }, `unexpected PEM block "PRIVATE KEY"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := map[string][]byte{}
			for k, v := range good {
				d[k] = v
			}
			tt.modify(d)
			if _, err := Decode(d); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Short lifetimes (used in tests and by impatient operators) must not be due
// at issuance because of the back-dated NotBefore.
func TestShortLifetimeIsNotDueAtOnce(t *testing.T) {
	short := Policy{CAValidity: 60 * time.Second, CertValidity: 20 * time.Second, DNSNames: pol.DNSNames}
	b, err := NewBundle(short, t0)
	if err != nil {
		t.Fatal(err)
	}
	if p := Decide(b, short, t0.Add(time.Second)); p.Changed() {
		t.Fatalf("due %v after issuance: %+v", time.Second, p)
	}
	if p := Decide(b, short, t0.Add(14*time.Second)); !p.NewCert || p.NewCA {
		t.Fatalf("at 14s of 20s: %+v, want a new certificate only", p)
	}
	if p := Decide(b, short, t0.Add(41*time.Second)); !p.NewCA {
		t.Fatalf("at 41s of a 60s CA: %+v, want a new CA", p)
	}
}
