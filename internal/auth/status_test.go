package auth

import (
	"encoding/json"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/eksauth"
)

// TestDesiredStatus covers every rule of the status: the external id, who
// is in conflict (older wins, ties by name), which outcome Ready shows (only
// one for the current object and spec), what another replica wrote (kept for
// the current generation only), and lastTransitionTime (changes only with
// the status).
func TestDesiredStatus(t *testing.T) {
	const (
		ns    = "apps"
		role  = "arn:aws:iam::111122223333:role/web"
		role2 = "arn:aws:iam::111122223333:role/web2"
		tgt   = "arn:aws:iam::444455556666:role/reader"
	)
	cluster := Cluster{Name: "prod", Region: "eu-west-1", Account: "111122223333"}
	extID := "eu-west-1/111122223333/prod/apps/web"
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	earlier := metav1.NewTime(created.Add(time.Minute))
	now := time.Date(2026, 1, 2, 4, 0, 0, 123456789, time.UTC)
	nowT := metav1.NewTime(now.Truncate(time.Second))

	// obj is association name, generation gen, for ServiceAccount web, with
	// roleArn r and status conds.
	obj := func(name string, gen int64, r string, conds ...metav1.Condition) *v1alpha1.PodIdentityAssociation {
		return &v1alpha1.PodIdentityAssociation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Generation: gen,
				CreationTimestamp: metav1.NewTime(created)},
			Spec:   v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "web", RoleARN: r},
			Status: v1alpha1.PodIdentityAssociationStatus{Conditions: conds},
		}
	}
	withSpec := func(p *v1alpha1.PodIdentityAssociation, edit func(*v1alpha1.PodIdentityAssociationSpec)) *v1alpha1.PodIdentityAssociation {
		edit(&p.Spec)
		return p
	}
	// rival is another association for web, created at c.
	rival := func(name string, c time.Time) *association.Association {
		return &association.Association{Namespace: ns, Name: name, UID: types.UID("uid-" + name), CreationTimestamp: c, ServiceAccount: "web", RoleARN: role}
	}
	// outcome is an STS outcome for association name with roleArn r.
	outcome := func(name, r string, err *eksauth.Error) *Outcome {
		return &Outcome{For: &association.Association{Namespace: ns, Name: name, UID: types.UID("uid-" + name),
			ServiceAccount: "web", RoleARN: r}, Err: err}
	}
	cond := func(typ string, s metav1.ConditionStatus, reason, msg string, gen int64, ltt metav1.Time) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: ltt}
	}
	ready := func(s metav1.ConditionStatus, reason, msg string, gen int64, ltt metav1.Time) metav1.Condition {
		return cond(v1alpha1.ConditionReady, s, reason, msg, gen, ltt)
	}
	noConflict := func(gen int64, ltt metav1.Time) metav1.Condition {
		return cond(v1alpha1.ConditionConflict, metav1.ConditionFalse, ReasonNoConflict, "no older PodIdentityAssociation names ServiceAccount web", gen, ltt)
	}
	pending := func(gen int64, ltt metav1.Time) metav1.Condition {
		return ready(metav1.ConditionUnknown, ReasonPending, "no pod has asked for credentials yet", gen, ltt)
	}
	assumed := func(gen int64, ltt metav1.Time) metav1.Condition {
		return ready(metav1.ConditionTrue, ReasonRoleAssumed, "assumed role "+role+" for a pod", gen, ltt)
	}
	denied := eksauth.NewError(eksauth.CodeAccessDenied, "STS refused role %s: AccessDenied: not authorized", role)
	failed := func(gen int64, ltt metav1.Time) metav1.Condition {
		return ready(metav1.ConditionFalse, ReasonAssumeRoleFailed, "AccessDeniedException: "+denied.Message, gen, ltt)
	}
	inConflict := func(gen int64, winner string) []metav1.Condition {
		return []metav1.Condition{
			ready(metav1.ConditionFalse, ReasonConflict, "PodIdentityAssociation "+winner+" is older and serves ServiceAccount web; this one is not used", gen, nowT),
			cond(v1alpha1.ConditionConflict, metav1.ConditionTrue, ReasonServiceAccountInUse,
				"the older PodIdentityAssociation "+winner+" already serves ServiceAccount web; this one is not used until that one is deleted", gen, nowT),
		}
	}

	tests := []struct {
		name    string
		obj     *v1alpha1.PodIdentityAssociation
		rivals  []*association.Association // other associations for web
		outcome *Outcome
		want    []metav1.Condition
	}{
		{name: "alone, no outcome yet", obj: obj("a", 1, role),
			want: []metav1.Condition{pending(1, nowT), noConflict(1, nowT)}},
		{name: "older rival wins", obj: obj("b", 1, role), rivals: []*association.Association{rival("z", created.Add(-time.Second))},
			want: inConflict(1, "z")},
		{name: "newer rival loses", obj: obj("b", 1, role), rivals: []*association.Association{rival("a", created.Add(time.Second))},
			want: []metav1.Condition{pending(1, nowT), noConflict(1, nowT)}},
		{name: "same second: the first name wins", obj: obj("b", 1, role), rivals: []*association.Association{rival("a", created)},
			want: inConflict(1, "a")},
		{name: "same second: a later name loses", obj: obj("b", 1, role), rivals: []*association.Association{rival("c", created)},
			want: []metav1.Condition{pending(1, nowT), noConflict(1, nowT)}},
		{name: "in conflict, an outcome is ignored", obj: obj("b", 1, role), rivals: []*association.Association{rival("a", created)},
			outcome: outcome("b", role, nil), want: inConflict(1, "a")},
		{name: "in conflict over another replica's Ready", obj: obj("b", 3, role, assumed(3, earlier), noConflict(3, earlier)),
			rivals: []*association.Association{rival("a", created)},
			want:   inConflict(3, "a")},
		{name: "role assumed", obj: obj("a", 1, role), outcome: outcome("a", role, nil),
			want: []metav1.Condition{assumed(1, nowT), noConflict(1, nowT)}},
		{name: "role and target role assumed", obj: func() *v1alpha1.PodIdentityAssociation {
			o := obj("a", 1, role)
			o.Spec.TargetRoleARN = tgt
			return o
		}(), outcome: func() *Outcome {
			o := outcome("a", role, nil)
			o.For.TargetRoleARN = tgt
			return o
		}(), want: []metav1.Condition{ready(metav1.ConditionTrue, ReasonRoleAssumed, "assumed role "+role+", then target role "+tgt+", for a pod", 1, nowT), noConflict(1, nowT)}},
		{name: "STS refused", obj: obj("a", 1, role), outcome: outcome("a", role, denied),
			want: []metav1.Condition{failed(1, nowT), noConflict(1, nowT)}},
		{name: "refused after assumed: new transition time", obj: obj("a", 1, role, assumed(1, earlier), noConflict(1, earlier)),
			outcome: outcome("a", role, denied), want: []metav1.Condition{failed(1, nowT), noConflict(1, earlier)}},
		{name: "assumed again: transition time kept", obj: obj("a", 1, role, assumed(1, earlier), noConflict(1, earlier)),
			outcome: outcome("a", role, nil), want: []metav1.Condition{assumed(1, earlier), noConflict(1, earlier)}},
		{name: "outcome for the previous spec", obj: obj("a", 2, role2, assumed(1, earlier), noConflict(1, earlier)),
			outcome: outcome("a", role, nil), want: []metav1.Condition{pending(2, nowT), noConflict(2, earlier)}},
		{name: "outcome from before a target role", obj: withSpec(obj("a", 2, role), func(s *v1alpha1.PodIdentityAssociationSpec) { s.TargetRoleARN = tgt }),
			outcome: outcome("a", role, nil), want: []metav1.Condition{pending(2, nowT), noConflict(2, nowT)}},
		{name: "outcome from before session tags were disabled", obj: withSpec(obj("a", 2, role), func(s *v1alpha1.PodIdentityAssociationSpec) { s.DisableSessionTags = true }),
			outcome: outcome("a", role, nil), want: []metav1.Condition{pending(2, nowT), noConflict(2, nowT)}},
		{name: "outcome from before a session policy", obj: withSpec(obj("a", 2, role), func(s *v1alpha1.PodIdentityAssociationSpec) { s.Policy = "{}" }),
			outcome: outcome("a", role, nil), want: []metav1.Condition{pending(2, nowT), noConflict(2, nowT)}},
		{name: "outcome for a deleted namesake", obj: obj("a", 1, role), outcome: func() *Outcome {
			o := outcome("a", role, nil)
			o.For.UID = "uid-of-before"
			return o
		}(), want: []metav1.Condition{pending(1, nowT), noConflict(1, nowT)}},
		{name: "outcome for the current spec after a change", obj: obj("a", 2, role2, assumed(1, earlier), noConflict(1, earlier)),
			outcome: outcome("a", role2, denied), want: []metav1.Condition{failed(2, nowT), noConflict(2, earlier)}},
		{name: "another replica's success is kept", obj: obj("a", 4, role, assumed(4, earlier), noConflict(4, earlier)),
			want: []metav1.Condition{assumed(4, earlier), noConflict(4, earlier)}},
		{name: "another replica's failure is kept", obj: obj("a", 4, role, failed(4, earlier), noConflict(4, earlier)),
			want: []metav1.Condition{failed(4, earlier), noConflict(4, earlier)}},
		{name: "another replica's success for an earlier generation is not", obj: obj("a", 5, role2, assumed(4, earlier), noConflict(4, earlier)),
			want: []metav1.Condition{pending(5, nowT), noConflict(5, earlier)}},
		{name: "winner again after a conflict", obj: obj("b", 1, role, inConflict(1, "a")...),
			want: []metav1.Condition{pending(1, nowT), noConflict(1, nowT)}},
		{name: "pending stays pending", obj: obj("a", 1, role, pending(1, earlier), noConflict(1, earlier)),
			want: []metav1.Condition{pending(1, earlier), noConflict(1, earlier)}},
		{name: "conditions of other types are kept", obj: obj("a", 1, role, cond("Other", metav1.ConditionTrue, "Why", "", 1, earlier)),
			want: []metav1.Condition{cond("Other", metav1.ConditionTrue, "Why", "", 1, earlier), pending(1, nowT), noConflict(1, nowT)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.obj.DeepCopy()
			cands := append([]*association.Association{association.FromObject(tc.obj)}, tc.rivals...)
			got := DesiredStatus(StatusInput{Object: tc.obj, Winner: association.Winner(cands), Outcome: tc.outcome, Cluster: cluster, Now: now})
			want := v1alpha1.PodIdentityAssociationStatus{ExternalID: extID, Conditions: tc.want}
			if !apiequality.Semantic.DeepEqual(got, want) {
				t.Errorf("status:\n got %s\nwant %s", statusJSON(got), statusJSON(want))
			}
			if !apiequality.Semantic.DeepEqual(tc.obj, before) {
				t.Errorf("DesiredStatus modified its input")
			}
		})
	}
}

// TestDesiredStatusIsStable: writing the desired status and computing again
// (as every replica does on the update event) gives the same status, with
// or without the outcome, so replicas stop writing.
func TestDesiredStatusIsStable(t *testing.T) {
	cluster := Cluster{Name: "prod", Region: "eu-west-1", Account: "111122223333"}
	p := &v1alpha1.PodIdentityAssociation{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web", UID: "u1", Generation: 2},
		Spec:       v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "web", RoleARN: "arn:aws:iam::111122223333:role/web"},
	}
	for _, err := range []*eksauth.Error{nil, eksauth.NewError(eksauth.CodeServiceUnavailable, "STS is unreachable")} {
		o := &Outcome{For: association.FromObject(p), Err: err}
		first := DesiredStatus(StatusInput{Object: p, Outcome: o, Cluster: cluster, Now: time.Now()})
		written := p.DeepCopy()
		written.Status = first
		for _, again := range []*Outcome{o, nil} {
			if got := DesiredStatus(StatusInput{Object: written, Outcome: again, Cluster: cluster, Now: time.Now().Add(time.Hour)}); !apiequality.Semantic.DeepEqual(got, first) {
				t.Errorf("err %v, outcome %v: recomputed\n %s\nafter writing\n %s", err, again != nil, statusJSON(got), statusJSON(first))
			}
		}
	}
}

// TestStatusMessageLimit: a huge error message cannot make the status
// invalid (the API caps a condition message at 32768 bytes).
func TestStatusMessageLimit(t *testing.T) {
	p := &v1alpha1.PodIdentityAssociation{ObjectMeta: metav1.ObjectMeta{Name: "web", UID: "u1"},
		Spec: v1alpha1.PodIdentityAssociationSpec{ServiceAccount: "web", RoleARN: "r"}}
	o := &Outcome{For: association.FromObject(p), Err: eksauth.NewError(eksauth.CodeAccessDenied, "%s", strings.Repeat("x", 40000))}
	st := DesiredStatus(StatusInput{Object: p, Outcome: o, Now: time.Now()})
	for _, c := range st.Conditions {
		if len(c.Message) > 32768 {
			t.Errorf("condition %s: message of %d bytes", c.Type, len(c.Message))
		}
	}
}

// TestCountWrite: writes are counted by result, the API server's reason for
// a failure.
func TestCountWrite(t *testing.T) {
	gr := schema.GroupResource{Group: "podiam.dev", Resource: "podidentityassociations"}
	tests := []struct {
		err  error
		want string
	}{
		{nil, ResultOK},
		{apierrors.NewConflict(gr, "web", errors.New("changed")), "Conflict"},
		{apierrors.NewForbidden(gr, "web", errors.New("no")), "Forbidden"},
		{errors.New("connection refused"), "error"},
	}
	for _, tc := range tests {
		m := NewMetrics(prometheus.NewRegistry())
		w := NewStatusWriter(StatusOptions{Metrics: m})
		w.countWrite(tc.err)
		if got := promtestutil.ToFloat64(m.StatusWrites.WithLabelValues(tc.want)); got != 1 {
			t.Errorf("err %v: status_writes_total{result=%q} = %v, want 1", tc.err, tc.want, got)
		}
	}
	w := NewStatusWriter(StatusOptions{})
	w.countWrite(nil) // no metrics: no panic
}

// TestNewStatusWriterStartsNothing: a writer that is never run (as in tests
// of other parts, or a command that fails before Run) leaves no goroutine.
func TestNewStatusWriterStartsNothing(t *testing.T) {
	const n = 50
	before := runtime.NumGoroutine()
	for range n {
		w := NewStatusWriter(StatusOptions{})
		w.Report(&association.Association{Namespace: "apps", Name: "web"}, nil) // allowed before Run
	}
	time.Sleep(10 * time.Millisecond) // goroutines started would be running by now
	if after := runtime.NumGoroutine(); after-before >= n {
		t.Errorf("%d writers created: goroutines %d → %d", n, before, after)
	}
}

// TestHoldReady covers ReadyHold: Ready changes from one outcome to another
// at most once per hold for a generation, the hold counting from the stored
// lastTransitionTime or the writer's own last change, whichever is later;
// the first outcome, conflicts and a new generation are never held.
func TestHoldReady(t *testing.T) {
	const hold = 30 * time.Second
	now := time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }
	ready := func(s metav1.ConditionStatus, reason, msg string, gen int64, ltt metav1.Time) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: ltt}
	}
	assumed := func(gen int64, ltt metav1.Time) metav1.Condition {
		return ready(metav1.ConditionTrue, ReasonRoleAssumed, "assumed role r for a pod", gen, ltt)
	}
	failed := func(msg string, gen int64, ltt metav1.Time) metav1.Condition {
		return ready(metav1.ConditionFalse, ReasonAssumeRoleFailed, msg, gen, ltt)
	}
	pending := ready(metav1.ConditionUnknown, ReasonPending, "no pod has asked for credentials yet", 1, ago(time.Hour))
	conflict := ready(metav1.ConditionFalse, ReasonConflict, "PodIdentityAssociation a is older", 1, metav1.NewTime(now))
	noConflict := metav1.Condition{Type: v1alpha1.ConditionConflict, Status: metav1.ConditionFalse, Reason: ReasonNoConflict, ObservedGeneration: 1}
	status := func(ready metav1.Condition) v1alpha1.PodIdentityAssociationStatus {
		return v1alpha1.PodIdentityAssociationStatus{ExternalID: "x", Conditions: []metav1.Condition{ready, noConflict}}
	}

	tests := []struct {
		name            string
		stored, desired metav1.Condition
		generation      int64
		lastChange      time.Time
		wantHeld        bool // desired keeps stored's Ready
		wantWait        time.Duration
	}{
		{name: "first outcome", stored: pending, desired: assumed(1, metav1.NewTime(now)), generation: 1},
		{name: "flip within the hold", stored: assumed(1, ago(10*time.Second)), desired: failed("denied", 1, metav1.NewTime(now)),
			generation: 1, wantHeld: true, wantWait: 20 * time.Second},
		{name: "flip back within the hold", stored: failed("denied", 1, ago(time.Second)), desired: assumed(1, metav1.NewTime(now)),
			generation: 1, wantHeld: true, wantWait: 29 * time.Second},
		{name: "flip after the hold", stored: assumed(1, ago(hold)), desired: failed("denied", 1, metav1.NewTime(now)), generation: 1},
		{name: "another message within the hold", stored: failed("denied", 1, ago(time.Minute)), desired: failed("throttled", 1, ago(time.Minute)),
			generation: 1, lastChange: now.Add(-5 * time.Second), wantHeld: true, wantWait: 25 * time.Second},
		{name: "own change is later than the stored one", stored: assumed(1, ago(time.Minute)), desired: failed("denied", 1, metav1.NewTime(now)),
			generation: 1, lastChange: now.Add(-29 * time.Second), wantHeld: true, wantWait: time.Second},
		{name: "stored one is later than own change", stored: assumed(1, ago(2*time.Second)), desired: failed("denied", 1, metav1.NewTime(now)),
			generation: 1, lastChange: now.Add(-time.Minute), wantHeld: true, wantWait: 28 * time.Second},
		{name: "a clock ahead: at most the hold", stored: assumed(1, metav1.NewTime(now.Add(time.Hour))), desired: failed("denied", 1, metav1.NewTime(now)),
			generation: 1, wantHeld: true, wantWait: hold},
		{name: "same outcome again", stored: assumed(1, ago(time.Second)), desired: assumed(1, ago(time.Second)), generation: 1},
		{name: "new generation resets the hold", stored: assumed(1, ago(time.Second)), desired: failed("denied", 2, metav1.NewTime(now)),
			generation: 2, lastChange: now.Add(-time.Second)},
		{name: "conflict at once", stored: assumed(1, ago(time.Second)), desired: conflict, generation: 1},
		{name: "out of conflict at once", stored: conflict, desired: assumed(1, metav1.NewTime(now)), generation: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			desired := status(tc.desired)
			got, wait := holdReady(status(tc.stored), desired, tc.generation, tc.lastChange, now, hold)
			want := desired
			if tc.wantHeld {
				want = status(tc.stored)
			}
			if !apiequality.Semantic.DeepEqual(got, want) || wait != tc.wantWait {
				t.Errorf("got %s, wait %v\nwant %s, wait %v", statusJSON(got), wait, statusJSON(want), tc.wantWait)
			}
		})
	}
}

func statusJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestYieldExternalID(t *testing.T) {
	now := time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC)
	at := func(ds ...time.Duration) []time.Time {
		ts := []time.Time{}
		for _, d := range ds {
			ts = append(ts, now.Add(-d))
		}
		return ts
	}
	tests := []struct {
		name        string
		c           externalIDContest
		wantYield   bool
		wantStarted bool
		want        externalIDContest
	}{
		{name: "no replacement yet", want: externalIDContest{times: at()}},
		{name: "two within the window", c: externalIDContest{times: at(30*time.Second, time.Second)},
			want: externalIDContest{times: at(30*time.Second, time.Second)}},
		{name: "three within the window: yield", c: externalIDContest{times: at(50*time.Second, 30*time.Second, time.Second)},
			wantYield: true, wantStarted: true, want: externalIDContest{yieldUntil: now.Add(DefaultExternalIDYield)}},
		{name: "old replacements are forgotten", c: externalIDContest{times: at(2*time.Minute, 61*time.Second, time.Second)},
			want: externalIDContest{times: at(time.Second)}},
		{name: "still yielding", c: externalIDContest{yieldUntil: now.Add(time.Second)},
			wantYield: true, want: externalIDContest{yieldUntil: now.Add(time.Second)}},
		{name: "the yield is over", c: externalIDContest{yieldUntil: now}, want: externalIDContest{times: at()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, yield, started := yieldExternalID(tc.c, now, DefaultExternalIDYield)
			if yield != tc.wantYield || started != tc.wantStarted || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, yield %v, started %v; want %+v, yield %v, started %v",
					got, yield, started, tc.want, tc.wantYield, tc.wantStarted)
			}
		})
	}
}

func TestReplacedExternalID(t *testing.T) {
	for _, tc := range []struct {
		stored, next string
		want         bool
	}{
		{"", "r/a/c/ns/sa", false},            // the first value
		{"r/a/c/ns/sa", "r/a/c/ns/sa", false}, // the same
		{"r/a/old/ns/sa", "r/a/new/ns/sa", true},
	} {
		if got := replacedExternalID(tc.stored, tc.next); got != tc.want {
			t.Errorf("replacedExternalID(%q, %q) = %v, want %v", tc.stored, tc.next, got, tc.want)
		}
	}
}
