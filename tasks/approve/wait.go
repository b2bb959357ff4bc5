package approve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// DecisionConfigMap is where `approver approve|reject --tekton` records a
// decision for engines without suspend (Tekton): a ConfigMap per run.
func DecisionConfigMap(run string) string { return "gantry-approval-" + run }

// Record writes a decision ConfigMap for a Tekton run (o.Node is not used). It refuses to
// overwrite one.
func (g *Approver) Record(ctx context.Context, o DecideOptions) (string, error) {
	ns, run, reason := o.Namespace, o.Run, o.Reason
	d, ok := normalise(o.Decision)
	if !ok {
		return "", exitcode.Invalidf("decision %q: want approved or rejected", o.Decision)
	}
	if d == Rejected && reason == "" {
		return "", exitcode.Invalidf("--reason is required to reject")
	}
	who := o.Identity
	if who == "" {
		var err error
		if who, err = g.Identity(ctx); err != nil {
			return "", err
		}
	}
	uid, err := g.pipelineRunUID(ctx, ns, run)
	if err != nil {
		return "", err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DecisionConfigMap(run), Namespace: ns,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "gantry", "gantry.dev/run": run}},
		Data: map[string]string{"decision": d, "decidedBy": who, "reason": reason, "decidedAt": g.now().UTC().Format(time.RFC3339)}}
	if uid != "" {
		cm.Data["runUID"] = uid
	}
	_, err = g.kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return "", exitcode.Invalidf("run %s already has a decision", run)
	}
	return who, kube.Classify("recording decision", err)
}

// PipelineRunsResource is Tekton's PipelineRun.
var PipelineRunsResource = kube.PipelineRunsResource

// TaskRunsResource is Tekton's TaskRun.
var TaskRunsResource = kube.TaskRunsResource

// pipelineRunUID is the UID of the Tekton PipelineRun ns/name, which the decision binds to. A
// run that does not exist is bad input; an approver who may not read PipelineRuns (or an
// Approver without a dynamic client) records no UID: the wait then relies on the decision being
// newer than the wait.
func (g *Approver) pipelineRunUID(ctx context.Context, ns, name string) (string, error) {
	if g.dyn == nil {
		return "", nil
	}
	pr, err := g.dyn.Resource(PipelineRunsResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", exitcode.Invalidf("no Tekton PipelineRun %s in namespace %s", name, ns)
	case apierrors.IsForbidden(err):
		g.log.Warn("may not read the PipelineRun: the decision names no run UID", "run", name, "error", err)
		return "", nil
	case err != nil:
		return "", kube.Classify("getting PipelineRun "+name, err)
	}
	return string(pr.GetUID()), nil
}

// WaitOptions describe a wait for a Tekton run's decision.
type WaitOptions struct {
	Namespace string
	Run       string
	// RunUID is the PipelineRun's UID ($(context.pipelineRun.uid)): a decision naming another
	// UID was made on another run of the same name and never counts.
	RunUID    string
	Timeout   time.Duration // silence this long is a rejection
	Approvers []string      // allow-list; empty: anyone
	// AuditURI is the prefix of the audit record <run>.json (empty: none), with the candidate
	// it names.
	AuditURI  string
	Candidate Candidate
}

// Wait blocks until a decision ConfigMap for the run appears (watch, not poll),
// or the timeout passes, which is a rejection.
func (g *Approver) Wait(ctx context.Context, s objstore.Store, o WaitOptions) (*Verdict, error) {
	ns, run, timeout, approvers := o.Namespace, o.Run, o.Timeout, o.Approvers
	if run == "" {
		return nil, exitcode.Invalidf("--run-name is required")
	}
	if timeout <= 0 {
		return nil, exitcode.Invalidf("--timeout must be positive")
	}
	start := g.now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := DecisionConfigMap(run)
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return g.kube.CoreV1().ConfigMaps(ns).List(wctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return g.kube.CoreV1().ConfigMaps(ns).Watch(wctx, o)
		},
	}
	g.log.Info("waiting for a decision", "run", run, "configmap", name, "timeout", timeout)
	since := start.Truncate(time.Second) // creationTimestamp has whole seconds
	warned := false
	ev, err := watchtools.UntilWithSync(wctx, lw, &corev1.ConfigMap{}, nil, func(ev watch.Event) (bool, error) {
		cm, ok := ev.Object.(*corev1.ConfigMap)
		if !ok || cm.Name != name || ev.Type == watch.Deleted {
			return false, nil
		}
		// Only approvers can create a decision, in their own name (the admission policy). One on
		// another run of the same name never counts.
		if uid := cm.Data["runUID"]; uid != "" && o.RunUID != "" && uid != o.RunUID {
			if !warned {
				g.log.Warn("ignoring a decision on another run of the same name", "configmap", name, "decision-run-uid", uid, "run-uid", o.RunUID)
				warned = true
			}
			return false, nil
		}
		// One that names this run's UID counts whenever it was made: a person may approve as soon
		// as the request reaches them, before this wait's process has started (seen in e2e under
		// load). One that names no UID (its approver could not read PipelineRuns) counts only if
		// it is not older than this wait: an older one may be an earlier run's of the same name.
		bound := o.RunUID != "" && cm.Data["runUID"] == o.RunUID
		if !bound && cm.CreationTimestamp.Time.Before(since) {
			if !warned {
				g.log.Warn("ignoring a decision older than this wait (an earlier run's); delete it to decide again", "configmap", name, "created", cm.CreationTimestamp.Time)
				warned = true
			}
			return false, nil
		}
		return true, nil
	})
	v := &Verdict{Run: run, DecidedAt: g.now().UTC(), WaitedSecs: g.now().Sub(start).Seconds(), MinApprovals: 1, Candidate: o.Candidate}
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, watchtools.ErrWatchClosed) || wctx.Err() != nil):
		v.Decision, v.Reason = Rejected, fmt.Sprintf("approval timed out after %s with no decision", timeout)
	case err != nil:
		return nil, kube.Classify("waiting for a decision", err)
	default:
		cm := ev.Object.(*corev1.ConfigMap)
		var known bool
		v.Decision, known = normalise(cm.Data["decision"])
		v.ApprovedBy, v.Reason = cm.Data["decidedBy"], cm.Data["reason"] // exact: the policy binds it to the creator
		switch {
		case !known:
			v.Decision, v.Reason = Rejected, fmt.Sprintf("unknown decision %q", cm.Data["decision"])
		case v.Decision == Approved && len(approvers) > 0 && !slices.Contains(approvers, v.ApprovedBy):
			v.Decision, v.Reason = Rejected, fmt.Sprintf("%s is not in the approvers list", v.ApprovedBy)
		}
		if v.Decision == Approved {
			v.Approvers = []string{v.ApprovedBy}
		}
		if v.Reason == "" {
			v.Reason = fmt.Sprintf("%s by %s", v.Decision, v.ApprovedBy)
		}
	}
	if o.AuditURI != "" {
		u, err := objstore.Parse(o.AuditURI)
		if err != nil {
			return nil, err
		}
		v.AuditURI = u.Join(run + ".json").String()
		b, _ := json.MarshalIndent(v, "", "  ")
		if err := objstore.PutBytes(ctx, s, v.AuditURI, b); err != nil {
			return nil, fmt.Errorf("writing audit record: %w", err)
		}
	}
	g.log.Info("approval decided", "run", run, "decision", v.Decision, "by", v.ApprovedBy, "reason", v.Reason)
	return v, nil
}
