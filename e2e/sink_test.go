//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/gantry-ml/gantry/internal/rbac"
)

// No path to production without a bound approval: on a real run waiting for approval, mallory
// (who may create, update and resume runs, but is no approver) edits the run's status, its stored
// template, its spec, creates a run with a finished status of her own making, and runs the deploy
// template from a Workflow of her own, as the deploy account, naming the approved run; alice (an
// approver) tries to lower the approval node's min-approvals; an admin runs the deploy template in
// a namespace the policy does not select. Each is refused by the API server or by promote itself,
// nothing reaches production — and alice's genuine approval of the same run still promotes.
func TestNoPathToProductionWithoutApproval(t *testing.T) {
	t.Parallel()
	f := given(t)
	f.people()
	run := f.submit()
	w := f.waitRun(run, toApproval, "approval waiting", awaitingApproval)
	_, mwf := f.as(mallory)
	_, awf := f.as(alice)
	ctx := f.ctx

	canary := w.Status.Nodes.FindByDisplayName("canary(0)")
	approval := w.Status.Nodes.FindByDisplayName("approval")
	if canary == nil || approval == nil {
		t.Fatalf("run %s has no canary or approval node", run)
	}
	// Status the controller executes: another node's outputs, the stored template, the phase.
	forbidden(t, "mallory: a finished node's outputs", patchAs(ctx, mwf, f.ns, run, map[string]any{"status": map[string]any{"nodes": map[string]any{
		canary.ID: map[string]any{"outputs": map[string]any{"parameters": []any{map[string]any{"name": "accuracy", "value": "0.99"}}}}}}}), "only the Argo controller")
	forbidden(t, "mallory: the stored WorkflowTemplate", patchAs(ctx, mwf, f.ns, run, map[string]any{"status": map[string]any{
		"storedWorkflowTemplateSpec": map[string]any{"serviceAccountName": "gantry-deploy"}}}), "only the Argo controller")
	forbidden(t, "mallory: the run's phase", patchAs(ctx, mwf, f.ns, run, map[string]any{"status": map[string]any{"phase": "Succeeded"}}), "only the Argo controller")
	// Spec the controller executes: parameters, pod patches.
	forbidden(t, "mallory: the run's parameters", patchAs(ctx, mwf, f.ns, run, map[string]any{"spec": map[string]any{
		"arguments": map[string]any{"parameters": []any{map[string]any{"name": "min-approvals", "value": "1"}}}}}), "only an operator")
	forbidden(t, "mallory: a pod spec patch", patchAs(ctx, mwf, f.ns, run, map[string]any{"spec": map[string]any{"podSpecPatch": `{"serviceAccountName":"gantry-deploy"}`}}), "only an operator")
	// The approval node's inputs are the controller's, even for an approver.
	forbidden(t, "alice: the approval node's min-approvals", patchAs(ctx, awf, f.ns, run, map[string]any{"status": map[string]any{"nodes": map[string]any{
		approval.ID: map[string]any{"inputs": map[string]any{"parameters": []any{map[string]any{"name": "min-approvals", "value": "0"}}}}}}}), "type, name, inputs")
	// A run created already finished: status is the controller's from the start.
	forged := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: run + "-forged"}, Spec: w.Spec, Status: wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning, Nodes: wfv1.Nodes{}}}
	for id, n := range w.Status.Nodes {
		if id != approval.ID {
			forged.Status.Nodes[id] = n
		}
	}
	_, err := mwf.ArgoprojV1alpha1().Workflows(f.ns).Create(ctx, forged, metav1.CreateOptions{})
	forbidden(t, "mallory: a run created with a status of her own", err, "only the Argo controller")

	// Code of one's own as the deploy account: a resource template (Argo's executor applies any
	// manifest) in mallory's Workflow, and a Job the training launcher's account creates. The API
	// server refuses the pods: only the controllers, only gantry's pinned images and binaries.
	evil := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "mallory-resource"}, Spec: wfv1.WorkflowSpec{Entrypoint: "main", ServiceAccountName: "gantry-deploy",
		Templates: []wfv1.Template{{Name: "main", Resource: &wfv1.ResourceTemplate{Action: "patch", MergeStrategy: "merge",
			Manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: fashion-mnist-production}\nspec: {replicas: 0}\n"}}}}}
	if _, err := mwf.ArgoprojV1alpha1().Workflows(f.ns).Create(ctx, evil, metav1.CreateOptions{}); err != nil {
		t.Fatalf("mallory's resource-template Workflow: %v", err)
	}
	e := f.waitRun(evil.Name, 2*time.Minute, "mallory's resource template ended", func(w *wfv1.Workflow) bool { return w.Status.Phase.Completed() })
	if e.Status.Phase == wfv1.WorkflowSucceeded || !strings.Contains(e.Status.Message, "gantry-step-pods") {
		t.Errorf("mallory's resource template as gantry-deploy: %s %q, want its pod refused by gantry-step-pods", e.Status.Phase, e.Status.Message)
	}
	launcher := "system:serviceaccount:" + f.ns + ":" + rbac.AccountFor("train-launcher", "train").Name
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "launcher-as-deploy"}, Spec: batchv1.JobSpec{BackoffLimit: ptr.To(int32(0)),
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{ServiceAccountName: "gantry-deploy", RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "x", Image: "busybox"}}}}}}
	if _, err := f.kubeAs(launcher).BatchV1().Jobs(f.ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the launcher's account creating a Job: %v (RBAC allows it)", err)
	}
	if err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		ev, err := kube.CoreV1().Events(f.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + job.Name})
		if err != nil {
			return false, err
		}
		for _, e := range ev.Items {
			if e.Reason == "FailedCreate" && strings.Contains(e.Message, "only the Argo or Tekton controller") {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Errorf("a Job running as gantry-deploy, created with the launcher's account: no FailedCreate from gantry-step-pods: %v", err)
	}
	if pods, _ := kube.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job.Name}); pods != nil && len(pods.Items) > 0 {
		t.Errorf("the Job running as gantry-deploy has pods: %d", len(pods.Items))
	}

	// A task result forged with a step account's rights (every Argo step may create them; the
	// controller copies a result's outputs into the node of that name): "approved" on the
	// approval node. The node stays waiting: outputs are no resume, and no name is an approval.
	_, stepWF := f.as(rbac.AccountFor("approver", "verify").Name)
	forgedResult := &wfv1.WorkflowTaskResult{ObjectMeta: metav1.ObjectMeta{Name: approval.ID, Labels: map[string]string{
		"workflows.argoproj.io/workflow": run, "workflows.argoproj.io/report-outputs-completed": "true"}},
		NodeResult: wfv1.NodeResult{Outputs: &wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: "decision", Value: wfv1.AnyStringPtr("approved")}}}}}
	if _, err := stepWF.ArgoprojV1alpha1().WorkflowTaskResults(f.ns).Create(ctx, forgedResult, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the verify step's account creating a task result: %v (RBAC allows the executor's)", err)
	}
	time.Sleep(5 * time.Second)
	if still := f.waitRun(run, time.Minute, "still waiting after the forged task result", awaitingApproval); still.Status.Nodes.FindByDisplayName("promote(0)") != nil {
		t.Fatalf("a forged task result moved the run on")
	}

	// An admin's deploy template run in a namespace the policy does not select: promote refuses.
	if _, err := kube.CoreV1().Namespaces().Patch(ctx, f.ns, types.MergePatchType, []byte(`{"metadata":{"labels":{"gantry.dev/approval-policy":null}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the API server's policy matcher sees namespace labels through an informer
	unenforced := f.promoteFromOwnWorkflow(argoWF, w, "admin-promote", run)
	f.promoteRefused(unenforced, "not in force") // promote probes the policy before anything else
	if _, err := kube.CoreV1().Namespaces().Patch(ctx, f.ns, types.MergePatchType, []byte(`{"metadata":{"labels":{"gantry.dev/approval-policy":"enforce"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	f.notPromoted()

	// The control: alice's genuine approval of the same run promotes it.
	time.Sleep(2 * time.Second)
	if _, err := f.argoAs(alice, "resume", run); err != nil {
		t.Fatalf("alice's argo resume: %v", err)
	}
	done := f.waitRun(run, toEnd, "run succeeded", phaseIs(wfv1.WorkflowSucceeded))
	version := output(done, "publish(0)", "model-version")
	dep, err := kube.AppsV1().Deployments(f.ns).Get(ctx, "fashion-mnist-production", metav1.GetOptions{})
	if err != nil || !strings.Contains(strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "), version) {
		t.Fatalf("after alice's approval production serves %v (%v), want version %s", dep, err, version)
	}
	// After a genuine approval of that run, mallory's own Workflow — its pod runs as the deploy
	// account — names the approved run: promote sees whose pod it is and refuses.
	own := f.promoteFromOwnWorkflow(mwf, w, "mallory-promote", run)
	f.promoteRefused(own, "not to run "+run)
	if after, _ := kube.AppsV1().Deployments(f.ns).Get(ctx, "fashion-mnist-production", metav1.GetOptions{}); after == nil || after.Generation != dep.Generation {
		t.Errorf("production changed after mallory's promote attempt")
	}
}

// promoteFromOwnWorkflow submits, with the given client, a Workflow of its own that calls the
// deploy template for production with the run's candidate and --run-name run; it returns its name.
func (f *fixture) promoteFromOwnWorkflow(c wfclient.Interface, w *wfv1.Workflow, name, run string) string {
	f.t.Helper()
	staging := w.Status.Nodes.FindByDisplayName("deploy-staging(0)")
	if staging == nil || staging.Inputs == nil {
		f.t.Fatalf("run %s has no deploy-staging inputs", w.Name)
	}
	var params []wfv1.Parameter
	for _, p := range staging.Inputs.Parameters {
		switch p.Name {
		case "environment":
			p.Value = wfv1.AnyStringPtr("production")
		case "run-name":
			p.Value = wfv1.AnyStringPtr(run)
		case "expect-live-digest":
			p.Value = wfv1.AnyStringPtr("none")
		}
		params = append(params, wfv1.Parameter{Name: p.Name, Value: p.Value})
	}
	own := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{Name: "main",
		Steps: []wfv1.ParallelSteps{{Steps: []wfv1.WorkflowStep{{Name: "promote", TemplateRef: &wfv1.TemplateRef{Name: "model-publisher", Template: "deploy"},
			Arguments: wfv1.Arguments{Parameters: params}}}}}}}}}
	if _, err := c.ArgoprojV1alpha1().Workflows(f.ns).Create(f.ctx, own, metav1.CreateOptions{}); err != nil {
		f.t.Fatalf("creating %s: %v", name, err)
	}
	return name
}

// promoteRefused waits for the Workflow to fail and checks its promote step said why.
func (f *fixture) promoteRefused(name, says string) {
	f.t.Helper()
	w := f.waitRun(name, 3*time.Minute, name+" failed", phaseIs(wfv1.WorkflowFailed))
	b, _ := json.Marshal(w.Status.Nodes)
	pod := ""
	for _, n := range w.Status.Nodes {
		if n.Type == wfv1.NodeTypePod {
			pod = n.ID
		}
	}
	logs, _ := f.try(nil, "kubectl", "-n", f.ns, "logs", "-l", "workflows.argoproj.io/workflow="+name, "-c", "main", "--tail=50")
	if !strings.Contains(logs, says) && !strings.Contains(string(b), says) {
		f.t.Errorf("%s (node %s) failed without saying %q: %s\n%s", name, pod, says, logs, fmt.Sprint(w.Status.Message))
	}
}

// kubeAs is a Kubernetes client impersonating user (a step account, as a compromised step would be).
func (f *fixture) kubeAs(user string) kubernetes.Interface {
	f.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		f.t.Fatal(err)
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + f.ns, "system:authenticated"}}
	return kubernetes.NewForConfigOrDie(cfg)
}
