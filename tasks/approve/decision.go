package approve

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// How a decision is recorded on a Workflow. Every decider gets their own annotation,
//
//	decision.gantry.dev/<DecisionKey(user)>: "<approved|rejected> <workflow UID>/<node ID> <model digest> <user>"
//	reason.gantry.dev/<the same key>:        free text
//
// where user is the Kubernetes username the API server authenticated, exactly as it authenticated
// it (it may contain spaces, '@', ':', '/', any Unicode: it is the rest of the value). The key is
// a hash of the name (an annotation name has at most 63 characters from [-_.a-zA-Z0-9], so no
// escaping of a 250-character name can be injective there): two people never share a key, and
// who decided is read from the value, never from the key. The admission policy
// (templates/approval-policy.yaml) admits a change to these annotations, or to the approval node,
// only from holders of the RBAC verb `approve` on workflows; a decision value only when it ends in
// the requester's exact username and names this Workflow's UID; and a change or removal of a
// decision only when the value it replaces is the requester's own. Nobody can write a decision in
// another's name or overwrite another's, and a decision copied to another run never matches that
// run's UID. The model digest (the candidate the run published; "-" when the run has none yet)
// binds the decision to that candidate: should the run publish another one (argo retry
// --restart-successful), decisions on the first do not count for it, and promote deploys only a
// digest its approvals name.
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
)

// record is one decision annotation.
type record struct {
	Decision, For, Digest, User string
}

// DecisionKey is the annotation holding user's decision: DecisionPrefix + "u-" + the base32 of
// the SHA-256 of the exact username (54 characters). ReasonKey holds the reason.
func DecisionKey(user string) string { return DecisionPrefix + keySuffix(user) }

// ReasonKey is the annotation holding the reason of user's decision.
func ReasonKey(user string) string { return ReasonPrefix + keySuffix(user) }

func keySuffix(user string) string {
	h := sha256.Sum256([]byte(user))
	return "u-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:]))
}

func decisionValue(decision, binding, digest, user string) string {
	if digest == "" {
		digest = "-"
	}
	return decision + " " + binding + " " + digest + " " + user
}

// parseRecord reads decision.gantry.dev/<key> = "<decision> <binding> <digest> <user>". The
// user is the rest of the value after three space-separated fields (a username may hold spaces);
// the key does not say who decided (the admission policy binds the value to its writer).
func parseRecord(key, value string) (record, bool) {
	if !strings.HasPrefix(key, DecisionPrefix) {
		return record{}, false
	}
	f := strings.SplitN(value, " ", 4)
	if len(f) != 4 || f[3] == "" {
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

// approvalPolicy is what the approval node's inputs ask for. The node's inputs are written by
// the Argo controller from the run's template, and the admission policy admits no other writer of
// them: promote reads the rules from there, not from its own arguments.
type approvalPolicy struct {
	MinApprovals int
	ForbidSelf   bool
	// Approvers is the allow-list of exact usernames (empty: any holder of the approve verb).
	Approvers []string
	// Timeout is the suspend's duration (0: unknown): a node that ran for all of it expired.
	Timeout time.Duration
}

// ApproversParam and TimeoutParam are the approval node's allow-list and duration inputs.
const (
	ApproversParam = "approvers"
	TimeoutParam   = "timeout"
)

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
		case ApproversParam:
			p.Approvers = SplitApprovers(v)
		case TimeoutParam:
			d, err := suspendDuration(v)
			if err != nil {
				return p, fmt.Errorf("%s %q: %v", TimeoutParam, v, err)
			}
			p.Timeout = d
		}
	}
	return p, nil
}

// SplitApprovers reads an allow-list: exact usernames separated by commas or newlines (a
// username may hold spaces).
func SplitApprovers(v string) []string {
	var out []string
	for _, x := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' }) {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// suspendDuration reads an Argo suspend duration: seconds ("30"), or a number with s, m, h or d.
func suspendDuration(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("want a duration such as 30, 90s, 24h or 7d")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 30, 90s, 24h or 7d")
	}
	return d, nil
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
	By       []string // who approved (counted) or who rejected: exact usernames; an argo resume in Argo's label form
	Reason   string
	Have     int // approvals counted
}

// countOptions say what a count binds to.
type countOptions struct {
	// Approvers overrides the node's allow-list when set (verify's --approvers).
	Approvers []string
	// Decided is the node's own outcome (its output parameter) when it has finished; "" while it waits.
	Decided string
	// Digest, when set, is the candidate: decisions naming another digest do not count.
	Digest string
	// ResumeUnbound, when set, is why an argo resume (which names no digest) cannot count here.
	ResumeUnbound string
}

// count reads the decisions bound to nodeID (and to the candidate) and applies the node's
// min-approvals, forbid-self-approval and allow-list. Decisions are counted once per exact
// username. An argo resume counts as its resumer's approval when the API server bound Argo's
// actor label to the resumer (the admission policy) and Argo wrote "Resumed by:" into the node in
// the same update; Argo's label is a lossy form of the name, so a resume is never matched against
// an allow-list, and it is the same person as any decider whose name has that form. A resume that
// names nobody is not an approval.
func count(wf *wfv1.Workflow, nodeID string, node wfv1.NodeStatus, pol approvalPolicy, o countOptions) tally {
	bind := binding(wf, nodeID)
	approvers := pol.Approvers
	if len(o.Approvers) > 0 {
		approvers = o.Approvers
	}
	var approvals, rejections []string
	otherCandidate := map[string]bool{}
	reasons := map[string]string{}
	seen := map[string]bool{}
	for k, v := range wf.Annotations {
		r, ok := parseRecord(k, v)
		if !ok || r.For != bind {
			continue
		}
		if o.Digest != "" && r.Digest != o.Digest {
			otherCandidate[r.User] = true
			continue
		}
		if why := wf.Annotations[ReasonPrefix+strings.TrimPrefix(k, DecisionPrefix)]; why != "" {
			reasons[r.User] = why
		}
		if r.Decision == Rejected {
			rejections = append(rejections, r.User)
		} else if !seen[r.User] {
			approvals = append(approvals, r.User)
		}
		seen[r.User] = true
	}
	sort.Strings(rejections)
	sort.Strings(approvals)
	if len(rejections) > 0 {
		return tally{Decision: Rejected, By: rejections[:1], Reason: fmt.Sprintf("rejected by %s: %s", rejections[0], reasons[rejections[0]])}
	}
	if o.Decided == Rejected {
		return tally{Decision: Rejected, Reason: "rejected (the approval node's decision)"}
	}
	sub := submitter(wf)
	var counted, skipped []string
	var others []string
	for who := range otherCandidate {
		others = append(others, who)
	}
	sort.Strings(others)
	for _, who := range others {
		skipped = append(skipped, who+" decided on another candidate")
	}
	for _, who := range approvals {
		switch {
		case len(approvers) > 0 && !slices.Contains(approvers, who):
			skipped = append(skipped, who+" is not in the approvers list ("+strings.Join(approvers, ", ")+")")
		case pol.ForbidSelf && NormalIdentity(who) == sub:
			skipped = append(skipped, who+" submitted the run (forbid-self-approval)")
		default:
			counted = append(counted, who)
		}
	}
	// The argo resume that ended the node: Argo's actor label (the admission policy admits it only
	// naming the requester, and action Resume only from an approver) and its "Resumed by:" message
	// in the node (labels copied by argo resubmit lack it).
	if o.Decided == Approved {
		actor := wf.Labels[ArgoActorLabel]
		resumed := actor != "" && wf.Labels[ArgoActionLabel] == "Resume" && strings.Contains(node.Message, "Resumed by:")
		same := false
		for _, who := range approvals {
			same = same || NormalIdentity(who) == NormalIdentity(actor)
		}
		switch {
		case !resumed && len(approvals) == 0:
			skipped = append(skipped, "a resume that names nobody (no actor recorded by the API server) is not an approval: approve with `approver approve`")
		case !resumed || same:
		case o.ResumeUnbound != "":
			skipped = append(skipped, actor+"'s argo resume: "+o.ResumeUnbound)
		case len(approvers) > 0:
			skipped = append(skipped, actor+"'s argo resume names the resumer in Argo's label form, which cannot be matched exactly against the approvers list: approve with `approver approve`")
		case pol.ForbidSelf && NormalIdentity(actor) == sub:
			skipped = append(skipped, actor+" submitted the run (forbid-self-approval)")
		default:
			counted = append(counted, NormalIdentity(actor))
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
