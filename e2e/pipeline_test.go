//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/gantry-ml/gantry/internal/idx"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/pipeline"
)

const (
	toApproval = 10 * time.Minute // train (2 epochs) → publish → staging → canary of 10k images
	toEnd      = 4 * time.Minute  // approval → promote → smoke → exit handler
)

// Given gantry in a namespace, when a run is submitted, the Argo controller is restarted
// mid-training and an approver approves the run in the Argo UI (a real browser), then the model
// is promoted and the production endpoint classifies a real test image.
func TestApprovedRunIsPromotedAcrossControllerRestart(t *testing.T) {
	t.Parallel()
	f := given(t)
	run := f.submit()

	f.waitRun(run, toApproval, "training running", nodeIs("train(0)", wfv1.NodeRunning))
	restartController(f)

	f.waitRun(run, toApproval, "approval waiting", awaitingApproval)
	// Someone who may resume runs but is no approver cannot; an approver approves in the Argo UI
	// (logged in with her own token: the Argo Server resumes as her).
	f.people()
	if _, err := f.argoAs(mallory, "resume", run); err == nil || !strings.Contains(err.Error(), "only approvers") {
		t.Fatalf("mallory's argo resume: %v, want refused by the approval policy", err)
	}
	f.approveInUI(f.argoServerURL(), run, f.tokenOf(alice))
	w := f.waitRun(run, toEnd, "run succeeded", phaseIs(wfv1.WorkflowSucceeded))

	version := output(w, "publish(0)", "model-version")
	if version == "" || output(w, "verify-approval(0)", "decision") != "approved" {
		t.Fatalf("publish version %q, decision %q", version, output(w, "verify-approval(0)", "decision"))
	}
	if by := output(w, "verify-approval(0)", "approved-by"); by != f.normal(alice) {
		t.Errorf("approved-by %q, want alice (%s): the Argo Server names the resumer from her token, bound by the policy", by, f.normal(alice))
	}
	dep, err := kube.AppsV1().Deployments(f.ns).Get(f.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("production deployment: %v", err)
	}
	if args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, version) {
		t.Errorf("production serves %q, want version %s", args, version)
	}
	if dep.Status.ReadyReplicas < 1 {
		t.Errorf("production has %d ready replicas", dep.Status.ReadyReplicas)
	}
	productionAnswers(t, f)
	if left := f.stagingServers(); len(left) > 0 {
		t.Errorf("staging servers %v still exist after the run (keep-staging=false)", left)
	}
	if r := f.runRecord(run); r.Status != "Succeeded" || !r.Promoted || r.ModelVersion != version {
		t.Errorf("run record %+v: want Succeeded, promoted, version %s", r, version)
	}
	// What the training pod was given cannot write the model registry, the approvals or the run
	// records: only its own output prefix.
	job := output(w, "train(0)", "job-name")
	// The run owns its training Job: deleting the run garbage-collects it.
	if j, err := kube.BatchV1().Jobs(f.ns).Get(f.ctx, job, metav1.GetOptions{}); err != nil || len(j.OwnerReferences) != 1 ||
		j.OwnerReferences[0].Kind != "Workflow" || j.OwnerReferences[0].UID != w.UID {
		t.Errorf("training Job %s: %v, owners %v, want the run %s (%s)", job, err, j.OwnerReferences, run, w.UID)
	}
	trainCreds := f.store(job + "-s3")
	for _, uri := range []string{"s3://models/registry/fashion-mnist/versions/" + version + "/model.safetensors",
		"s3://models/registry/fashion-mnist/approvals/" + version + "/" + run + ".json", "s3://models/runs/another-run/model/x"} {
		if err := objstore.PutBytes(f.ctx, trainCreds, uri, []byte("forged")); err == nil {
			t.Errorf("the training Job's credentials wrote %s", uri)
		}
	}
	if err := objstore.PutBytes(f.ctx, trainCreds, "s3://models/runs/"+run+"/model/scratch", []byte("ok")); err != nil {
		t.Errorf("the training Job's credentials cannot write its own output: %v", err)
	}
	// The production server reads the registry with read-only credentials.
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "gantry-s3-read" {
			t.Errorf("the model server's %s comes from Secret %s, want gantry-s3-read", e.Name, e.ValueFrom.SecretKeyRef.Name)
		}
	}
	for _, secret := range []string{"gantry-s3-read", "gantry-s3-runs"} { // model servers; launcher and canary
		if err := objstore.PutBytes(f.ctx, f.store(secret), "s3://models/registry/fashion-mnist/versions/"+version+"/model.safetensors", []byte("forged")); err == nil {
			t.Errorf("the credentials in %s wrote into the registry", secret)
		}
	}

	// The canary's and the smoke test's reports are output artifacts, served by the Argo Server.
	for _, step := range []string{"canary(0)", "smoke(0)"} {
		f.reportArtifacts(w, step)
	}

	// argo resubmit copies the approved run's labels (actor alice, action Resume) into a new run;
	// when nobody decides on the new run, its suspend expires: rejected, whatever it carries.
	again := strings.TrimPrefix(f.argo("resubmit", run, "-p", "approval-timeout=5s", "-o", "name"), "workflow.argoproj.io/")
	w2 := f.waitRun(again, toApproval+toEnd, "resubmitted run failed", phaseIs(wfv1.WorkflowFailed))
	if d, r := output(w2, "verify-approval(0)", "decision"), output(w2, "verify-approval(0)", "reason"); d != "rejected" || !strings.Contains(r, "timed out") {
		t.Errorf("resubmitted run: %s (%q), want rejected, timed out; it carries %v", d, r, w2.Labels)
	}
}

// reportArtifacts checks the step's report-html and report-json output artifacts: argo get lists
// them (in the namespace's default artifact repository), and the Argo Server's artifact endpoint
// serves them to a caller that may read the run and the repository's Secret — the canary's own
// report (its accuracy, the confusion matrix) — and refuses mallory, who may read runs only.
func (f *fixture) reportArtifacts(w *wfv1.Workflow, step string) {
	f.t.Helper()
	node := w.Status.Nodes.FindByDisplayName(step)
	if node == nil || node.Outputs == nil {
		f.t.Fatalf("%s: no outputs", step)
	}
	for _, name := range []string{"report-html", "report-json"} {
		if a := node.Outputs.GetArtifactByName(name); a == nil || a.S3 == nil || !strings.Contains(a.S3.Key, "runs/"+w.Name+"/artifacts/") {
			f.t.Errorf("%s: artifact %s = %+v, want it under runs/%s/artifacts/ in the default repository", step, name, a, w.Name)
		}
	}
	const reader = "report-reader"
	if _, err := kube.CoreV1().ServiceAccounts(f.ns).Get(f.ctx, reader, metav1.GetOptions{}); err != nil {
		if _, err := kube.CoreV1().ServiceAccounts(f.ns).Create(f.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: reader}}, metav1.CreateOptions{}); err != nil {
			f.t.Fatal(err)
		}
		if _, err := kube.RbacV1().Roles(f.ns).Create(f.ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: reader},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflows"}, Verbs: []string{"get"}},
				{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"gantry-s3-runs"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{}); err != nil {
			f.t.Fatal(err)
		}
		if _, err := kube.RbacV1().RoleBindings(f.ns).Create(f.ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: reader},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: reader},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: reader, Namespace: f.ns}}}, metav1.CreateOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
	server, token := f.argoServerURL(), f.tokenOf
	urlOf := func(artifact string) string {
		return fmt.Sprintf("%s/artifact-files/%s/workflows/%s/%s/outputs/%s", server, f.ns, w.Name, node.ID, artifact)
	}
	get := func(person, artifact string) (int, []byte) {
		url := urlOf(artifact)
		req, _ := http.NewRequestWithContext(f.ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token(person))
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			f.t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, html := get(reader, "report-html")
	accuracy := output(w, step, "accuracy")
	if code != http.StatusOK || !strings.Contains(string(html), "Confusion matrix") {
		f.t.Errorf("%s report.html through the Argo Server: %d, %.300s", step, code, html)
	}
	// Kept for a look in a browser (hack/screenshot-report.sh renders it headless).
	out := filepath.Join(repoRoot, "_output", "e2e", strings.TrimSuffix(step, "(0)")+"-report-via-argo-server.html")
	if os.MkdirAll(filepath.Dir(out), 0o755) == nil {
		_ = os.WriteFile(out, html, 0o644)
	}
	code, js := get(reader, "report-json")
	var rep shownReport
	if err := json.Unmarshal(js, &rep); code != http.StatusOK || err != nil || fmt.Sprintf("%.4f", rep.Candidate.Accuracy) != accuracy {
		f.t.Errorf("%s report.json through the Argo Server: %d %v, accuracy %.4f, step's result %s: %.300s", step, code, err, rep.Candidate.Accuracy, accuracy, js)
	}
	// As a person sees it: the same page in a real browser.
	f.seeReport(urlOf("report-html"), token(reader), strings.TrimSuffix(step, "(0)"), rep)
	if code, b := get(mallory, "report-html"); code == http.StatusOK {
		f.t.Errorf("mallory (may read runs, not the artifact repository's Secret) got %s's report: %.100s", step, b)
	}
}

// restartController deletes the Argo controller's pod and waits until that pod is gone and its
// replacement is ready. Both are watched on the pods themselves: the old pod terminates
// gracefully and may outlive the Deployment's last status change, so a condition checked only
// on Deployment events could miss the moment it is gone.
func restartController(f *fixture) {
	f.t.Helper()
	const selector = "app=workflow-controller"
	pods, err := kube.CoreV1().Pods("argo").List(f.ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil || len(pods.Items) == 0 {
		f.t.Fatalf("controller pods: %v (%d)", err, len(pods.Items))
	}
	t0 := time.Now()
	old := map[types.UID]bool{}
	for _, p := range pods.Items {
		old[p.UID] = true
		if err := kube.CoreV1().Pods("argo").Delete(f.ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Minute)
	defer cancel()
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return kube.CoreV1().Pods("argo").List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return kube.CoreV1().Pods("argo").Watch(ctx, o)
		},
	}
	live := map[types.UID]*corev1.Pod{}
	_, err = watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			delete(live, p.UID)
		} else {
			live[p.UID] = p
		}
		ready := false
		for uid, p := range live {
			if old[uid] {
				return false, nil // the old controller still runs (terminating)
			}
			ready = ready || podReady(p)
		}
		return ready, nil
	})
	if err != nil {
		f.t.Fatalf("controller did not come back: %v (pods: %v)", err, podNames(live))
	}
	f.t.Logf("Argo controller restarted in %s (was %s, now %v)", time.Since(t0).Round(time.Second), pods.Items[0].Name, podNames(live))
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podNames(m map[types.UID]*corev1.Pod) []string {
	var names []string
	for _, p := range m {
		names = append(names, p.Name)
	}
	return names
}

// productionAnswers: the production server classifies a real test image as it is labelled.
func productionAnswers(t *testing.T, f *fixture) {
	t.Helper()
	label, probs := predictProduction(t, f)
	best := 0
	for i, p := range probs {
		if p > probs[best] {
			best = i
		}
	}
	if len(probs) != 10 || best != label {
		t.Errorf("production predicted %d (%v) for a test image labelled %d", best, probs, label)
	}
}

// predictProduction posts the first Fashion-MNIST test image to the production Service (its
// ClusterIP: the test runs on the node) and returns the image's label and the probabilities.
func predictProduction(t *testing.T, f *fixture) (int, []float64) {
	t.Helper()
	svc, err := kube.CoreV1().Services(f.ns).Get(f.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := idx.Load(f.ctx, objstore.FileStore{}, "file:///usr/share/datasets/fashion-mnist/", "t10k", 10)
	if err != nil {
		t.Fatal(err)
	}
	img := ds.Images.Image(0)
	px := make([]float64, len(img))
	for i, b := range img {
		px[i] = float64(b) / 255
	}
	body, _ := json.Marshal(map[string]any{"instances": [][]float64{px}})
	url := fmt.Sprintf("http://%s:%d/v1/models/fashion-mnist:predict", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Post(url, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Predictions [][]float64 }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Predictions) != 1 {
		t.Fatalf("POST %s: %d %v %v", url, resp.StatusCode, err, out)
	}
	return int(ds.Labels[0]), out.Predictions[0]
}

// Given a run waiting for approval, when someone rejects it with `approver reject`, then the
// run fails with the reason and nothing is promoted.
func TestRejectedRunIsNotPromoted(t *testing.T) {
	t.Parallel()
	f := given(t)
	run := f.submit()
	f.waitRun(run, toApproval, "approval waiting", awaitingApproval)
	f.sh(nil, filepath.Join(binDir, "approver"), "reject", run, "-n", f.ns, "--reason", "e2e: confusion matrix looks off")
	w := f.waitRun(run, toEnd, "run failed", phaseIs(wfv1.WorkflowFailed))
	if d := output(w, "verify-approval(0)", "decision"); d != "rejected" {
		t.Errorf("verify-approval decision %q, want rejected", d)
	}
	if !strings.Contains(w.Status.Message+nodeMessages(w), "confusion matrix looks off") {
		t.Errorf("the reason is not in the run's messages: %q / %s", w.Status.Message, nodeMessages(w))
	}
	if n := w.Status.Nodes.FindByDisplayName("promote"); n != nil && n.Phase != wfv1.NodeOmitted && n.Phase != wfv1.NodeSkipped {
		t.Errorf("promote ran: %s", n.Phase)
	}
	f.notPromoted()
}

// Given a short approval timeout, when nobody decides, then silence is a rejection.
func TestApprovalTimeoutRejects(t *testing.T) {
	t.Parallel()
	f := given(t)
	run := f.submit("approval-timeout=5s")
	w := f.waitRun(run, toApproval+toEnd, "run failed", phaseIs(wfv1.WorkflowFailed))
	if d := output(w, "verify-approval(0)", "decision"); d != "rejected" {
		t.Errorf("verify-approval decision %q, want rejected (%s)", d, nodeMessages(w))
	}
	if r := output(w, "verify-approval(0)", "reason"); !strings.Contains(r, "timed out") {
		t.Errorf("reason %q does not say it timed out", r)
	}
	f.notPromoted()
}

// Given a deliberately weak training run, the canary fails on real predictions: the run fails
// before anyone is asked, nothing is promoted, and the staging server is torn down.
func TestFailedCanaryIsNotPromoted(t *testing.T) {
	t.Parallel()
	f := given(t)
	run := f.submit("hyperparameters=epochs=1,learning-rate=0.000001,batch-size=128", "min-accuracy=0.85")
	w := f.waitRun(run, toApproval, "run failed", phaseIs(wfv1.WorkflowFailed))
	if v := output(w, "canary(0)", "verdict"); v != "fail" {
		t.Fatalf("canary verdict %q, want fail", v)
	}
	if n := w.Status.Nodes.FindByDisplayName("approval"); n != nil && n.Phase == wfv1.NodeRunning {
		t.Errorf("approval was requested for a failed canary")
	}
	if !strings.Contains(w.Status.Message+nodeMessages(w), "accuracy") {
		t.Errorf("no reason about accuracy in %q / %s", w.Status.Message, nodeMessages(w))
	}
	f.notPromoted()
	if left := f.stagingServers(); len(left) > 0 {
		t.Errorf("staging servers %v left behind after a failed run", left)
	}
	// The exit handler records the failure with the version the run published.
	r := f.runRecord(run)
	if r.Status != "Failed" || r.Promoted || r.ModelVersion == "" || r.ModelVersion != output(w, "publish(0)", "model-version") ||
		!strings.Contains(string(r.Failures), "canary failed: accuracy") {
		t.Errorf("run record %+v (failures %s): want Failed, not promoted, version %s, the canary's reason in failures", r, r.Failures, output(w, "publish(0)", "model-version"))
	}
	// No gate pod: the canary step itself failed, with its reason as the step's message.
	if n := w.Status.Nodes.FindByDisplayName("canary(0)"); n == nil || n.Phase != wfv1.NodeFailed || !strings.Contains(n.Message, "canary failed: accuracy") {
		t.Errorf("canary step: %+v, want Failed with the reason as its message", n)
	}
	for _, gate := range []string{"canary-verdict", "approval-verdict", "smoke-verdict"} {
		if w.Status.Nodes.FindByDisplayName(gate) != nil {
			t.Errorf("the run has a %s gate pod", gate)
		}
	}
}

// Given training in progress, when the train-launcher pod is killed, then a new launcher
// re-attaches to the running Job: exactly one training Job ever exists. Argo takes one of three
// paths, depending on what its controller saw of the dying pod: the launcher's exit 3 or a
// "pod deleted" error makes the template's retry start train(1), or the pod is re-created for
// the same attempt. All must end in a launcher that re-attached, so the test accepts any.
func TestKilledLauncherReattachesToTheSameJob(t *testing.T) {
	t.Parallel()
	f := given(t)
	jobs := f.countJobs()
	run := f.submit("hyperparameters=epochs=6,learning-rate=0.001,batch-size=128") // long enough to kill it mid-way
	f.waitPod("job-name="+run+"-train", 5*time.Minute, "training pod running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	w := f.waitRun(run, time.Minute, "launcher running", nodeIs("train(0)", wfv1.NodeRunning))
	job, err := kube.BatchV1().Jobs(f.ns).Get(f.ctx, run+"-train", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	killed := nodePod(t, f, run, w.Status.Nodes.FindByDisplayName("train(0)").ID)
	if err := kube.CoreV1().Pods(f.ns).Delete(f.ctx, killed.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed launcher pod %s while Job %s trains", killed.Name, job.Name)

	w = f.waitRun(run, toApproval, "training succeeded after the kill", nodeIs("train", wfv1.NodeSucceeded))
	var attempt *wfv1.NodeStatus
	for _, id := range w.Status.Nodes.FindByDisplayName("train").Children {
		if n := w.Status.Nodes[id]; n.Phase == wfv1.NodeSucceeded {
			attempt = &n
		}
	}
	if attempt == nil {
		t.Fatalf("no succeeded attempt under train: %s", summary(w))
	}
	finisher := nodePod(t, f, run, attempt.ID)
	f.argo("terminate", run)
	t.Logf("Argo's path: %s succeeded in pod %s (uid %s; the killed one was %s)", attempt.DisplayName, finisher.Name, finisher.UID, killed.UID)
	if finisher.UID == killed.UID {
		t.Errorf("the killed launcher pod %s finished the training: it was not killed", killed.Name)
	}
	if attempt.DisplayName != "train(0)" {
		if p := w.Status.Nodes.FindByDisplayName("train(0)").Phase; p != wfv1.NodeError && p != wfv1.NodeFailed {
			t.Errorf("killed attempt is %s", p)
		}
	}
	if n := jobs(); n != 1 {
		t.Errorf("%d training Jobs were created, want exactly 1", n)
	}
	now, err := kube.BatchV1().Jobs(f.ns).Get(f.ctx, run+"-train", metav1.GetOptions{})
	if err != nil || now.UID != job.UID {
		t.Errorf("the Job after the kill is not the one that was running: %v", err)
	}
	if output(w, attempt.DisplayName, "model-uri") == "" {
		t.Errorf("the re-attached launcher has no model-uri result")
	}
}

// nodePod finds the pod of a workflow node by its node-id annotation.
func nodePod(t *testing.T, f *fixture, run, nodeID string) *corev1.Pod {
	t.Helper()
	pods, err := kube.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + run})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pods.Items {
		if p.Annotations["workflows.argoproj.io/node-id"] == nodeID && p.DeletionTimestamp == nil {
			return &pods.Items[i]
		}
	}
	t.Fatalf("no pod for node %s", nodeID)
	return nil
}

// Given a run that failed at deploy-staging (the pipeline's Role lost its Deployment rights),
// when the Role is restored and the run is retried with `argo retry`, then it resumes from the
// failed step: training is not repeated and the run reaches the approval.
func TestArgoRetryResumesFromTheFailedStep(t *testing.T) {
	t.Parallel()
	f := given(t)
	f.sh(nil, "kubectl", "-n", f.ns, "patch", "role", "gantry-deploy", "--type=json",
		"-p", `[{"op":"replace","path":"/rules/0/verbs","value":["get"]}]`)
	role := f.sh(nil, "kubectl", "-n", f.ns, "get", "role", "gantry-deploy", "-o", "jsonpath={.rules[0].resources}")
	if !strings.Contains(role, "deployments") {
		t.Fatalf("rule 0 of the Role is %s, not deployments: update the test", role)
	}
	jobs := f.countJobs()
	run := f.submit()
	w := f.waitRun(run, toApproval, "run failed at deploy-staging", phaseIs(wfv1.WorkflowFailed))
	if n := w.Status.Nodes.FindByDisplayName("deploy-staging(0)"); n == nil || n.Phase != wfv1.NodeFailed {
		t.Fatalf("deploy-staging did not fail: %s", summary(w))
	}
	if w.Status.Nodes.FindByDisplayName("deploy-staging(1)") != nil {
		t.Errorf("a permission error was retried (it is not transient)")
	}
	trainPod := w.Status.Nodes.FindByDisplayName("train(0)").ID

	f.sh(map[string]string{"SKIP_IMAGES": "1"}, "hack/cluster/gantry.sh", f.ns) // restores the Role
	f.argo("retry", run)
	w = f.waitRun(run, toApproval, "approval waiting after retry", awaitingApproval)
	f.argo("terminate", run)
	if n := w.Status.Nodes.FindByDisplayName("train(0)"); n == nil || n.ID != trainPod || n.Phase != wfv1.NodeSucceeded {
		t.Errorf("training was not kept across the retry: %s", summary(w))
	}
	if w.Status.Nodes.FindByDisplayName("train(1)") != nil {
		t.Errorf("training ran again after argo retry")
	}
	if n := jobs(); n != 1 {
		t.Errorf("%d training Jobs, want 1", n)
	}
}

// Given gantry's per-task WorkflowTemplates, another team's workflow reuses one task by
// templateRef: the approver's conclude template passes an approval and fails a rejection with its reason.
func TestSingleTaskReusedViaTemplateRef(t *testing.T) {
	t.Parallel()
	f := given(t)
	wf := func(decision string) string {
		return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: reuse-conclude-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: conclude
        templateRef: {name: approver, template: conclude}
        arguments:
          parameters:
          - {name: decision, value: %s}
          - {name: reason, value: "reused from another workflow (%s)"}
`, decision, decision)
	}
	dir := t.TempDir()
	for decision, want := range map[string]wfv1.WorkflowPhase{"approved": wfv1.WorkflowSucceeded, "rejected": wfv1.WorkflowFailed} {
		file := filepath.Join(dir, decision+".yaml")
		if err := os.WriteFile(file, []byte(wf(decision)), 0o644); err != nil {
			t.Fatal(err)
		}
		run := f.argo("submit", file, "-o", "name")
		w := f.waitRun(run, 3*time.Minute, "reused conclude finished", func(w *wfv1.Workflow) bool { return w.Status.Fulfilled() })
		if w.Status.Phase != want {
			t.Errorf("%s: run %s, want %s (%s)", decision, w.Status.Phase, want, nodeMessages(w))
		}
		if want == wfv1.WorkflowFailed && !strings.Contains(w.Status.Message+nodeMessages(w), "reused from another workflow") {
			t.Errorf("the rejection's reason is missing: %q %s", w.Status.Message, nodeMessages(w))
		}
	}
	// An API-calling task with the user's own parameters: train-launcher trains a small model
	// from the user's workflow, with its own ServiceAccount and S3 credentials.
	tmpl, err := argoWF.ArgoprojV1alpha1().WorkflowTemplates(f.ns).Get(f.ctx, "ml-pipeline", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	image := ""
	for _, p := range tmpl.Spec.Arguments.Parameters {
		if p.Name == "train-image" {
			image = p.Value.String()
		}
	}
	train := filepath.Join(dir, "train.yaml")
	if err := os.WriteFile(train, []byte(fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: reuse-train-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: train
        templateRef: {name: train-launcher, template: train}
        arguments:
          parameters:
          - {name: image, value: "%s"}
          - {name: dataset-uri, value: "s3://datasets/fashion-mnist/"}
          - {name: output-uri, value: "s3://models/runs/{{workflow.name}}/model/"}
          - {name: hyperparameters, value: "epochs=1,hidden=32,train-limit=2000"}
          - {name: s3-endpoint, value: "http://minio.gantry-system.svc:9000"}
`, image)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := f.argo("submit", train, "-o", "name")
	w := f.waitRun(run, toApproval, "reused train-launcher finished", func(w *wfv1.Workflow) bool { return w.Status.Fulfilled() })
	if w.Status.Phase != wfv1.WorkflowSucceeded {
		t.Fatalf("reused train-launcher: %s (%s)", w.Status.Phase, nodeMessages(w))
	}
	if uri, metrics := output(w, "train(0)", "model-uri"), output(w, "train(0)", "metrics"); uri != "s3://models/runs/"+run+"/model/" || !strings.Contains(metrics, "accuracy") {
		t.Errorf("reused train-launcher results: model-uri %q, metrics %q", uri, metrics)
	}
}

// nodeMessages joins every node's message, for reasons and diagnostics.
func nodeMessages(w *wfv1.Workflow) string {
	var parts []string
	for _, n := range w.Status.Nodes {
		if n.Message != "" {
			parts = append(parts, n.DisplayName+": "+n.Message)
		}
	}
	return strings.Join(parts, "; ")
}

// Given a training that fails on its first attempt, when the run is retried with `argo retry`,
// then training runs again (the failed Job is replaced, or was already deleted by the launcher
// that saw it fail); and when that attempt's pod is evicted
// (the Eviction API, as a node drain does), the Job replaces the pod without spending its backoff
// and the run goes on to the approval.
func TestTrainingRetriesAfterAFailureAndSurvivesAnEviction(t *testing.T) {
	t.Parallel()
	f := given(t)
	run := f.submit("hyperparameters=epochs=2,learning-rate=0.001,batch-size=128,fail-attempts=1")
	w := f.waitRun(run, toApproval, "run failed at training", phaseIs(wfv1.WorkflowFailed))
	if n := w.Status.Nodes.FindByDisplayName("train(0)"); n == nil || n.Phase != wfv1.NodeFailed {
		t.Fatalf("training did not fail on its first attempt: %s", summary(w))
	}
	job := output(w, "train(0)", "job-name")
	if job == "" {
		job = run + "-train"
	}
	f.argo("retry", run)
	sel := "gantry.dev/job=" + job
	pod := f.waitPod(sel, toApproval, "second attempt training", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil
	})
	if err := kube.PolicyV1().Evictions(f.ns).Evict(f.ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: f.ns}}); err != nil {
		t.Fatalf("evicting %s: %v", pod.Name, err)
	}
	t.Logf("evicted %s", pod.Name)
	f.waitRun(run, toApproval, "approval waiting after the retry and the eviction", awaitingApproval)
	f.argo("terminate", run)
	j, err := kube.BatchV1().Jobs(f.ns).Get(f.ctx, job, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The first attempt's Job is gone either way: deleted by its launcher when it failed fast, or
	// replaced by the retry's launcher (gantry.dev/attempt: 2; unit-tested). What runs now trained.
	t.Logf("Job %s: attempt %q", job, j.Annotations["gantry.dev/attempt"])
	// The Eviction API deletes the pod; the Job made another, which trained to the end.
	pods, _ := kube.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: sel})
	replaced := false
	for _, p := range pods.Items {
		replaced = replaced || (p.Name != pod.Name && p.Status.Phase == corev1.PodSucceeded)
	}
	if !replaced || j.Status.Succeeded != 1 || jobFailed(j) {
		t.Errorf("after the eviction: pods %v, Job succeeded %d, conditions %v; want a replacement pod that succeeded", podPhases(pods.Items), j.Status.Succeeded, j.Status.Conditions)
	}
}

func jobFailed(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func podPhases(ps []corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name+"="+string(p.Status.Phase))
	}
	return out
}

// Given a trainer that fails its first attempt with a transient error (exit 3), when the run
// goes on, then the training is retried (not the run failed), and the run promotes its model.
func TestTransientTrainingFailureIsRetriedAndPromotes(t *testing.T) {
	t.Parallel()
	f := given(t)
	run := f.submit("hyperparameters=epochs=2,hidden=64,train-limit=12000,seed=10,fail-attempts=1,fail-exit-code=3", "min-accuracy=0.7")
	w := f.waitRun(run, 2*toApproval, "approval waiting after a transient training failure", awaitingApproval)
	first := w.Status.Nodes.FindByDisplayName("train(0)")
	if first == nil || first.Phase != wfv1.NodeFailed || w.Status.Nodes.FindByDisplayName("train(1)") == nil {
		t.Fatalf("want the first training attempt failed and retried: %s", summary(w))
	}
	t.Logf("first training attempt: %s", first.Message)
	f.approveAsAdmin(run)
	w = f.waitRun(run, toEnd, "run succeeded", phaseIs(wfv1.WorkflowSucceeded))
	if got, want := f.production(), output(w, "publish(0)", "model-digest"); got != want {
		t.Errorf("production serves %s, want the retried training's model %s", got, want)
	}
}

// Given the cluster's training semaphore sized to one slot (gantry-system/gantry-semaphores,
// train: 1), when two runs are submitted at once, then their trainings run one after the other —
// the second waits for the slot before its Job exists, so queueing is never "unschedulable" — and
// both reach their approval; and while both wait for it (holding no slot), a third run trains.
func TestTrainingsQueueOnTheClusterSemaphore(t *testing.T) {
	t.Parallel()
	f := given(t)
	cms := kube.CoreV1().ConfigMaps(pipeline.SemaphoresNamespace)
	cm, err := cms.Get(f.ctx, pipeline.SemaphoresConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the installer's semaphore ConfigMap: %v", err)
	}
	size := func(n string) {
		patch := fmt.Sprintf(`{"data":{"train":%q}}`, n)
		if _, err := cms.Patch(context.Background(), pipeline.SemaphoresConfigMap, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	size("1")
	t.Cleanup(func() { size(cm.Data["train"]) })
	a, b := f.submit(quick(14)...), f.submit(quick(15)...)
	jobs := map[string]*batchv1.Job{}
	for _, run := range []string{a, b} {
		w := f.waitRun(run, 3*toApproval, "approval waiting", awaitingApproval)
		j, err := kube.BatchV1().Jobs(f.ns).Get(f.ctx, output(w, "train(0)", "job-name"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		jobs[run] = j
	}
	// Both wait for their approval, holding no slot: a new run's training goes ahead.
	c := f.submit(quick(16)...)
	if w := f.waitRun(c, 2*toApproval, "a third run trained while two wait for approval", awaitingApproval); output(w, "train(0)", "job-name") == "" {
		t.Errorf("the third run has no training: %s", summary(w))
	}
	for _, run := range []string{a, b, c} {
		f.argo("terminate", run)
	}
	ja, jb := jobs[a], jobs[b]
	if ja.Status.StartTime == nil || jb.Status.StartTime == nil || ja.Status.CompletionTime == nil || jb.Status.CompletionTime == nil {
		t.Fatalf("training Jobs without start or completion: %+v, %+v", ja.Status, jb.Status)
	}
	t.Logf("training of %s: %s → %s; of %s: %s → %s", a, ja.Status.StartTime.Format(time.TimeOnly), ja.Status.CompletionTime.Format(time.TimeOnly),
		b, jb.Status.StartTime.Format(time.TimeOnly), jb.Status.CompletionTime.Format(time.TimeOnly))
	if ja.Status.StartTime.Before(jb.Status.CompletionTime) && jb.Status.StartTime.Before(ja.Status.CompletionTime) {
		t.Errorf("the two trainings overlapped with one training slot")
	}
}
