package approve

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
)

// The release gate: promote (deploy --environment production) asks it before production changes,
// whatever led there — the pipeline's verify step, a Workflow of one's own calling the deploy
// template, a run whose status someone edited. It answers from what only the API server and
// approvers write: the admission policy is in force in the namespace (a probe it must refuse),
// the calling pod belongs to the run it names (the pod's identity comes from its ServiceAccount
// token, which the API server binds to the pod), and that run's approval node carries approvals
// that count (count: min-approvals, forbid-self-approval and the allow-list from the node's
// inputs) bound to this run's UID and to the digest being deployed. An argo resume names no
// digest: it counts only for a model this run published before it was approved (the registry's
// manifest says so).

// Release is one production deploy to check.
type Release struct {
	Namespace string
	Run       string // the run (Workflow or Tekton PipelineRun) named by --run-name
	Digest    string // the model being deployed
	// PublishedBy and PublishedAt are the registry manifest's workflow and creation time.
	PublishedBy string
	PublishedAt time.Time
}

// PolicyProbePrefix names the Lease a release gate tries to create (dry run): the approval
// policies refuse it in every namespace they are in force in. Admitted means not enforced.
const PolicyProbePrefix = "gantry-policy-probe"

// Pod identity as the API server puts it in a bound ServiceAccount token's user info.
const (
	podNameExtra = "authentication.kubernetes.io/pod-name"
	podUIDExtra  = "authentication.kubernetes.io/pod-uid"
)

// AllowRelease refuses (exit 2, with the reason) a production deploy of r.Digest unless the
// run's approvals cover it. It is publish.ReleaseGate.
func (g *Approver) AllowRelease(ctx context.Context, r Release) error {
	if r.Run == "" {
		return exitcode.Invalidf("--run-name is required for production: promote deploys only what a run's approvers approved")
	}
	start := g.now()
	owner, err := g.callerRun(ctx, r.Namespace)
	if err != nil {
		return err
	}
	if owner.Kind == "TaskRun" {
		return g.allowTektonRelease(ctx, r, owner, start)
	}
	if err := g.policyInForce(ctx, r.Namespace, ArgoPolicy); err != nil {
		return err
	}
	if owner.Kind != "" && owner.Name != r.Run {
		return exitcode.Invalidf("this pod belongs to %s %s, not to run %s: a run promotes only its own approved model", owner.Kind, owner.Name, r.Run)
	}
	wf, err := g.wf.ArgoprojV1alpha1().Workflows(r.Namespace).Get(ctx, r.Run, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return exitcode.Invalidf("run %s not found in namespace %s: nothing approved %s", r.Run, r.Namespace, r.Digest)
	}
	if err != nil {
		return kube.Classify("getting run "+r.Run, err)
	}
	if owner.UID != "" && wf.UID != owner.UID {
		return exitcode.Invalidf("run %s is not the run this pod belongs to (UID %s, the pod's owner is %s)", r.Run, wf.UID, owner.UID)
	}
	if _, err := hydrate(wf); err != nil {
		return err
	}
	v, err := releaseVerdict(wf, r)
	if err != nil {
		return err
	}
	if v.Decision != Approved {
		return exitcode.Invalidf("not promoting %s: run %s has no approval that covers it: %s", r.Digest, r.Run, v.Reason)
	}
	g.log.Info("release allowed", "run", r.Run, "digest", r.Digest, "approved-by", v.ApprovedBy, "gate-seconds", g.now().Sub(start).Seconds())
	return nil
}

// releaseVerdict counts the run's approvals for r.Digest.
func releaseVerdict(wf *wfv1.Workflow, r Release) (*Verdict, error) {
	nodeID, node, ok := approvalNode(wf, "approval")
	if !ok {
		return &Verdict{Decision: Rejected, Reason: "the run has no approval node"}, nil
	}
	if node.Phase != wfv1.NodeSucceeded {
		return &Verdict{Decision: Rejected, Reason: fmt.Sprintf("its approval node is %s", node.Phase)}, nil
	}
	if !wf.CreationTimestamp.IsZero() && node.StartedAt.Before(&wf.CreationTimestamp) {
		return &Verdict{Decision: Rejected, Reason: "its approval node was copied from an earlier run"}, nil
	}
	pol, err := policyOf(node)
	if err != nil {
		return nil, exitcode.Invalidf("run %s: %v", wf.Name, err)
	}
	if pol.Timeout > 0 && node.FinishedAt.Sub(node.StartedAt.Time) >= pol.Timeout-time.Second {
		return &Verdict{Decision: Rejected, Reason: fmt.Sprintf("its approval timed out after %s", pol.Timeout)}, nil
	}
	decided, known := normalise(decisionOutput(node))
	if !known {
		decided = Rejected
	}
	unbound := ""
	switch {
	case r.PublishedBy != wf.Name:
		unbound = fmt.Sprintf("it names no digest, and %s was published by %q, not by this run", r.Digest, r.PublishedBy)
	case r.PublishedAt.After(node.FinishedAt.Time):
		unbound = fmt.Sprintf("it names no digest, and %s was published after it (%s)", r.Digest, r.PublishedAt.Format(time.RFC3339))
	}
	t := count(wf, nodeID, node, pol, countOptions{Decided: decided, Digest: r.Digest, ResumeUnbound: unbound})
	return &Verdict{Decision: t.Decision, ApprovedBy: strings.Join(t.By, ","), Approvers: t.By, Reason: t.Reason, Run: wf.Name, MinApprovals: pol.MinApprovals}, nil
}

// owner is the run-side owner of the calling pod (empty Kind: not called from a pod).
type owner struct {
	Kind, Name string
	UID        types.UID
}

// callerRun finds the object that owns the calling pod, from the pod the API server says this
// token belongs to (a token's pod claims cannot be chosen by whoever wrote the pod's spec). A
// caller that is no pod (a person's credentials) gets an empty owner.
func (g *Approver) callerRun(ctx context.Context, ns string) (owner, error) {
	if g.kube == nil {
		return owner{}, exitcode.Invalidf("no Kubernetes client for the release gate")
	}
	r, err := g.kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return owner{}, kube.Classify("asking who this step is (SelfSubjectReview)", err)
	}
	names := r.Status.UserInfo.Extra[podNameExtra]
	if len(names) == 0 {
		return owner{}, nil
	}
	pod, err := g.kube.CoreV1().Pods(ns).Get(ctx, names[0], metav1.GetOptions{})
	if err != nil {
		return owner{}, kube.Classify("reading this step's own pod "+names[0], err)
	}
	if uids := r.Status.UserInfo.Extra[podUIDExtra]; len(uids) > 0 && string(pod.UID) != uids[0] {
		return owner{}, exitcode.Invalidf("pod %s is not the pod this token was issued to", names[0])
	}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Workflow" || o.Kind == "TaskRun" {
			return owner{Kind: o.Kind, Name: o.Name, UID: o.UID}, nil
		}
	}
	return owner{}, exitcode.Invalidf("pod %s is owned by no run: only a run's own step may promote", pod.Name)
}

// policyInForce creates, as a dry run, a Lease the approval policy refuses in every namespace it
// is in force in: admitted means the namespace is not protected, and nothing is promoted.
func (g *Approver) policyInForce(ctx context.Context, ns, policy string) error {
	probe := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: PolicyProbe(policy) + "-" + rand.String(8), Namespace: ns}}
	_, err := g.kube.CoordinationV1().Leases(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	switch {
	case err == nil:
		return exitcode.Invalidf("gantry's approval policy %s is not in force in namespace %s (a probe it must refuse was admitted): "+
			"apply templates/approval-policy.yaml and label the namespace gantry.dev/approval-policy=enforce; nothing is promoted until then", policy, ns)
	case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
		if strings.Contains(err.Error(), "'"+policy+"'") && strings.Contains(err.Error(), "in force") {
			return nil
		}
		return exitcode.Invalidf("cannot tell whether gantry's approval policy %s is in force in namespace %s: %v", policy, ns, err)
	}
	return kube.Classify("probing the approval policy", err)
}

// policyInForceIfKube is policyInForce when the Approver has a Kubernetes client: the commands
// always give it one; unit tests of counting alone do not.
func (g *Approver) policyInForceIfKube(ctx context.Context, ns, policy string) error {
	if g.kube == nil {
		return nil
	}
	return g.policyInForce(ctx, ns, policy)
}

// PolicyProbe is the name prefix of the Lease that policy refuses (pipeline/cluster matches it).
func PolicyProbe(policy string) string {
	return PolicyProbePrefix + "-" + strings.TrimPrefix(policy, "gantry-")
}

// Names of the approval policies (cluster.ApprovalPolicy in pipeline/cluster).
const (
	ArgoPolicy   = "gantry-approval"
	TektonPolicy = "gantry-tekton-approval"
)

// allowTektonRelease: the calling pod's TaskRun belongs to the PipelineRun r.Run, whose decision
// ConfigMap (created only by an approver, in their own name, never changed: the Tekton policy)
// approves, names this PipelineRun's UID, and came after this run published the model.
func (g *Approver) allowTektonRelease(ctx context.Context, r Release, tr owner, start time.Time) error {
	if err := g.policyInForce(ctx, r.Namespace, TektonPolicy); err != nil {
		return err
	}
	if g.dyn == nil {
		return exitcode.Invalidf("no client for Tekton objects in the release gate")
	}
	taskRun, err := g.dyn.Resource(TaskRunsResource).Namespace(r.Namespace).Get(ctx, tr.Name, metav1.GetOptions{})
	if err != nil {
		return kube.Classify("reading this step's TaskRun "+tr.Name, err)
	}
	var pr owner
	for _, o := range taskRun.GetOwnerReferences() {
		if o.Kind == "PipelineRun" {
			pr = owner{Kind: o.Kind, Name: o.Name, UID: o.UID}
		}
	}
	if pr.Name != r.Run || taskRun.GetUID() != tr.UID {
		return exitcode.Invalidf("this pod belongs to PipelineRun %q, not to run %s: a run promotes only its own approved model", pr.Name, r.Run)
	}
	// The rules come from the PipelineRun (its spec is immutable once started: Tekton's webhook).
	run, err := g.dyn.Resource(PipelineRunsResource).Namespace(r.Namespace).Get(ctx, r.Run, metav1.GetOptions{})
	if err != nil {
		return kube.Classify("reading PipelineRun "+r.Run, err)
	}
	c := tektonCount{RunUID: string(pr.UID), MinApprovals: 1, Submitter: NormalIdentity(run.GetLabels()[SubmitterLabel])}
	params, _, _ := unstructured.NestedSlice(run.Object, "spec", "params")
	for _, p := range params {
		m, _ := p.(map[string]any)
		v, _ := m["value"].(string)
		switch m["name"] {
		case MinApprovalsParam:
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 1 {
				return exitcode.Invalidf("PipelineRun %s: %s %q: want a whole number of at least 1", r.Run, MinApprovalsParam, v)
			}
			c.MinApprovals = n
		case ForbidSelfParam:
			c.ForbidSelf = strings.TrimSpace(v) == "true"
		case ApproversParam:
			c.Approvers = SplitApprovers(v)
		}
	}
	cms, err := g.kube.CoreV1().ConfigMaps(r.Namespace).List(ctx, metav1.ListOptions{LabelSelector: RunLabel + "=" + r.Run})
	if err != nil {
		return kube.Classify("reading the decisions on "+r.Run, err)
	}
	decisions := map[string]corev1.ConfigMap{}
	var first time.Time // the earliest decision: every decision came after the model was published
	for _, cm := range cms.Items {
		if strings.HasPrefix(cm.Name, DecisionConfigMap(r.Run)+"-") && cm.Data["runUID"] == string(pr.UID) {
			decisions[cm.Name] = cm
			if first.IsZero() || cm.CreationTimestamp.Before(&metav1.Time{Time: first}) {
				first = cm.CreationTimestamp.Time
			}
		}
	}
	t, done := countTekton(decisions, c)
	switch {
	case len(decisions) == 0:
		return exitcode.Invalidf("not promoting %s: PipelineRun %s has no decision naming it (UID %s)", r.Digest, r.Run, pr.UID)
	case !done || t.Decision != Approved:
		return exitcode.Invalidf("not promoting %s: PipelineRun %s was not approved: %s", r.Digest, r.Run, t.Reason)
	case r.PublishedBy != r.Run:
		return exitcode.Invalidf("not promoting %s: it was published by %q, not by PipelineRun %s, whose decisions name no digest", r.Digest, r.PublishedBy, r.Run)
	case r.PublishedAt.After(first):
		return exitcode.Invalidf("not promoting %s: it was published after the decisions on %s", r.Digest, r.Run)
	}
	g.log.Info("release allowed", "run", r.Run, "digest", r.Digest, "approved-by", strings.Join(t.By, ","), "gate-seconds", g.now().Sub(start).Seconds())
	return nil
}
