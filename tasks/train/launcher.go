package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// ModelStore is what the launcher needs of object storage: to verify the output.
type ModelStore interface {
	List(ctx context.Context, prefix string) ([]objstore.Info, error)
	Open(ctx context.Context, uri string) (io.ReadCloser, error)
	Put(ctx context.Context, uri string, r io.Reader, size int64) error
	Delete(ctx context.Context, uri string) error
}

// probeOutput checks, before a Job exists, that the output can be written (and the probe removed
// again): a missing bucket or missing rights would otherwise show only when training ends.
func (l *Launcher) probeOutput(ctx context.Context, o *Options) error {
	u, err := objstore.Parse(o.OutputURI)
	if err != nil {
		return err
	}
	probe := u.Dir().Join(".gantry-write-probe").String()
	body := []byte("gantry checks the output is writable before training\n")
	if err := l.store.Put(ctx, probe, bytes.NewReader(body), int64(len(body))); err != nil {
		return fmt.Errorf("--output-uri %s cannot be written (checked before training): %w", o.OutputURI, err)
	}
	if err := l.store.Delete(ctx, probe); err != nil {
		return fmt.Errorf("--output-uri %s: removing the write probe: %w", o.OutputURI, err)
	}
	return nil
}

// Result is what a finished training run reports.
type Result struct {
	JobName    string
	ModelURI   string
	Metrics    string // compact JSON, ≤ 1 KB
	Duration   time.Duration
	Reattached bool
}

// Values renders the results by their contract names.
func (r Result) Values() map[string]string {
	return map[string]string{
		"job-name": r.JobName, "model-uri": r.ModelURI, "metrics": r.Metrics,
		"duration-seconds": strconv.FormatFloat(r.Duration.Seconds(), 'f', 1, 64),
	}
}

// Launcher runs training Jobs.
type Launcher struct {
	client kubernetes.Interface
	store  ModelStore
	log    *slog.Logger
	logOut io.Writer
	now    func() time.Time
	// runStopping, when set, decides on a cancel whether the whole run is ending (delete the Job)
	// or only this launcher (keep the Job for the retry to re-attach to).
	runStopping func(context.Context) (bool, error)
	owner       func(context.Context) (*metav1.OwnerReference, error)
	minter      Minter
}

// Option configures a Launcher.
type Option func(*Launcher)

// WithLogger sets the progress logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(x *Launcher) { x.log = l } }

// WithRunStopping makes --delete-on-cancel conditional: on a cancel the Job is deleted only
// when f reports that the run itself is ending (see RunStopping). When f fails, the Job is
// kept: a retry can re-attach to it, and its deadline bounds a leak.
func WithRunStopping(f func(context.Context) (bool, error)) Option {
	return func(x *Launcher) { x.runStopping = f }
}

// WithOwner sets who owns the Job (see RunOwner): f is asked once, before the Job is
// created; nil from f means no owner.
func WithOwner(f func(context.Context) (*metav1.OwnerReference, error)) Option {
	return func(x *Launcher) { x.owner = f }
}

// WithPodLogs sets where the training container's log lines go (default: discard).
func WithPodLogs(w io.Writer) Option { return func(x *Launcher) { x.logOut = w } }

// WithMinter sets how scoped credentials are minted (Options.ScopedCredentials).
func WithMinter(m Minter) Option { return func(x *Launcher) { x.minter = m } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(x *Launcher) { x.now = now } }

// NewLauncher returns a Launcher using client for the Job and store to verify the output.
func NewLauncher(client kubernetes.Interface, store ModelStore, opts ...Option) *Launcher {
	l := &Launcher{client: client, store: store, log: slog.New(slog.DiscardHandler), logOut: io.Discard, now: time.Now}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Run creates or re-attaches to the Job, waits for it, and verifies the output.
func (l *Launcher) Run(ctx context.Context, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.Namespace == "" {
		return Result{}, exitcode.Invalidf("--namespace is required")
	}
	beforeCreate := func() error { return l.probeOutput(ctx, &o) }
	if o.ScopedCredentials {
		if l.minter == nil {
			return Result{}, exitcode.Invalidf("--scoped-credentials: no STS endpoint to mint them with")
		}
		if _, err := ScopePolicy(o.DatasetURI, o.OutputURI); err != nil {
			return Result{}, err
		}
		// The Job reads its credentials from a Secret of its own, minted just before it is
		// created (a re-attaching launcher finds the Job and mints nothing).
		o.EnvFromSecret = CredentialsSecret(o.JobName)
		beforeCreate = func() error {
			if err := l.probeOutput(ctx, &o); err != nil {
				return err
			}
			return l.writeScopedSecret(ctx, &o)
		}
	}
	if l.owner != nil {
		ref, err := l.owner(ctx)
		if err != nil {
			return Result{}, err
		}
		o.Owner = ref
	}
	start := l.now()
	want := buildJob(&o)
	job, reattached, err := l.createOrAttach(ctx, want, beforeCreate)
	if err != nil {
		return Result{}, err
	}
	if o.ScopedCredentials && !reattached {
		l.ownSecret(ctx, &o, job.UID)
	}
	res := Result{JobName: job.Name, ModelURI: objstoreDir(o.OutputURI), Reattached: reattached}

	v, err := l.wait(ctx, &o)
	if err != nil {
		if ctx.Err() != nil && o.DeleteOnCancel {
			if l.runGoesOn(context.WithoutCancel(ctx)) {
				l.log.Info("launcher cancelled while its run goes on: keeping the Job for the retry to re-attach", "job", o.JobName)
				// Exit 3, so the template's retry (transient errors only) starts a launcher
				// that re-attaches; exit 1 would end the run with the Job still training.
				return res, exitcode.Retryable(fmt.Errorf("launcher stopped while its run goes on; job %s keeps training for the retry to re-attach: %w", o.JobName, err))
			}
			l.deleteJob(context.WithoutCancel(ctx), &o, "cancelled")
		}
		return res, err
	}
	if !v.succeeded {
		if v.deleteJob {
			l.deleteJob(ctx, &o, "failed fast")
		}
		if v.transient {
			// Exit 3: the template's retry starts a launcher that replaces the failed Job.
			return res, exitcode.Retryable(errors.New(v.reason))
		}
		return res, errors.New(v.reason)
	}
	res.Duration = v.duration
	if res.Duration == 0 {
		res.Duration = l.now().Sub(start)
	}
	metrics, err := l.verify(ctx, o.OutputURI, job.Name)
	if err != nil {
		return res, err
	}
	res.Metrics = metrics
	l.log.Info("training finished", "job", job.Name, "model", res.ModelURI, "duration", res.Duration.Round(time.Second))
	return res, nil
}

func objstoreDir(uri string) string {
	u, err := objstore.Parse(uri)
	if err != nil {
		return uri
	}
	return u.Dir().String()
}

func (l *Launcher) createOrAttach(ctx context.Context, want *batchv1.Job, beforeCreate func() error) (*batchv1.Job, bool, error) {
	jobs := l.client.BatchV1().Jobs(want.Namespace)
	got, err := jobs.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if beforeCreate != nil {
			if err := beforeCreate(); err != nil {
				return nil, false, err
			}
		}
		got, err = jobs.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			l.log.Info("created training job", "job", want.Name, "namespace", want.Namespace, "image", want.Spec.Template.Spec.Containers[0].Image)
			return got, false, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, false, kube.Classify("creating job "+want.Name, err)
		}
		// Another launcher won the race: attach to its Job.
		got, err = jobs.Get(ctx, want.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, false, kube.Classify("getting job "+want.Name, err)
	}
	if h := got.Annotations[AnnotationSpec]; h != want.Annotations[AnnotationSpec] {
		return nil, false, exitcode.Invalidf("job %s/%s already exists with a different spec (spec-hash %q, want %q): choose another --job-name or delete it",
			want.Namespace, want.Name, h, want.Annotations[AnnotationSpec])
	}
	if jobFailedFor(got) && want.Annotations[AnnotationReplaces] == "" {
		// The Job of an earlier attempt failed (argo retry, a retried step): this attempt trains
		// anew. Only that Job is deleted (UID precondition), so two launchers cannot delete each
		// other's fresh Job; the loser of the create race attaches to the winner's.
		attempt := attemptOf(got) + 1
		l.log.Info("the training Job of an earlier attempt failed: replacing it", "job", want.Name, "attempt", attempt)
		err := jobs.Delete(ctx, got.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &got.UID},
			PropagationPolicy: ptrTo(metav1.DeletePropagationBackground)})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return nil, false, kube.Classify("deleting failed job "+want.Name, err)
		}
		gone := func(ctx context.Context) (bool, error) {
			j, err := jobs.Get(ctx, want.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return err == nil && j.UID != got.UID, nil
		}
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, gone); err != nil {
			return nil, false, exitcode.Retryable(fmt.Errorf("waiting for the failed job %s to go: %w", want.Name, err))
		}
		next := want.DeepCopy()
		next.Annotations[AnnotationAttempt] = strconv.Itoa(attempt)
		next.Annotations[AnnotationReplaces] = string(got.UID)
		return l.createOrAttach(ctx, next, beforeCreate)
	}
	l.log.Info("re-attached to existing training job", "job", want.Name, "namespace", want.Namespace)
	return got, true, nil
}

// jobFailedFor reports whether the Job ended Failed.
func jobFailedFor(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// attemptOf is the Job's attempt number (1 for the first).
func attemptOf(j *batchv1.Job) int {
	if n, err := strconv.Atoi(j.Annotations[AnnotationAttempt]); err == nil && n > 0 {
		return n
	}
	return 1
}

func (l *Launcher) deleteJob(ctx context.Context, o *Options, why string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := l.client.BatchV1().Jobs(o.Namespace).Delete(ctx, o.JobName, metav1.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationBackground)})
	if err != nil && !apierrors.IsNotFound(err) {
		l.log.Warn("deleting job", "job", o.JobName, "error", err)
		return
	}
	l.log.Info("deleted training job", "job", o.JobName, "why", why)
}

// runGoesOn reports whether the run outlives this cancelled launcher.
func (l *Launcher) runGoesOn(ctx context.Context) bool {
	if l.runStopping == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stopping, err := l.runStopping(ctx)
	if err != nil {
		l.log.Warn("cannot tell whether the run is stopping; keeping the Job", "error", err)
		return true
	}
	return !stopping
}

func ptrTo[T any](v T) *T { return &v }

type outcome struct {
	succeeded bool
	transient bool
	reason    string
	deleteJob bool
	duration  time.Duration
}

// wait watches the Job and its pods through informers (list+watch, re-list on
// reconnect) and returns as soon as they say the run is over.
func (l *Launcher) wait(ctx context.Context, o *Options) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout+2*time.Minute)
	defer cancel()
	selector := labels.SelectorFromSet(labels.Set{LabelJob: o.JobName})
	factory := informers.NewSharedInformerFactoryWithOptions(l.client, 0,
		informers.WithNamespace(o.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = selector.String() }))
	jobInf := factory.Batch().V1().Jobs()
	podInf := factory.Core().V1().Pods()
	nudge := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case nudge <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }, DeleteFunc: poke}
	if _, err := jobInf.Informer().AddEventHandler(handler); err != nil {
		return outcome{}, err
	}
	if _, err := podInf.Informer().AddEventHandler(handler); err != nil {
		return outcome{}, err
	}
	stopInformers := make(chan struct{})
	factory.Start(stopInformers)
	defer func() { close(stopInformers); factory.Shutdown() }()
	if !cache.WaitForCacheSync(ctx.Done(), jobInf.Informer().HasSynced, podInf.Informer().HasSynced) {
		return outcome{}, waitErr(ctx, o)
	}

	logs := newLogFollower(l.client, o.Namespace, l.logOut, l.log)
	defer logs.stop()
	recheck := time.NewTimer(time.Hour)
	defer recheck.Stop()
	lastPhase := ""
	for {
		job, err := jobInf.Lister().Jobs(o.Namespace).Get(o.JobName)
		if apierrors.IsNotFound(err) {
			return outcome{}, fmt.Errorf("job %s/%s was deleted while waiting for it", o.Namespace, o.JobName)
		}
		all, _ := podInf.Lister().Pods(o.Namespace).List(selector)
		pods := make([]*corev1.Pod, 0, len(all))
		for _, p := range all {
			// Judged by this Job's pods only: a replaced Job of the same name may leave pods behind.
			if selector.Matches(labels.Set(p.Labels)) && ownedBy(p, job.UID) {
				pods = append(pods, p)
				logs.follow(ctx, p)
			}
		}
		if phase := progress(job, pods); phase != lastPhase {
			l.log.Info("training job", "job", o.JobName, "status", phase)
			lastPhase = phase
		}
		v := judge(job, pods, l.now(), o.UnschedulableTimeout)
		if v.done {
			logs.drain(5 * time.Second)
			out := outcome{succeeded: v.succeeded, transient: v.transient, reason: v.reason, deleteJob: !v.succeeded && !jobFinished(job)}
			if job.Status.StartTime != nil && job.Status.CompletionTime != nil {
				out.duration = job.Status.CompletionTime.Sub(job.Status.StartTime.Time)
			}
			return out, nil
		}
		if !v.recheckAt.IsZero() {
			recheck.Reset(max(v.recheckAt.Sub(l.now()), 0))
		}
		select {
		case <-ctx.Done():
			return outcome{}, waitErr(ctx, o)
		case <-nudge:
		case <-recheck.C:
		}
	}
}

func waitErr(ctx context.Context, o *Options) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("job %s not finished %s after its deadline: is the job controller running?", o.JobName, 2*time.Minute)
	}
	return fmt.Errorf("waiting for job %s: %w", o.JobName, ctx.Err())
}

func jobFinished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func progress(job *batchv1.Job, pods []*corev1.Pod) string {
	phases := make([]string, 0, len(pods))
	for _, p := range pods {
		phases = append(phases, p.Name+"="+string(p.Status.Phase))
	}
	sort.Strings(phases)
	return fmt.Sprintf("active=%d succeeded=%d failed=%d pods=[%s]", job.Status.Active, job.Status.Succeeded, job.Status.Failed, strings.Join(phases, " "))
}

// verify checks the output holds a model and a metrics.json object, and
// returns the metrics compacted to fit a result.
func (l *Launcher) verify(ctx context.Context, outputURI, job string) (string, error) {
	dir := objstoreDir(outputURI)
	list, err := l.store.List(ctx, dir)
	if err != nil {
		return "", fmt.Errorf("verifying output of job %s: %w", job, err)
	}
	var hasMetrics, hasModel bool
	for _, i := range list {
		rel := strings.TrimPrefix(i.URI, dir)
		switch {
		case rel == "metrics.json":
			hasMetrics = true
		case i.Size > 0:
			hasModel = true
		}
	}
	if !hasModel || !hasMetrics {
		return "", fmt.Errorf("job %s succeeded but its output %s is incomplete (model files: %t, metrics.json: %t): the trainer must write both",
			job, dir, hasModel, hasMetrics)
	}
	b, err := readAll(ctx, l.store, dir+"metrics.json", 4<<20)
	if err != nil {
		return "", fmt.Errorf("reading metrics of job %s: %w", job, err)
	}
	return CompactMetrics(b)
}

func readAll(ctx context.Context, s ModelStore, uri string, limit int64) ([]byte, error) {
	rc, err := s.Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, limit))
}

// CompactMetrics keeps the scalar top-level fields of a metrics.json object,
// sorted by key, dropping the longest until the JSON fits in 1 KB.
func CompactMetrics(b []byte) (string, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("metrics.json is not a JSON object: %w", err)
	}
	keep := map[string]any{}
	for k, v := range m {
		switch v.(type) {
		case float64, bool:
			keep[k] = v
		case string:
			if len(v.(string)) <= 128 {
				keep[k] = v
			}
		}
	}
	for {
		out, _ := json.Marshal(keep)
		if len(out) <= 1024 {
			return string(out), nil
		}
		var longest string
		for k, v := range keep {
			vb, _ := json.Marshal(v)
			lb, _ := json.Marshal(keep[longest])
			if longest == "" || len(k)+len(vb) > len(longest)+len(lb) || len(k)+len(vb) == len(longest)+len(lb) && k > longest {
				longest = k
			}
		}
		delete(keep, longest)
	}
}

// ownedBy reports whether pod belongs to the Job with uid (pods the Job controller creates name
// it as their controller; a pod naming no controller is not told apart).
func ownedBy(pod *corev1.Pod, uid types.UID) bool {
	ref := metav1.GetControllerOf(pod)
	return ref == nil || ref.Kind != "Job" || ref.UID == uid
}
