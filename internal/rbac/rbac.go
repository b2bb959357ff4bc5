// Package rbac is the one source of what each gantry step may do in the Kubernetes API: one
// ServiceAccount per task template with exactly the verbs its code calls (each task's tests
// record the calls its code makes against fake clients and compare them with these rules, see
// rbactest), plus the Argo executor's own workflowtaskresults. pipeline/cluster renders it into
// templates/rbac.yaml and templates/RBAC.md.
package rbac

import "fmt"

// Rule grants verbs on resources of one API group ("" is core), with why.
type Rule struct {
	Group     string
	Resources []string // "pods/log" for a subresource
	Verbs     []string
	Why       string
}

// Account is one ServiceAccount, the template that runs as it and what it may do.
type Account struct {
	Name string
	// Templates are "binary/template" of the Argo templates (and Tekton Tasks) running as it;
	// empty for the accounts of pods gantry creates (training Job, model servers).
	Templates []string
	Rules     []Rule
	// Executor: it runs Argo steps, whose executor reports outputs as workflowtaskresults.
	Executor bool
	Why      string
}

// Names of the accounts of the pods gantry creates. Neither has any API right, and neither
// mounts a token.
const (
	TrainingAccount    = "gantry-training"
	ModelServerAccount = "gantry-model-server"
)

// ExecutorRule is what Argo's executor (the wait container) needs in every step pod.
var ExecutorRule = Rule{Group: "argoproj.io", Resources: []string{"workflowtaskresults"}, Verbs: []string{"create", "patch"},
	Why: "Argo executor: report the step's outputs"}

var podLogs = Rule{Group: "", Resources: []string{"pods/log"}, Verbs: []string{"get"}, Why: "logs of the pods it started (training output; a crashing server's last lines)"}

var (
	deployRules = []Rule{
		{Group: "apps", Resources: []string{"deployments"}, Verbs: []string{"get", "list", "watch", "create", "patch"},
			Why: "server-side apply (patch; create when new) the environment's Deployment and watch its rollout"},
		{Group: "", Resources: []string{"services"}, Verbs: []string{"create", "patch"}, Why: "server-side apply (patch; create when new) the environment's Service"},
		{Group: "", Resources: []string{"pods"}, Verbs: []string{"list"}, Why: "a failed rollout's pod states, for its reason"},
		{Group: "coordination.k8s.io", Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"},
			Why: "the model's release lock (Lease gantry-release-<model>): promote and rollback hold it while they change production"},
		podLogs,
		{Group: "", Resources: []string{"configmaps"}, Verbs: []string{"get"},
			Why: "the namespace's trust policy (ConfigMap gantry-trust-policy): where it exists, production serves only models whose attestation chain it verifies"},
	}
	// probeRule: fail closed — a dry-run create of the Lease the approval policy must refuse.
	probeRule = Rule{Group: "coordination.k8s.io", Resources: []string{"leases"}, Verbs: []string{"create"},
		Why: "fail closed: a dry-run create of the Lease the approval policy refuses where it is in force (nothing is written)"}
	// promoteRules are the release gate's reads (approve.AllowRelease): which pod, and so which
	// run, this step is; that run's approvals; the Tekton run's decision.
	promoteRules = []Rule{
		{Group: "authentication.k8s.io", Resources: []string{"selfsubjectreviews"}, Verbs: []string{"create"},
			Why: "release gate: which pod this step is (the API server reads it from the pod-bound token; open to every authenticated user by default)"},
		{Group: "", Resources: []string{"pods"}, Verbs: []string{"get"}, Why: "release gate: its own pod's owner, the run it may promote for"},
		{Group: "argoproj.io", Resources: []string{"workflows"}, Verbs: []string{"get"}, Why: "release gate: the run's approval node and decisions"},
		{Group: "tekton.dev", Resources: []string{"taskruns"}, Verbs: []string{"get"}, Why: "release gate (Tekton): its TaskRun's PipelineRun, the run it may promote for"},
		{Group: "tekton.dev", Resources: []string{"pipelineruns"}, Verbs: []string{"get"}, Why: "release gate (Tekton): the run's four-eyes parameters and submitter"},
		{Group: "", Resources: []string{"configmaps"}, Verbs: []string{"list"}, Why: "release gate (Tekton): the run's decision ConfigMaps"},
	}
	teardownRules = []Rule{
		{Group: "apps", Resources: []string{"deployments"}, Verbs: []string{"delete"}, Why: "delete the environment's Deployment"},
		{Group: "", Resources: []string{"services"}, Verbs: []string{"delete"}, Why: "delete the environment's Service"},
	}
)

// Accounts are every ServiceAccount gantry's templates use, in file order.
func Accounts() []Account {
	return []Account{
		{Name: "gantry-train", Templates: []string{"train-launcher/train"}, Executor: true, Why: "train-launcher",
			Rules: []Rule{
				{Group: "batch", Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch", "create", "delete"},
					Why: "create / re-attach to / watch the training Job; delete it when the run is stopped"},
				{Group: "", Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}, Why: "the training pod's state (fail-fast reasons) and which pod's logs to follow"},
				{Group: "", Resources: []string{"secrets"}, Verbs: []string{"create", "update", "patch"},
					Why: "the Job's own scoped S3 credentials (<job>-s3): write them, and make the Job own them"},
				{Group: "argoproj.io", Resources: []string{"workflows"}, Verbs: []string{"get"},
					Why: "on a cancel, is its run stopping (delete the Job) or only this pod (keep it for the retry)? The run owns the Job"},
				{Group: "tekton.dev", Resources: []string{"pipelineruns"}, Verbs: []string{"get"},
					Why: "the same on Tekton: is the PipelineRun stopping; the PipelineRun owns the Job"},
				podLogs,
			}},
		{Name: "gantry-publish", Templates: []string{"model-publisher/publish"}, Executor: true, Why: "model-publisher publish: object storage only"},
		{Name: "gantry-record", Templates: []string{"model-publisher/record"}, Executor: true, Why: "model-publisher record: object storage only"},
		{Name: "gantry-deploy", Templates: []string{"model-publisher/deploy"}, Executor: true, Why: "model-publisher deploy",
			Rules: append(append([]Rule{}, deployRules...), promoteRules...)},
		// Rollback runs deploy's apply and, when there is no earlier model, teardown: it needs both.
		{Name: "gantry-rollback", Templates: []string{"model-publisher/rollback"}, Executor: true, Why: "model-publisher rollback (deploy's apply, teardown's delete)",
			Rules: append(append([]Rule{}, deployRules...), teardownRules...)},
		{Name: "gantry-teardown", Templates: []string{"model-publisher/teardown"}, Executor: true, Why: "model-publisher teardown", Rules: teardownRules},
		{Name: "gantry-evaluate", Templates: []string{"canary-evaluator/evaluate"}, Executor: true, Why: "canary-evaluator: HTTP and object storage only"},
		{Name: "gantry-request", Templates: []string{"approver/request"}, Executor: true, Why: "approver request: the webhook only; its candidate is a result, not a write to the run"},
		{Name: "gantry-verify", Templates: []string{"approver/verify"}, Executor: true, Why: "approver verify: reads the run, never writes it",
			Rules: []Rule{
				{Group: "argoproj.io", Resources: []string{"workflows"}, Verbs: []string{"get"}, Why: "read the approval node of its own run"},
				probeRule,
			}},
		{Name: "gantry-trigger", Templates: []string{"train-launcher/trigger"}, Executor: true, Why: "train-launcher trigger: one run per pushed training-image digest",
			Rules: []Rule{
				{Group: "argoproj.io", Resources: []string{"workflows"}, Verbs: []string{"create"}, Why: "submit the digest's run (its fixed name is the dedupe: AlreadyExists)"},
				{Group: "", Resources: []string{"configmaps"}, Verbs: []string{"get", "create"}, Why: "the trigger ledger (one per digest) and the first catch-up's marker"},
			}},
		{Name: "gantry-conclude", Templates: []string{"approver/conclude"}, Executor: true, Why: "approver conclude: no API at all"},
		{Name: "gantry-approval-wait", Templates: []string{"approver/wait"}, Executor: false, Why: "approver wait (Tekton): watch for the decision object",
			Rules: []Rule{
				{Group: "", Resources: []string{"configmaps"}, Verbs: []string{"list", "watch"}, Why: "watch for the run's decision ConfigMaps"},
				{Group: "tekton.dev", Resources: []string{"pipelineruns"}, Verbs: []string{"get"}, Why: "forbid-self-approval: who submitted the run (its submitted-by label)"},
				probeRule,
			}},
		{Name: TrainingAccount, Why: "the training Job's pod: no API rights, no token"},
		{Name: ModelServerAccount, Why: "model server pods: no API rights, no token"},
	}
}

// AccountFor returns the account the template binary/template runs as.
func AccountFor(binary, template string) Account {
	for _, a := range Accounts() {
		for _, t := range a.Templates {
			if t == binary+"/"+template {
				return a
			}
		}
	}
	panic(fmt.Sprintf("rbac: no ServiceAccount for template %s/%s", binary, template))
}

// Grants flattens rules into "group/resource verb" strings (core: "/pods get").
func Grants(rules []Rule) map[string]bool {
	out := map[string]bool{}
	for _, r := range rules {
		for _, res := range r.Resources {
			for _, v := range r.Verbs {
				out[r.Group+"/"+res+" "+v] = true
			}
		}
	}
	return out
}

// ApproveVerb is the RBAC verb on workflows that the admission policy requires of whoever
// completes an approval node or writes a decision. No API call uses it: it only names who may.
const ApproveVerb = "approve"

// OperateVerb is the RBAC verb on workflows that the admission policy requires of whoever, other
// than the Argo controller, changes a gantry run's status (beyond its approval node), its spec
// (beyond suspend and shutdown), or creates one with status: `argo retry`, `argo resubmit
// --memoized`, `argo node set`. Whoever holds it can steer what the controller executes; it is
// not needed to submit, stop, suspend or resume runs. No API call uses it.
const OperateVerb = "operate"

// OperatorRules are the Role gantry-operator: who may `argo retry` (and `argo resubmit
// --memoized`, `argo node set`) a gantry run. Holding operate steers what the controller executes
// — bind it as narrowly as approve; it is no approval (promote counts decisions, not status).
func OperatorRules() []Rule {
	return []Rule{
		{Group: "argoproj.io", Resources: []string{"workflows"}, Verbs: []string{"get", "list", "create", "update", "patch"},
			Why: "argo retry / resubmit (get, update; create for resubmit)"},
		{Group: "argoproj.io", Resources: []string{"workflows"}, Verbs: []string{OperateVerb},
			Why: "checked by the admission policy: only holders may change a run's status beyond its approval node, its spec beyond suspend/shutdown, or create one with status"},
	}
}

// ApproverRules are what a person needs to decide with `approver` or `argo resume` (the Role
// gantry-approver, which an admin binds to approvers; `argo resume` needs get+update).
func ApproverRules() []Rule {
	return []Rule{
		{Group: "argoproj.io", Resources: []string{"workflows"}, Verbs: []string{"get", "list", "update"},
			Why: "approver list (list), approve/reject (get, update: record the decision and resume the node), argo resume"},
		{Group: "argoproj.io", Resources: []string{"workflows"}, Verbs: []string{ApproveVerb},
			Why: "checked by the admission policy (templates/approval-policy.yaml): only holders may complete an approval node or write a decision"},
		{Group: "", Resources: []string{"configmaps"}, Verbs: []string{"create"}, Why: "approve/reject --tekton: the decision ConfigMap of a Tekton run"},
		{Group: "tekton.dev", Resources: []string{"pipelineruns"}, Verbs: []string{"get"},
			Why: "approve/reject --tekton: the decision names the PipelineRun's UID (a later run of the same name is not decided by it)"},
		{Group: "tekton.dev", Resources: []string{"pipelineruns"}, Verbs: []string{ApproveVerb},
			Why: "checked by the admission policy: only holders may create a Tekton run's decision ConfigMap"},
	}
}
