package approve

import (
	"context"
	"errors"
	"fmt"
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
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DecisionConfigMap(run), Namespace: ns,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "gantry", "gantry.dev/run": run}},
		Data: map[string]string{"decision": d, "decidedBy": who, "reason": reason, "decidedAt": g.now().UTC().Format(time.RFC3339)}}
	_, err := g.kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return "", exitcode.Invalidf("run %s already has a decision", run)
	}
	return who, kube.Classify("recording decision", err)
}

// WaitOptions describe a wait for a Tekton run's decision.
type WaitOptions struct {
	Namespace string
	Run       string
	Timeout   time.Duration // silence this long is a rejection
	Approvers []string      // allow-list; empty: anyone
}

// Wait blocks until a decision ConfigMap for the run appears (watch, not poll),
// or the timeout passes, which is a rejection.
func (g *Approver) Wait(ctx context.Context, o WaitOptions) (*Verdict, error) {
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
		// A decision made before this wait began belongs to an earlier run of the same name: it
		// never counts (the admission policy lets only approvers create one, in their own name).
		if cm.CreationTimestamp.Time.Before(since) {
			if !warned {
				g.log.Warn("ignoring a decision older than this wait (an earlier run's); delete it to decide again", "configmap", name, "created", cm.CreationTimestamp.Time)
				warned = true
			}
			return false, nil
		}
		return true, nil
	})
	v := &Verdict{Run: run, DecidedAt: g.now().UTC(), WaitedSecs: g.now().Sub(start).Seconds()}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, watchtools.ErrWatchClosed) || wctx.Err() != nil {
			v.Decision, v.Reason = Rejected, fmt.Sprintf("approval timed out after %s with no decision", timeout)
			return v, nil
		}
		return nil, kube.Classify("waiting for a decision", err)
	}
	cm := ev.Object.(*corev1.ConfigMap)
	v.Decision, _ = normalise(cm.Data["decision"])
	v.ApprovedBy, v.Reason = NormalIdentity(cm.Data["decidedBy"]), cm.Data["reason"]
	if v.Decision == Approved && len(approvers) > 0 && !allowed(approvers, v.ApprovedBy) {
		v.Decision, v.Reason = Rejected, fmt.Sprintf("%s is not in the approvers list", v.ApprovedBy)
	}
	if v.Reason == "" {
		v.Reason = fmt.Sprintf("%s by %s", v.Decision, v.ApprovedBy)
	}
	return v, nil
}
