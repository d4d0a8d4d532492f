package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Defaults for the self-managed mode.
const (
	DefaultCAValidity    = 5 * 365 * 24 * time.Hour
	DefaultCertValidity  = 365 * 24 * time.Hour
	DefaultCheckInterval = time.Minute
)

// Options configure a Manager.
type Options struct {
	Client     kubernetes.Interface
	Namespace  string
	SecretName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose webhooks get
	// the CA bundle. Empty: none is patched.
	WebhookConfigName string
	// CAConfigMapName is a ConfigMap in Namespace that gets the CA bundle under
	// the key ca.crt (KeyCACert), for clients that mount it to trust the
	// server (the node agents of podiam auth). It is created when missing and
	// written only when its ca.crt differs; its other keys are left alone.
	// Empty: none is written.
	CAConfigMapName string
	Policy          Policy
	// CheckInterval is the longest time between two checks of the Secret and
	// webhook configuration. Run also checks whenever either changes (watched)
	// and when a rotation is due; this interval is the backstop for missed
	// events.
	CheckInterval time.Duration
	Now           func() time.Time
	Logger        *slog.Logger
}

// Manager keeps the Secret, the caBundle and the served certificate in step.
type Manager struct {
	o       Options
	current atomic.Pointer[tls.Certificate]
	// servedCert is the DER of the certificate being served, to log changes once.
	servedCert atomic.Pointer[[]byte]
}

// New returns a Manager; call Run (or Reconcile) before serving.
func New(o Options) *Manager {
	if o.Policy.CAValidity == 0 {
		o.Policy.CAValidity = DefaultCAValidity
	}
	if o.Policy.CertValidity == 0 {
		o.Policy.CertValidity = DefaultCertValidity
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Manager{o: o}
}

// GetCertificate serves the current certificate; use it in tls.Config.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := m.current.Load()
	if c == nil {
		return nil, errors.New("no serving certificate yet")
	}
	return c, nil
}

// Ready reports whether a certificate is being served.
func (m *Manager) Ready() bool { return m.current.Load() != nil }

// Reconcile makes one pass: read or create the Secret, rotate what is due, write
// the CA bundle into the webhook configuration and the CA ConfigMap, then serve
// the certificate. The bundle is written before a new certificate is served, so
// the API server (and the ConfigMap's readers, as soon as they see it) never
// sees a certificate from a CA it does not trust yet.
func (m *Manager) Reconcile(ctx context.Context) error {
	_, err := m.reconcile(ctx)
	return err
}

// reconcile is Reconcile returning the bundle now served, from which Run
// computes when the next rotation is due.
func (m *Manager) reconcile(ctx context.Context) (*Bundle, error) {
	b, err := m.syncSecret(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.syncWebhookConfig(ctx, b); err != nil {
		return nil, err
	}
	if err := m.syncCAConfigMap(ctx, b); err != nil {
		return nil, err
	}
	cert, err := b.TLSCertificate()
	if err != nil {
		return nil, err
	}
	if prev := m.servedCert.Load(); prev == nil || !bytes.Equal(*prev, b.Cert.Raw) {
		raw := b.Cert.Raw
		m.servedCert.Store(&raw)
		m.o.Logger.Info("serving certificate", "serial", b.Cert.SerialNumber.String(),
			"notAfter", b.Cert.NotAfter.UTC().Format(time.RFC3339), "dnsNames", b.Cert.DNSNames)
	}
	m.current.Store(cert)
	return b, nil
}

// syncSecret returns the bundle in the Secret after any rotation, creating or
// replacing the Secret as needed. Conflicts mean another replica wrote first:
// read again and adopt what it wrote.
func (m *Manager) syncSecret(ctx context.Context) (*Bundle, error) {
	secrets := m.o.Client.CoreV1().Secrets(m.o.Namespace)
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			return nil, fmt.Errorf("secret %s/%s: too many conflicting writers", m.o.Namespace, m.o.SecretName)
		}
		now := m.o.Now()
		s, err := secrets.Get(ctx, m.o.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			b, err := NewBundle(m.o.Policy, now)
			if err != nil {
				return nil, err
			}
			data, err := b.Encode()
			if err != nil {
				return nil, err
			}
			_, err = secrets.Create(ctx, m.secret(data), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("creating secret %s/%s: %w", m.o.Namespace, m.o.SecretName, err)
			}
			m.o.Logger.Info("created webhook certificate secret", "secret", m.o.SecretName)
			return b, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading secret %s/%s: %w", m.o.Namespace, m.o.SecretName, err)
		}

		b, decodeErr := Decode(s.Data)
		if decodeErr != nil {
			m.o.Logger.Warn("replacing unusable webhook certificate secret", "secret", m.o.SecretName, "error", decodeErr)
			b = nil
		}
		plan := Decide(b, m.o.Policy, now)
		if !plan.Changed() && s.Type == corev1.SecretTypeTLS {
			return b, nil
		}
		nb, err := Apply(b, plan, m.o.Policy, now)
		if err != nil {
			return nil, err
		}
		data, err := nb.Encode()
		if err != nil {
			return nil, err
		}
		if s.Type != corev1.SecretTypeTLS {
			// The type is immutable: replace the Secret, guarded by its UID and
			// resourceVersion so we never delete another replica's fresh one.
			err := secrets.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return nil, fmt.Errorf("deleting secret %s/%s of type %s: %w", m.o.Namespace, s.Name, s.Type, err)
			}
			continue
		}
		s.Data = data
		if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				continue
			}
			return nil, fmt.Errorf("updating secret %s/%s: %w", m.o.Namespace, m.o.SecretName, err)
		}
		m.o.Logger.Info("rotated webhook certificates", "secret", m.o.SecretName, "reason", plan.Reason,
			"newCA", plan.NewCA, "newCert", plan.NewCert, "prunedCAs", plan.PrunedCAs)
		return nb, nil
	}
}

func (m *Manager) secret(data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: m.o.SecretName, Namespace: m.o.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "podiam"},
		},
		Type: corev1.SecretTypeTLS,
		Data: data,
	}
}

// syncWebhookConfig makes every webhook of the configuration trust the bundle's
// CAs. A patch that fails because the configuration changed since it was read
// (usually another replica reacting to the same event, which wrote the same
// caBundle) is tried again on a fresh read.
func (m *Manager) syncWebhookConfig(ctx context.Context, b *Bundle) error {
	if m.o.WebhookConfigName == "" {
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := m.patchCABundle(ctx, b)
		// A failed test operation is answered 422 Invalid.
		if attempt < 5 && (apierrors.IsInvalid(err) || apierrors.IsConflict(err)) {
			continue
		}
		return err
	}
}

// patchCABundle patches the caBundle of every webhook whose caBundle is not
// what it should be, and only those: writing only when the content differs is
// what keeps the watch event of this write from leading to another. CAs
// already in a webhook's caBundle that are still valid are kept after ours: a
// replica that has not yet seen another replica's rotation must not remove the
// new CA that replica's certificate is signed by. The JSON patch's test
// operations pin each index to its webhook's name and the caBundle read, so a
// concurrent edit fails the patch instead of being overwritten.
func (m *Manager) patchCABundle(ctx context.Context, b *Bundle) error {
	cfgs := m.o.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := cfgs.Get(ctx, m.o.WebhookConfigName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		m.o.Logger.Warn("webhook configuration not found; caBundle not written yet", "name", m.o.WebhookConfigName)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", m.o.WebhookConfigName, err)
	}
	var ops []string
	now := m.o.Now()
	for i, wh := range cfg.Webhooks {
		want := mergeCABundle(b.CAs, wh.ClientConfig.CABundle, now)
		if bytes.Equal(wh.ClientConfig.CABundle, want) {
			continue
		}
		name := strconv.Quote(wh.Name) // webhook names are DNS names: Go and JSON quoting agree
		if len(wh.ClientConfig.CABundle) > 0 {
			ops = append(ops, fmt.Sprintf(`{"op":"test","path":"/webhooks/%d/clientConfig/caBundle","value":%q}`,
				i, base64.StdEncoding.EncodeToString(wh.ClientConfig.CABundle)))
		}
		ops = append(ops,
			fmt.Sprintf(`{"op":"test","path":"/webhooks/%d/name","value":%s}`, i, name),
			fmt.Sprintf(`{"op":"add","path":"/webhooks/%d/clientConfig/caBundle","value":%q}`, i, base64.StdEncoding.EncodeToString(want)))
	}
	if len(ops) == 0 {
		return nil
	}
	patch := []byte("[" + strings.Join(ops, ",") + "]")
	if _, err := cfgs.Patch(ctx, m.o.WebhookConfigName, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("writing caBundle into MutatingWebhookConfiguration %s: %w", m.o.WebhookConfigName, err)
	}
	m.o.Logger.Info("wrote caBundle into webhook configuration", "name", m.o.WebhookConfigName)
	return nil
}

// mergeCABundle returns the PEM of cas followed by the CAs of current that are
// not among them and still valid at now. Unparsable content of current is
// dropped.
func mergeCABundle(cas []*x509.Certificate, current []byte, now time.Time) []byte {
	out := &Bundle{CAs: slices.Clone(cas)}
	existing, _ := parseCerts(current)
	for _, c := range existing {
		if now.Before(c.NotAfter) && !slices.ContainsFunc(out.CAs, c.Equal) {
			out.CAs = append(out.CAs, c)
		}
	}
	return out.CABundle()
}

// syncCAConfigMap keeps the CA ConfigMap's ca.crt equal to the bundle's CAs,
// followed, as in the caBundle, by CAs already there that are still valid (a
// replica that has not seen another's rotation yet must not remove the new CA).
// A create or update that loses a race with another replica (AlreadyExists, a
// resourceVersion conflict) is tried again on a fresh read.
func (m *Manager) syncCAConfigMap(ctx context.Context, b *Bundle) error {
	if m.o.CAConfigMapName == "" {
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := m.writeCAConfigMap(ctx, b)
		if attempt < 5 && (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) {
			continue
		}
		return err
	}
}

// writeCAConfigMap makes one attempt of syncCAConfigMap.
func (m *Manager) writeCAConfigMap(ctx context.Context, b *Bundle) error {
	cms := m.o.Client.CoreV1().ConfigMaps(m.o.Namespace)
	name := m.o.CAConfigMapName
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: m.o.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "podiam"},
			},
			Data: map[string]string{KeyCACert: string(b.CABundle())},
		}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating ConfigMap %s/%s: %w", m.o.Namespace, name, err)
		}
		m.o.Logger.Info("created CA bundle ConfigMap", "configMap", name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading ConfigMap %s/%s: %w", m.o.Namespace, name, err)
	}
	want := string(mergeCABundle(b.CAs, []byte(cm.Data[KeyCACert]), m.o.Now()))
	if cm.Data[KeyCACert] == want {
		return nil
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[KeyCACert] = want
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the CA bundle into ConfigMap %s/%s: %w", m.o.Namespace, name, err)
	}
	m.o.Logger.Info("wrote CA bundle into ConfigMap", "configMap", name)
	return nil
}
