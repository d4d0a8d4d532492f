package auth

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"

	"github.com/podiam/podiam/api/v1alpha1"
	"github.com/podiam/podiam/internal/association"
	"github.com/podiam/podiam/internal/eksauth"
)

// Reasons of the conditions the status writer sets.
const (
	// ReasonRoleAssumed (Ready=True): STS gave credentials for a pod.
	ReasonRoleAssumed = "RoleAssumed"
	// ReasonAssumeRoleFailed (Ready=False): the last STS call failed; the
	// message has the EKS Auth error code and message.
	ReasonAssumeRoleFailed = "AssumeRoleFailed"
	// ReasonPending (Ready=Unknown): no outcome is known for the current spec.
	ReasonPending = "Pending"
	// ReasonConflict (Ready=False): an older association serves the
	// ServiceAccount, so this one is never used.
	ReasonConflict = "Conflict"
	// ReasonServiceAccountInUse (Conflict=True): see ReasonConflict.
	ReasonServiceAccountInUse = "ServiceAccountInUse"
	// ReasonNoConflict (Conflict=False): no older association names the
	// ServiceAccount.
	ReasonNoConflict = "NoConflict"
)

// Defaults of StatusOptions.
const (
	// DefaultStatusResync is how often every association's status is
	// recomputed even without a change (writing only what differs).
	DefaultStatusResync = 10 * time.Minute
	// DefaultReportDelay is how long reports are gathered before the
	// statuses they concern are computed: a burst of requests for one
	// association makes one write.
	DefaultReportDelay = time.Second
	// DefaultReadyHold is the least time between two changes of an
	// association's Ready from one outcome to another (see StatusWriter).
	DefaultReadyHold = 30 * time.Second
	// statusWorkers is the number of statuses computed and written at once.
	statusWorkers = 2
	// statusFieldManager names the writer in managedFields.
	statusFieldManager = "podiam-auth"
	// serviceAccountIndex indexes associations by "namespace/serviceAccount".
	serviceAccountIndex = "serviceAccount"
	// externalIDContests is how many times, within externalIDContestWindow,
	// a writer replaces another writer's status.externalId of one
	// association before it yields for StatusOptions.ExternalIDYield (see
	// StatusWriter.settleExternalID).
	externalIDContests      = 3
	externalIDContestWindow = time.Minute
	// DefaultExternalIDYield is how long a writer keeps another writer's
	// status.externalId once it has replaced it externalIDContests times.
	DefaultExternalIDYield = 5 * time.Minute
)

// Outcome is the result of an STS call made for an association, as a
// StatusReporter learns it.
type Outcome struct {
	// For is the association (UID and spec) the call was made for.
	For *association.Association
	// Err is nil when the role was assumed.
	Err *eksauth.Error
}

// StatusInput is everything the status of one association depends on.
type StatusInput struct {
	// Object is the association as stored, its current status included.
	Object *v1alpha1.PodIdentityAssociation
	// Winner is the association that wins for Object's ServiceAccount
	// (association.Winner of all of them); nil or Object itself when none is
	// older.
	Winner *association.Association
	// Outcome is the latest outcome this replica has learnt for Object and
	// not yet written, or nil.
	Outcome *Outcome
	// Cluster gives the external id.
	Cluster Cluster
	// Now is the lastTransitionTime of a condition whose status changes.
	Now time.Time
}

// DesiredStatus returns the status in.Object should have (see StatusWriter).
// It is pure: every replica that knows the same computes the same.
func DesiredStatus(in StatusInput) v1alpha1.PodIdentityAssociationStatus {
	obj := in.Object
	sa := obj.Spec.ServiceAccount
	st := *obj.Status.DeepCopy()
	st.ExternalID = in.Cluster.ExternalID(obj.Namespace, sa)
	now := metav1.NewTime(in.Now.UTC().Truncate(time.Second)) // what the API server keeps
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason,
			Message: msg, ObservedGeneration: obj.Generation, LastTransitionTime: now})
	}

	if w := in.Winner; w != nil && w.Name != obj.Name {
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonConflict, fmt.Sprintf(
			"PodIdentityAssociation %s is older and serves ServiceAccount %s; this one is not used", w.Name, sa))
		set(v1alpha1.ConditionConflict, metav1.ConditionTrue, ReasonServiceAccountInUse, fmt.Sprintf(
			"the older PodIdentityAssociation %s already serves ServiceAccount %s; this one is not used until that one is deleted", w.Name, sa))
		return st
	}

	switch o := in.Outcome; {
	case o != nil && outcomeApplies(o, obj) && o.Err == nil:
		set(v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonRoleAssumed, assumedMessage(o.For))
	case o != nil && outcomeApplies(o, obj):
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonAssumeRoleFailed, limitMessage(o.Err.Code+": "+o.Err.Message))
	case keepsReady(meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady), obj.Generation):
		// Another replica's (or an earlier) outcome for this very spec: keep it.
	default:
		set(v1alpha1.ConditionReady, metav1.ConditionUnknown, ReasonPending, "no pod has asked for credentials yet")
	}
	set(v1alpha1.ConditionConflict, metav1.ConditionFalse, ReasonNoConflict,
		fmt.Sprintf("no older PodIdentityAssociation names ServiceAccount %s", sa))
	return st
}

// outcomeApplies reports whether o was learnt for obj as it is now: the same
// object (UID) and the same spec. An outcome for an earlier spec says nothing
// of the current one.
func outcomeApplies(o *Outcome, obj *v1alpha1.PodIdentityAssociation) bool {
	a, s := o.For, obj.Spec
	return a != nil && a.UID == obj.UID && a.ServiceAccount == s.ServiceAccount && a.RoleARN == s.RoleARN &&
		a.TargetRoleARN == s.TargetRoleARN && a.DisableSessionTags == s.DisableSessionTags && a.Policy == s.Policy
}

// keepsReady reports whether an existing Ready condition is an outcome
// written for the current generation, to be kept rather than reset to
// Unknown by a replica that has not learnt one itself.
func keepsReady(c *metav1.Condition, generation int64) bool {
	return c != nil && c.ObservedGeneration == generation &&
		(c.Status == metav1.ConditionTrue && c.Reason == ReasonRoleAssumed ||
			c.Status == metav1.ConditionFalse && c.Reason == ReasonAssumeRoleFailed)
}

func assumedMessage(a *association.Association) string {
	if a.TargetRoleARN != "" {
		return limitMessage(fmt.Sprintf("assumed role %s, then target role %s, for a pod", a.RoleARN, a.TargetRoleARN))
	}
	return limitMessage(fmt.Sprintf("assumed role %s for a pod", a.RoleARN))
}

// maxConditionMessage is the API's limit on a condition message, in bytes.
const maxConditionMessage = 32 << 10

// limitMessage keeps a condition message within maxConditionMessage.
func limitMessage(s string) string {
	if len(s) > maxConditionMessage {
		return s[:maxConditionMessage]
	}
	return s
}

// StatusOptions configures a StatusWriter.
type StatusOptions struct {
	// Client reads associations and writes their status subresource.
	Client dynamic.Interface
	// Discovery tells whether the resource is served (association.Served,
	// the question the association watcher asks too).
	Discovery discovery.DiscoveryInterface
	// Cluster gives the external ids.
	Cluster Cluster
	// Namespace limits the writer to the associations of one namespace;
	// empty, as `podiam auth` runs it, means all.
	Namespace string
	// Metrics, if not nil, counts status writes (StatusWrites).
	Metrics *Metrics
	// Logger receives the writer's logs; nil means slog.Default().
	Logger *slog.Logger
	// ResyncPeriod is how often every status is recomputed without a change;
	// zero means DefaultStatusResync.
	ResyncPeriod time.Duration
	// CheckInterval is how often the writer looks for the resource (the CRD)
	// while it is not served, and checks that it still is; zero means
	// association.DefaultCheckInterval.
	CheckInterval time.Duration
	// ReportDelay is how long reports are gathered before the statuses they
	// concern are computed; zero means DefaultReportDelay.
	ReportDelay time.Duration
	// ReadyHold is the least time between two changes of Ready from one
	// outcome to another for the same spec; zero means DefaultReadyHold.
	ReadyHold time.Duration
	// ExternalIDYield is how long the writer keeps another writer's
	// status.externalId after replacing it a few times (see
	// StatusWriter.settleExternalID); zero means DefaultExternalIDYield.
	ExternalIDYield time.Duration
}

// StatusWriter keeps the status of every PodIdentityAssociation current:
// status.externalId, Conflict (True on each association that is not the
// winner of its ServiceAccount, association.Older deciding) and Ready (the
// outcome of the last STS call for the association's current spec, False
// while in conflict, Unknown before any).
//
// Every replica of `podiam auth` runs one, without leader election: each
// computes the same status from the same objects (DesiredStatus) and writes
// only when the stored one differs, re-reading on a conflict. Outcomes are
// the one thing replicas know differently: a replica writes the outcomes it
// learns, once each, and otherwise keeps what another replica wrote for the
// same generation, so the status shows the latest outcome of any replica and
// replicas do not overwrite each other in turn.
//
// Report only records the outcome; every ReportDelay the latest outcomes go
// to the syncs through a work queue, which holds each key once, so a burst
// of reports for an association makes at most one write per ReportDelay.
//
// Outcomes may disagree for good: a trust policy that names
// kubernetes-pod-name lets some pods assume the role and not others. So that
// Ready does not flap (each change is a new resourceVersion, sent to every
// watcher of associations: the webhook and all replicas), Ready changes from
// one outcome to another at most once per ReadyHold for a given spec. The
// hold counts from the stored condition's lastTransitionTime (so replicas
// share it) or this replica's last change of Ready, whichever is later; an
// outcome learnt meanwhile is kept and written when the hold ends. The
// first outcome, a conflict, and any outcome for a new generation are
// written at once.
//
// The CRD is optional: while the resource is not served the writer waits,
// logging it once, and looks again every CheckInterval. It asks
// association.Served, the association watcher's own check, so that the two
// agree: associations the handler finds through the watcher are ones whose
// status the writer keeps.
//
// The writer keeps an informer of its own rather than reading the
// association watcher's: it needs whole objects, status and
// metadata.generation included, to compute and update the status, while the
// watcher keeps associations reduced to what a lookup needs.
type StatusWriter struct {
	client   dynamic.Interface
	disc     discovery.DiscoveryInterface
	cluster  Cluster
	ns       string
	metrics  *Metrics
	log      *slog.Logger
	resync   time.Duration
	interval time.Duration
	delay    time.Duration
	hold     time.Duration
	yield    time.Duration

	// queue is created by Run, so that a writer that never runs starts no
	// goroutine.
	queue workqueue.TypedRateLimitingInterface[string]
	// indexer is the informer's cache once it has synced, nil while the
	// resource is not served or not yet listed.
	indexer atomic.Pointer[cache.Indexer]
	kick    chan struct{} // a report is waiting for the next flush

	mu sync.Mutex
	// reported holds, by "namespace/name", the latest outcome reported for
	// each association since the last flush. outcomes holds the flushed
	// ones that are not written yet (or held, see ReadyHold). A sync reads
	// only outcomes, so that the update event of its own write does not
	// write a report that came meanwhile before the next ReportDelay.
	reported, outcomes map[string]pendingOutcome
	seq                uint64
	// readyChanged holds, by "namespace/name", when this writer last changed
	// an association's Ready to an outcome, for ReadyHold.
	readyChanged map[string]readyChange
	// contests holds, by "namespace/name", this writer's recent replacements
	// of another writer's status.externalId (settleExternalID).
	contests map[string]externalIDContest
}

// externalIDContest is a writer's record of replacing status.externalId
// values it did not compute, for one association.
type externalIDContest struct {
	// times are the recent replacements, oldest first.
	times []time.Time
	// yieldUntil is when the writer stops keeping the stored value.
	yieldUntil time.Time
}

// readyChange is when a writer changed Ready, for which generation.
type readyChange struct {
	generation int64
	at         time.Time
}

// pendingOutcome is an outcome not yet written and the report's sequence
// number, so that writing it does not forget a newer one.
type pendingOutcome struct {
	Outcome
	seq uint64
}

var _ StatusReporter = (*StatusWriter)(nil)

// NewStatusWriter returns a StatusWriter; call Run to start it. Report may
// be called before. It starts nothing.
func NewStatusWriter(o StatusOptions) *StatusWriter {
	w := &StatusWriter{client: o.Client, disc: o.Discovery, cluster: o.Cluster, ns: o.Namespace, metrics: o.Metrics,
		log: o.Logger, resync: o.ResyncPeriod, interval: o.CheckInterval, delay: o.ReportDelay, hold: o.ReadyHold, yield: o.ExternalIDYield,
		kick: make(chan struct{}, 1), outcomes: map[string]pendingOutcome{}, reported: map[string]pendingOutcome{},
		readyChanged: map[string]readyChange{}, contests: map[string]externalIDContest{}}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.log = w.log.With("resource", association.Resource.GroupResource().String())
	if w.resync <= 0 {
		w.resync = DefaultStatusResync
	}
	if w.interval <= 0 {
		w.interval = association.DefaultCheckInterval
	}
	if w.delay <= 0 {
		w.delay = DefaultReportDelay
	}
	if w.hold <= 0 {
		w.hold = DefaultReadyHold
	}
	if w.yield <= 0 {
		w.yield = DefaultExternalIDYield
	}
	return w
}

// Report records the outcome of an STS call for a (err nil: the role was
// assumed); the association's status follows within ReportDelay, or when
// ReadyHold ends if Ready changed lately. It never blocks on the API server.
func (w *StatusWriter) Report(a *association.Association, err *eksauth.Error) {
	if a == nil {
		return
	}
	k := a.Key()
	w.mu.Lock()
	w.seq++
	w.reported[k] = pendingOutcome{Outcome{For: a, Err: err}, w.seq}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default: // a flush is already due
	}
}

// Run keeps the statuses current until ctx is done. Call it once.
func (w *StatusWriter) Run(ctx context.Context) {
	w.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, time.Minute),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "podidentityassociation-status"})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer w.queue.ShutDown()
	wg.Go(func() { w.flushReports(ctx) })
	for range statusWorkers {
		wg.Go(func() {
			for w.processNext(ctx) {
			}
		})
	}
	for ctx.Err() == nil {
		if !w.waitServed(ctx) {
			return
		}
		w.log.Info("writing PodIdentityAssociation status")
		w.runInformer(ctx)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("PodIdentityAssociations are no longer served (CRD deleted?); waiting for them to come back")
	}
}

// flushReports makes the outcomes reported during each ReportDelay visible
// to sync and queues their associations.
func (w *StatusWriter) flushReports(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(w.delay):
		}
		w.mu.Lock()
		reported := w.reported
		w.reported = map[string]pendingOutcome{}
		for k, o := range reported {
			w.outcomes[k] = o
		}
		w.mu.Unlock()
		for k := range reported {
			w.queue.Add(k)
		}
	}
}

// waitServed returns once the resource is served (true) or ctx is done
// (false), logging once that it is not.
func (w *StatusWriter) waitServed(ctx context.Context) bool {
	logged := false
	err := wait.PollUntilContextCancel(ctx, w.interval, true, func(ctx context.Context) (bool, error) {
		served, err := association.Served(ctx, w.disc)
		switch {
		case err != nil && !logged:
			logged = true
			w.log.Warn("cannot tell whether PodIdentityAssociations are served; retrying", "err", err, "retryIn", w.interval)
		case err == nil && !served && !logged:
			logged = true
			w.log.Info("PodIdentityAssociations are not served (CRD not installed); no status to write until they are",
				"checkInterval", w.interval)
		}
		return served, nil
	})
	return err == nil
}

// runInformer watches the associations until ctx is done or they are no
// longer served, queueing every association whose status may change.
func (w *StatusWriter) runInformer(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inf := dynamicinformer.NewFilteredDynamicInformer(w.client, association.Resource, w.ns, w.resync,
		cache.Indexers{serviceAccountIndex: indexByServiceAccount}, nil).Informer()
	// Managed fields are the bulk of an object and never read here. Leaving
	// them out of an update keeps the stored ones.
	if err := inf.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
		}
		return obj, nil
	}); err != nil {
		w.log.Error("setting the informer's transform", "err", err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: w.enqueueWithRivals,
		UpdateFunc: func(oldObj, newObj any) {
			w.enqueue(newObj)
			if specServiceAccount(oldObj) != specServiceAccount(newObj) {
				w.enqueueWithRivals(oldObj)
				w.enqueueWithRivals(newObj)
			}
		},
		DeleteFunc: w.enqueueWithRivals, // the rivals it beat may win now
	}); err != nil {
		w.log.Error("adding the informer's event handler", "err", err)
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { inf.RunWithContext(ctx) })
	wg.Go(func() {
		// Stop the informer once the resource is gone rather than let it
		// retry a 404 for ever.
		defer cancel()
		_ = wait.PollUntilContextCancel(ctx, w.interval, false, func(ctx context.Context) (bool, error) {
			served, err := association.Served(ctx, w.disc)
			return err == nil && !served, nil
		})
	})
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	indexer := inf.GetIndexer()
	w.indexer.Store(&indexer)
	defer w.deactivate()
	// Keys queued before the cache synced were dropped: queue them all.
	for _, k := range indexer.ListKeys() {
		w.queue.Add(k)
	}
	<-ctx.Done()
}

// deactivate forgets the cache and the outcomes of the associations it held.
func (w *StatusWriter) deactivate() {
	w.indexer.Store(nil)
	w.mu.Lock()
	clear(w.outcomes)
	clear(w.readyChanged)
	clear(w.contests)
	w.mu.Unlock()
}

func (w *StatusWriter) enqueue(obj any) {
	if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		w.queue.Add(k)
	}
}

// enqueueWithRivals queues obj and every association for its ServiceAccount.
func (w *StatusWriter) enqueueWithRivals(obj any) {
	w.enqueue(obj)
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	if p := w.indexer.Load(); p != nil {
		rivals, _ := (*p).ByIndex(serviceAccountIndex, u.GetNamespace()+"/"+specServiceAccount(u))
		for _, r := range rivals {
			w.enqueue(r)
		}
	}
}

func specServiceAccount(obj any) string {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		sa, _, _ := unstructured.NestedString(u.Object, "spec", "serviceAccount")
		return sa
	}
	return ""
}

func indexByServiceAccount(obj any) ([]string, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, nil
	}
	return []string{u.GetNamespace() + "/" + specServiceAccount(u)}, nil
}

// processNext syncs one key; false once the queue is shut down.
func (w *StatusWriter) processNext(ctx context.Context) bool {
	key, quit := w.queue.Get()
	if quit {
		return false
	}
	defer w.queue.Done(key)
	if err := w.sync(ctx, key); err != nil {
		if ctx.Err() == nil {
			w.log.Warn("cannot write PodIdentityAssociation status; retrying", "association", key, "err", err)
		}
		w.queue.AddRateLimited(key)
		return true
	}
	w.queue.Forget(key)
	return true
}

// sync makes the stored status of association key what DesiredStatus says.
func (w *StatusWriter) sync(ctx context.Context, key string) error {
	p := w.indexer.Load()
	if p == nil {
		return nil // all keys are queued again once a cache is synced
	}
	indexer := *p
	obj, exists, err := indexer.GetByKey(key)
	if err != nil {
		return fmt.Errorf("reading %s from the cache: %w", key, err)
	}
	if !exists {
		w.forgetOutcome(key, 0)
		w.mu.Lock()
		delete(w.readyChanged, key)
		delete(w.contests, key)
		w.mu.Unlock()
		return nil
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	w.mu.Lock()
	pending, hasOutcome := w.outcomes[key]
	w.mu.Unlock()

	var held time.Duration // how long Ready must wait for the outcome (ReadyHold)
	var retryAt time.Time  // when a yield of status.externalId ends (settleExternalID)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var pia v1alpha1.PodIdentityAssociation
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &pia); err != nil {
			w.log.Warn("ignoring PodIdentityAssociation", "association", key, "err", err)
			return nil
		}
		in := StatusInput{Object: &pia, Winner: rivalWinner(indexer, &pia), Cluster: w.cluster, Now: time.Now()}
		if hasOutcome {
			in.Outcome = &pending.Outcome
		}
		var desired v1alpha1.PodIdentityAssociationStatus
		desired, held = holdReady(pia.Status, DesiredStatus(in), pia.Generation, w.lastReadyChange(key, pia.Generation), in.Now, w.hold)
		var yieldUntil time.Time
		desired.ExternalID, yieldUntil = w.settleExternalID(key, pia.Status.ExternalID, desired.ExternalID, in.Now)
		if !yieldUntil.IsZero() {
			// Nothing else may change this association meanwhile: look again
			// when the yield ends.
			retryAt = yieldUntil
		}
		if apiequality.Semantic.DeepEqual(desired, pia.Status) {
			return nil
		}
		err := w.writeStatus(ctx, u, desired)
		if err == nil && replacedExternalID(pia.Status.ExternalID, desired.ExternalID) {
			w.recordContest(key, in.Now)
		}
		if err == nil && readyChangedToOutcome(pia.Status, desired, pia.Generation) {
			w.mu.Lock()
			w.readyChanged[key] = readyChange{generation: pia.Generation, at: in.Now}
			w.mu.Unlock()
		}
		if apierrors.IsConflict(err) {
			// Someone else wrote first: compute again from what is stored.
			live, gerr := w.client.Resource(association.Resource).Namespace(u.GetNamespace()).Get(ctx, u.GetName(), metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(gerr):
				return nil
			case gerr != nil:
				return fmt.Errorf("reading %s after a conflict: %w", key, gerr)
			}
			u = live
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		err = nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	if !retryAt.IsZero() {
		w.queue.AddAfter(key, time.Until(retryAt))
	}
	if held > 0 {
		// Keep the outcome (or a newer one flushed meanwhile) for when the
		// hold ends.
		w.queue.AddAfter(key, held)
		return nil
	}
	if hasOutcome {
		// Written (or it was already there, or it does not apply): done with
		// it unless a newer report came meanwhile.
		w.forgetOutcome(key, pending.seq)
	}
	return nil
}

// settleExternalID returns the status.externalId to write for association
// key, where stored is the one stored and ours the one this writer computes,
// and, while the writer yields, when the yield ends (else zero).
//
// Replicas that agree on the cluster compute the same external id. Replicas
// that do not (a --cluster-name, --region or AWS account that differs, as
// during a rolling update that changes one) would each replace the other's
// value as soon as they saw it, without end. So a writer that has replaced
// a value it did not compute externalIDContests times within
// externalIDContestWindow (recordContest, after each such write succeeded)
// keeps the stored value for ExternalIDYield instead, logging why, and
// tries again after. Every writer yields in turn, so the association is
// written a few times per ExternalIDYield instead of continually; once the
// other writer is gone (the old replicas of a rolling update), the first
// attempt after the yield writes this writer's value for good.
func (w *StatusWriter) settleExternalID(key, stored, ours string, now time.Time) (string, time.Time) {
	if !replacedExternalID(stored, ours) {
		return ours, time.Time{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, yielding, started := yieldExternalID(w.contests[key], now, w.yield)
	w.contests[key] = c
	if !yielding {
		return ours, time.Time{}
	}
	if started {
		w.log.Error("another writer keeps setting status.externalId to another value: every podiam auth replica must "+
			"have the same --cluster-name, region (--region, AWS_REGION or --cluster-arn's) and AWS account (its "+
			"credentials'); the id is <region>/<account>/<cluster>/<namespace>/<serviceAccount>; keeping the stored value for now",
			"association", key, "stored", stored, "ours", ours, "retryIn", w.yield.String())
	}
	return stored, c.yieldUntil
}

// replacedExternalID reports whether writing next over stored replaces an
// external id another writer computed.
func replacedExternalID(stored, next string) bool {
	return stored != "" && stored != next
}

// recordContest records that this writer replaced another writer's
// external id of association key at now.
func (w *StatusWriter) recordContest(key string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.contests[key]
	c.times = append(recentContests(c.times, now), now)
	w.contests[key] = c
}

// yieldExternalID reports whether a writer whose record of replacements is
// c yields at now rather than replace another writer's external id again
// (see settleExternalID), for yieldFor, and whether it starts to yield now.
// It is pure.
func yieldExternalID(c externalIDContest, now time.Time, yieldFor time.Duration) (_ externalIDContest, yield, started bool) {
	if now.Before(c.yieldUntil) {
		return c, true, false
	}
	recent := recentContests(c.times, now)
	if len(recent) >= externalIDContests {
		return externalIDContest{yieldUntil: now.Add(yieldFor)}, true, true
	}
	return externalIDContest{times: recent}, false, false
}

// recentContests returns the times of times within externalIDContestWindow
// before now.
func recentContests(times []time.Time, now time.Time) []time.Time {
	recent := make([]time.Time, 0, externalIDContests)
	for _, t := range times {
		if now.Sub(t) < externalIDContestWindow {
			recent = append(recent, t)
		}
	}
	return recent
}

// lastReadyChange returns when this writer last changed the Ready of
// association key, at generation, to an outcome; zero if it has not.
func (w *StatusWriter) lastReadyChange(key string, generation int64) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.readyChanged[key]; ok && c.generation == generation {
		return c.at
	}
	return time.Time{}
}

// holdReady applies ReadyHold to desired, the status computed for an
// association of the given generation whose status is stored: if desired
// changes Ready from one outcome for this generation to another, less than
// hold after the later of the stored condition's lastTransitionTime and
// lastChange (this writer's own last change), desired keeps the stored Ready
// and wait says how long until the change may be written. Otherwise desired
// is returned as it is, with wait zero. A Ready that is not an outcome
// (Pending, Conflict) or is for an earlier generation is never held.
func holdReady(stored, desired v1alpha1.PodIdentityAssociationStatus, generation int64, lastChange, now time.Time,
	hold time.Duration) (_ v1alpha1.PodIdentityAssociationStatus, wait time.Duration) {
	old := meta.FindStatusCondition(stored.Conditions, v1alpha1.ConditionReady)
	cur := meta.FindStatusCondition(desired.Conditions, v1alpha1.ConditionReady)
	if !keepsReady(old, generation) || !keepsReady(cur, generation) || sameReady(old, cur) {
		return desired, 0
	}
	since := old.LastTransitionTime.Time
	if lastChange.After(since) {
		since = lastChange
	}
	wait = min(since.Add(hold).Sub(now), hold) // min: a clock ahead of ours
	if wait <= 0 {
		return desired, 0
	}
	held := *desired.DeepCopy()
	for i := range held.Conditions {
		if held.Conditions[i].Type == v1alpha1.ConditionReady {
			held.Conditions[i] = *old
		}
	}
	return held, wait
}

// readyChangedToOutcome reports whether writing desired over stored changes
// Ready to an outcome for generation.
func readyChangedToOutcome(stored, desired v1alpha1.PodIdentityAssociationStatus, generation int64) bool {
	cur := meta.FindStatusCondition(desired.Conditions, v1alpha1.ConditionReady)
	return keepsReady(cur, generation) && !sameReady(meta.FindStatusCondition(stored.Conditions, v1alpha1.ConditionReady), cur)
}

// sameReady reports whether two Ready conditions say the same.
func sameReady(a, b *metav1.Condition) bool {
	return a != nil && b != nil && a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message &&
		a.ObservedGeneration == b.ObservedGeneration
}

// forgetOutcome drops the pending outcome of key if its sequence number is
// seq (any, for zero).
func (w *StatusWriter) forgetOutcome(key string, seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o, ok := w.outcomes[key]; ok && (seq == 0 || o.seq == seq) {
		delete(w.outcomes, key)
	}
}

// writeStatus updates the status subresource of u with st's fields (other
// status fields, of a newer version of the API, are kept), counting the write.
func (w *StatusWriter) writeStatus(ctx context.Context, u *unstructured.Unstructured, st v1alpha1.PodIdentityAssociationStatus) error {
	out := u.DeepCopy()
	conds := make([]any, 0, len(st.Conditions))
	for i := range st.Conditions {
		c, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st.Conditions[i])
		if err != nil {
			return fmt.Errorf("encoding condition %s: %w", st.Conditions[i].Type, err)
		}
		conds = append(conds, c)
	}
	if err := unstructured.SetNestedField(out.Object, st.ExternalID, "status", "externalId"); err != nil {
		return fmt.Errorf("setting status.externalId: %w", err)
	}
	if err := unstructured.SetNestedSlice(out.Object, conds, "status", "conditions"); err != nil {
		return fmt.Errorf("setting status.conditions: %w", err)
	}
	_, err := w.client.Resource(association.Resource).Namespace(u.GetNamespace()).
		UpdateStatus(ctx, out, metav1.UpdateOptions{FieldManager: statusFieldManager})
	w.countWrite(err)
	if err != nil {
		return fmt.Errorf("updating the status of %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// countWrite counts a status write by result: ResultOK, or the API server's
// reason (Conflict, NotFound, Forbidden, …), "error" without one.
func (w *StatusWriter) countWrite(err error) {
	if w.metrics == nil || w.metrics.StatusWrites == nil {
		return
	}
	result := ResultOK
	if err != nil {
		result = string(apierrors.ReasonForError(err))
		if result == "" {
			result = "error"
		}
	}
	w.metrics.StatusWrites.WithLabelValues(result).Inc()
}

// rivalWinner returns the association that wins for p's ServiceAccount among the
// cache's, p included.
func rivalWinner(indexer cache.Indexer, p *v1alpha1.PodIdentityAssociation) *association.Association {
	objs, err := indexer.ByIndex(serviceAccountIndex, p.Namespace+"/"+p.Spec.ServiceAccount)
	if err != nil {
		return nil
	}
	cands := []*association.Association{association.FromObject(p)}
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok || u.GetName() == p.Name {
			continue
		}
		var r v1alpha1.PodIdentityAssociation
		if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r) != nil || r.Spec.ServiceAccount != p.Spec.ServiceAccount {
			continue
		}
		cands = append(cands, association.FromObject(&r))
	}
	return association.Winner(cands)
}
