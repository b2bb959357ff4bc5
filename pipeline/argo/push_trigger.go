package argo

import (
	"fmt"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	apiv1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/robfig/cron/v3"

	"github.com/gantry-ml/gantry/pipeline"
	"github.com/gantry-ml/gantry/pipeline/cluster"
)

// The push trigger: a registry's push notification → Argo Server events API → the binding →
// a gantry-trigger run (train-launcher trigger) → one ml-pipeline run per pushed digest; and a
// CronWorkflow that runs the same trigger with --catch-up for notifications that never arrived.
const (
	// TrainImageRepository is the repository (as the registry names it) whose pushes start runs;
	// gen-templates --train-repository changes it (DefaultTrainRepository is it with its host).
	TrainImageRepository = "gantry/fashion-trainer"
	// DefaultTrainRepository is the training image as the nodes pull it: the local cluster's
	// registry and TrainImageRepository.
	DefaultTrainRepository = "127.0.0.1:5000/" + TrainImageRepository
	// TriggerTemplate is the WorkflowTemplate the binding and the catch-up submit.
	TriggerTemplate = "gantry-trigger"
	// NotifierAccount is the ServiceAccount whose token the registry sends with its notifications.
	NotifierAccount = "gantry-registry-notifier"
	// EventDiscriminator is the last element of the events URL: /api/v1/events/<ns>/registry.
	EventDiscriminator = "registry"
	notifierPolicy     = "gantry-registry-notifier"
)

// ManifestMediaTypes are the pushes that are images (not blobs): OCI and Docker manifests and indexes.
var ManifestMediaTypes = []string{
	"application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json",
}

// PushMatch is the expr predicate (Argo's event expressions, on one event of a distribution
// notification envelope) of a manifest push, by tag, to repository: a blob push, a pull, a push
// to another repository and a child manifest of a multi-platform push (pushed by digest, no
// tag) do not match.
func PushMatch(repository string) string {
	quoted := make([]string, len(ManifestMediaTypes))
	for i, m := range ManifestMediaTypes {
		quoted[i] = fmt.Sprintf("%q", m)
	}
	return fmt.Sprintf(`.action == "push" && .target.repository == %q && .target.mediaType in [%s] && .target.digest != "" && .target.tag != ""`,
		repository, strings.Join(quoted, ", "))
}

// PushTrigger renders the binding, the gantry-trigger WorkflowTemplate, the catch-up
// CronWorkflow and the notifier's account: RBAC to call the events API, and an admission policy
// that lets it create nothing but gantry-trigger runs.
func PushTrigger(repository string) []any {
	return PushTriggerAt("127.0.0.1:5000", repository)
}

// DefaultCatchUpSchedule is how often the catch-up lists the training repository's tags: the
// longest a digest whose notification was lost waits for its run.
const DefaultCatchUpSchedule = "*/5 * * * *"

// CheckSchedule refuses a catch-up schedule the CronWorkflow controller would not run (five
// standard cron fields or a descriptor such as @hourly, as Argo's cron parser takes them).
func CheckSchedule(schedule string) error {
	if _, err := cron.ParseStandard(schedule); err != nil {
		return fmt.Errorf("catch-up schedule %q: %v (want five cron fields, e.g. \"*/5 * * * *\", or @hourly)", schedule, err)
	}
	return nil
}

// SplitRepository splits an image repository as nodes pull it (HOST[:PORT]/PATH) into its
// registry host and the repository path the registry's notifications name.
func SplitRepository(full string) (host, path string, err error) {
	host, path, ok := strings.Cut(full, "/")
	if !ok || path == "" || !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "", "", fmt.Errorf("train repository %q: want HOST/PATH, e.g. registry.example.com/ml/trainer (the host as nodes pull from it)", full)
	}
	if strings.ContainsAny(path, "@: ") || strings.HasSuffix(path, "/") || path != strings.ToLower(path) {
		return "", "", fmt.Errorf("train repository %q: %q is not a repository path (lower case, no tag or digest)", full, path)
	}
	return host, path, nil
}

// PushTriggerAt is PushTrigger for a repository on registry host (as nodes pull from it).
func PushTriggerAt(host, repository string) []any {
	return PushTriggerFor(host, repository, DefaultCatchUpSchedule)
}

// PushTriggerFor is PushTriggerAt with the catch-up's schedule (CheckSchedule it first).
func PushTriggerFor(host, repository, schedule string) []any {
	match := PushMatch(repository)
	binding := &wfv1.WorkflowEventBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "WorkflowEventBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: "train-image-pushed"},
		Spec: wfv1.WorkflowEventBindingSpec{
			// Every event of the envelope is considered: one gantry-trigger run gets all matching digests.
			Event: wfv1.Event{Selector: fmt.Sprintf(`discriminator == %q && any(payload.events, {%s})`, EventDiscriminator, match)},
			Submit: &wfv1.Submit{
				WorkflowTemplateRef: wfv1.WorkflowTemplateRef{Name: TriggerTemplate},
				// An expression, like every metadata field of a binding's submit: a bare gantry-trigger-
				// does not parse, and the event is dropped (the old binding's bug: no push ever ran).
				ObjectMeta: metav1.ObjectMeta{GenerateName: `"` + TriggerTemplate + `-"`},
				Arguments: &wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "digests", ValueFrom: &wfv1.ValueFrom{
					Event: fmt.Sprintf(`map(filter(payload.events, {%s}), {.target.digest})`, match)}}}},
			},
		},
	}
	wp := func(n string) string { return "{{workflow.parameters." + n + "}}" }
	param := func(n, def, desc string) wfv1.Parameter {
		return wfv1.Parameter{Name: n, Value: wfv1.AnyStringPtr(def), Description: wfv1.AnyStringPtr(desc)}
	}
	trigger, _ := pipeline.FindTask("train-launcher", "trigger")
	desc := func(n string) string {
		for _, p := range trigger.Params {
			if p.Name == n {
				return p.Description
			}
		}
		panic("train-launcher trigger has no parameter " + n)
	}
	tmpl := &wfv1.WorkflowTemplate{
		TypeMeta: metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "WorkflowTemplate"},
		ObjectMeta: metav1.ObjectMeta{Name: TriggerTemplate, Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"},
			Annotations: map[string]string{"workflows.argoproj.io/description": "gantry push trigger: one ml-pipeline run per pushed training-image digest (submitted by the train-image-pushed binding and the catch-up CronWorkflow)"}},
		Spec: wfv1.WorkflowSpec{
			Entrypoint: "trigger",
			Arguments: wfv1.Arguments{Parameters: []wfv1.Parameter{
				param("digests", "", desc("digests")),
				param("catch-up", "false", desc("catch-up")),
				param("repository", host+"/"+repository, desc("repository")),
				param("catch-up-repository", "", desc("catch-up-repository")),
				param("template", "ml-pipeline", desc("template")),
				param("registry-secret", pipeline.RegistrySecret, desc("registry-secret")),
			}},
			TTLStrategy: &wfv1.TTLStrategy{SecondsAfterSuccess: ptr.To(int32(3600))},
			Templates: []wfv1.Template{{Name: "trigger", Steps: []wfv1.ParallelSteps{{Steps: []wfv1.WorkflowStep{{
				Name: "trigger", TemplateRef: &wfv1.TemplateRef{Name: "train-launcher", Template: "trigger"},
				Arguments: kvArgs("digests", wp("digests"), "catch-up", wp("catch-up"), "repository", wp("repository"),
					"catch-up-repository", wp("catch-up-repository"), "template", wp("template"), "registry-secret", wp("registry-secret")),
			}}}}}},
		},
	}
	cron := &wfv1.CronWorkflow{
		TypeMeta:   metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "CronWorkflow"},
		ObjectMeta: metav1.ObjectMeta{Name: TriggerTemplate + "-catch-up", Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"}},
		Spec: wfv1.CronWorkflowSpec{
			Schedules: []string{schedule},
			// Suspended until the trigger's repository parameters are set for the cluster (README:
			// the push trigger); a catch-up listing a registry it cannot reach would only fail.
			Suspend:                    true,
			ConcurrencyPolicy:          wfv1.ForbidConcurrent,
			StartingDeadlineSeconds:    ptr.To(int64(120)),
			SuccessfulJobsHistoryLimit: ptr.To(int32(1)),
			FailedJobsHistoryLimit:     ptr.To(int32(3)),
			WorkflowSpec: wfv1.WorkflowSpec{WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: TriggerTemplate},
				Arguments: kvArgs("catch-up", "true")},
		},
	}
	tm := func(kind, version string) metav1.TypeMeta { return metav1.TypeMeta{APIVersion: version, Kind: kind} }
	sa := &apiv1.ServiceAccount{TypeMeta: tm("ServiceAccount", "v1"), ObjectMeta: metav1.ObjectMeta{Name: NotifierAccount,
		Annotations: map[string]string{"gantry.dev/purpose": "the registry's push notifications to the Argo Server's events API: submit gantry-trigger runs, nothing else"}},
		AutomountServiceAccountToken: ptr.To(false)}
	// What Argo's events API does with the caller's own credentials: list the bindings, read the
	// template a binding names, create the run.
	role := &rbacv1.Role{TypeMeta: tm("Role", "rbac.authorization.k8s.io/v1"), ObjectMeta: metav1.ObjectMeta{Name: NotifierAccount},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"argoproj.io"}, Resources: []string{"workfloweventbindings"}, Verbs: []string{"list"}},
			{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtemplates"}, ResourceNames: []string{TriggerTemplate}, Verbs: []string{"get"}},
			{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflows"}, Verbs: []string{"create"}},
		}}
	rb := &rbacv1.RoleBinding{TypeMeta: tm("RoleBinding", "rbac.authorization.k8s.io/v1"), ObjectMeta: metav1.ObjectMeta{Name: NotifierAccount},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: NotifierAccount}, Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: NotifierAccount}}}
	// RBAC cannot say "create only gantry-trigger runs": without this a leaked registry token could
	// run any pod as any ServiceAccount of the namespace through a Workflow of its own.
	policy := cluster.NewPolicy(notifierPolicy, []admissionv1.Rule{{APIGroups: []string{"argoproj.io"}, APIVersions: []string{"*"}, Resources: []string{"workflows"}}},
		admissionv1.ValidatingAdmissionPolicySpec{
			MatchConditions: []admissionv1.MatchCondition{{Name: "the-registry-notifier",
				Expression: "request.userInfo.username.startsWith('system:serviceaccount:') && request.userInfo.username.endsWith(':" + NotifierAccount + "')"}},
			Validations: []admissionv1.Validation{{
				Expression: "request.operation == 'CREATE' && has(object.spec.workflowTemplateRef) && object.spec.workflowTemplateRef.name == '" + TriggerTemplate + "'" +
					" && !(has(object.spec.workflowTemplateRef.clusterScope) && object.spec.workflowTemplateRef.clusterScope)" +
					" && !has(object.spec.templates) && !has(object.spec.podSpecPatch) && !has(object.spec.serviceAccountName) && !has(object.spec.entrypoint)" +
					" && !has(object.spec.volumes) && !has(object.spec.onExit) && !has(object.spec.hooks)" +
					" && (!has(object.spec.arguments) || !has(object.spec.arguments.parameters) || object.spec.arguments.parameters.all(p, p.name == 'digests'))",
				Message: NotifierAccount + " may only submit " + TriggerTemplate + " runs with their digests",
			}},
		})
	return []any{binding, tmpl, cron, sa, role, rb, policy, cluster.BindingFor(notifierPolicy)}
}

// kvArgs are name/value pairs as arguments.
func kvArgs(kv ...string) wfv1.Arguments {
	var a wfv1.Arguments
	for i := 0; i < len(kv); i += 2 {
		a.Parameters = append(a.Parameters, wfv1.Parameter{Name: kv[i], Value: wfv1.AnyStringPtr(kv[i+1])})
	}
	return a
}
