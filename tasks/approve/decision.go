package approve

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// How a decision is recorded on a Workflow. Every decider gets their own annotation,
//
//	decision.gantry.dev/<NormalIdentity(user)>: "<approved|rejected> <workflow UID>/<node ID> <model digest> <user>"
//	reason.gantry.dev/<NormalIdentity(user)>:   free text
//
// where user is the Kubernetes username the API server authenticated. The admission policy
// (templates/approval-policy.yaml) admits a change to these annotations, or to the approval node,
// only from holders of the RBAC verb `approve` on workflows, and only when the value ends in the
// requester's own username and names this Workflow's UID: nobody can write a decision in another's
// name, and a decision copied to another run never matches that run's UID. The model digest
// (the candidate the run published; "-" when the run has none yet) binds the decision to that
// candidate: should the run publish another one (argo retry --restart-successful), decisions on
// the first do not count for it.
const (
	DecisionPrefix = "decision.gantry.dev/"
	ReasonPrefix   = "reason.gantry.dev/"
	// SubmitterLabel names who submitted a run in kube mode (argo submit -l
	// gantry.dev/submitted-by=<you, normal form>); the admission policy admits it on create only
	// when it is the requester's own name, and never a change of it.
	SubmitterLabel = "gantry.dev/submitted-by"
	// Labels the Argo Server writes from the SSO claims; the admission policy admits them only
	// from the Argo Server's identity.
	ArgoActorLabel   = "workflows.argoproj.io/actor"
	ArgoActionLabel  = "workflows.argoproj.io/action"
	ArgoCreatorLabel = "workflows.argoproj.io/creator"
	// DecisionParam is the suspend node's supplied output parameter.
	DecisionParam = "decision"
	// Inputs of the approval suspend node (ml-pipeline passes its parameters of the same names).
	MinApprovalsParam = "min-approvals"
	ForbidSelfParam   = "forbid-self-approval"
	// AnonymousApprover names an approval by a plain kube-mode `argo resume`: Argo records no
	// name; the admission policy admitted it only from a holder of the approve verb.
	AnonymousApprover = "anonymous-approver"
)

// record is one decision annotation.
type record struct {
	Decision, For, Digest, User string
}

func decisionValue(decision, binding, digest, user string) string {
	if digest == "" {
		digest = "-"
	}
	return decision + " " + binding + " " + digest + " " + user
}

// parseRecord reads decision.gantry.dev/<who> = "<decision> <binding> <digest> <user>"; the key
// must be the user's normal form.
func parseRecord(key, value string) (record, bool) {
	who, ok := strings.CutPrefix(key, DecisionPrefix)
	if !ok {
		return record{}, false
	}
	f := strings.SplitN(value, " ", 4)
	if len(f) != 4 || NormalIdentity(f[3]) != who {
		return record{}, false
	}
	d, known := normalise(f[0])
	if !known {
		return record{}, false
	}
	return record{Decision: d, For: f[1], Digest: f[2], User: f[3]}, true
}

// DigestResult is the publish step's result naming the candidate; Decide binds decisions to it.
const DigestResult = "model-digest"

// candidateDigest is the newest model-digest result in the run ("" when none).
func candidateDigest(wf *wfv1.Workflow) string {
	digest, at := "", time.Time{}
	for _, n := range wf.Status.Nodes {
		if n.Outputs == nil || n.StartedAt.Time.Before(at) {
			continue
		}
		for _, p := range n.Outputs.Parameters {
			if p.Name == DigestResult && p.Value != nil && p.Value.String() != "" {
				digest, at = p.Value.String(), n.StartedAt.Time
			}
		}
	}
	return digest
}

// approvalPolicy is what the approval node's inputs ask for.
type approvalPolicy struct {
	MinApprovals int
	ForbidSelf   bool
}

func policyOf(n wfv1.NodeStatus) (approvalPolicy, error) {
	p := approvalPolicy{MinApprovals: 1}
	if n.Inputs == nil {
		return p, nil
	}
	for _, in := range n.Inputs.Parameters {
		if in.Value == nil {
			continue
		}
		v := strings.TrimSpace(in.Value.String())
		switch in.Name {
		case MinApprovalsParam:
			m, err := strconv.Atoi(v)
			if err != nil || m < 1 {
				return p, fmt.Errorf("%s %q: want a whole number of at least 1", MinApprovalsParam, v)
			}
			p.MinApprovals = m
		case ForbidSelfParam:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return p, fmt.Errorf("%s %q: want true or false", ForbidSelfParam, v)
			}
			p.ForbidSelf = b
		}
	}
	return p, nil
}

// submitter is who submitted the run, in normal form: the Argo Server's creator label, else
// the kube-mode submitted-by label ("" when neither).
func submitter(wf *wfv1.Workflow) string {
	if c := wf.Labels[ArgoCreatorLabel]; c != "" {
		return NormalIdentity(c)
	}
	return NormalIdentity(wf.Labels[SubmitterLabel])
}

// tally is what the decisions on one approval node amount to.
type tally struct {
	Decision string
	By       []string // who approved (counted) or who rejected
	Reason   string
	Have     int // approvals counted
}

// count reads the decisions bound to nodeID (and, when digest is set, to that candidate) and
// applies the policy and allow-list. decided is the node's own outcome (its output parameter)
// when it has finished; "" while it waits.
func count(wf *wfv1.Workflow, nodeID string, node wfv1.NodeStatus, pol approvalPolicy, approvers []string, decided, digest string) tally {
	bind := binding(wf, nodeID)
	var approvals, rejections, otherCandidate []string
	reasons := map[string]string{}
	for k, v := range wf.Annotations {
		r, ok := parseRecord(k, v)
		if !ok || r.For != bind {
			continue
		}
		if digest != "" && r.Digest != digest {
			otherCandidate = append(otherCandidate, NormalIdentity(r.User))
			continue
		}
		who := NormalIdentity(r.User)
		reasons[who] = wf.Annotations[ReasonPrefix+who]
		if r.Decision == Rejected {
			rejections = append(rejections, who)
		} else {
			approvals = append(approvals, who)
		}
	}
	sort.Strings(rejections)
	if len(rejections) > 0 {
		return tally{Decision: Rejected, By: rejections[:1], Reason: fmt.Sprintf("rejected by %s: %s", rejections[0], reasons[rejections[0]])}
	}
	if decided == Rejected {
		return tally{Decision: Rejected, Reason: "rejected (the approval node's decision)"}
	}
	// The Argo Server names who resumed in its actor label, on the resume itself (action Resume),
	// and writes "Resumed by: …" into the node in the same update; the admission policy admits
	// both only from the Argo Server's identity. Labels copied by argo resubmit lack the message.
	if a := wf.Labels[ArgoActorLabel]; decided == Approved && a != "" && wf.Labels[ArgoActionLabel] == "Resume" && strings.Contains(node.Message, "Resumed by:") {
		approvals = append(approvals, NormalIdentity(a))
	}
	sub := submitter(wf)
	var counted, skipped []string
	sort.Strings(otherCandidate)
	for _, who := range otherCandidate {
		skipped = append(skipped, who+" decided on another candidate")
	}
	seen := map[string]bool{}
	for _, who := range approvals {
		switch {
		case seen[who]:
			continue
		case len(approvers) > 0 && !allowed(approvers, who):
			skipped = append(skipped, who+" is not in the approvers list ("+strings.Join(approvers, ", ")+")")
		case pol.ForbidSelf && who == sub:
			skipped = append(skipped, who+" submitted the run (forbid-self-approval)")
		default:
			counted = append(counted, who)
		}
		seen[who] = true
	}
	sort.Strings(counted)
	// A plain kube-mode argo resume names nobody; the admission policy admitted it only from an
	// approver, which is enough when nothing more is asked for.
	if decided == Approved && len(approvals) == 0 {
		switch {
		case len(approvers) > 0:
			skipped = append(skipped, "an unnamed approver (kube-mode argo resume) cannot be checked against the approvers list")
		case pol.ForbidSelf:
			skipped = append(skipped, "an unnamed approver (kube-mode argo resume) cannot be told apart from the submitter")
		default:
			counted = append(counted, AnonymousApprover)
		}
	}
	t := tally{By: counted, Have: len(counted)}
	switch {
	case pol.ForbidSelf && sub == "":
		t.Decision, t.Reason = Rejected, "forbid-self-approval is on but the run does not say who submitted it (submit through the Argo Server, or with -l "+SubmitterLabel+"=<you>)"
	case len(counted) >= pol.MinApprovals:
		t.Decision = Approved
		t.Reason = fmt.Sprintf("approved by %s", strings.Join(counted, ", "))
		if len(counted) == 1 && reasons[counted[0]] != "" {
			t.Reason = reasons[counted[0]]
		}
	default:
		t.Decision = Rejected
		t.Reason = fmt.Sprintf("%d of %d required approvals", len(counted), pol.MinApprovals)
		if len(counted) > 0 {
			t.Reason += " (" + strings.Join(counted, ", ") + ")"
		}
	}
	if len(skipped) > 0 {
		t.Reason += "; not counted: " + strings.Join(skipped, "; ")
	}
	if t.Decision == Rejected {
		t.By = nil
	}
	return t
}
