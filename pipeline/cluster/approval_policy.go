// Package cluster renders what gantry installs into a cluster besides the engines' templates:
// one ServiceAccount and Role per task template (RBAC), the admission policies that keep
// approvals and step pods honest, and the step semaphores.
package cluster

import (
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-ml/gantry/internal/rbac"
)

// Identities of Argo's own components, as the API server authenticates them (Argo's install
// manifests: namespace argo). Edit the policy's variables if Argo runs elsewhere.
const (
	ArgoControllerUser = "system:serviceaccount:argo:argo"
	ArgoServerUser     = "system:serviceaccount:argo:argo-server"
	// PolicyNamespaceLabel opts a namespace into the approval policy (gantry.sh sets it).
	PolicyNamespaceLabel = "gantry.dev/approval-policy"
	approvalPolicyName   = "gantry-approval"
	tektonPolicyName     = "gantry-tekton-approval"
	// TektonDecisionPrefix names a Tekton run's decision ConfigMap (approve.DecisionConfigMap).
	TektonDecisionPrefix = "gantry-approval-"
)

// ApprovalPolicy is the ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA since
// Kubernetes 1.30; CEL in the API server, no webhook to run) that makes the API server, not a
// field anyone can write, establish who approved: only holders of the RBAC verb `approve` on
// workflows may complete or change an approval node or write a decision, a decision is only ever
// in the requester's own name and for this Workflow's UID, and Argo's creator and actor labels
// name the authenticated requester (or come from the Argo Server). The Argo controller is exempt (it resumes an expired
// suspend, which verify rejects). Bound to namespaces labelled gantry.dev/approval-policy=enforce.
func ApprovalPolicy() []any {
	v := func(name, expr string) admissionv1.Variable {
		return admissionv1.Variable{Name: name, Expression: expr}
	}
	approvalNode := func(nodes string) string {
		return nodes + "[k].type == 'Suspend' && has(" + nodes + "[k].displayName) && " + nodes + "[k].displayName == 'approval'"
	}
	elsewhere := func(obj string) string {
		field := func(f string) string { return "has(" + obj + ".status." + f + ") ? " + obj + ".status." + f + " : ''" }
		return "has(" + obj + ".status) ? [" + field("compressedNodes") + ", " + field("offloadNodeStatusVersion") + "] : ['', '']"
	}
	gantryKey := "(k.startsWith('decision.gantry.dev/') || k.startsWith('reason.gantry.dev/'))"
	// The requester's name in label form (approve.NormalIdentity): variables.me.
	me := []admissionv1.Variable{
		v("dashed", "request.userInfo.username.replace('@', '-').replace(':', '-').replace('/', '-')"),
		v("tail", "size(variables.dashed) > 63 ? variables.dashed.substring(size(variables.dashed) - 63) : variables.dashed"),
		v("me", "variables.tail.startsWith('-') || variables.tail.startsWith('_') || variables.tail.startsWith('.') ? variables.tail.substring(1) : variables.tail"),
	}
	u := "request.userInfo.username"
	// A decision value "<decision> <binding> <digest> <user>" belongs to user (the rest of the
	// value after three fields: a username may hold spaces); mine: the requester's own, for this run.
	owned := func(val string) string {
		return "(" + val + ".endsWith(' ' + " + u + ") && " + val + ".substring(0, size(" + val + ") - size(" + u + ") - 1).matches('^[^ ]+ [^ ]+ [^ ]+$'))"
	}
	mine := func(val string) string {
		return "(" + owned(val) + " && " + val + ".substring(0, size(" + val + ") - size(" + u + ") - 1).matches('^(approved|rejected) ' + object.metadata.uid + '/[^ ]+ [^ ]+$'))"
	}
	// sameExcept: two maps are equal but for the keys in skip.
	sameExcept := func(a, b, skip string) string {
		return "(" + a + ".all(f, f in " + skip + " || (f in " + b + " && " + b + "[f] == " + a + "[f])) && " + b + ".all(f, f in " + skip + " || f in " + a + "))"
	}
	isApproval := func(nodes, k string) string {
		return "(" + nodes + "[" + k + "].type == 'Suspend' && has(" + nodes + "[" + k + "].displayName) && " + nodes + "[" + k + "].displayName == 'approval')"
	}
	policy := NewPolicy(approvalPolicyName, []admissionv1.Rule{{APIGroups: []string{"argoproj.io"}, APIVersions: []string{"*"}, Resources: []string{"workflows"}}, probeRule},
		admissionv1.ValidatingAdmissionPolicySpec{
			MatchConditions: []admissionv1.MatchCondition{{Name: "not-the-argo-controller", Expression: "request.userInfo.username != '" + ArgoControllerUser + "'"},
				{Name: "workflows-or-the-probe", Expression: "request.resource.resource == 'workflows' || object.metadata.name.startsWith('" + probePrefix(approvalPolicyName) + "')"}},
			Variables: []admissionv1.Variable{
				v("argoServer", "request.userInfo.username == '"+ArgoServerUser+"'"),
				me[0], me[1], me[2],
				v("approver", "authorizer.group('argoproj.io').resource('workflows').namespace(request.namespace).name(request.name).check('"+rbac.ApproveVerb+"').allowed()"),
				v("operator", "authorizer.group('argoproj.io').resource('workflows').namespace(request.namespace).name(request.name).check('"+rbac.OperateVerb+"').allowed()"),
				v("update", "request.operation == 'UPDATE'"),
				v("newAnn", "has(object.metadata.annotations) ? object.metadata.annotations : {}"),
				v("oldAnn", "variables.update && has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}"),
				v("newLabels", "has(object.metadata.labels) ? object.metadata.labels : {}"),
				v("oldLabels", "variables.update && has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}"),
				v("newNodes", "has(object.status) && has(object.status.nodes) ? object.status.nodes : {}"),
				v("oldNodes", "variables.update && has(oldObject.status) && has(oldObject.status.nodes) ? oldObject.status.nodes : {}"),
				// Approval nodes this request adds, changes or removes.
				v("touched", "variables.newNodes.filter(k, "+approvalNode("variables.newNodes")+" && (!(k in variables.oldNodes) || variables.oldNodes[k] != variables.newNodes[k])) + "+
					"variables.oldNodes.filter(k, "+approvalNode("variables.oldNodes")+" && !(k in variables.newNodes))"),
				// Node status kept elsewhere than status.nodes (Argo compresses it past
				// MAX_WORKFLOW_SIZE, or offloads it to its database): CEL cannot look inside, so
				// changing it at all is an approver's act (or the controller's).
				v("elsewhere", elsewhere("object")),
				v("oldElsewhere", "variables.update && "+elsewhere("oldObject")),
				// Decision and reason annotations this update adds, changes or removes.
				// On create, decisions are inert: one copied by argo resubmit names the old run's UID.
				v("changedKeys", "!variables.update ? [] : variables.newAnn.filter(k, "+gantryKey+" && (!(k in variables.oldAnn) || variables.oldAnn[k] != variables.newAnn[k])) + "+
					"variables.oldAnn.filter(k, "+gantryKey+" && !(k in variables.newAnn))"),
				v("newStatus", "has(object.status) ? object.status : {}"),
				v("oldStatus", "variables.update && has(oldObject.status) ? oldObject.status : {}"),
				v("newSpec", "has(object.spec) ? object.spec : {}"),
				v("oldSpec", "variables.update && has(oldObject.spec) ? oldObject.spec : {}"),
				// Status but the nodes, and compressedNodes (the rule above guards it), unchanged; every
				// node but approval nodes unchanged, and no approval node added or removed.
				v("otherStatusKept", sameExcept("variables.newStatus", "variables.oldStatus", "['nodes', 'compressedNodes']")+" && "+
					"variables.newNodes.all(k, "+isApproval("variables.newNodes", "k")+" ? (k in variables.oldNodes && "+isApproval("variables.oldNodes", "k")+") : "+
					"(k in variables.oldNodes && variables.oldNodes[k] == variables.newNodes[k])) && variables.oldNodes.all(k, k in variables.newNodes)"),
				// An approval node's type, name, inputs (min-approvals, forbid-self-approval,
				// approvers, timeout) and start are the controller's: a resume changes only its phase,
				// message, finish and outputs.
				v("approvalShapeKept", "variables.touched.all(k, !(k in variables.oldNodes) || !(k in variables.newNodes) || "+
					sameExcept("variables.newNodes[k]", "variables.oldNodes[k]", "['phase', 'message', 'finishedAt', 'outputs']")+")"),
			},
			Validations: []admissionv1.Validation{
				probeValidation(approvalPolicyName),
				{Expression: "size(variables.touched) == 0 || variables.approver",
					MessageExpression: "'only approvers (RBAC verb " + rbac.ApproveVerb + " on workflows, Role " + ApproverRole + ") may resume or change the approval node of a gantry run; ' + request.userInfo.username + ' may not'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "variables.elsewhere == variables.oldElsewhere || variables.approver",
					MessageExpression: "'only approvers may change the compressed or offloaded node status of a gantry run (it holds the approval node); ' + request.userInfo.username + ' may not'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "size(variables.changedKeys) == 0 || variables.approver",
					MessageExpression: "'only approvers (RBAC verb " + rbac.ApproveVerb + " on workflows) may write gantry decisions; ' + request.userInfo.username + ' may not'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "variables.changedKeys.all(k, k.startsWith('reason.gantry.dev/') || ((!(k in variables.newAnn) || " + owned("variables.newAnn[k]") + ") && (!(k in variables.oldAnn) || " + owned("variables.oldAnn[k]") + ")))",
					MessageExpression: "'a decision may only be recorded, changed or removed in your own name (its value ends in your username, ' + request.userInfo.username + ')'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "variables.changedKeys.all(k, k.startsWith('reason.gantry.dev/') || !(k in variables.newAnn) || " + mine("variables.newAnn[k]") + ")",
					Message: "a decision must be \"<approved|rejected> <this run's UID>/<node ID> <model digest> <your username>\"",
					Reason:  ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "variables.changedKeys.all(k, !k.startsWith('reason.gantry.dev/') || ('decision.gantry.dev/' + k.substring(18) in variables.newAnn ? " + owned("variables.newAnn['decision.gantry.dev/' + k.substring(18)]") +
					" : ('decision.gantry.dev/' + k.substring(18) in variables.oldAnn && " + owned("variables.oldAnn['decision.gantry.dev/' + k.substring(18)]") + ")))",
					Message: "a reason belongs to the decision under the same key: only its decider may write it",
					Reason:  ptr.To(metav1.StatusReasonForbidden)},
				// Argo writes its creator/actor labels from the client's credentials (kube mode: the
				// certificate's CN or the token's subject) or, in the Argo Server, from the SSO claims.
				// Bound here to whoever the API server authenticated: a label may name only the
				// requester, unless the Argo Server writes it. argo resubmit copies actor labels into a
				// new run; verify trusts an actor only together with the node's "Resumed by:".
				{Expression: "variables.argoServer || ['workflows.argoproj.io/creator', 'workflows.argoproj.io/actor'].all(l, !(l in variables.newLabels) || " +
					"(l in variables.oldLabels && variables.oldLabels[l] == variables.newLabels[l]) || variables.newLabels[l] == variables.me || " +
					"(!variables.update && l == 'workflows.argoproj.io/actor'))",
					MessageExpression: "'the creator and actor labels may only name you (' + variables.me + '), unless the Argo Server writes them'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				// Claiming to have resumed (actor + action Resume) is an approver's act.
				{Expression: "!variables.update || !('workflows.argoproj.io/actor' in variables.newLabels) || " +
					"('workflows.argoproj.io/actor' in variables.oldLabels && variables.oldLabels['workflows.argoproj.io/actor'] == variables.newLabels['workflows.argoproj.io/actor']) || " +
					"!('workflows.argoproj.io/action' in variables.newLabels) || variables.newLabels['workflows.argoproj.io/action'] != 'Resume' || variables.approver",
					MessageExpression: "'only approvers may be recorded as having resumed a gantry run; ' + request.userInfo.username + ' may not'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "!('" + submitterLabel + "' in variables.newLabels) || (variables.update ? ('" + submitterLabel + "' in variables.oldLabels && variables.oldLabels['" + submitterLabel + "'] == variables.newLabels['" + submitterLabel + "']) : variables.newLabels['" + submitterLabel + "'] == variables.me)",
					MessageExpression: "'" + submitterLabel + " must be your own name (' + variables.me + ') when the run is created, and never changes'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				// Only the controller writes what the controller executes. At create, argo submit --from
				// sends the referenced templates it validated (status.storedTemplates), which the
				// controller then executes: gantry-step-pods admits their pods as a gantry step account
				// only with gantry's pinned images and binaries, and promote checks the run itself.
				{Expression: "!variables.update || variables.approvalShapeKept",
					Message: "an approval node's type, name, inputs and start are the Argo controller's: a decision changes only its phase, message, finish and outputs",
					Reason:  ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "variables.operator || (variables.update ? variables.otherStatusKept : variables.newStatus.all(f, f == 'storedTemplates' || variables.newStatus[f] == null))",
					MessageExpression: "'only the Argo controller (or an operator: RBAC verb " + rbac.OperateVerb + " on workflows, for argo retry) may write the status of a gantry run other than its approval node; ' + request.userInfo.username + ' may not'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "!variables.update || variables.operator || " + sameExcept("variables.newSpec", "variables.oldSpec", "['suspend', 'shutdown']"),
					MessageExpression: "'only an operator (RBAC verb " + rbac.OperateVerb + " on workflows) may change a gantry run\\'s spec once it is submitted (argo suspend, resume, stop and terminate change only spec.suspend and spec.shutdown); ' + request.userInfo.username + ' may not'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
			},
		})
	// Tekton has no suspend: a decision is a ConfigMap gantry-approval-<PipelineRun> that
	// `approver approve|reject --tekton` creates and `approver wait` watches for. Only an
	// approver of that PipelineRun may create it, only in their own name, and nobody may change it.
	// Tekton has no suspend: a decision is a ConfigMap gantry-approval-<PipelineRun>-<hash of the
	// person> labelled gantry.dev/run=<PipelineRun> that `approver approve|reject --tekton` creates
	// and `approver wait` (and promote) count. Only an approver of that PipelineRun may create one,
	// only in their own name, and nobody may change it. A PipelineRun's submitted-by label (for
	// forbid-self-approval) is its creator's own name, and never changes.
	cm := "request.resource.resource != 'configmaps' || "
	tektonPolicy := NewPolicy(tektonPolicyName, []admissionv1.Rule{{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}, probeRule,
		{APIGroups: []string{"tekton.dev"}, APIVersions: []string{"*"}, Resources: []string{"pipelineruns"}}},
		admissionv1.ValidatingAdmissionPolicySpec{
			MatchConditions: []admissionv1.MatchCondition{{Name: "gantry-decision", Expression: "(request.resource.resource == 'configmaps' && object.metadata.name.startsWith('" + TektonDecisionPrefix + "')) || " +
				"(request.resource.resource == 'leases' && object.metadata.name.startsWith('" + probePrefix(tektonPolicyName) + "')) || " +
				"(request.resource.resource == 'pipelineruns' && ((has(object.metadata.labels) && '" + submitterLabel + "' in object.metadata.labels) || " +
				"(request.operation == 'UPDATE' && has(oldObject.metadata.labels) && '" + submitterLabel + "' in oldObject.metadata.labels)))"}},
			Variables: []admissionv1.Variable{
				v("run", "has(object.metadata.labels) && '"+tektonRunLabel+"' in object.metadata.labels ? object.metadata.labels['"+tektonRunLabel+"'] : object.metadata.name.substring("+strconv.Itoa(len(TektonDecisionPrefix))+")"),
				v("approver", "authorizer.group('tekton.dev').resource('pipelineruns').namespace(request.namespace).name(variables.run).check('"+rbac.ApproveVerb+"').allowed()"),
				me[0], me[1], me[2],
			},
			Validations: []admissionv1.Validation{
				probeValidation(tektonPolicyName),
				{Expression: cm + "request.operation == 'CREATE'", Message: "a gantry decision is immutable: it cannot be changed once made",
					Reason: ptr.To(metav1.StatusReasonForbidden)},
				{Expression: cm + "variables.approver",
					MessageExpression: "'only approvers (RBAC verb " + rbac.ApproveVerb + " on tekton.dev pipelineruns, Role " + ApproverRole + ") may decide on ' + variables.run + '; ' + request.userInfo.username + ' may not'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: cm + "(has(object.data) && 'decidedBy' in object.data && object.data.decidedBy == request.userInfo.username)",
					MessageExpression: "'a decision must name who made it: decidedBy ' + request.userInfo.username",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: cm + "object.metadata.name.startsWith('" + TektonDecisionPrefix + "' + variables.run)",
					MessageExpression: "'a decision on ' + variables.run + ' is named " + TektonDecisionPrefix + "' + variables.run + '-…'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "request.resource.resource != 'pipelineruns' || (request.operation == 'UPDATE' ? (has(object.metadata.labels) && '" + submitterLabel + "' in object.metadata.labels && " +
					"has(oldObject.metadata.labels) && '" + submitterLabel + "' in oldObject.metadata.labels && object.metadata.labels['" + submitterLabel + "'] == oldObject.metadata.labels['" + submitterLabel + "']) : " +
					"object.metadata.labels['" + submitterLabel + "'] == variables.me)",
					MessageExpression: "'" + submitterLabel + " must be your own name (' + variables.me + ') when the PipelineRun is created, and never changes'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
			},
		})
	return []any{policy, BindingFor(approvalPolicyName), tektonPolicy, BindingFor(tektonPolicyName)}
}

// NewPolicy is a ValidatingAdmissionPolicy on CREATE and UPDATE of rules' resources that refuses
// when it cannot be evaluated, with spec's conditions, variables and validations.
func NewPolicy(name string, rules []admissionv1.Rule, spec admissionv1.ValidatingAdmissionPolicySpec) *admissionv1.ValidatingAdmissionPolicy {
	spec.FailurePolicy = ptr.To(admissionv1.Fail)
	spec.MatchConstraints = &admissionv1.MatchResources{}
	for _, rule := range rules {
		spec.MatchConstraints.ResourceRules = append(spec.MatchConstraints.ResourceRules, admissionv1.NamedRuleWithOperations{RuleWithOperations: admissionv1.RuleWithOperations{
			Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update}, Rule: rule}})
	}
	return &admissionv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"}},
		Spec:       spec,
	}
}

// Fail closed: promote creates (dry run) a Lease named probePrefix(policy)-…, which the policy
// refuses first of all, with a message naming itself. Admitted means the policy does not select
// the namespace (or is gone), and promote refuses to deploy (approve.AllowRelease).
var probeRule = admissionv1.Rule{APIGroups: []string{"coordination.k8s.io"}, APIVersions: []string{"v1"}, Resources: []string{"leases"}}

// probePrefix is approve.PolicyProbe (the generator does not import the task packages' internals).
func probePrefix(policy string) string {
	return "gantry-policy-probe-" + strings.TrimPrefix(policy, "gantry-")
}

func probeValidation(policy string) admissionv1.Validation {
	return admissionv1.Validation{Expression: "request.resource.resource != 'leases'",
		Message: "gantry's approval policy " + policy + " is in force in this namespace (this Lease is promote's probe of it)",
		Reason:  ptr.To(metav1.StatusReasonForbidden)}
}

// BindingFor denies what the policy refuses in namespaces labelled gantry.dev/approval-policy=enforce.
func BindingFor(policy string) *admissionv1.ValidatingAdmissionPolicyBinding {
	return &admissionv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: policy, Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"}},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{PolicyNamespaceLabel: "enforce"}}},
		},
	}
}

// tektonRunLabel is approve.RunLabel: the run a Tekton decision ConfigMap decides.
const tektonRunLabel = "gantry.dev/run"

// submitterLabel is approve.SubmitterLabel (the generator does not import the task packages' internals).
const submitterLabel = "gantry.dev/submitted-by"
