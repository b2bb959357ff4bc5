//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/yaml"

	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/tasks/train"
)

// Tekton runs of gantry's ml-pipeline (templates/tekton/), on the real Tekton controller and
// webhook that hack/cluster/up.sh installs beside Argo. Runs are created as the README shows
// (templates/tekton-runs/ml-pipeline-run.yaml, kubectl create), decided with `approver
// approve|reject RUN --tekton`, and read through the dynamic client (gantry does not import
// Tekton's Go module).

var (
	taskRunsResource = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "taskruns"}
	pipelinesRes     = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelines"}
)

func dyn(t *testing.T) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	return dynamic.NewForConfigOrDie(cfg)
}

// tektonRun creates a PipelineRun from the README's example with quick-training parameters
// (overridden by params, NAME=VALUE) and returns its name.
func (f *fixture) tektonRun(params ...string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "templates", "tekton-runs", "ml-pipeline-run.yaml"))
	if err != nil {
		f.t.Fatal(err)
	}
	var pr unstructured.Unstructured
	if err := yaml.Unmarshal(b, &pr.Object); err != nil {
		f.t.Fatal(err)
	}
	set := map[string]string{"hyperparameters": "epochs=2,learning-rate=0.001,batch-size=128", "min-accuracy": "0.8", "smoke-min-accuracy": "0.8", "max-p99-ms": "10000"}
	order := []string{"hyperparameters", "min-accuracy", "smoke-min-accuracy", "max-p99-ms"}
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		if _, ok := set[k]; !ok {
			order = append(order, k)
		}
		set[k] = v
	}
	var ps []any
	for _, k := range order {
		ps = append(ps, map[string]any{"name": k, "value": set[k]})
	}
	if err := unstructured.SetNestedSlice(pr.Object, ps, "spec", "params"); err != nil {
		f.t.Fatal(err)
	}
	out, err := dyn(f.t).Resource(train.PipelineRunsResource).Namespace(f.ns).Create(f.ctx, &pr, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatalf("creating the PipelineRun: %v", err)
	}
	f.t.Logf("created PipelineRun %s", out.GetName())
	return out.GetName()
}

// succeeded is the PipelineRun's or TaskRun's Succeeded condition: "True", "False", "Unknown"
// or "" (none yet), with its reason and message.
func succeeded(u *unstructured.Unstructured) (status, reason, message string) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Succeeded" {
			s, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			msg, _ := m["message"].(string)
			return s, r, msg
		}
	}
	return "", "", ""
}

// waitTekton watches the PipelineRun until cond holds on it and its TaskRuns; a run that ends
// without cond fails the test.
func (f *fixture) waitTekton(run string, timeout time.Duration, what string, cond func(pr *unstructured.Unstructured, trs map[string]*unstructured.Unstructured) bool) (*unstructured.Unstructured, map[string]*unstructured.Unstructured) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, timeout)
	defer cancel()
	d := dyn(f.t)
	prs := d.Resource(train.PipelineRunsResource).Namespace(f.ns)
	sel := "metadata.name=" + run
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return prs.List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return prs.Watch(ctx, o)
		},
	}
	var last *unstructured.Unstructured
	var lastTRs map[string]*unstructured.Unstructured
	check := func(pr *unstructured.Unstructured) (bool, error) {
		last, lastTRs = pr, f.taskRuns(run)
		if cond(pr, lastTRs) {
			return true, nil
		}
		if s, _, msg := succeeded(pr); s == "True" || s == "False" {
			return false, fmt.Errorf("run ended (%s: %s) before %s", s, msg, what)
		}
		return false, nil
	}
	// TaskRuns change without the PipelineRun changing: re-check them every second too.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	evs := make(chan *unstructured.Unstructured, 16)
	go func() {
		_, _ = watchtools.UntilWithSync(ctx, lw, &unstructured.Unstructured{}, nil, func(ev watch.Event) (bool, error) {
			if u, ok := ev.Object.(*unstructured.Unstructured); ok {
				select {
				case evs <- u:
				default:
				}
			}
			return false, nil
		})
	}()
	for {
		var err error
		var done bool
		select {
		case <-ctx.Done():
			f.dumpTekton()
			f.t.Fatalf("%s: not within %s: %s", run, timeout, tektonSummary(last, lastTRs))
		case u := <-evs:
			done, err = check(u)
		case <-tick.C:
			if u, gerr := prs.Get(ctx, run, metav1.GetOptions{}); gerr == nil {
				done, err = check(u)
			}
		}
		if err != nil {
			f.dumpTekton()
			f.t.Fatalf("%s: %v: %s", run, err, tektonSummary(last, lastTRs))
		}
		if done {
			f.t.Logf("%s: %s", what, tektonSummary(last, lastTRs))
			return last, lastTRs
		}
	}
}

// taskRuns are the run's TaskRuns by pipeline task name.
func (f *fixture) taskRuns(run string) map[string]*unstructured.Unstructured {
	l, err := dyn(f.t).Resource(taskRunsResource).Namespace(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + run})
	out := map[string]*unstructured.Unstructured{}
	if err != nil {
		return out
	}
	for i := range l.Items {
		out[l.Items[i].GetLabels()["tekton.dev/pipelineTask"]] = &l.Items[i]
	}
	return out
}

func tektonSummary(pr *unstructured.Unstructured, trs map[string]*unstructured.Unstructured) string {
	if pr == nil {
		return "no run seen"
	}
	s, r, _ := succeeded(pr)
	parts := []string{s + "/" + r}
	for name, tr := range trs {
		s, r, _ := succeeded(tr)
		parts = append(parts, fmt.Sprintf("%s=%s/%s", name, s, r))
	}
	return strings.Join(parts, " ")
}

// taskIs: the pipeline task's TaskRun has the Succeeded status (and reason, when given).
func taskIs(task, status, reason string) func(*unstructured.Unstructured, map[string]*unstructured.Unstructured) bool {
	return func(_ *unstructured.Unstructured, trs map[string]*unstructured.Unstructured) bool {
		tr, ok := trs[task]
		if !ok {
			return false
		}
		s, r, _ := succeeded(tr)
		return s == status && (reason == "" || r == reason)
	}
}

// runIs: the PipelineRun has ended with the Succeeded status ("True" or "False").
func runIs(status string) func(*unstructured.Unstructured, map[string]*unstructured.Unstructured) bool {
	return func(pr *unstructured.Unstructured, _ map[string]*unstructured.Unstructured) bool {
		s, _, _ := succeeded(pr)
		return s == status
	}
}

// result is a TaskRun's result value.
func result(tr *unstructured.Unstructured, name string) string {
	if tr == nil {
		return ""
	}
	rs, _, _ := unstructured.NestedSlice(tr.Object, "status", "results")
	for _, r := range rs {
		if m, ok := r.(map[string]any); ok && m["name"] == name {
			v, _ := m["value"].(string)
			return v
		}
	}
	return ""
}

func (f *fixture) dumpTekton() {
	dir := filepath.Join(repoRoot, "_output", "e2e", f.ns)
	_ = os.MkdirAll(dir, 0o755)
	out, err := f.try(nil, "kubectl", "-n", f.ns, "get", "pipelineruns,taskruns", "-o", "yaml")
	if err != nil {
		out += "\n" + err.Error()
	}
	_ = os.WriteFile(filepath.Join(dir, "tekton.yaml"), []byte(out), 0o644)
}

// A waiting Tekton run: the approval wait's pod runs (its watch is open).
func approvalWaiting(pr *unstructured.Unstructured, trs map[string]*unstructured.Unstructured) bool {
	return taskIs("approval", "Unknown", "Running")(pr, trs) && taskIs("request-approval", "True", "")(pr, trs)
}

const tektonToApproval, tektonToEnd = 8 * time.Minute, 6 * time.Minute

// An approved Tekton run promotes: production serves the published version and answers a real
// test image; staging is torn down, the run record and the audit record say who approved.
// mallory cannot decide, and a decision on the run exists only once.
func TestTektonApprovedRunIsPromoted(t *testing.T) {
	t.Parallel()
	f := given(t)
	run := f.tektonRun("min-approvals=2")
	_, trs := f.waitTekton(run, tektonToApproval, "approval waiting", approvalWaiting)
	version := result(trs["publish"], "model-version")
	f.people()
	approverAs := func(person string, args ...string) error {
		_, err := f.try(nil, filepath.Join(binDir, "approver"), append(args, "--kubeconfig", f.kubeconfigOf(person), "-n", f.ns)...)
		return err
	}
	if err := approverAs(mallory, "approve", run, "--tekton"); err == nil || !strings.Contains(err.Error(), "only approvers") {
		t.Fatalf("mallory's approve --tekton: %v, want refused by the approval policy", err)
	}
	if err := approverAs(alice, "approve", run, "--tekton"); err != nil {
		t.Fatalf("alice's approve --tekton: %v", err)
	}
	if err := approverAs(alice, "reject", run, "--tekton", "--reason", "changed my mind"); err == nil {
		t.Errorf("alice changed a decision already made")
	}
	// min-approvals=2: alice's approval alone does not end the wait.
	time.Sleep(5 * time.Second)
	if _, trs := f.waitTekton(run, time.Minute, "approval still waiting", approvalWaiting); trs["promote"] != nil {
		t.Fatalf("the run went on with one of two approvals")
	}
	if err := approverAs(bob, "approve", run, "--tekton"); err != nil {
		t.Fatalf("bob's approve --tekton: %v", err)
	}
	_, trs = f.waitTekton(run, tektonToEnd, "run succeeded", runIs("True"))
	want := strings.Join(sortedStrings(f.user(alice), f.user(bob)), ",")
	if d, by := result(trs["approval"], "decision"), result(trs["approval"], "approved-by"); d != "approved" || by != want {
		t.Errorf("approval: decision %q by %q, want approved by %s", d, by, want)
	}
	dep, err := kube.AppsV1().Deployments(f.ns).Get(f.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("production deployment: %v", err)
	}
	if args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "); version == "" || !strings.Contains(args, version) {
		t.Errorf("production serves %q, want version %q", args, version)
	}
	productionAnswers(t, f)
	if left := f.stagingServers(); len(left) > 0 {
		t.Errorf("staging servers %v still exist after the run", left)
	}
	if r := f.runRecord(run); r.Status != "Succeeded" || !r.Promoted || r.ModelVersion != version {
		t.Errorf("run record %+v: want Succeeded, promoted, version %s", r, version)
	}
	if _, ok := trs["record-unpublished"]; ok {
		t.Errorf("both run records ran")
	}
	audit := "s3://models/registry/fashion-mnist/approvals/" + version + "/" + run + ".json"
	b, err := objstore.ReadAll(f.ctx, f.store("gantry-s3"), audit, 1<<20)
	if err != nil || !strings.Contains(string(b), f.user(alice)) {
		t.Errorf("audit record %s: %s %v", audit, b, err)
	}
	// The run owns its training Job (deleting the PipelineRun collects it).
	job := result(trs["train"], "job-name")
	if j, err := kube.BatchV1().Jobs(f.ns).Get(f.ctx, job, metav1.GetOptions{}); err != nil || len(j.OwnerReferences) != 1 || j.OwnerReferences[0].Kind != "PipelineRun" {
		t.Errorf("training Job %s: %v, owners %v, want the PipelineRun", job, err, j.OwnerReferences)
	}
}

// A rejected Tekton run and one whose approval times out both fail at the approval with the
// reason, and nothing is promoted; the run records say Failed.
func TestTektonRejectedAndTimedOutRunsAreNotPromoted(t *testing.T) {
	t.Parallel()
	f := given(t)
	rejected := f.tektonRun()
	silent := f.tektonRun("approval-timeout=20s")
	f.waitTekton(rejected, tektonToApproval, "approval waiting", approvalWaiting)
	f.sh(nil, filepath.Join(binDir, "approver"), "reject", rejected, "--tekton", "-n", f.ns, "--reason", "e2e: confusion matrix looks off")
	for run, want := range map[string]string{rejected: "confusion matrix looks off", silent: "timed out after 20s"} {
		_, trs := f.waitTekton(run, tektonToApproval+tektonToEnd, "run failed", runIs("False"))
		_, _, msg := succeeded(trs["approval"])
		if result(trs["approval"], "decision") != "rejected" || !strings.Contains(result(trs["approval"], "reason"), want) {
			t.Errorf("%s: approval %q (%s), want rejected: %s", run, result(trs["approval"], "decision"), result(trs["approval"], "reason"), want)
		}
		if _, ok := trs["promote"]; ok {
			t.Errorf("%s: promote ran (approval message %q)", run, msg)
		}
		if r := f.runRecord(run); r.Status != "Failed" || r.Promoted {
			t.Errorf("%s: run record %+v, want Failed, not promoted", run, r)
		}
	}
	f.notPromoted()
}

// The first release of a model that fails its smoke test in production is rolled back (in
// finally): nothing serves afterwards, and the run fails.
func TestTektonSmokeFailureRollsBack(t *testing.T) {
	t.Parallel()
	f := given(t)
	run := f.tektonRun("smoke-min-accuracy=0.999")
	f.waitTekton(run, tektonToApproval, "approval waiting", approvalWaiting)
	f.sh(nil, filepath.Join(binDir, "approver"), "approve", run, "--tekton", "-n", f.ns)
	_, trs := f.waitTekton(run, tektonToEnd, "run failed", runIs("False"))
	for task, want := range map[string]string{"promote": "True", "smoke": "False", "rollback": "True"} {
		if s, _, msg := succeeded(trs[task]); s != want {
			t.Errorf("%s: %s (%s), want %s", task, s, msg, want)
		}
	}
	if out := result(trs["rollback"], "outcome"); out == "" {
		t.Errorf("rollback outcome empty")
	}
	f.notPromoted()
	if r := f.runRecord(run); r.Status != "Failed" || r.Promoted {
		t.Errorf("run record %+v, want Failed, not promoted", r)
	}
}

// The training TaskRun's pod is killed mid-training: the retry re-attaches to the same Job, which
// is never deleted or created twice, and the run goes on to its approval.
func TestTektonKilledTrainingPodReattaches(t *testing.T) {
	t.Parallel()
	f := given(t)
	jobs := f.countJobs()
	run := f.tektonRun("hyperparameters=epochs=4,learning-rate=0.001,batch-size=128")
	trainer := f.waitPod("batch.kubernetes.io/job-name", 4*time.Minute, "training running", func(p *corev1.Pod) bool { return p.Status.Phase == "Running" })
	_, trs := f.waitTekton(run, time.Minute, "launcher running", taskIs("train", "Unknown", "Running"))
	launcher, _, _ := unstructured.NestedString(trs["train"].Object, "status", "podName")
	killed, err := kube.CoreV1().Pods(f.ns).Get(f.ctx, launcher, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kube.CoreV1().Pods(f.ns).Delete(f.ctx, launcher, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("killing the launcher pod %s: %v", launcher, err)
	}
	t.Logf("killed %s while %s trains", launcher, trainer.Name)
	_, trs = f.waitTekton(run, tektonToApproval, "training done after the kill", taskIs("train", "True", ""))
	if n := jobs(); n != 1 {
		t.Errorf("%d training Jobs were created, want exactly 1", n)
	}
	// Tekton replaces the killed launcher in one of two ways, depending on what its controller
	// saw first: the pod failed (SIGTERM) → the TaskRun fails and the pipeline task's retry runs
	// a new one; the pod was gone → the same TaskRun creates its pod again. Either way another
	// launcher pod finished the training, re-attached to the same Job.
	retries, _, _ := unstructured.NestedSlice(trs["train"].Object, "status", "retriesStatus")
	final, _, _ := unstructured.NestedString(trs["train"].Object, "status", "podName")
	p, err := kube.CoreV1().Pods(f.ns).Get(f.ctx, final, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the train TaskRun's final pod %s: %v", final, err)
	}
	// (The TaskRun succeeded: its step ended 0. The pod's own phase follows a moment later.)
	t.Logf("train TaskRun: %d retries, final launcher pod %s", len(retries), final)
	if p.UID == killed.UID {
		t.Errorf("the train TaskRun's final pod %s is the killed one", final)
	}
	if p, err := kube.CoreV1().Pods(f.ns).Get(f.ctx, trainer.Name, metav1.GetOptions{}); err != nil || p.Status.Phase != "Succeeded" {
		t.Errorf("the training pod %s did not finish its training: %v", trainer.Name, err)
	}
}

// gantry's Tasks reused outside ml-pipeline: a user's own Pipeline refers to one by name and to
// another through Tekton's cluster resolver. Tekton's webhook validates what is applied: a
// Pipeline naming an undefined parameter is refused at admission.
func TestTektonTasksReusedFromAUserPipeline(t *testing.T) {
	t.Parallel()
	f := given(t)
	d := dyn(t)
	pipeline := map[string]any{"apiVersion": "tekton.dev/v1", "kind": "Pipeline", "metadata": map[string]any{"name": "my-release-gate"},
		"spec": map[string]any{"params": []any{map[string]any{"name": "verdict", "type": "string"}},
			"tasks": []any{
				map[string]any{"name": "canary-gate", "taskRef": map[string]any{"name": "approver-conclude"},
					"params": []any{map[string]any{"name": "decision", "value": "$(params.verdict)"}, map[string]any{"name": "reason", "value": "canary said $(params.verdict)"}}},
				map[string]any{"name": "resolved-gate", "runAfter": []any{"canary-gate"}, "taskRef": map[string]any{"resolver": "cluster",
					"params": []any{map[string]any{"name": "kind", "value": "task"}, map[string]any{"name": "name", "value": "approver-conclude"},
						map[string]any{"name": "namespace", "value": f.ns}}},
					"params": []any{map[string]any{"name": "decision", "value": "approved"}}},
			}}}
	if _, err := d.Resource(pipelinesRes).Namespace(f.ns).Create(f.ctx, &unstructured.Unstructured{Object: pipeline}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("user pipeline: %v", err)
	}
	bad := map[string]any{"apiVersion": "tekton.dev/v1", "kind": "Pipeline", "metadata": map[string]any{"name": "bad"},
		"spec": map[string]any{"tasks": []any{map[string]any{"name": "gate", "taskRef": map[string]any{"name": "approver-conclude"},
			"params": []any{map[string]any{"name": "decision", "value": "$(params.nope)"}}}}}}
	if _, err := d.Resource(pipelinesRes).Namespace(f.ns).Create(f.ctx, &unstructured.Unstructured{Object: bad}, metav1.CreateOptions{}); err == nil ||
		!strings.Contains(err.Error(), "admission webhook") {
		t.Errorf("a Pipeline with an undefined parameter: %v, want refused by Tekton's webhook", err)
	}
	start := func(verdict string) string {
		pr := map[string]any{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": map[string]any{"generateName": "my-release-gate-"},
			"spec": map[string]any{"pipelineRef": map[string]any{"name": "my-release-gate"},
				"params":          []any{map[string]any{"name": "verdict", "value": verdict}},
				"taskRunTemplate": map[string]any{"serviceAccountName": "gantry-conclude"}}}
		u, err := d.Resource(train.PipelineRunsResource).Namespace(f.ns).Create(f.ctx, &unstructured.Unstructured{Object: pr}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u.GetName()
	}
	pass, fail := start("pass"), start("fail")
	_, trs := f.waitTekton(pass, 4*time.Minute, "user pipeline passed", runIs("True"))
	if s, _, _ := succeeded(trs["resolved-gate"]); s != "True" {
		t.Errorf("the cluster-resolved task: %s", s)
	}
	_, trs = f.waitTekton(fail, 4*time.Minute, "user pipeline failed", runIs("False"))
	// Tekton's message names the step and its exit code (the reason is in the step's log).
	if _, _, msg := succeeded(trs["canary-gate"]); !strings.Contains(msg, "exited with code 1") {
		t.Errorf("canary-gate failed with %q, want exit code 1 (a failure, not bad input)", msg)
	}
	if _, ok := trs["resolved-gate"]; ok {
		t.Errorf("the gate after a failed one ran")
	}
}

func sortedStrings(s ...string) []string {
	sort.Strings(s)
	return s
}
