//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/argoproj/argo-workflows/v3/util/file"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/rbac"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// People in these tests are ServiceAccounts of the test's namespace, with tokens of their own:
// the argo CLI (kube mode) labels what it does with the identity of its credentials, so each
// person needs real credentials, not the admin's impersonating them.
const (
	alice   = "alice"   // bound to gantry-approver
	bob     = "bob"     // bound to gantry-approver
	mallory = "mallory" // may submit, get, update and patch workflows (argo resume), is no approver
)

// user is the username the API server authenticates the person as.
func (f *fixture) user(person string) string { return "system:serviceaccount:" + f.ns + ":" + person }

// normal is the person's name as decisions and Argo's labels record it.
func (f *fixture) normal(person string) string { return approve.NormalIdentity(f.user(person)) }

// people creates alice, bob and mallory, binds alice and bob to gantry-approver and all three to
// a Role that may submit, resume and edit workflows (what teams give their ML engineers).
func (f *fixture) people() {
	f.t.Helper()
	var all []rbacv1.Subject
	for _, p := range []string{alice, bob, mallory} {
		if _, err := kube.CoreV1().ServiceAccounts(f.ns).Create(f.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: p}}, metav1.CreateOptions{}); err != nil {
			f.t.Fatal(err)
		}
		all = append(all, rbacv1.Subject{Kind: "ServiceAccount", Name: p, Namespace: f.ns})
	}
	rb := kube.RbacV1().RoleBindings(f.ns)
	if _, err := rb.Create(f.ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "approvers"},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "gantry-approver"}, Subjects: all[:2]}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if _, err := kube.RbacV1().Roles(f.ns).Create(f.ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "workflow-operator"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflows", "workflowtemplates"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			// ConfigMaps too, so that what stops mallory's Tekton "decision" is the policy, not RBAC.
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "update"}}}}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if _, err := rb.Create(f.ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "operators"},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "workflow-operator"}, Subjects: all}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	// The API server's RBAC authorizer learns of new bindings through its informers: on a loaded
	// node that took long enough for mallory's first request to be refused by RBAC instead of by
	// the approval policy (seen in CI). Wait until the authorizer answers as the bindings say.
	for _, c := range []struct {
		person, group, resource, verb string
	}{{alice, "argoproj.io", "workflows", rbac.ApproveVerb}, {bob, "tekton.dev", "pipelineruns", rbac.ApproveVerb},
		{mallory, "argoproj.io", "workflows", "update"}, {mallory, "", "configmaps", "create"}} {
		err := wait.PollUntilContextTimeout(f.ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			r, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
				User: f.user(c.person), ResourceAttributes: &authzv1.ResourceAttributes{Namespace: f.ns, Group: c.group, Resource: c.resource, Verb: c.verb}}}, metav1.CreateOptions{})
			return err == nil && r.Status.Allowed, nil
		})
		if err != nil {
			f.t.Fatalf("RBAC never allowed %s to %s %s: %v", c.person, c.verb, c.resource, err)
		}
	}
}

// approveAsAdmin records the cluster admin's decision with approver approve. A kube-mode argo
// resume with client-certificate credentials names nobody (Argo reads a name only from a bearer
// token), and a resume that names nobody is no approval.
func (f *fixture) approveAsAdmin(run string) {
	f.t.Helper()
	if _, err := approve.NewApprover(argoWF, kube).Decide(f.ctx, approve.DecideOptions{Namespace: f.ns, Run: run, Decision: "approve", Reason: "e2e"}); err != nil {
		f.t.Fatalf("the admin's approval of %s: %v", run, err)
	}
}

// argoAs runs the argo CLI with the person's own token (a kubeconfig of their own).
func (f *fixture) argoAs(person string, args ...string) (string, error) {
	f.t.Helper()
	return f.try(nil, "argo", append([]string{"--kubeconfig", f.kubeconfigOf(person), "--loglevel", "warn", "-n", f.ns}, args...)...)
}

// kubeconfigOf writes a kubeconfig with the person's own token.
func (f *fixture) kubeconfigOf(person string) string {
	f.t.Helper()
	token := f.tokenOf(person)
	raw, err := clientcmd.LoadFromFile(os.Getenv("KUBECONFIG"))
	if err != nil {
		f.t.Fatal(err)
	}
	cur := raw.Contexts[raw.CurrentContext]
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = raw.Clusters[cur.Cluster]
	cfg.AuthInfos[person] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: person, Namespace: f.ns}
	cfg.CurrentContext = "c"
	file := filepath.Join(f.t.TempDir(), person+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		f.t.Fatal(err)
	}
	return file
}

// as returns an approver acting as the person (the e2e's admin impersonating them).
func (f *fixture) as(person string) (*approve.Approver, wfclient.Interface) {
	f.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		f.t.Fatal(err)
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: f.user(person)}
	if strings.HasPrefix(person, "system:") {
		cfg.Impersonate.UserName = person
	}
	wf := wfclient.NewForConfigOrDie(cfg)
	return approve.NewApprover(wf, kubernetes.NewForConfigOrDie(cfg)), wf
}

// waitingRun creates a Workflow suspended on its approval node. It carries another controller's
// instance id, so the Argo controller leaves it alone: only the API server's admission decides.
func (f *fixture) waitingRun(name string, labels map[string]string) *wfv1.Workflow {
	f.t.Helper()
	if labels == nil {
		labels = map[string]string{}
	}
	labels["workflows.argoproj.io/controller-instanceid"] = "not-this-cluster"
	now := metav1.Now()
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{Name: "main", Suspend: &wfv1.SuspendTemplate{}}}},
		Status: wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning, Nodes: wfv1.Nodes{name + "-1": {ID: name + "-1", Name: name + ".approval", DisplayName: "approval",
			Type: wfv1.NodeTypeSuspend, Phase: wfv1.NodeRunning, StartedAt: metav1.Time{Time: now.Add(time.Second)},
			Inputs:  &wfv1.Inputs{Parameters: []wfv1.Parameter{{Name: "min-approvals", Value: wfv1.AnyStringPtr("1")}}},
			Outputs: &wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: "decision", ValueFrom: &wfv1.ValueFrom{Supplied: &wfv1.SuppliedValueFrom{}, Default: wfv1.AnyStringPtr("approved")}}}}}}},
	}
	got, err := argoWF.ArgoprojV1alpha1().Workflows(f.ns).Create(f.ctx, wf, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

func forbidden(t *testing.T, what string, err error, says string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: the API server allowed it", what)
		return
	}
	if !strings.Contains(err.Error(), says) {
		t.Errorf("%s: %v, want an error saying %q", what, err, says)
	}
}

func patchAs(ctx context.Context, wf wfclient.Interface, ns, name string, patch map[string]any) error {
	b, _ := json.Marshal(patch)
	_, err := wf.ArgoprojV1alpha1().Workflows(ns).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{})
	return err
}

// The API server, not a field anyone can write, establishes who approved: a user who may resume
// runs but is no approver can neither resume the approval node (argo resume, approver approve)
// nor write a decision, the Argo Server's labels or another's name; an approver decides only in
// their own name, for this run; no pipeline ServiceAccount may write Workflows or ConfigMaps.
func TestOnlyApproversCanApprove(t *testing.T) {
	t.Parallel()
	f := given(t)
	f.people()
	w := f.waitingRun("policy-run", nil)
	node := w.Name + "-1"
	ctx := f.ctx

	// mallory: argo resume (kube mode, her credentials) and approver approve are refused.
	_, err := f.argoAs(mallory, "--instanceid", "not-this-cluster", "resume", w.Name)
	forbidden(t, "mallory: argo resume", err, "only approvers")
	ma, mwf := f.as(mallory)
	_, err = ma.Decide(ctx, approve.DecideOptions{Namespace: f.ns, Run: w.Name, Decision: "approve"})
	forbidden(t, "mallory: approver approve", err, "only approvers")
	if exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("mallory: approver approve exit %d, want 2 (refused, not retried)", exitcode.Of(err))
	}
	// ... nor can she write alice's decision, or the Argo Server's actor label, by hand.
	forbidden(t, "mallory: a decision in alice's name", patchAs(ctx, mwf, f.ns, w.Name, map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		approve.DecisionKey(f.user(alice)): fmt.Sprintf("approved %s/%s - %s", w.UID, node, f.user(alice))}}}), "only approvers")
	forbidden(t, "mallory: the Argo Server's actor label", patchAs(ctx, mwf, f.ns, w.Name, map[string]any{"metadata": map[string]any{"labels": map[string]string{
		approve.ArgoActorLabel: f.normal(alice), approve.ArgoActionLabel: "Resume"}}}), "may only name you")
	forbidden(t, "mallory: recorded as having resumed", patchAs(ctx, mwf, f.ns, w.Name, map[string]any{"metadata": map[string]any{"labels": map[string]string{
		approve.ArgoActorLabel: f.normal(mallory), approve.ArgoActionLabel: "Resume"}}}), "only approvers")

	// alice: only in her own name, only for this run.
	_, awf := f.as(alice)
	forbidden(t, "alice: a decision in bob's name", patchAs(ctx, awf, f.ns, w.Name, map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		approve.DecisionKey(f.user(bob)): fmt.Sprintf("approved %s/%s - %s", w.UID, node, f.user(bob))}}}), "your own name")
	forbidden(t, "alice: her decision bound to another run", patchAs(ctx, awf, f.ns, w.Name, map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		approve.DecisionKey(f.user(alice)): fmt.Sprintf("approved some-other-uid/%s - %s", node, f.user(alice))}}}), "this run's UID")
	// The submitter label is the creator's own name, or nothing.
	forbidden(t, "alice: a run submitted 'by bob'", func() error {
		_, err := awf.ArgoprojV1alpha1().Workflows(f.ns).Create(ctx, &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "forged-submitter",
			Labels: map[string]string{approve.SubmitterLabel: f.normal(bob), "workflows.argoproj.io/controller-instanceid": "not-this-cluster"}},
			Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{Name: "main", Suspend: &wfv1.SuspendTemplate{}}}}}, metav1.CreateOptions{})
		return err
	}(), "your own name")

	// Tekton's decision object: only an approver creates it, only in their own name, never changed.
	tekton := func(person, decidedBy string) error {
		cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Impersonate = rest.ImpersonationConfig{UserName: f.user(person)}
		_, err = kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps(f.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: approve.DecisionConfigMap("pr-1")},
			Data: map[string]string{"decision": "approved", "decidedBy": decidedBy}}, metav1.CreateOptions{})
		return err
	}
	forbidden(t, "mallory: a Tekton decision", tekton(mallory, f.user(mallory)), "only approvers")
	triggerSA := rbac.AccountFor("train-launcher", "trigger").Name // may create ConfigMaps (its ledger)
	forbidden(t, "the push trigger's account: a Tekton decision", tekton(triggerSA, f.user(triggerSA)), "only approvers")
	forbidden(t, "alice: a Tekton decision in bob's name", tekton(alice, f.user(bob)), "must name who made it")
	if _, err := aliceApprover(f).Record(ctx, approve.DecideOptions{Namespace: f.ns, Run: "pr-1", Decision: "approve"}); err != nil {
		t.Errorf("alice's Tekton decision: %v", err)
	}
	cm, _ := kube.CoreV1().ConfigMaps(f.ns).Get(ctx, approve.DecisionConfigMapOf("pr-1", f.user(alice)), metav1.GetOptions{})
	cm.Data["decision"] = "rejected"
	_, err = kube.CoreV1().ConfigMaps(f.ns).Update(ctx, cm, metav1.UpdateOptions{})
	forbidden(t, "changing a Tekton decision (even as cluster admin)", err, "immutable")

	// Every pipeline ServiceAccount: no writing Workflows, no creating the approval object — asked
	// of the API server (SubjectAccessReview) and tried with the account's identity. The push
	// trigger creates its ledger ConfigMaps: for it the policy must refuse the decision object.
	trigger := rbac.AccountFor("train-launcher", "trigger").Name
	for _, a := range rbac.Accounts() {
		sa := "system:serviceaccount:" + f.ns + ":" + a.Name
		for _, attr := range []authzv1.ResourceAttributes{
			{Namespace: f.ns, Group: "argoproj.io", Resource: "workflows", Verb: "update"},
			{Namespace: f.ns, Group: "argoproj.io", Resource: "workflows", Verb: "patch"},
			{Namespace: f.ns, Group: "argoproj.io", Resource: "workflows", Verb: "approve"},
			{Namespace: f.ns, Resource: "configmaps", Verb: "create"},
		} {
			if a.Name == trigger && attr.Resource == "configmaps" {
				continue
			}
			r, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
				User: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + f.ns, "system:authenticated"}, ResourceAttributes: &attr}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status.Allowed {
				t.Errorf("ServiceAccount %s may %s %s", a.Name, attr.Verb, attr.Resource)
			}
		}
	}
	step, _ := f.as("system:serviceaccount:" + f.ns + ":" + rbac.AccountFor("approver", "verify").Name)
	f.stepPodTriesToApprove(w.Name)
	_, err = step.Decide(ctx, approve.DecideOptions{Namespace: f.ns, Run: w.Name, Decision: "approve", Identity: "approval-step"})
	if !apierrors.IsForbidden(err) && !strings.Contains(fmt.Sprint(err), "forbidden") {
		t.Errorf("the approval step's ServiceAccount approving its own run: %v, want forbidden", err)
	}

	// Nothing above changed the run: it still waits, with no decision on it.
	still, err := argoWF.ArgoprojV1alpha1().Workflows(f.ns).Get(ctx, w.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := still.Status.Nodes[node]; n.Phase != wfv1.NodeRunning || strings.Contains(fmt.Sprint(still.Annotations, still.Labels), "gantry.dev/decision") {
		t.Fatalf("after the refused attempts: node %s, annotations %v", n.Phase, still.Annotations)
	}

	// alice approves: admitted, recorded in her name, verified by the step's own account.
	aa, _ := f.as(alice)
	d, err := aa.Decide(ctx, approve.DecideOptions{Namespace: f.ns, Run: w.Name, Decision: "approve", Reason: "e2e"})
	if err != nil || !d.Resumed {
		t.Fatalf("alice approves: %+v, %v", d, err)
	}
	store, _ := objstore.New(nil)
	v, err := step.Verify(ctx, store, approve.VerifyOptions{Namespace: f.ns, Run: w.Name, Timeout: time.Hour})
	if err != nil || v.Decision != approve.Approved || v.ApprovedBy != f.user(alice) {
		t.Errorf("verify after alice: %+v, %v", v, err)
	}

	// A run past Argo's MAX_WORKFLOW_SIZE keeps its nodes compressed (status.compressedNodes),
	// where CEL cannot see the approval node: changing them is an approver's act. mallory's
	// forged "approved" is refused; alice's decision is admitted and verified.
	big := f.waitingRun("policy-big", nil)
	b, _ := json.Marshal(big.Status.Nodes)
	big.Status.CompressedNodes, big.Status.Nodes = file.CompressEncodeString(string(b)), nil
	if big, err = argoWF.ArgoprojV1alpha1().Workflows(f.ns).Update(ctx, big, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var forged wfv1.Nodes
	json.Unmarshal(b, &forged)
	for id, n := range forged {
		n.Phase, n.Outputs.Parameters[0].Value = wfv1.NodeSucceeded, wfv1.AnyStringPtr(approve.Approved)
		forged[id] = n
	}
	fb, _ := json.Marshal(forged)
	forbidden(t, "mallory: a forged approval in compressed node status", patchAs(ctx, mwf, f.ns, big.Name, map[string]any{"status": map[string]any{
		"compressedNodes": file.CompressEncodeString(string(fb))}}), "compressed or offloaded node status")
	_, err = ma.Decide(ctx, approve.DecideOptions{Namespace: f.ns, Run: big.Name, Decision: "approve"})
	forbidden(t, "mallory: approver approve on a compressed run", err, "only approvers")
	if d, err := aa.Decide(ctx, approve.DecideOptions{Namespace: f.ns, Run: big.Name, Decision: "approve", Reason: "e2e"}); err != nil || !d.Resumed {
		t.Fatalf("alice approves the compressed run: %+v, %v", d, err)
	}
	if got, _ := argoWF.ArgoprojV1alpha1().Workflows(f.ns).Get(ctx, big.Name, metav1.GetOptions{}); got.Status.CompressedNodes == "" || len(got.Status.Nodes) != 0 {
		t.Errorf("after alice's decision the run's nodes are no longer compressed: %d plain nodes", len(got.Status.Nodes))
	}
	if v, err := step.Verify(ctx, store, approve.VerifyOptions{Namespace: f.ns, Run: big.Name, Timeout: time.Hour}); err != nil || v.Decision != approve.Approved || v.ApprovedBy != f.user(alice) {
		t.Errorf("verify of the compressed run after alice: %+v, %v", v, err)
	}
}

// stepPodTriesToApprove runs the approver image in a pod under the approval step's own
// ServiceAccount — what a compromised step could do — and expects the API server to refuse it.
func (f *fixture) stepPodTriesToApprove(run string) {
	f.t.Helper()
	tmpl, err := argoWF.ArgoprojV1alpha1().WorkflowTemplates(f.ns).Get(f.ctx, "approver", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	image := tmpl.Spec.Templates[0].Container.Image
	// Through the Argo controller, as a step would run (the API server admits a pod as a step
	// account from nobody else: gantry-step-pods).
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "step-approves"}, Spec: wfv1.WorkflowSpec{Entrypoint: "main",
		ServiceAccountName: rbac.AccountFor("approver", "verify").Name,
		Templates:          []wfv1.Template{{Name: "main", Container: &corev1.Container{Image: image, Command: []string{"/ko-app/approver"}, Args: []string{"approve", run, "--reason", "self"}}}}}}
	if _, err := argoWF.ArgoprojV1alpha1().Workflows(f.ns).Create(f.ctx, wf, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	done := f.waitRun(wf.Name, 2*time.Minute, "step pod finished", func(w *wfv1.Workflow) bool { return w.Status.Phase.Completed() })
	logs, _ := f.try(nil, "kubectl", "-n", f.ns, "logs", "-l", "workflows.argoproj.io/workflow="+wf.Name, "-c", "main", "--tail=50")
	if done.Status.Phase != wfv1.WorkflowFailed || !strings.Contains(logs, "forbidden") || !strings.Contains(fmt.Sprint(done.Status.Nodes), "exit code 2") {
		f.t.Errorf("a step pod approving its run: %s, logs %s; want exit 2, forbidden", done.Status.Phase, logs)
	}
}

// Four-eyes on a real run: alice submits with min-approvals=2 and forbid-self-approval; she
// cannot approve it herself (approver approve: exit 2), bob's approval alone does not resume it,
// and when alice then resumes it anyway (she is an approver, so the API server admits the resume)
// verify counts only bob: one of two, rejected, nothing promoted.
func TestFourEyesOnARealRun(t *testing.T) {
	t.Parallel()
	f := given(t)
	f.people()
	// The approval webhook's URL is a secret, and unreachable here: the run must go on to the
	// approval anyway (notified=false), and the URL must appear in no log, argument or status.
	const token = "T0KEN-e2e-webhook-secret"
	if _, err := kube.CoreV1().Secrets(f.ns).Create(f.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "gantry-notify"},
		StringData: map[string]string{"url": "http://127.0.0.1:9/hooks/" + token}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := f.argoAs(alice, f.submitArgs("min-approvals=2", "forbid-self-approval=true")...)
	if err != nil {
		t.Fatalf("alice submits: %v", err)
	}
	run := strings.TrimPrefix(out, "workflow.argoproj.io/")
	f.waitRun(run, toApproval, "approval waiting", awaitingApproval)

	aa, _ := f.as(alice)
	if _, err := aa.Decide(f.ctx, approve.DecideOptions{Namespace: f.ns, Run: run, Decision: "approve"}); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(fmt.Sprint(err), "submitted") {
		t.Errorf("alice approving her own run: %v, want exit 2", err)
	}
	ba, _ := f.as(bob)
	d, err := ba.Decide(f.ctx, approve.DecideOptions{Namespace: f.ns, Run: run, Decision: "approve", Reason: "looks right"})
	if err != nil || d.Resumed || d.Have != 1 || d.Need != 2 {
		t.Fatalf("bob's approval: %+v, %v; want recorded, 1 of 2, still waiting", d, err)
	}
	if w, _ := argoWF.ArgoprojV1alpha1().Workflows(f.ns).Get(f.ctx, run, metav1.GetOptions{}); !nodeIs("approval", wfv1.NodeRunning)(w) {
		t.Fatalf("one approval of two resumed the run: %s", summary(w))
	}
	if _, err := f.argoAs(alice, "resume", run); err != nil {
		t.Fatalf("alice's argo resume (an approver's, admitted): %v", err)
	}
	w := f.waitRun(run, toEnd, "run failed", phaseIs(wfv1.WorkflowFailed))
	reason := output(w, "verify-approval(0)", "reason")
	if output(w, "verify-approval(0)", "decision") != "rejected" || !strings.Contains(reason, "1 of 2 required approvals") || !strings.Contains(reason, "submitted the run") {
		t.Errorf("verify-approval: %s, %q; want rejected: 1 of 2, alice submitted the run", output(w, "verify-approval(0)", "decision"), reason)
	}
	f.notPromoted()
	if n := output(w, "request-approval(0)", "notified"); n != "false" {
		t.Errorf("request-approval notified=%q with an unreachable webhook, want false", n)
	}
	req := nodePod(t, f, run, w.Status.Nodes.FindByDisplayName("request-approval(0)").ID)
	logs, _ := kube.CoreV1().Pods(f.ns).GetLogs(req.Name, &corev1.PodLogOptions{Container: "main"}).DoRaw(f.ctx)
	status, _ := json.Marshal(w)
	spec, _ := json.Marshal(req.Spec)
	if strings.Contains(string(logs)+string(status)+string(spec), token) || !strings.Contains(string(logs), "127.0.0.1:9") {
		t.Errorf("the webhook's secret URL leaked (or the request was not logged by host): logs %s", logs)
	}
}

func aliceApprover(f *fixture) *approve.Approver {
	a, _ := f.as(alice)
	return a
}
