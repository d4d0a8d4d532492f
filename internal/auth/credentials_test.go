package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awscreds "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/eksauth"
	podsts "github.com/podiam/podiam/internal/sts"
)

// The world of the credentials tests: the pod web-0 of ServiceAccount apps/web
// in cluster test-cluster, and an STS account whose user ci is podiam auth.
const (
	credAccount       = "111122223333"
	credTargetAccount = "444455556666"
	credNamespace     = "apps"
	credSA            = "web"
	credPodName       = "web-0"
	credPodUID        = "6d1c2a3e-0c1f-4b7e-9a57-3b0f5a3f2c11"
	credCluster       = "test-cluster"
	credClusterARN    = "arn:aws:eks:us-east-1:" + credAccount + ":cluster/" + credCluster
	credRegion        = "us-east-1"
	credUserKeyID     = "AKIACREDENTIALSTEST1"
	credUserSecret    = "c2VjcmV0LW9mLXBvZGlhbS1hdXRoLWluLXRlc3Rz"
)

func credRole(name string) string { return "arn:aws:iam::" + credAccount + ":role/" + name }

var credTarget = "arn:aws:iam::" + credTargetAccount + ":role/target"

// credExternalID is the external id EKS sets for apps/web in test-cluster.
var credExternalID = credRegion + "/" + credAccount + "/" + credCluster + "/" + credNamespace + "/" + credSA

// credTrust is a trust policy letting principal perform actions under cond.
func credTrust(principal string, actions []string, cond map[string]any) map[string]any {
	st := map[string]any{"Effect": "Allow", "Principal": map[string]any{"AWS": principal}, "Action": actions}
	if cond != nil {
		st["Condition"] = cond
	}
	return map[string]any{"Version": "2012-10-17", "Statement": []any{st}}
}

// credSTSConfig is the podiam sts config of the tests. Roles, for the user ci:
// tagged (needs the pod's namespace and UID as request tags), othertag (needs
// another namespace's tag), external (no sts:TagSession, needs the external
// id), first (anything), chained (anything, for sessions of first); target,
// in another account, trusts sessions of first that carry the pod's UID as a
// (transitive) principal tag.
func credSTSConfig(t testing.TB) []byte {
	t.Helper()
	user := "arn:aws:iam::" + credAccount + ":user/ci"
	both := []string{"sts:AssumeRole", "sts:TagSession"}
	role := func(name string, trust map[string]any) map[string]any {
		return map[string]any{"name": name, "maxSessionDuration": 7200, "trustPolicy": trust}
	}
	cfg := map[string]any{"accounts": []any{
		map[string]any{
			"id": credAccount,
			"roles": []any{
				role("tagged", credTrust(user, both, map[string]any{"StringEquals": map[string]any{
					"aws:RequestTag/kubernetes-namespace": credNamespace,
					"aws:RequestTag/kubernetes-pod-uid":   credPodUID,
				}})),
				role("othertag", credTrust(user, both, map[string]any{"StringEquals": map[string]any{
					"aws:RequestTag/kubernetes-namespace": "other",
				}})),
				role("external", credTrust(user, []string{"sts:AssumeRole"}, map[string]any{"StringEquals": map[string]any{
					"sts:ExternalId": credExternalID,
				}})),
				role("first", credTrust(user, both, nil)),
				role("chained", credTrust(credRole("first"), both, nil)),
			},
			"users": []any{map[string]any{"name": "ci", "accessKeyId": credUserKeyID, "secretAccessKey": credUserSecret}},
		},
		map[string]any{
			"id": credTargetAccount,
			"roles": []any{
				map[string]any{"name": "target", "trustPolicy": credTrust(credRole("first"), both, map[string]any{
					"StringEquals": map[string]any{"aws:PrincipalTag/kubernetes-pod-uid": credPodUID},
				})},
			},
		},
	}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// credSTSCall is an AssumeRole request as the STS received it.
type credSTSCall struct {
	form url.Values
	// keyID is the access key id that signed it.
	keyID string
}

// credSTS is podiam sts on 127.0.0.1, behind a middleware that records the
// AssumeRole requests and can hold them or answer in the STS's place.
type credSTS struct {
	url string

	mu    sync.Mutex
	calls []credSTSCall
	// hold, when set, keeps AssumeRole requests waiting until it is closed;
	// arrived learns of each one held.
	hold    chan struct{}
	arrived chan struct{}
	// fault, when set, answers AssumeRole requests instead of the STS.
	fault http.HandlerFunc
}

var credSignerRE = regexp.MustCompile(`Credential=([A-Z0-9]+)/`)

func newCredSTS(t testing.TB) *credSTS {
	t.Helper()
	cfg, err := podsts.Parse(credSTSConfig(t), "")
	if err != nil {
		t.Fatalf("sts config: %v", err)
	}
	key, err := podsts.GenerateStateKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := podsts.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := podsts.NewServer(podsts.Options{Config: func() *podsts.Config { return cfg }, Sealer: sealer,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	env := &credSTS{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		if form.Get("Action") == "AssumeRole" {
			call := credSTSCall{form: form}
			if m := credSignerRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
				call.keyID = m[1]
			}
			env.mu.Lock()
			env.calls = append(env.calls, call)
			hold, arrived, fault := env.hold, env.arrived, env.fault
			env.mu.Unlock()
			if hold != nil {
				select {
				case arrived <- struct{}{}:
				default:
				}
				select {
				case <-hold:
				case <-r.Context().Done():
					return
				}
			}
			if fault != nil {
				fault(w, r)
				return
			}
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	env.url = ts.URL
	return env
}

// client is the SDK's STS client signing as ci, trying each call once.
func (env *credSTS) client() *sts.Client {
	return credClient(env.url, func(o *sts.Options) { o.RetryMaxAttempts = 1 })
}

// credClient is the SDK's STS client for the STS at endpoint, signing as ci.
func credClient(endpoint string, optFns ...func(*sts.Options)) *sts.Client {
	return sts.New(sts.Options{
		Region:       credRegion,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  awscreds.NewStaticCredentialsProvider(credUserKeyID, credUserSecret, ""),
	}, optFns...)
}

// recorded returns the AssumeRole requests received so far.
func (env *credSTS) recorded() []credSTSCall {
	env.mu.Lock()
	defer env.mu.Unlock()
	return append([]credSTSCall(nil), env.calls...)
}

// holdCalls makes AssumeRole requests wait until the returned func is called.
func (env *credSTS) holdCalls() (arrived <-chan struct{}, release func()) {
	env.mu.Lock()
	defer env.mu.Unlock()
	env.hold, env.arrived = make(chan struct{}), make(chan struct{}, 100)
	var once sync.Once
	hold := env.hold
	return env.arrived, func() { once.Do(func() { close(hold) }) }
}

// credStatusRecorder is a StatusReporter keeping what it is told.
type credStatusRecorder struct {
	mu      sync.Mutex
	reports []string // association key and error code, or "ok"
}

func (s *credStatusRecorder) Report(a *association.Association, err *eksauth.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	code := "ok"
	if err != nil {
		code = err.Code
	}
	s.reports = append(s.reports, a.Key()+" "+code)
}

func (s *credStatusRecorder) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reports...)
}

// credClock is a settable clock.
type credClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *credClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *credClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// credFixture is an STSCredentials with its metrics, status and clock.
type credFixture struct {
	creds   *STSCredentials
	metrics *Metrics
	status  *credStatusRecorder
	clock   *credClock
}

func newCredFixture(t testing.TB, client STSAPI, opts ...func(*CredentialsOptions)) *credFixture {
	t.Helper()
	f := &credFixture{metrics: NewMetrics(prometheus.NewRegistry()), status: &credStatusRecorder{},
		clock: &credClock{now: time.Now()}}
	o := CredentialsOptions{
		STS:     client,
		Cluster: Cluster{Name: credCluster, ARN: credClusterARN, Region: credRegion, Account: credAccount},
		Status:  f.status,
		Metrics: f.metrics,
		Now:     f.clock.Now,
	}
	for _, fn := range opts {
		fn(&o)
	}
	f.creds = NewCredentials(o)
	return f
}

func (f *credFixture) stsCalls(result string) int {
	return int(promtest.ToFloat64(f.metrics.STSCalls.WithLabelValues(result)))
}

func (f *credFixture) issuances(source string) int {
	return int(promtest.ToFloat64(f.metrics.Issuances.WithLabelValues(source)))
}

func credAssociation(role string) *association.Association {
	return &association.Association{Namespace: credNamespace, Name: "web", UID: "0b9e4f7a-assoc-web",
		ServiceAccount: credSA, RoleARN: role}
}

func credPod() Pod {
	return Pod{Namespace: credNamespace, ServiceAccount: credSA, Name: credPodName, UID: credPodUID, NodeName: "node-1"}
}

// TestSessionName checks EKS's session name and its cut to STS's 64 characters.
func TestSessionName(t *testing.T) {
	const id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	tests := []struct {
		name, cluster, pod, want string
	}{
		{"whole", "prod", "web-0", "eks-prod-web-0-" + id},
		{"exactly 64", "c", strings.Repeat("p", 64-len("eks-c--")-len(id)), "eks-c-" + strings.Repeat("p", 21) + "-" + id},
		{"long pod name cuts the id", "prod", strings.Repeat("p", 40), ("eks-prod-" + strings.Repeat("p", 40) + "-" + id)[:64]},
		{"long cluster name leaves only the cluster", strings.Repeat("c", 100), "web-0", "eks-" + strings.Repeat("c", 60)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SessionName(tt.cluster, tt.pod, id)
			if got != tt.want {
				t.Errorf("SessionName = %q, want %q", got, tt.want)
			}
			if len(got) > 64 {
				t.Errorf("len = %d, over 64", len(got))
			}
		})
	}
}

// TestCacheKey checks that every field shaping the credentials, the
// association and the pod change the key, and that nothing else does.
func TestCacheKey(t *testing.T) {
	base := &association.Association{Namespace: "apps", Name: "web", UID: "u1", ServiceAccount: "web",
		RoleARN: credRole("a"), TargetRoleARN: credTarget, Policy: `{"Version":"2012-10-17"}`}
	baseKey := cacheKey(base, "pod-1")
	tests := []struct {
		name   string
		edit   func(a *association.Association)
		podUID string
		same   bool
	}{
		{"unchanged", func(*association.Association) {}, "pod-1", true},
		{"other pod", func(*association.Association) {}, "pod-2", false},
		{"other association", func(a *association.Association) { a.UID = "u2" }, "pod-1", false},
		{"roleArn", func(a *association.Association) { a.RoleARN = credRole("b") }, "pod-1", false},
		{"targetRoleArn", func(a *association.Association) { a.TargetRoleARN = "" }, "pod-1", false},
		{"disableSessionTags", func(a *association.Association) { a.DisableSessionTags = true }, "pod-1", false},
		{"policy", func(a *association.Association) { a.Policy = "" }, "pod-1", false},
		{"fields shifted into each other", func(a *association.Association) {
			a.RoleARN, a.TargetRoleARN = a.RoleARN+";"+a.TargetRoleARN, ""
		}, "pod-1", false},
		{"creation time", func(a *association.Association) { a.CreationTimestamp = time.Unix(1, 0) }, "pod-1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := *base
			tt.edit(&a)
			if got := cacheKey(&a, tt.podUID); (got == baseKey) != tt.same {
				t.Errorf("key %q vs %q: same = %v, want %v", got, baseKey, got == baseKey, tt.same)
			}
		})
	}
}

// TestCredentialsExchange issues credentials from podiam sts for each kind of
// association and checks what STS received (tags, external id, chaining,
// session policy), what came back, and what the status learned.
func TestCredentialsExchange(t *testing.T) {
	sessionRE := regexp.MustCompile(`^eks-` + credCluster + `-` + credPodName + `-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	const sessionPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`
	tagged := func(a *association.Association) {}
	tests := []struct {
		name string
		role string
		edit func(a *association.Association)
		pod  func(p *Pod)
		// wantRole is the role of the credentials, "" for an error.
		wantRole, wantAssumed string
		wantCode, wantMsg     string
		// check looks at the AssumeRole requests STS received.
		check func(t *testing.T, calls []credSTSCall)
	}{{
		name: "session tags", role: credRole("tagged"), edit: tagged,
		wantRole: credRole("tagged"), wantAssumed: "arn:aws:sts::" + credAccount + ":assumed-role/tagged/",
		check: func(t *testing.T, calls []credSTSCall) {
			wantSTSCalls(t, calls, 1)
			f := calls[0].form
			wantTags := map[string]string{
				"eks-cluster-arn": credClusterARN, "eks-cluster-name": credCluster,
				"kubernetes-namespace": credNamespace, "kubernetes-service-account": credSA,
				"kubernetes-pod-name": credPodName, "kubernetes-pod-uid": credPodUID,
			}
			gotTags, transitive := map[string]string{}, map[string]bool{}
			for i := 1; f.Has("Tags.member." + strconv.Itoa(i) + ".Key"); i++ {
				n := strconv.Itoa(i)
				gotTags[f.Get("Tags.member."+n+".Key")] = f.Get("Tags.member." + n + ".Value")
			}
			for i := 1; f.Has("TransitiveTagKeys.member." + strconv.Itoa(i)); i++ {
				transitive[f.Get("TransitiveTagKeys.member."+strconv.Itoa(i))] = true
			}
			if fmt.Sprint(gotTags) != fmt.Sprint(wantTags) {
				t.Errorf("tags = %v, want %v", gotTags, wantTags)
			}
			if len(transitive) != len(wantTags) {
				t.Errorf("transitive keys = %v, want all of %v", transitive, wantTags)
			}
			for k := range wantTags {
				if !transitive[k] {
					t.Errorf("tag %s is not transitive", k)
				}
			}
			wantSTSParam(t, f, "ExternalId", "")
			wantSTSParam(t, f, "Policy", "")
			wantSTSParam(t, f, "DurationSeconds", "7200")
			wantSTSParam(t, f, "RoleArn", credRole("tagged"))
		},
	}, {
		name: "trust policy refuses the tags", role: credRole("othertag"), edit: tagged,
		wantCode: eksauth.CodeAccessDenied,
		wantMsg: "assuming " + credRole("othertag") + ": AccessDenied: User: arn:aws:iam::" + credAccount +
			":user/ci is not authorized to perform: sts:AssumeRole on resource: " + credRole("othertag"),
		check: func(t *testing.T, calls []credSTSCall) { wantSTSCalls(t, calls, 1) },
	}, {
		name: "session tags disabled: external id", role: credRole("external"),
		edit:     func(a *association.Association) { a.DisableSessionTags = true },
		wantRole: credRole("external"), wantAssumed: "arn:aws:sts::" + credAccount + ":assumed-role/external/",
		check: func(t *testing.T, calls []credSTSCall) {
			wantSTSCalls(t, calls, 1)
			wantSTSParam(t, calls[0].form, "ExternalId", credExternalID)
			wantSTSParam(t, calls[0].form, "Tags.member.1.Key", "")
			wantSTSParam(t, calls[0].form, "TransitiveTagKeys.member.1", "")
		},
	}, {
		// The role allows no tags and wants the external id: proof that
		// the case above is accepted for its external id alone.
		name: "session tags enabled on a role that needs the external id", role: credRole("external"), edit: tagged,
		wantCode: eksauth.CodeAccessDenied, wantMsg: "assuming " + credRole("external") + ": AccessDenied: ",
		check: func(t *testing.T, calls []credSTSCall) { wantSTSCalls(t, calls, 1) },
	}, {
		name: "session policy", role: credRole("tagged"),
		edit:     func(a *association.Association) { a.Policy = sessionPolicy },
		wantRole: credRole("tagged"), wantAssumed: "arn:aws:sts::" + credAccount + ":assumed-role/tagged/",
		check: func(t *testing.T, calls []credSTSCall) {
			wantSTSCalls(t, calls, 1)
			wantSTSParam(t, calls[0].form, "Policy", sessionPolicy)
		},
	}, {
		name: "malformed session policy", role: credRole("tagged"),
		edit:     func(a *association.Association) { a.Policy = "{not json" },
		wantCode: eksauth.CodeAccessDenied,
		wantMsg:  "assuming " + credRole("tagged") + ": MalformedPolicyDocument: The policy is not in the valid JSON format.",
	}, {
		name: "target role: chained with the first session", role: credRole("first"),
		edit:     func(a *association.Association) { a.TargetRoleARN = credTarget; a.Policy = sessionPolicy },
		wantRole: credTarget, wantAssumed: "arn:aws:sts::" + credTargetAccount + ":assumed-role/target/",
		check: func(t *testing.T, calls []credSTSCall) {
			wantSTSCalls(t, calls, 2)
			first, second := calls[0], calls[1]
			wantSTSParam(t, first.form, "RoleArn", credRole("first"))
			wantSTSParam(t, first.form, "Policy", "") // the session policy goes on the last call only
			wantSTSParam(t, first.form, "DurationSeconds", "7200")
			if first.keyID != credUserKeyID {
				t.Errorf("first call signed by %s, want %s", first.keyID, credUserKeyID)
			}
			if !first.form.Has("Tags.member.1.Key") {
				t.Error("first call without session tags")
			}
			wantSTSParam(t, second.form, "RoleArn", credTarget)
			wantSTSParam(t, second.form, "Policy", sessionPolicy)
			wantSTSParam(t, second.form, "DurationSeconds", "3600") // role chaining's limit
			wantSTSParam(t, second.form, "RoleSessionName", first.form.Get("RoleSessionName"))
			wantSTSParam(t, second.form, "Tags.member.1.Key", "")
			wantSTSParam(t, second.form, "TransitiveTagKeys.member.1", "")
			if !strings.HasPrefix(second.keyID, "ASIA") {
				t.Errorf("second call signed by %q, want the first session's ASIA key", second.keyID)
			}
		},
	}, {
		name: "target role the first role may not assume", role: credRole("tagged"),
		edit:     func(a *association.Association) { a.TargetRoleARN = credTarget },
		wantCode: eksauth.CodeAccessDenied, wantMsg: "assuming " + credTarget + ": AccessDenied: ",
		check: func(t *testing.T, calls []credSTSCall) { wantSTSCalls(t, calls, 2) },
	}, {
		name: "unknown role", role: credRole("nosuchrole"), edit: tagged,
		wantCode: eksauth.CodeAccessDenied, wantMsg: "assuming " + credRole("nosuchrole") + ": AccessDenied: ",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newCredSTS(t)
			f := newCredFixture(t, env.client(), func(o *CredentialsOptions) { o.Duration = 2 * time.Hour })
			a := credAssociation(tt.role)
			tt.edit(a)
			start := time.Now()
			iss, err := f.creds.Credentials(context.Background(), a, credPod())
			if tt.check != nil {
				tt.check(t, env.recorded())
			}
			if tt.wantCode != "" {
				if err == nil {
					t.Fatalf("got credentials for %s, want %s", iss.RoleARN, tt.wantCode)
				}
				if err.Code != tt.wantCode || !strings.HasPrefix(err.Message, tt.wantMsg) {
					t.Errorf("error = %s: %q\nwant %s: %q…", err.Code, err.Message, tt.wantCode, tt.wantMsg)
				}
				if strings.Contains(err.Message, credUserSecret) {
					t.Errorf("message %q holds the secret", err.Message)
				}
				if got, want := f.status.got(), []string{a.Key() + " " + tt.wantCode}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("status reports = %q, want %q", got, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Credentials: %v", err)
			}
			if iss.RoleARN != tt.wantRole || iss.Cached {
				t.Errorf("RoleARN = %s, Cached = %v; want %s, false", iss.RoleARN, iss.Cached, tt.wantRole)
			}
			if !sessionRE.MatchString(iss.SessionName) {
				t.Errorf("SessionName = %q, want eks-<cluster>-<pod>-<uuid>", iss.SessionName)
			}
			if want := tt.wantAssumed + iss.SessionName; iss.AssumedRoleUser.Arn != want {
				t.Errorf("AssumedRoleUser.Arn = %s, want %s", iss.AssumedRoleUser.Arn, want)
			}
			if !strings.HasSuffix(iss.AssumedRoleUser.AssumeRoleID, ":"+iss.SessionName) {
				t.Errorf("AssumeRoleID = %s, want …:%s", iss.AssumedRoleUser.AssumeRoleID, iss.SessionName)
			}
			wantLife := 2 * time.Hour
			if tt.wantRole == credTarget {
				wantLife = time.Hour
			}
			if exp := iss.Credentials.Expiration; exp.Before(start.Add(wantLife-2*time.Second)) || exp.After(time.Now().Add(wantLife+time.Second)) {
				t.Errorf("Expiration = %s, want about %s from now", exp, wantLife)
			}
			// The credentials are real: STS knows them as the assumed role.
			who, gerr := credClient(env.url).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{},
				func(o *sts.Options) {
					o.Credentials = awscreds.NewStaticCredentialsProvider(iss.Credentials.AccessKeyID,
						iss.Credentials.SecretAccessKey, iss.Credentials.SessionToken)
				})
			if gerr != nil {
				t.Fatalf("GetCallerIdentity with the issued credentials: %v", gerr)
			}
			if aws.ToString(who.Arn) != iss.AssumedRoleUser.Arn {
				t.Errorf("GetCallerIdentity = %s, want %s", aws.ToString(who.Arn), iss.AssumedRoleUser.Arn)
			}
			if got, want := f.status.got(), []string{a.Key() + " ok"}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("status reports = %q, want %q", got, want)
			}
			if got, want := f.stsCalls(ResultOK), len(env.recorded()); got != want {
				t.Errorf("sts_calls_total{ok} = %d, want %d", got, want)
			}
		})
	}
}

func wantSTSCalls(t *testing.T, calls []credSTSCall, n int) {
	t.Helper()
	if len(calls) != n {
		t.Fatalf("STS received %d AssumeRole calls, want %d", len(calls), n)
	}
}

func wantSTSParam(t *testing.T, f url.Values, key, want string) {
	t.Helper()
	if got := f.Get(key); got != want {
		t.Errorf("%s = %q, want %q", key, got, want)
	}
}

// TestCredentialsOtherNamespace checks that an association is never used for
// a pod of another ServiceAccount, whatever the caller looked up.
func TestCredentialsOtherNamespace(t *testing.T) {
	env := newCredSTS(t)
	f := newCredFixture(t, env.client())
	pod := credPod()
	pod.Namespace = "intruder"
	_, err := f.creds.Credentials(context.Background(), credAssociation(credRole("first")), pod)
	if err == nil || err.Code != eksauth.CodeAccessDenied {
		t.Fatalf("error = %v, want %s", err, eksauth.CodeAccessDenied)
	}
	if n := len(env.recorded()); n != 0 {
		t.Errorf("STS received %d calls, want none", n)
	}
}

// TestCredentialsMergesConcurrentMisses sends 50 requests for one
// (association, pod) at once: STS gets one call and all get its credentials.
func TestCredentialsMergesConcurrentMisses(t *testing.T) {
	env := newCredSTS(t)
	f := newCredFixture(t, env.client())
	arrived, release := env.holdCalls()
	defer release()
	const n = 50
	var wg sync.WaitGroup
	keys := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			iss, err := f.creds.Credentials(context.Background(), credAssociation(credRole("tagged")), credPod())
			if err != nil {
				errs[i] = err
				return
			}
			keys[i] = iss.Credentials.AccessKeyID
		})
	}
	// The first call is held at STS; give the others time to queue behind it
	// (a late one is served from the cache, which still makes one call).
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no call reached STS")
	}
	time.Sleep(200 * time.Millisecond)
	release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if keys[i] != keys[0] {
			t.Errorf("request %d got key %s, request 0 %s", i, keys[i], keys[0])
		}
	}
	if got := len(env.recorded()); got != 1 {
		t.Errorf("STS received %d calls, want 1", got)
	}
	if got := f.issuances(SourceSTS) + f.issuances(SourceCache); got != n {
		t.Errorf("issuances = %d, want %d", got, n)
	}
	if got := len(f.status.got()); got != 1 {
		t.Errorf("status reports = %d, want 1", got)
	}
}

// TestCredentialsCallerGivesUp checks that a caller whose context ends stops
// waiting without failing the exchange the others wait for.
func TestCredentialsCallerGivesUp(t *testing.T) {
	env := newCredSTS(t)
	f := newCredFixture(t, env.client())
	arrived, release := env.holdCalls()
	defer release()
	a := credAssociation(credRole("tagged"))

	ctx, cancel := context.WithCancel(context.Background())
	quitter := make(chan *eksauth.Error, 1)
	go func() {
		_, err := f.creds.Credentials(ctx, a, credPod())
		quitter <- err
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no call reached STS")
	}
	type result struct {
		iss *Issued
		err *eksauth.Error
	}
	waiter := make(chan result, 1)
	go func() {
		iss, err := f.creds.Credentials(context.Background(), a, credPod())
		waiter <- result{iss, err}
	}()
	cancel()
	select {
	case err := <-quitter:
		if err == nil || err.Code != eksauth.CodeServiceUnavailable {
			t.Errorf("the caller that gave up got %v, want %s", err, eksauth.CodeServiceUnavailable)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller that gave up is still waiting")
	}
	time.Sleep(100 * time.Millisecond) // the exchange must outlive the cancellation
	release()
	r := <-waiter
	if r.err != nil {
		t.Fatalf("the caller that waited got %v", r.err)
	}
	if got := len(env.recorded()); got != 1 {
		t.Errorf("STS received %d calls, want 1", got)
	}
	// The exchange filled the cache for later callers.
	iss, err := f.creds.Credentials(context.Background(), a, credPod())
	if err != nil || !iss.Cached || iss.Credentials.AccessKeyID != r.iss.Credentials.AccessKeyID {
		t.Errorf("next request: %+v, %v; want the cached credentials", iss, err)
	}
}

// TestCredentialsCacheReuseAndRefresh walks the clock through the life of
// cached credentials: reused while ReuseWhile remains, then refreshed; an
// edited association gets its own credentials.
func TestCredentialsCacheReuseAndRefresh(t *testing.T) {
	env := newCredSTS(t)
	f := newCredFixture(t, env.client())
	base := credAssociation(credRole("tagged"))
	edited := credAssociation(credRole("first")) // same association, other roleArn

	type step struct {
		name string
		// at sets the clock from the expiration of the credentials the last
		// step got; nil leaves it.
		at           func(exp time.Time) time.Time
		a            *association.Association
		wantCached   bool
		wantSTSCalls int
	}
	steps := []step{
		{"first request asks STS", nil, base, false, 1},
		{"reused with ReuseWhile left", func(exp time.Time) time.Time { return exp.Add(-DefaultReuseWhile) }, base, true, 1},
		{"refreshed with less left", func(exp time.Time) time.Time { return exp.Add(-DefaultReuseWhile + time.Second) }, base, false, 2},
		{"refreshed credentials reused", func(exp time.Time) time.Time { return exp.Add(-DefaultReuseWhile) }, base, true, 2},
		{"edited association misses", nil, edited, false, 3},
		{"edit undone: the first spec's entry is still there", nil, base, true, 3},
		{"expired credentials are not served", func(exp time.Time) time.Time { return exp.Add(time.Second) }, base, false, 4},
	}
	var last *Issued
	lastOf := map[*association.Association]*Issued{} // per spec
	cached := 0
	for _, s := range steps {
		if s.at != nil {
			f.clock.Set(s.at(last.Credentials.Expiration))
		}
		iss, err := f.creds.Credentials(context.Background(), s.a, credPod())
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if iss.Cached != s.wantCached {
			t.Errorf("%s: Cached = %v, want %v", s.name, iss.Cached, s.wantCached)
		}
		if prev := lastOf[s.a]; prev != nil && s.wantCached != (iss.Credentials.AccessKeyID == prev.Credentials.AccessKeyID) {
			t.Errorf("%s: key %s after %s; want same = %v", s.name, iss.Credentials.AccessKeyID, prev.Credentials.AccessKeyID, s.wantCached)
		}
		if s.a == edited && iss.RoleARN != edited.RoleARN {
			t.Errorf("%s: RoleARN = %s, want %s", s.name, iss.RoleARN, edited.RoleARN)
		}
		if got := len(env.recorded()); got != s.wantSTSCalls {
			t.Errorf("%s: STS calls = %d, want %d", s.name, got, s.wantSTSCalls)
		}
		if s.wantCached {
			cached++
		}
		last, lastOf[s.a] = iss, iss
	}
	if got := f.issuances(SourceCache); got != cached {
		t.Errorf("issuances{cache} = %d, want %d", got, cached)
	}
	if got, want := f.issuances(SourceSTS), len(steps)-cached; got != want {
		t.Errorf("issuances{sts} = %d, want %d", got, want)
	}
	// Cache hits call no STS, so the status hears of the exchanges only.
	if got, want := len(f.status.got()), len(env.recorded()); got != want {
		t.Errorf("status reports = %d, want %d (one per exchange)", got, want)
	}
}

// TestCredentialsCacheBounds checks the least recently used eviction at
// MaxEntries and that entries past use are swept.
func TestCredentialsCacheBounds(t *testing.T) {
	env := newCredSTS(t)
	f := newCredFixture(t, env.client(), func(o *CredentialsOptions) { o.MaxEntries = 3 })
	a := credAssociation(credRole("first"))
	get := func(podUID string) *Issued {
		t.Helper()
		pod := credPod()
		pod.UID = podUID
		iss, err := f.creds.Credentials(context.Background(), a, pod)
		if err != nil {
			t.Fatalf("pod %s: %v", podUID, err)
		}
		return iss
	}
	entries := func() int { return int(promtest.ToFloat64(f.metrics.CacheEntries)) }
	steps := []struct {
		pod         string
		wantCached  bool
		wantEntries int
	}{
		{"p1", false, 1}, {"p2", false, 2}, {"p3", false, 3},
		{"p4", false, 3}, // p1, the least recently used, goes
		{"p2", true, 3},  // p2 becomes the most recently used
		{"p1", false, 3}, // p3 goes; oldest-first would have dropped p2
		{"p2", true, 3},
		{"p3", false, 3}, // p4 goes
		{"p1", true, 3},
	}
	for i, s := range steps {
		iss := get(s.pod)
		if iss.Cached != s.wantCached {
			t.Errorf("step %d (%s): Cached = %v, want %v", i, s.pod, iss.Cached, s.wantCached)
		}
		if got := entries(); got != s.wantEntries {
			t.Errorf("step %d (%s): entries = %d, want %d", i, s.pod, got, s.wantEntries)
		}
	}
	// Long after every credential expired, the next store sweeps them all.
	f.clock.Set(f.clock.Now().Add(3 * time.Hour))
	get("p6")
	if got := entries(); got != 1 {
		t.Errorf("entries after expiry = %d, want 1", got)
	}
}

// stsXMLError answers like STS refusing a call.
func stsXMLError(status int, code, message string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>`+
			`<Code>%s</Code><Message>%s</Message></Error><RequestId>0c3e3a1e-test</RequestId></ErrorResponse>`, code, message)
	}
}

// TestCredentialsSTSFailures checks the EKS Auth error, the STS result label
// and the status report of each way STS can fail, through the real SDK.
func TestCredentialsSTSFailures(t *testing.T) {
	fastRetry := func(o *sts.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 2
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 10 * time.Millisecond, nil })
		})
	}
	tests := []struct {
		name string
		// client returns the STS client for the test.
		client      func(t *testing.T) STSAPI
		callTimeout time.Duration
		wantCode    string
		wantLabel   string
		wantMsg     string
		within      time.Duration
	}{{
		name: "connection refused",
		client: func(t *testing.T) STSAPI {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close() // nothing listens there any more
			return credClient("http://"+addr, fastRetry)
		},
		wantCode: eksauth.CodeServiceUnavailable, wantLabel: ResultUnreachable,
		wantMsg: "assuming " + credRole("tagged") + ": STS unreachable: ", within: 3 * time.Second,
	}, {
		// The production retryer (three attempts, seconds of backoff) is
		// bounded by CallTimeout.
		name: "STS never answers",
		client: func(t *testing.T) STSAPI {
			stop := make(chan struct{})
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-stop:
				}
			}))
			t.Cleanup(ts.Close)
			t.Cleanup(func() { close(stop) })
			return credClient(ts.URL)
		},
		callTimeout: 300 * time.Millisecond,
		wantCode:    eksauth.CodeServiceUnavailable, wantLabel: ResultUnreachable,
		wantMsg: "assuming " + credRole("tagged") + ": STS unreachable: ", within: 3 * time.Second,
	}, {
		name: "STS fails",
		client: func(t *testing.T) STSAPI {
			env := newCredSTS(t)
			env.fault = stsXMLError(http.StatusInternalServerError, "InternalFailure", "The request processing has failed.")
			return env.client()
		},
		wantCode: eksauth.CodeServiceUnavailable, wantLabel: "InternalFailure",
		wantMsg: "assuming " + credRole("tagged") + ": InternalFailure: The request processing has failed.", within: 3 * time.Second,
	}, {
		name: "STS throttles",
		client: func(t *testing.T) STSAPI {
			env := newCredSTS(t)
			env.fault = stsXMLError(http.StatusBadRequest, "Throttling", "Rate exceeded")
			return env.client()
		},
		wantCode: eksauth.CodeThrottling, wantLabel: "Throttling",
		wantMsg: "assuming " + credRole("tagged") + ": Throttling: Rate exceeded", within: 3 * time.Second,
	}, {
		name: "STS refuses",
		client: func(t *testing.T) STSAPI {
			return newCredSTS(t).client()
		},
		wantCode: eksauth.CodeAccessDenied, wantLabel: "AccessDenied", within: 3 * time.Second,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newCredFixture(t, tt.client(t), func(o *CredentialsOptions) { o.CallTimeout = tt.callTimeout })
			a := credAssociation(credRole("tagged"))
			if tt.wantCode == eksauth.CodeAccessDenied {
				a.RoleARN = credRole("othertag")
				tt.wantMsg = "assuming " + a.RoleARN + ": AccessDenied: "
			}
			type result struct {
				iss *Issued
				err *eksauth.Error
			}
			done := make(chan result, 1)
			go func() {
				iss, err := f.creds.Credentials(context.Background(), a, credPod())
				done <- result{iss, err}
			}()
			var iss *Issued
			var err *eksauth.Error
			select {
			case r := <-done:
				iss, err = r.iss, r.err
			case <-time.After(tt.within):
				t.Fatalf("no answer within %s", tt.within)
			}
			if err == nil {
				t.Fatalf("got credentials of %s, want %s", iss.RoleARN, tt.wantCode)
			}
			if err.Code != tt.wantCode || !strings.HasPrefix(err.Message, tt.wantMsg) {
				t.Errorf("error = %s: %q\nwant %s: %q…", err.Code, err.Message, tt.wantCode, tt.wantMsg)
			}
			if got := f.stsCalls(tt.wantLabel); got != 1 {
				t.Errorf("sts_calls_total{result=%q} = %d, want 1", tt.wantLabel, got)
			}
			if got := promtest.CollectAndCount(f.metrics.STSCallDuration); got != 1 {
				t.Errorf("sts_call_duration_seconds series = %d, want 1", got)
			}
			if got, want := f.status.got(), []string{a.Key() + " " + tt.wantCode}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("status reports = %q, want %q", got, want)
			}
			if strings.Contains(err.Message, credUserSecret) {
				t.Errorf("message %q holds the secret", err.Message)
			}
		})
	}
}

// TestSTSError maps the errors the SDK returns, as it wraps them, to EKS Auth
// errors and metric labels.
func TestSTSError(t *testing.T) {
	apiErr := func(status int, code, msg string) error {
		return &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole", Err: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      &smithy.GenericAPIError{Code: code, Message: msg},
		}}
	}
	role := credRole("r")
	tests := []struct {
		name      string
		err       error
		wantCode  string
		wantLabel string
		wantMsg   string
	}{
		{"access denied", apiErr(403, "AccessDenied", "User: x is not authorized"), eksauth.CodeAccessDenied, "AccessDenied",
			"assuming " + role + ": AccessDenied: User: x is not authorized"},
		{"validation error", apiErr(400, "ValidationError", "bad duration"), eksauth.CodeAccessDenied, "ValidationError",
			"assuming " + role + ": ValidationError: bad duration"},
		// podiam auth's own credentials or configuration: not the tenant's fault.
		{"expired credentials of podiam auth", apiErr(403, "ExpiredToken", "expired"), eksauth.CodeServiceUnavailable, "ExpiredToken",
			ownFaultMessage + "ExpiredToken"},
		{"ExpiredTokenException", apiErr(400, "ExpiredTokenException", "expired"), eksauth.CodeServiceUnavailable, "ExpiredTokenException",
			ownFaultMessage + "ExpiredTokenException"},
		{"unknown key of podiam auth", apiErr(403, "InvalidClientTokenId", "The security token included in the request is invalid."),
			eksauth.CodeServiceUnavailable, "InvalidClientTokenId", ownFaultMessage + "InvalidClientTokenId"},
		{"bad signature", apiErr(403, "SignatureDoesNotMatch", "sig"), eksauth.CodeServiceUnavailable, "SignatureDoesNotMatch",
			ownFaultMessage + "SignatureDoesNotMatch"},
		{"incomplete signature", apiErr(400, "IncompleteSignature", "sig"), eksauth.CodeServiceUnavailable, "IncompleteSignature",
			ownFaultMessage + "IncompleteSignature"},
		{"no credentials", apiErr(403, "MissingAuthenticationToken", "missing"), eksauth.CodeServiceUnavailable, "MissingAuthenticationToken",
			ownFaultMessage + "MissingAuthenticationToken"},
		{"unrecognized client", apiErr(400, "UnrecognizedClientException", "?"), eksauth.CodeServiceUnavailable, "UnrecognizedClientException",
			ownFaultMessage + "UnrecognizedClientException"},
		{"region disabled", apiErr(403, "RegionDisabledException", "STS is not activated in this region"), eksauth.CodeServiceUnavailable,
			"RegionDisabledException", ownFaultMessage + "RegionDisabledException"},
		{"role chaining over an hour", apiErr(400, "ValidationError",
			"The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."),
			eksauth.CodeServiceUnavailable, "ValidationError", ownFaultMessage + "ValidationError"},
		{"throttling", apiErr(400, "Throttling", "Rate exceeded"), eksauth.CodeThrottling, "Throttling",
			"assuming " + role + ": Throttling: Rate exceeded"},
		{"429 without a known code", apiErr(429, "SlowDown", "slow"), eksauth.CodeThrottling, "SlowDown",
			"assuming " + role + ": SlowDown: slow"},
		{"internal failure", apiErr(500, "InternalFailure", "oops"), eksauth.CodeServiceUnavailable, "InternalFailure",
			"assuming " + role + ": InternalFailure: oops"},
		{"service unavailable", apiErr(503, "ServiceUnavailable", "later"), eksauth.CodeServiceUnavailable, "ServiceUnavailable",
			"assuming " + role + ": ServiceUnavailable: later"},
		{"odd code is no label", apiErr(400, "<html>{}", "?"), eksauth.CodeAccessDenied, resultOther,
			"assuming " + role + ": <html>{}: ?"},
		{"network", &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}},
			eksauth.CodeServiceUnavailable, ResultUnreachable, "assuming " + role + ": STS unreachable: operation error STS: AssumeRole, dial tcp: connection refused"},
		{"timeout", fmt.Errorf("sending: %w", context.DeadlineExceeded), eksauth.CodeServiceUnavailable, ResultUnreachable,
			"assuming " + role + ": STS unreachable: sending: context deadline exceeded"},
		{"huge message is cut", apiErr(403, "AccessDenied", strings.Repeat("x", 5000)), eksauth.CodeAccessDenied, "AccessDenied",
			"assuming " + role + ": AccessDenied: " + strings.Repeat("x", maxMessage)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			label, err, own := stsError(role, tt.err)
			if label != tt.wantLabel || err.Code != tt.wantCode || err.Message != tt.wantMsg {
				t.Errorf("stsError = %q, %s: %q\nwant %q, %s: %q", label, err.Code, err.Message, tt.wantLabel, tt.wantCode, tt.wantMsg)
			}
			// Exactly the answers of podiam auth's own faults are ServiceUnavailable with ownFaultMessage.
			if wantOwn := strings.HasPrefix(tt.wantMsg, ownFaultMessage); own != wantOwn {
				t.Errorf("own = %v, want %v", own, wantOwn)
			}
		})
	}
}

// TestCredentialsRemembersRefusals checks that STS's refusal of an
// association's role is remembered for refusalTTL for every pod of the
// association (one tenant's broken trust policy must not make every request
// call STS), is reported to the status once, and is forgotten when the TTL
// passes or the association is edited. Throttling is not remembered.
func TestCredentialsRemembersRefusals(t *testing.T) {
	env := newCredSTS(t)
	f := newCredFixture(t, env.client())
	refused := credAssociation(credRole("othertag")) // its trust wants another namespace
	podWithUID := func(uid string) Pod { p := credPod(); p.UID = uid; return p }
	type step struct {
		name         string
		do           func()
		a            *association.Association
		pod          Pod
		wantCode     string
		wantSTSCalls int
	}
	steps := []step{
		{"first request asks STS", func() {}, refused, podWithUID("p1"), eksauth.CodeAccessDenied, 1},
		{"same pod: remembered", func() {}, refused, podWithUID("p1"), eksauth.CodeAccessDenied, 1},
		{"another pod of the association: remembered", func() { f.clock.Set(f.clock.Now().Add(refusalTTL - time.Second)) },
			refused, podWithUID("p2"), eksauth.CodeAccessDenied, 1},
		{"the TTL passed: asked again", func() { f.clock.Set(f.clock.Now().Add(time.Second)) }, refused, podWithUID("p2"), eksauth.CodeAccessDenied, 2},
		{"remembered again", func() {}, refused, podWithUID("p3"), eksauth.CodeAccessDenied, 2},
		{"edited association: asked at once", func() {}, credAssociation(credRole("first")), podWithUID("p3"), CodeOK, 3},
		{"throttled", func() { env.fault = stsXMLError(http.StatusBadRequest, "Throttling", "Rate exceeded") },
			credAssociation(credRole("tagged")), podWithUID("p4"), eksauth.CodeThrottling, 4},
		{"throttling is not remembered", func() {}, credAssociation(credRole("tagged")), podWithUID("p4"), eksauth.CodeThrottling, 5},
	}
	var first *eksauth.Error
	for _, s := range steps {
		s.do()
		_, err := f.creds.Credentials(context.Background(), s.a, s.pod)
		code := CodeOK
		if err != nil {
			code = err.Code
		}
		if code != s.wantCode {
			t.Errorf("%s: code %s, want %s (%v)", s.name, code, s.wantCode, err)
		}
		if first == nil && err != nil {
			first = err
		} else if err != nil && s.a == refused && err.Message != first.Message {
			t.Errorf("%s: message %q, want the refusal's %q", s.name, err.Message, first.Message)
		}
		if got := len(env.recorded()); got != s.wantSTSCalls {
			t.Errorf("%s: STS calls = %d, want %d", s.name, got, s.wantSTSCalls)
		}
	}
	// The status hears of exchanges only, not of remembered refusals.
	if got, want := len(f.status.got()), len(env.recorded()); got != want {
		t.Errorf("status reports = %d, want %d (one per exchange): %q", got, want, f.status.got())
	}
	if got := f.stsCalls("AccessDenied"); got != 2 {
		t.Errorf("sts_calls_total{AccessDenied} = %d, want 2", got)
	}
}

// TestCredentialsOwnFaults checks that STS refusing podiam auth's own
// credentials or configuration is ServiceUnavailableException, logged at
// error level once per call, not reported to the association's status and
// not remembered. The STS is podiam sts: an unknown access key, and role
// chaining (podiam auth's identity a role session) over an hour.
func TestCredentialsOwnFaults(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the client and the association to assume.
		setup     func(t *testing.T, env *credSTS) (STSAPI, *association.Association)
		duration  time.Duration
		wantLabel string
	}{{
		name: "unknown access key",
		setup: func(t *testing.T, env *credSTS) (STSAPI, *association.Association) {
			client := credClient(env.url, func(o *sts.Options) {
				o.RetryMaxAttempts = 1
				o.Credentials = awscreds.NewStaticCredentialsProvider("AKIAUNKNOWNKEY000000", "not-a-known-secret", "")
			})
			return client, credAssociation(credRole("first"))
		},
		wantLabel: "InvalidClientTokenId",
	}, {
		name: "role session asking for more than an hour",
		setup: func(t *testing.T, env *credSTS) (STSAPI, *association.Association) {
			out, err := env.client().AssumeRole(context.Background(), &sts.AssumeRoleInput{
				RoleArn: aws.String(credRole("first")), RoleSessionName: aws.String("podiam-auth")})
			if err != nil {
				t.Fatal(err)
			}
			c := out.Credentials
			client := credClient(env.url, func(o *sts.Options) {
				o.RetryMaxAttempts = 1
				o.Credentials = awscreds.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)
			})
			return client, credAssociation(credRole("chained"))
		},
		duration:  2 * time.Hour,
		wantLabel: "ValidationError",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newCredSTS(t)
			client, a := tt.setup(t, env)
			logs := &bytes.Buffer{}
			f := newCredFixture(t, client, func(o *CredentialsOptions) {
				o.Duration = tt.duration
				o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
			})
			calls := len(env.recorded())
			for i := range 2 {
				_, err := f.creds.Credentials(context.Background(), a, credPod())
				if err == nil || err.Code != eksauth.CodeServiceUnavailable || err.Message != ownFaultMessage+tt.wantLabel {
					t.Fatalf("call %d: error %v, want %s %q", i, err, eksauth.CodeServiceUnavailable, ownFaultMessage+tt.wantLabel)
				}
			}
			if got := len(env.recorded()) - calls; got != 2 {
				t.Errorf("STS calls = %d, want 2 (not remembered)", got)
			}
			if got := f.stsCalls(tt.wantLabel); got != 2 {
				t.Errorf("sts_calls_total{%s} = %d, want 2", tt.wantLabel, got)
			}
			if got := f.status.got(); len(got) != 0 {
				t.Errorf("status reports %q, want none: the association is not at fault", got)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(lines) != 2 || !strings.Contains(lines[0], `"level":"ERROR"`) || !strings.Contains(lines[0], `"code":"`+tt.wantLabel+`"`) {
				t.Errorf("log %q, want two ERROR lines with code %s", lines, tt.wantLabel)
			}
			if strings.Contains(logs.String(), credUserSecret) {
				t.Error("the log holds the secret")
			}
		})
	}
}

// TestCredentialsReuseWhileShortSessions checks that cached credentials are
// served for every session duration: the default ReuseWhile is a quarter of
// a session shorter than an hour, so 15-minute sessions are reused too.
func TestCredentialsReuseWhileShortSessions(t *testing.T) {
	tests := []struct {
		duration, reuseWhile time.Duration
	}{
		{15 * time.Minute, 225 * time.Second},
		{30 * time.Minute, 7*time.Minute + 30*time.Second},
		{time.Hour, DefaultReuseWhile},
		{12 * time.Hour, DefaultReuseWhile},
	}
	for _, tt := range tests {
		t.Run(tt.duration.String(), func(t *testing.T) {
			if got := NewCredentials(CredentialsOptions{Duration: tt.duration}).o.ReuseWhile; got != tt.reuseWhile {
				t.Errorf("ReuseWhile = %s, want %s", got, tt.reuseWhile)
			}
		})
	}
	// Through podiam sts: a 15-minute session is served again a minute later.
	env := newCredSTS(t)
	f := newCredFixture(t, env.client(), func(o *CredentialsOptions) { o.Duration = 15 * time.Minute })
	a := credAssociation(credRole("first"))
	first, err := f.creds.Credentials(context.Background(), a, credPod())
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Set(f.clock.Now().Add(time.Minute))
	again, err := f.creds.Credentials(context.Background(), a, credPod())
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Credentials.AccessKeyID != first.Credentials.AccessKeyID {
		t.Errorf("second request: Cached = %v, same key = %v; want the cached credentials", again.Cached,
			again.Credentials.AccessKeyID == first.Credentials.AccessKeyID)
	}
}
