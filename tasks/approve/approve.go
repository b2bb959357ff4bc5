// Package approve is gantry's manual approval. The pipeline suspends on
// an "approval" node whose output parameter "decision" is supplied by a human
// (plain `argo resume` approves with the default); Verify then reads that node
// from the Workflow, treats an expired suspend as a rejection, counts the
// decisions bound to that node (min-approvals, forbid-self-approval, the
// approvers allow-list) and writes an audit record. Decide is the human side:
// it records the caller's decision under their API-server identity and resumes
// the node once enough approvers agree, in one update. Who may write what is
// enforced by the API server (templates/approval-policy.yaml), not by this code.
package approve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// Decisions.
const (
	Approved = "approved"
	Rejected = "rejected"
)

// Candidate is what a person needs to decide, shown by `request` and `list`.
type Candidate struct {
	ModelName        string `json:"modelName,omitempty"`
	ModelVersion     string `json:"modelVersion,omitempty"`
	ModelURI         string `json:"modelURI,omitempty"`
	Accuracy         string `json:"accuracy,omitempty"`
	BaselineAccuracy string `json:"baselineAccuracy,omitempty"`
	P99Ms            string `json:"p99Ms,omitempty"`
	ReportURI        string `json:"reportURI,omitempty"`
}

// Approver requests, records, waits for and verifies approval decisions.
type Approver struct {
	wf        versioned.Interface
	kube      kubernetes.Interface
	dyn       dynamic.Interface // Tekton PipelineRuns (approve --tekton); nil: not read
	log       *slog.Logger
	now       func() time.Time
	transport http.RoundTripper
}

// Option configures an Approver.
type Option func(*Approver)

// WithDynamic sets the client that reads Tekton PipelineRuns: a decision names its run's UID.
func WithDynamic(d dynamic.Interface) Option { return func(a *Approver) { a.dyn = d } }

// WithLogger sets the logger (default: silent).
func WithLogger(l *slog.Logger) Option { return func(a *Approver) { a.log = l } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(a *Approver) { a.now = now } }

// WithTransport sets the transport under the notification's retries (default: http.DefaultTransport).
func WithTransport(t http.RoundTripper) Option { return func(a *Approver) { a.transport = t } }

// NewApprover returns an Approver over the Argo and Kubernetes clients; either may be nil where
// the operations used do not need it (kube: identity lookups and Tekton decisions).
func NewApprover(wf versioned.Interface, kube kubernetes.Interface, opts ...Option) *Approver {
	a := &Approver{wf: wf, kube: kube, log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, o := range opts {
		o(a)
	}
	return a
}

// approvalNode finds the newest suspend node with the display name.
func approvalNode(wf *wfv1.Workflow, name string) (string, wfv1.NodeStatus, bool) {
	var found wfv1.NodeStatus
	id, ok := "", false
	for key, n := range wf.Status.Nodes {
		if n.Type == wfv1.NodeTypeSuspend && n.DisplayName == name {
			if !ok || n.StartedAt.After(found.StartedAt.Time) {
				found, id, ok = n, key, true
			}
		}
	}
	return id, found, ok
}

// normalise maps what people type onto approved/rejected.
func normalise(v string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "approved", "approve", "yes", "true":
		return Approved, true
	case "rejected", "reject", "no", "false":
		return Rejected, true
	}
	return Rejected, false
}

// Identity returns the caller's username from a SelfSubjectReview.
func (g *Approver) Identity(ctx context.Context) (string, error) {
	if g.kube == nil {
		return "", errors.New("no Kubernetes client for the identity lookup")
	}
	r, err := g.kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", kube.Classify("asking who you are (SelfSubjectReview)", err)
	}
	if r.Status.UserInfo.Username == "" {
		return "", errors.New("the API server returned no username for these credentials")
	}
	return r.Status.UserInfo.Username, nil
}

// DecideOptions is a human decision.
type DecideOptions struct {
	Namespace string
	Run       string
	Node      string // default "approval"
	Decision  string // approved | rejected
	Reason    string
	// Identity overrides the SelfSubjectReview lookup (tests). The admission policy admits a
	// decision only in the requester's own name, so another value is refused by the API server.
	Identity string
}

// Decided is what a decision did.
type Decided struct {
	By string
	// Resumed is true when the decision ended the wait (a rejection, or the approval that
	// reached min-approvals); false: recorded, waiting for more approvers.
	Resumed    bool
	Have, Need int
}

// Decide records the caller's decision on the run (decision.gantry.dev/<who>, bound to the run's
// UID and the approval node) and, when it is a rejection or brings the distinct approvals to the
// node's min-approvals, resumes the node with the outcome — one update, retried on conflicts.
func (g *Approver) Decide(ctx context.Context, o DecideOptions) (*Decided, error) {
	if o.Run == "" {
		return nil, exitcode.Invalidf("the run (workflow name) is required")
	}
	if o.Node == "" {
		o.Node = "approval"
	}
	decision, ok := normalise(o.Decision)
	if !ok {
		return nil, exitcode.Invalidf("decision %q: want approved or rejected", o.Decision)
	}
	if decision == Rejected && strings.TrimSpace(o.Reason) == "" {
		return nil, exitcode.Invalidf("--reason is required to reject")
	}
	wfs := g.wf.ArgoprojV1alpha1().Workflows(o.Namespace)
	compressed := false
	waiting := func() (*wfv1.Workflow, string, wfv1.NodeStatus, approvalPolicy, error) {
		var pol approvalPolicy
		wf, err := wfs.Get(ctx, o.Run, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, "", wfv1.NodeStatus{}, pol, exitcode.Invalidf("run %s not found in namespace %s", o.Run, o.Namespace)
		}
		if err != nil {
			return nil, "", wfv1.NodeStatus{}, pol, kube.Classify("getting run "+o.Run, err)
		}
		if compressed, err = hydrate(wf); err != nil {
			return nil, "", wfv1.NodeStatus{}, pol, err
		}
		id, node, ok := activeApproval(wf, o.Node)
		if !ok {
			return nil, "", wfv1.NodeStatus{}, pol, exitcode.Invalidf("run %s is not waiting for approval (phase %s, no running %q node)", o.Run, wf.Status.Phase, o.Node)
		}
		if pol, err = policyOf(node); err != nil {
			return nil, "", wfv1.NodeStatus{}, pol, exitcode.Invalidf("run %s: %v", o.Run, err)
		}
		return wf, id, node, pol, nil
	}
	if _, _, _, _, err := waiting(); err != nil { // before asking who the caller is
		return nil, err
	}
	who := o.Identity
	if who == "" {
		var err error
		if who, err = g.Identity(ctx); err != nil {
			return nil, err
		}
	}
	var out *Decided
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wf, id, node, pol, err := waiting()
		if err != nil {
			return err
		}
		if decision == Approved && pol.ForbidSelf && NormalIdentity(who) == submitter(wf) {
			return exitcode.Invalidf("you (%s) submitted run %s and it forbids self-approval: another approver must decide", who, o.Run)
		}
		if wf.Annotations == nil {
			wf.Annotations = map[string]string{}
		}
		digest := candidateDigest(wf)
		wf.Annotations[DecisionKey(who)] = decisionValue(decision, binding(wf, id), digest, who)
		if o.Reason != "" {
			wf.Annotations[ReasonKey(who)] = o.Reason
		} else {
			delete(wf.Annotations, ReasonKey(who))
		}
		t := count(wf, id, node, pol, countOptions{Digest: digest})
		out = &Decided{By: who, Have: t.Have, Need: pol.MinApprovals}
		if decision == Rejected || t.Have >= pol.MinApprovals {
			out.Resumed = true
			now := g.now().UTC()
			if node.Outputs != nil {
				for i, p := range node.Outputs.Parameters {
					if p.Name == DecisionParam {
						node.Outputs.Parameters[i].Value = wfv1.AnyStringPtr(decision)
						node.Outputs.Parameters[i].ValueFrom = nil
					}
				}
			}
			node.Phase = wfv1.NodeSucceeded
			node.FinishedAt = metav1.Time{Time: now}
			node.Message = fmt.Sprintf("%s by %s", decision, who)
			if o.Reason != "" {
				node.Message += ": " + o.Reason
			}
			wf.Status.Nodes.Set(id, node)
		}
		if err := dehydrate(wf, compressed); err != nil {
			return err
		}
		_, err = wfs.Update(ctx, wf, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		switch {
		case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
			// The API server (RBAC or the approval policy) refused: not transient.
			return nil, exitcode.Invalidf("the API server refused your decision on run %s: %v", o.Run, err)
		case exitcode.Of(err) == exitcode.Failed && apierrors.IsConflict(err):
			return nil, exitcode.Retryable(fmt.Errorf("updating run %s: %w", o.Run, err))
		}
		return nil, err
	}
	g.log.Info("decision recorded", "run", o.Run, "decision", decision, "by", who, "resumed", out.Resumed, "approvals", out.Have, "needed", out.Need)
	return out, nil
}

// binding names one approval node of one run: "<workflow UID>/<node ID>".
func binding(wf *wfv1.Workflow, nodeID string) string { return string(wf.UID) + "/" + nodeID }

// NormalIdentity is the form of a name in a label: Argo's actor label (the DNS-friendly form of
// the SSO subject or kube username, alice@example.com → alice-example.com) and gantry's
// submitted-by label. It is lossy (alice@example.com, alice:example.com and alice-example.com
// share it): decisions and allow-lists use exact usernames; this form only tells whether a label
// may name the same person.
func NormalIdentity(s string) string {
	v := nonLabel.ReplaceAllString(strings.TrimSpace(s), "-")
	if len(v) > 63 {
		v = v[len(v)-63:]
	}
	return strings.TrimRight(strings.TrimLeft(v, "-_."), "-_.")
}

var nonLabel = regexp.MustCompile(`[^-_.a-zA-Z0-9]`)

func activeApproval(wf *wfv1.Workflow, name string) (string, wfv1.NodeStatus, bool) {
	for id, n := range wf.Status.Nodes {
		if n.DisplayName == name && n.IsActiveSuspendNode() {
			return id, n, true
		}
	}
	return "", wfv1.NodeStatus{}, false
}

// VerifyOptions configure the post-suspend check.
type VerifyOptions struct {
	Namespace string
	Run       string
	Node      string
	Timeout   time.Duration // the suspend's duration: ending at it means it expired (0: the node's timeout input)
	Approvers []string      // allow-list of exact usernames; empty: the node's approvers input, else anyone
	AuditURI  string        // prefix for <run>.json audit records
	Candidate Candidate
	// ModelDigest is the candidate's digest: decisions made on another candidate do not count
	// (empty: not checked).
	ModelDigest string
}

// Verdict is the verified decision.
type Verdict struct {
	Decision   string `json:"decision"`
	ApprovedBy string `json:"approvedBy"` // comma-separated, normal form
	// Approvers are the distinct approvals counted (min-approvals); empty when rejected.
	Approvers    []string  `json:"approvers,omitempty"`
	MinApprovals int       `json:"minApprovals"`
	Reason       string    `json:"reason"`
	Run          string    `json:"run"`
	RunUID       string    `json:"runUID,omitempty"`
	DecidedAt    time.Time `json:"decidedAt"`
	WaitedSecs   float64   `json:"waitedSeconds"`
	Candidate    Candidate `json:"candidate"`
	AuditURI     string    `json:"auditURI,omitempty"`
}

// Bound is what an approval was bound to, as the approval attestation records it.
type Bound struct {
	Namespace, Node, ModelDigest string
}

// Approval is the predicate of the approval attestation (gantry's approval/v1, documented in
// docs/contracts.md): the decision, who made it as the API server vouched for them (the approval
// policy admits a decision only under its author's own name), when, and the run, node and
// candidate it was bound to.
func (v *Verdict) Approval(b Bound) map[string]any {
	approvers := []any{}
	for _, a := range v.Approvers {
		approvers = append(approvers, a)
	}
	return map[string]any{
		"decision": v.Decision, "approvers": approvers, "minApprovals": v.MinApprovals, "reason": v.Reason,
		"decidedAt": v.DecidedAt.UTC().Format(time.RFC3339),
		"run":       map[string]any{"namespace": b.Namespace, "name": v.Run, "uid": v.RunUID, "node": b.Node},
		"candidate": map[string]any{"modelName": v.Candidate.ModelName, "modelVersion": v.Candidate.ModelVersion, "modelDigest": b.ModelDigest,
			"accuracy": v.Candidate.Accuracy, "reportURI": v.Candidate.ReportURI},
		"auditURI": v.AuditURI,
	}
}

// Values renders the results.
func (v *Verdict) Values() map[string]string {
	by := v.ApprovedBy
	if v.Decision != Approved {
		by = ""
	}
	reason := v.Reason
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	return map[string]string{"decision": v.Decision, "approved-by": by, "reason": reason, "waited-seconds": fmt.Sprintf("%.0f", v.WaitedSecs)}
}

// Verify reads the finished approval node and decides what it means. Silence
// (an expired suspend) is a rejection, checked first; then the decisions bound to this node
// count: any rejection rejects; approvals count once per person, only from the allow-list (when
// set) and not from the submitter (forbid-self-approval), up to the node's min-approvals.
func (g *Approver) Verify(ctx context.Context, s objstore.Store, o VerifyOptions) (*Verdict, error) {
	if o.Run == "" {
		return nil, exitcode.Invalidf("--run-name is required")
	}
	// Fail closed: where the approval policy is not in force, nobody vouches for a decision.
	if err := g.policyInForceIfKube(ctx, o.Namespace, ArgoPolicy); err != nil {
		return nil, err
	}
	if o.Node == "" {
		o.Node = "approval"
	}
	wf, err := g.wf.ArgoprojV1alpha1().Workflows(o.Namespace).Get(ctx, o.Run, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, exitcode.Invalidf("run %s not found in namespace %s", o.Run, o.Namespace)
	}
	if err != nil {
		return nil, kube.Classify("getting run "+o.Run, err)
	}
	if _, err := hydrate(wf); err != nil {
		return nil, err
	}
	nodeID, node, ok := approvalNode(wf, o.Node)
	if !ok {
		return nil, exitcode.Invalidf("run %s has no %q suspend node", o.Run, o.Node)
	}
	if node.Phase != wfv1.NodeSucceeded {
		return nil, fmt.Errorf("approval node of %s is %s, not finished", o.Run, node.Phase)
	}
	v := &Verdict{Run: o.Run, RunUID: string(wf.UID), DecidedAt: node.FinishedAt.UTC(), Candidate: o.Candidate,
		WaitedSecs: node.FinishedAt.Sub(node.StartedAt.Time).Seconds()}
	param := decisionOutput(node)
	pol, err := policyOf(node)
	if err != nil {
		return nil, exitcode.Invalidf("run %s: %v", o.Run, err)
	}
	v.MinApprovals = pol.MinApprovals
	if o.Timeout == 0 {
		o.Timeout = pol.Timeout
	}
	// Expiry first: a node that ran for the whole suspend was resumed by the controller with the
	// default output, whatever else the run carries.
	switch {
	case o.Timeout > 0 && node.FinishedAt.Sub(node.StartedAt.Time) >= o.Timeout-time.Second:
		v.Decision = Rejected
		v.Reason = fmt.Sprintf("approval timed out after %s with no decision", o.Timeout)
	case !wf.CreationTimestamp.IsZero() && node.StartedAt.Before(&wf.CreationTimestamp):
		// argo resubmit --memoized copies finished nodes into the new run: not decided on this run.
		v.Decision = Rejected
		v.Reason = "the approval node was copied from an earlier run (it started before this run was created)"
	default:
		decided, known := normalise(param)
		if !known {
			decided = Rejected
		}
		t := count(wf, nodeID, node, pol, countOptions{Approvers: o.Approvers, Decided: decided, Digest: o.ModelDigest})
		v.Decision, v.Reason = t.Decision, t.Reason
		v.ApprovedBy = strings.Join(t.By, ",")
		v.Approvers = t.By
		if !known {
			v.Reason = fmt.Sprintf("unknown decision %q", param)
		}
	}
	if v.Reason == "" {
		v.Reason = v.Decision
	}
	if o.AuditURI != "" {
		u, err := objstore.Parse(o.AuditURI)
		if err != nil {
			return nil, err
		}
		v.AuditURI = u.Join(o.Run + ".json").String()
		b, _ := json.MarshalIndent(v, "", "  ")
		if err := objstore.PutBytes(ctx, s, v.AuditURI, b); err != nil {
			return nil, fmt.Errorf("writing audit record: %w", err)
		}
	}
	g.log.Info("approval verified", "run", o.Run, "decision", v.Decision, "by", v.ApprovedBy, "reason", v.Reason)
	return v, nil
}

// Waiting is one run waiting for approval.
type Waiting struct {
	Namespace string
	Run       string
	Since     time.Time
	Candidate Candidate
	Have      []string // approvals so far (min-approvals above 1)
	Need      int
}

// CandidateResult is the request step's result holding the candidate as JSON: `list` reads it
// from the run's status, so no pipeline step needs to write the Workflow.
const CandidateResult = "candidate"

// candidateOf reads the newest request step's candidate result.
func candidateOf(wf *wfv1.Workflow) Candidate {
	var c Candidate
	var at time.Time
	for _, n := range wf.Status.Nodes {
		if n.Outputs == nil || n.StartedAt.Time.Before(at) {
			continue
		}
		for _, p := range n.Outputs.Parameters {
			if p.Name == CandidateResult && p.Value != nil {
				var got Candidate
				if json.Unmarshal([]byte(p.Value.String()), &got) == nil {
					c, at = got, n.StartedAt.Time
				}
			}
		}
	}
	return c
}

// List returns the runs of namespace ns ("": every namespace the caller may list) waiting on
// their approval node, oldest first.
func (g *Approver) List(ctx context.Context, ns, node string) ([]Waiting, error) {
	if node == "" {
		node = "approval"
	}
	l, err := g.wf.ArgoprojV1alpha1().Workflows(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, kube.Classify("listing runs", err)
	}
	var out []Waiting
	for _, wf := range l.Items {
		if _, err := hydrate(&wf); err != nil {
			g.log.Warn("run skipped: its node status cannot be read here", "namespace", wf.Namespace, "run", wf.Name, "err", err)
			continue
		}
		id, n, ok := activeApproval(&wf, node)
		if !ok {
			continue
		}
		w := Waiting{Namespace: wf.Namespace, Run: wf.Name, Since: n.StartedAt.Time, Candidate: candidateOf(&wf)}
		pol, _ := policyOf(n)
		w.Need, w.Have = pol.MinApprovals, count(&wf, id, n, pol, countOptions{Digest: candidateDigest(&wf)}).By
		out = append(out, w)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}

// Conclude turns a business "no" into the failure that ends a run, with the
// reason as its message: approved/pass → nil; rejected/fail → an error (exit 1);
// anything else is bad input.
func Conclude(decision, reason string) error {
	switch strings.ToLower(strings.TrimSpace(decision)) {
	case Approved, "pass":
		return nil
	case Rejected, "fail":
		if reason == "" {
			reason = "rejected"
		}
		return exitcode.With(exitcode.Failed, errors.New(reason))
	}
	return exitcode.Invalidf("--decision %q: want approved, rejected, pass or fail", decision)
}

// decisionOutput is the approval node's decision output parameter ("" when it has none).
func decisionOutput(node wfv1.NodeStatus) string {
	if node.Outputs != nil {
		for _, p := range node.Outputs.Parameters {
			if p.Name == DecisionParam && p.Value != nil {
				return p.Value.String()
			}
		}
	}
	return ""
}
