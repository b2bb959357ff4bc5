//go:build e2e

// Package e2e runs gantry's pipeline on a real Kubernetes API server with the real Argo
// controller (hack/cluster/, brought up by hack/e2e.sh), the way users run it: the argo CLI
// submits, resumes and retries; the approver binary rejects. Each test gets its own namespace
// with gantry installed (hack/cluster/gantry.sh), waits with watches rather than sleeps, and on
// failure dumps the run, the objects and every pod's logs to _output/e2e/<namespace>/.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/tasks/publish"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

var (
	kube     kubernetes.Interface
	argoWF   wfclient.Interface
	repoRoot string
	binDir   string // gantry binaries built for the test run (approver, model-publisher)
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		kc := os.Getenv("KUBECONFIG")
		if kc == "" {
			fmt.Fprintln(os.Stderr, "e2e: KUBECONFIG is not set; run the suite with hack/e2e.sh")
			return 2
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 2
		}
		cfg.QPS, cfg.Burst = 50, 100
		kube = kubernetes.NewForConfigOrDie(cfg)
		argoWF = wfclient.NewForConfigOrDie(cfg)
		wd, _ := os.Getwd()
		repoRoot = filepath.Dir(wd)
		binDir, err = os.MkdirTemp("", "gantry-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 2
		}
		defer os.RemoveAll(binDir)
		// Built as ko builds the images (static, trimmed): hack/e2e.sh compiles this suite the
		// same way, so every package here is compiled once, for the images, and shared.
		build := exec.Command("go", "build", "-trimpath", "-o", binDir, "./cmd/approver", "./cmd/model-publisher")
		build.Dir, build.Stdout, build.Stderr = repoRoot, os.Stderr, os.Stderr
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: building the approver:", err)
			return 2
		}
		return m.Run()
	}())
}

// fixture is one test's namespace with gantry installed.
type fixture struct {
	t   *testing.T
	ns  string
	ctx context.Context
}

// given creates a namespace for the test and installs gantry into it (templates, RBAC, the
// gantry-s3 Secret). On failure the namespace's state is dumped; afterwards it is deleted.
func given(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	name := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	if len(name) > 40 {
		name = name[:40]
	}
	f := &fixture{t: t, ns: fmt.Sprintf("e2e-%s-%s", strings.Trim(name, "-"), rand.String(4)), ctx: ctx}
	t.Logf("namespace %s", f.ns)
	f.sh(map[string]string{"SKIP_IMAGES": "1"}, "hack/cluster/gantry.sh", f.ns)
	t.Cleanup(func() {
		if t.Failed() {
			f.dump()
		}
		if os.Getenv("E2E_KEEP") == "" {
			_ = kube.CoreV1().Namespaces().Delete(context.Background(), f.ns, metav1.DeleteOptions{})
		}
	})
	return f
}

// sh runs a command from the repository root and returns its stdout; a failure fails the test.
func (f *fixture) sh(env map[string]string, name string, args ...string) string {
	f.t.Helper()
	out, err := f.try(env, name, args...)
	if err != nil {
		f.t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func (f *fixture) try(env map[string]string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(f.ctx, name, args...)
	cmd.Dir = repoRoot
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w\n%s%s", err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String()), err
}

// argo runs the argo CLI in the test's namespace.
func (f *fixture) argo(args ...string) string {
	f.t.Helper()
	return f.sh(nil, "argo", append([]string{"--loglevel", "warn", "-n", f.ns}, args...)...)
}

// submit starts the ml-pipeline the way the README does, with quick-training defaults that the
// given parameters override.
func (f *fixture) submit(params ...string) string {
	f.t.Helper()
	run := f.argo(f.submitArgs(params...)...)
	f.t.Logf("submitted %s", run)
	return run
}

// submitArgs are the argo arguments of submit.
func (f *fixture) submitArgs(params ...string) []string {
	args := []string{"submit", "--from", "workflowtemplate/ml-pipeline", "-o", "name",
		"-p", "hyperparameters=epochs=2,learning-rate=0.001,batch-size=128", "-p", "min-accuracy=0.8",
		// Tests run pipelines side by side on 2 cores: latency is not what they check.
		"-p", "max-p99-ms=10000"}
	for _, p := range params {
		args = append(args, "-p", p)
	}
	return args
}

// waitRun watches the run until cond holds; a run that ends without cond fails the test.
func (f *fixture) waitRun(run string, timeout time.Duration, what string, cond func(*wfv1.Workflow) bool) *wfv1.Workflow {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, timeout)
	defer cancel()
	lw := cache.NewListWatchFromClient(argoWF.ArgoprojV1alpha1().RESTClient(), "workflows", f.ns,
		fields.OneTermEqualSelector("metadata.name", run))
	var last *wfv1.Workflow
	_, err := watchtools.UntilWithSync(ctx, lw, &wfv1.Workflow{}, nil, func(ev watch.Event) (bool, error) {
		w, ok := ev.Object.(*wfv1.Workflow)
		if !ok {
			return false, nil
		}
		last = w
		if cond(w) {
			return true, nil
		}
		if w.Status.Fulfilled() {
			return false, fmt.Errorf("run ended %s (%q) before: %s", w.Status.Phase, w.Status.Message, what)
		}
		return false, nil
	})
	if err != nil {
		f.t.Fatalf("waiting for %s: %v", what, err)
	}
	f.t.Logf("%s: %s", what, summary(last))
	return last
}

// waitPod watches the namespace's pods matching selector until one satisfies cond.
func (f *fixture) waitPod(selector string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, timeout)
	defer cancel()
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return kube.CoreV1().Pods(f.ns).List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return kube.CoreV1().Pods(f.ns).Watch(ctx, o)
		},
	}
	var found *corev1.Pod
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		if ok && cond(p) {
			found = p
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		f.t.Fatalf("waiting for %s (%s): %v", what, selector, err)
	}
	f.t.Logf("%s: %s", what, found.Name)
	return found
}

func phaseIs(p wfv1.WorkflowPhase) func(*wfv1.Workflow) bool {
	return func(w *wfv1.Workflow) bool { return w.Status.Phase == p }
}

func nodeIs(display string, p wfv1.NodePhase) func(*wfv1.Workflow) bool {
	return func(w *wfv1.Workflow) bool {
		n := w.Status.Nodes.FindByDisplayName(display)
		return n != nil && n.Phase == p
	}
}

// awaitingApproval: the approval node waits and the request step (the notification a person acts
// on) has finished. Tests act as that person, after the request: a resume while the request's pod
// starts races the controller's own updates of the run, and Argo's resume gives up after five
// conflicts in ≈50 ms ("timed out waiting for the condition": seen once in CI).
func awaitingApproval(w *wfv1.Workflow) bool {
	return nodeIs("approval", wfv1.NodeRunning)(w) && nodeIs("request-approval(0)", wfv1.NodeSucceeded)(w)
}

// output is a node's output parameter ("" when absent).
func output(w *wfv1.Workflow, display, param string) string {
	n := w.Status.Nodes.FindByDisplayName(display)
	if n == nil || n.Outputs == nil {
		return ""
	}
	for _, p := range n.Outputs.Parameters {
		if p.Name == param && p.Value != nil {
			return p.Value.String()
		}
	}
	return ""
}

// summary is "Phase: node=phase ..." of a run's steps in start order.
func summary(w *wfv1.Workflow) string {
	var b strings.Builder
	b.WriteString(string(w.Status.Phase))
	for _, n := range w.Status.Nodes {
		if n.Type == wfv1.NodeTypePod || n.Type == wfv1.NodeTypeSuspend {
			fmt.Fprintf(&b, " %s=%s", n.DisplayName, n.Phase)
		}
	}
	return b.String()
}

// runRecord reads what the exit handler recorded for run (model-publisher record) from the
// cluster's MinIO, with the namespace's own gantry-s3 credentials.
func (f *fixture) runRecord(run string) publish.RunRecord {
	f.t.Helper()
	s3 := f.store("gantry-s3")
	uri := publish.RunRecordURI("s3://models/registry", "fashion-mnist", run)
	b, err := objstore.ReadAll(f.ctx, s3, uri, 1<<20)
	if err != nil {
		f.t.Fatalf("run record: %v", err)
	}
	var r publish.RunRecord
	if err := json.Unmarshal(b, &r); err != nil {
		f.t.Fatalf("run record %s: %v: %s", uri, err, b)
	}
	return r
}

// store opens the cluster's MinIO with the credentials in the namespace's Secret.
func (f *fixture) store(secret string) objstore.Store {
	f.t.Helper()
	sec, err := kube.CoreV1().Secrets(f.ns).Get(f.ctx, secret, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	svc, err := kube.CoreV1().Services("gantry-system").Get(f.ctx, "minio", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port),
		Creds: credentials.NewStaticV4(string(sec.Data["AWS_ACCESS_KEY_ID"]), string(sec.Data["AWS_SECRET_ACCESS_KEY"]), string(sec.Data["AWS_SESSION_TOKEN"]))})
	if err != nil {
		f.t.Fatal(err)
	}
	return s3
}

// notPromoted asserts that no production server exists in the namespace.
func (f *fixture) notPromoted() {
	f.t.Helper()
	_, err := kube.AppsV1().Deployments(f.ns).Get(f.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		f.t.Errorf("production deployment: want NotFound, got err=%v", err)
	}
}

// dump writes the run, the namespace's objects and all pod logs to _output/e2e/<ns>/.
func (f *fixture) dump() {
	dir := filepath.Join(repoRoot, "_output", "e2e", f.ns)
	_ = os.MkdirAll(dir, 0o755)
	save := func(file string, name string, args ...string) {
		out, err := f.try(nil, name, args...)
		if err != nil {
			out += "\n" + err.Error()
		}
		_ = os.WriteFile(filepath.Join(dir, file), []byte(out), 0o644)
	}
	save("runs.txt", "argo", "-n", f.ns, "get", "@latest")
	save("workflows.yaml", "kubectl", "-n", f.ns, "get", "workflows", "-o", "yaml")
	save("objects.txt", "kubectl", "-n", f.ns, "get", "pods,jobs,deployments,services,configmaps", "-o", "wide")
	save("events.txt", "kubectl", "-n", f.ns, "get", "events", "--sort-by=.lastTimestamp")
	pods, err := kube.CoreV1().Pods(f.ns).List(context.Background(), metav1.ListOptions{})
	if err == nil {
		for _, p := range pods.Items {
			save("logs-"+p.Name+".txt", "kubectl", "-n", f.ns, "logs", p.Name, "--all-containers", "--prefix", "--tail=200")
		}
	}
	if runs, err := f.try(nil, "argo", "-n", f.ns, "get", "@latest"); err == nil {
		f.t.Logf("run at failure:\n%s", runs)
	}
	f.t.Logf("namespace %s dumped to %s", f.ns, dir)
}

// countJobs returns how many distinct Jobs (by UID) a watch of the namespace saw created
// until stop is called: "exactly one Job ever existed" cannot be checked by a final List.
func (f *fixture) countJobs() (stop func() int) {
	f.t.Helper()
	w, err := kube.BatchV1().Jobs(f.ns).Watch(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	uids := map[string]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if o, ok := ev.Object.(metav1.Object); ok && ev.Type == watch.Added {
				uids[string(o.GetUID())] = true
			}
		}
	}()
	return func() int {
		w.Stop()
		<-done
		return len(uids)
	}
}
