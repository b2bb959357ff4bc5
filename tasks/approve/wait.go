package approve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// DecisionConfigMap is the name prefix of the ConfigMaps where `approver approve|reject --tekton`
// records decisions for engines without suspend (Tekton): one per run and person,
// DecisionConfigMapOf, labelled RunLabel=<run>.
func DecisionConfigMap(run string) string { return "gantry-approval-" + run }

// DecisionConfigMapOf is user's decision on run: the prefix and 12 hex digits of the SHA-256 of
// the exact username (a second decision by the same person is AlreadyExists).
func DecisionConfigMapOf(run, user string) string {
	h := sha256.Sum256([]byte(user))
	return DecisionConfigMap(run) + "-" + hex.EncodeToString(h[:6])
}

// RunLabel names the run a decision ConfigMap decides (the admission policy checks the
// requester may approve that run, and that the name is DecisionConfigMap(run)-…).
const RunLabel = "gantry.dev/run"

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
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DecisionConfigMapOf(run, who), Namespace: ns,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "gantry", RunLabel: run}},
		Data: map[string]string{"decision": d, "decidedBy": who, "reason": reason, "decidedAt": g.now().UTC().Format(time.RFC3339)}}
	if uid != "" {
		cm.Data["runUID"] = uid
	}
	_, err = g.kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return "", exitcode.Invalidf("you (%s) already decided on run %s: a decision is never changed", who, run)
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
	Approvers []string      // allow-list of exact usernames; empty: anyone who may approve
	// MinApprovals distinct approvers are needed (0 or 1: one); ForbidSelf: not the submitter
	// (the PipelineRun's submitted-by label).
	MinApprovals int
	ForbidSelf   bool
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
	if err := g.policyInForce(ctx, ns, TektonPolicy); err != nil { // fail closed
		return nil, err
	}
	start := g.now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sel := labels.SelectorFromSet(labels.Set{RunLabel: run}).String()
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sel
			return g.kube.CoreV1().ConfigMaps(ns).List(wctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			return g.kube.CoreV1().ConfigMaps(ns).Watch(wctx, o)
		},
	}
	c := tektonCount{RunUID: o.RunUID, Since: start.Truncate(time.Second), MinApprovals: max(o.MinApprovals, 1), ForbidSelf: o.ForbidSelf, Approvers: approvers}
	if o.ForbidSelf {
		sub, err := g.pipelineRunSubmitter(ctx, ns, run)
		if err != nil {
			return nil, err
		}
		c.Submitter = sub
	}
	g.log.Info("waiting for decisions", "run", run, "selector", sel, "min-approvals", c.MinApprovals, "timeout", timeout)
	decisions := map[string]corev1.ConfigMap{}
	var t tally
	_, err := watchtools.UntilWithSync(wctx, lw, &corev1.ConfigMap{}, nil, func(ev watch.Event) (bool, error) {
		cm, ok := ev.Object.(*corev1.ConfigMap)
		if !ok || cm.Labels[RunLabel] != run || !strings.HasPrefix(cm.Name, DecisionConfigMap(run)+"-") {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			delete(decisions, cm.Name)
		} else {
			decisions[cm.Name] = *cm
		}
		var done bool
		t, done = countTekton(decisions, c)
		if !done && t.Reason != "" {
			g.log.Info("decisions so far", "run", run, "approvals", t.Have, "needed", c.MinApprovals, "reason", t.Reason)
		}
		return done, nil
	})
	v := &Verdict{Run: run, RunUID: o.RunUID, DecidedAt: g.now().UTC(), WaitedSecs: g.now().Sub(start).Seconds(), MinApprovals: c.MinApprovals, Candidate: o.Candidate}
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, watchtools.ErrWatchClosed) || wctx.Err() != nil):
		v.Decision, v.Reason = Rejected, fmt.Sprintf("approval timed out after %s with %d of %d required approvals", timeout, t.Have, c.MinApprovals)
		if t.Reason != "" {
			v.Reason += " (" + t.Reason + ")"
		}
	case err != nil:
		return nil, kube.Classify("waiting for a decision", err)
	default:
		v.Decision, v.Reason, v.Approvers = t.Decision, t.Reason, t.By
		v.ApprovedBy = strings.Join(t.By, ",")
		if v.Decision != Approved {
			v.ApprovedBy = ""
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

// tektonCount is what counting a Tekton run's decisions binds to.
type tektonCount struct {
	RunUID string
	// Since: a decision naming no run UID (its approver could not read PipelineRuns) counts only
	// if it is not older than this (an older one may be an earlier run's of the same name).
	Since        time.Time
	MinApprovals int
	ForbidSelf   bool
	Submitter    string // normal form (the PipelineRun's submitted-by label)
	Approvers    []string
}

// countTekton counts a Tekton run's decision ConfigMaps (each created by an approver in their own
// name, never changed: the admission policy): one on another run of the same name never counts;
// any rejection rejects; approvals count once per exact username, from the allow-list when set,
// not from the submitter under forbid-self-approval. done: the decision is made.
func countTekton(cms map[string]corev1.ConfigMap, c tektonCount) (tally, bool) {
	var names []string
	for n := range cms {
		names = append(names, n)
	}
	sort.Strings(names)
	var counted, skipped []string
	seen := map[string]bool{}
	for _, n := range names {
		cm := cms[n]
		uid, who := cm.Data["runUID"], cm.Data["decidedBy"]
		if uid != "" && c.RunUID != "" && uid != c.RunUID {
			skipped = append(skipped, who+" decided on another run of the same name")
			continue
		}
		if (uid == "" || c.RunUID == "") && cm.CreationTimestamp.Time.Before(c.Since) {
			skipped = append(skipped, who+"'s decision is older than this wait and names no run")
			continue
		}
		d, known := normalise(cm.Data["decision"])
		if !known {
			return tally{Decision: Rejected, Reason: fmt.Sprintf("unknown decision %q by %s", cm.Data["decision"], who)}, true
		}
		if d == Rejected {
			return tally{Decision: Rejected, By: []string{who}, Reason: fmt.Sprintf("rejected by %s: %s", who, cm.Data["reason"])}, true
		}
		switch {
		case seen[who]:
		case len(c.Approvers) > 0 && !slices.Contains(c.Approvers, who):
			skipped = append(skipped, who+" is not in the approvers list ("+strings.Join(c.Approvers, ", ")+")")
		case c.ForbidSelf && (c.Submitter == "" || NormalIdentity(who) == c.Submitter):
			skipped = append(skipped, who+" submitted the run, or the run does not say who did (forbid-self-approval)")
		default:
			counted = append(counted, who)
		}
		seen[who] = true
	}
	sort.Strings(counted)
	t := tally{By: counted, Have: len(counted)}
	if len(counted) >= c.MinApprovals {
		t.Decision, t.Reason = Approved, "approved by "+strings.Join(counted, ", ")
		if len(counted) == 1 {
			for _, n := range names {
				if cms[n].Data["decidedBy"] == counted[0] && cms[n].Data["reason"] != "" {
					t.Reason = cms[n].Data["reason"]
				}
			}
		}
	} else {
		t.Decision = Rejected
		t.Reason = fmt.Sprintf("%d of %d required approvals", len(counted), c.MinApprovals)
	}
	if len(skipped) > 0 {
		t.Reason += "; not counted: " + strings.Join(skipped, "; ")
	}
	if t.Decision != Approved {
		t.By = nil
	}
	return t, t.Decision == Approved
}

// pipelineRunSubmitter is the PipelineRun's submitted-by label (the admission policy admits it
// only as its creator's own name); "" when it has none.
func (g *Approver) pipelineRunSubmitter(ctx context.Context, ns, name string) (string, error) {
	if g.dyn == nil {
		return "", exitcode.Invalidf("forbid-self-approval needs the PipelineRun's submitter: no client for Tekton objects")
	}
	pr, err := g.dyn.Resource(PipelineRunsResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", exitcode.Invalidf("no Tekton PipelineRun %s in namespace %s", name, ns)
	}
	if err != nil {
		return "", kube.Classify("getting PipelineRun "+name, err)
	}
	return NormalIdentity(pr.GetLabels()[SubmitterLabel]), nil
}
