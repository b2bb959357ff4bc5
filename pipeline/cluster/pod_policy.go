package cluster

import (
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/rbac"
	"github.com/gantry-ml/gantry/pipeline"
)

// Who runs code as a gantry step account. RBAC lets whoever may create pods, Jobs, Deployments
// or Workflows in a namespace run a pod as any of its ServiceAccounts — a Workflow of one's own
// naming gantry-deploy, a resource template (argoexec applying any manifest), a Job created by
// the training launcher's account, stored templates supplied with a Workflow at create. This
// policy admits a pod running as a gantry step account only when the Argo or Tekton controller
// creates it, with gantry's pinned images (the ConfigMap gantry-step-images in gantry-system,
// written at install from the resolved release: hack/pinned-images.sh) and Argo's executor only
// as Argo's own init and wait containers; an Argo main container runs a gantry binary
// (/ko-app/…) through the emissary. Images and commands never change afterwards, and no ephemeral
// container joins such a pod. What a step then does is gantry's code; promote checks its run.
const (
	stepPodsPolicyName = "gantry-step-pods"
	// StepImagesConfigMap (in StepImagesNamespace) lists the images step pods may run: data.images
	// (space-separated, gantry's task images by digest) and data.runtime (Argo's executor,
	// Tekton's init images).
	StepImagesConfigMap = "gantry-step-images"
	StepImagesNamespace = "gantry-system"
	// TektonControllerUser creates Tekton's TaskRun pods (Tekton's release manifests).
	TektonControllerUser = "system:serviceaccount:tekton-pipelines:tekton-pipelines-controller"
)

// StepPodsPolicy is the ValidatingAdmissionPolicy and binding (params: StepImagesConfigMap).
func StepPodsPolicy() []any {
	var accounts []string
	for _, a := range rbac.Accounts() {
		if len(a.Templates) > 0 {
			accounts = append(accounts, "'"+a.Name+"'")
		}
	}
	in := func(list, image string) string {
		return "(' ' + params.data." + list + " + ' ').contains(' ' + " + image + " + ' ')"
	}
	argo := "request.userInfo.username == '" + ArgoControllerUser + "'"
	tekton := "request.userInfo.username == '" + TektonControllerUser + "'"
	// emissary: Argo's main container runs "/var/run/argo/argoexec emissary … -- <program>": the
	// program must be a gantry binary.
	dash := "c.command.indexOf('--')"
	emissary := "(has(c.command) && size(c.command) >= 4 && c.command[0] == '/var/run/argo/argoexec' && c.command[1] == 'emissary' && " +
		dash + " >= 2 && size(c.command) > " + dash + " + 1 && c.command[" + dash + " + 1].startsWith('/ko-app/') && !c.command[" + dash + " + 1].contains('..'))"
	argoexec := func(sub string) string {
		return "(" + in("runtime", "c.image") + " && has(c.command) && size(c.command) >= 2 && c.command[0] == 'argoexec' && c.command[1] == '" + sub + "')"
	}
	images := func(obj string) string {
		return "(has(" + obj + ".spec.initContainers) ? " + obj + ".spec.initContainers.map(c, c.image) : []) + " + obj + ".spec.containers.map(c, c.image)"
	}
	p := NewPolicy(stepPodsPolicyName, []admissionv1.Rule{{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods", "pods/ephemeralcontainers"}}},
		admissionv1.ValidatingAdmissionPolicySpec{
			ParamKind: &admissionv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
			MatchConditions: []admissionv1.MatchCondition{{Name: "runs-as-a-gantry-step-account",
				Expression: "has(object.spec.serviceAccountName) && object.spec.serviceAccountName in [" + strings.Join(accounts, ", ") + "]"}},
			Validations: []admissionv1.Validation{
				{Expression: "!has(request.subResource) || request.subResource != 'ephemeralcontainers'",
					Message: "no ephemeral container may join a pod running as a gantry step account (kubectl debug would run code as it)",
					Reason:  ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "request.operation != 'CREATE' || " + argo + " || " + tekton,
					MessageExpression: "'only the Argo or Tekton controller creates pods running as gantry step account ' + object.spec.serviceAccountName + '; ' + request.userInfo.username + ' may not'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "request.operation != 'UPDATE' || " + images("object") + " == " + images("oldObject"),
					Message: "the images of a pod running as a gantry step account never change",
					Reason:  ptr.To(metav1.StatusReasonForbidden)},
				{Expression: "request.operation != 'CREATE' || (object.spec.containers.all(c, (" + argo + " && c.name == 'wait' && " + argoexec("wait") + ") || " +
					"(" + in("images", "c.image") + " && (!(" + argo + ") || " + emissary + "))) && " +
					"(!has(object.spec.initContainers) || object.spec.initContainers.all(c, " + in("runtime", "c.image") + " && (!(" + argo + ") || " + argoexec("init") + "))))",
					MessageExpression: "'a pod running as gantry step account ' + object.spec.serviceAccountName + ' runs only gantry\\'s pinned images (ConfigMap " + StepImagesNamespace + "/" + StepImagesConfigMap + "), Argo\\'s executor only as its init and wait containers, and on Argo a gantry binary (/ko-app/…) through the emissary'",
					Reason:            ptr.To(metav1.StatusReasonForbidden)},
			},
		})
	b := BindingFor(stepPodsPolicyName)
	b.Spec.ParamRef = &admissionv1.ParamRef{Name: StepImagesConfigMap, Namespace: StepImagesNamespace, ParameterNotFoundAction: ptr.To(admissionv1.DenyAction)}
	return []any{p, b}
}

// signingKeysPolicyName admits a role's signing key (the Secret attest.SigningSecret(role)) only
// into pods running as the account of a step that signs as that role (pipeline.SigningAccounts).
// With gantry-step-pods (only the engines' controllers create pods as a step account, with
// gantry's pinned images and binaries), the key signs only what gantry's own step established:
// nobody who may create pods, Jobs or Workflows in the namespace can mount it into code of theirs
// and sign a training, an evaluation or an approval that never happened.
const signingKeysPolicyName = "gantry-signing-keys"

// SigningKeysPolicy is the ValidatingAdmissionPolicy and binding.
func SigningKeysPolicy() []any {
	// refers is a CEL expression: does the pod name Secret s anywhere it could reach a container —
	// a volume (secret or projected), an env var, envFrom — of its containers, init or ephemeral.
	containers := func(list, s string) string {
		return "(has(" + list + ") && " + list + ".exists(c, (has(c.env) && c.env.exists(e, has(e.valueFrom) && has(e.valueFrom.secretKeyRef) && e.valueFrom.secretKeyRef.name == '" + s + "')) || " +
			"(has(c.envFrom) && c.envFrom.exists(f, has(f.secretRef) && f.secretRef.name == '" + s + "'))))"
	}
	refers := func(s string) string {
		return "((has(object.spec.volumes) && object.spec.volumes.exists(v, (has(v.secret) && v.secret.secretName == '" + s + "') || " +
			"(has(v.projected) && has(v.projected.sources) && v.projected.sources.exists(p, has(p.secret) && p.secret.name == '" + s + "')))) || " +
			containers("object.spec.containers", s) + " || " + containers("object.spec.initContainers", s) + " || " + containers("object.spec.ephemeralContainers", s) + ")"
	}
	accounts := pipeline.SigningAccounts()
	var validations []admissionv1.Validation
	for _, role := range attest.Roles {
		s := attest.SigningSecret(role)
		var quoted []string
		for _, a := range accounts[role] {
			quoted = append(quoted, "'"+a+"'")
		}
		validations = append(validations, admissionv1.Validation{
			Expression: "!" + refers(s) + " || (has(object.spec.serviceAccountName) && object.spec.serviceAccountName in [" + strings.Join(quoted, ", ") + "])",
			Message:    "the " + string(role) + " signing key (Secret " + s + ") is mounted only into pods running as " + strings.Join(accounts[role], " or ") + " (gantry's step that signs as " + string(role) + ")",
			Reason:     ptr.To(metav1.StatusReasonForbidden)})
	}
	p := NewPolicy(signingKeysPolicyName, []admissionv1.Rule{{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods", "pods/ephemeralcontainers"}}},
		admissionv1.ValidatingAdmissionPolicySpec{Validations: validations})
	return []any{p, BindingFor(signingKeysPolicyName)}
}
