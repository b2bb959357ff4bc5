//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-ml/gantry/internal/testenv"
	"github.com/gantry-ml/gantry/pipeline/argo"
	"github.com/gantry-ml/gantry/tasks/trigger"
)

// pushRegistry is a Docker distribution registry (the real one, built by hack/cluster/build.sh)
// on the node, sending its push notifications to the Argo Server's events endpoint of the
// test's namespace with the gantry-registry-notifier's token.
type pushRegistry struct {
	t          *testing.T
	port       string
	dir, cfg   string
	cmd        *exec.Cmd
	repository string // <127.0.0.1:port>/gantry/fashion-trainer: as the node pulls it
}

func (f *fixture) startPushRegistry(eventsURL, token string) *pushRegistry {
	f.t.Helper()
	addr := testenv.FreeAddr(f.t)
	r := &pushRegistry{t: f.t, port: addr[strings.LastIndex(addr, ":")+1:], dir: f.t.TempDir()}
	r.repository = "127.0.0.1:" + r.port + "/" + argo.TrainImageRepository
	r.cfg = filepath.Join(r.dir, "config.yml")
	cfg := fmt.Sprintf(`version: 0.1
log: {level: info}
storage:
  filesystem: {rootdirectory: %s/data}
  delete: {enabled: true}
http:
  addr: 0.0.0.0:%s
notifications:
  endpoints:
  - name: argo-server
    url: %s
    headers:
      Authorization: [Bearer %s]
    timeout: 3s
    threshold: 3
    backoff: 1s
    ignore:
      actions: [pull]
`, r.dir, r.port, eventsURL, token)
	if err := os.WriteFile(r.cfg, []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
	r.start()
	f.t.Cleanup(r.stop)
	return r
}

func (r *pushRegistry) start() {
	r.t.Helper()
	log, err := os.OpenFile(filepath.Join(r.dir, "registry.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	r.cmd = exec.Command("registry", "serve", r.cfg)
	r.cmd.Stdout, r.cmd.Stderr = log, log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting the distribution registry (hack/cluster/build.sh registry): %v", err)
	}
	err = wait.PollUntilContextTimeout(r.t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		resp, err := http.Get("http://127.0.0.1:" + r.port + "/v2/")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		r.t.Fatalf("registry not ready: %v", err)
	}
}

// stop kills the registry: notifications it still queues in memory are lost.
func (r *pushRegistry) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// push pushes a new (random) image under tag to repo (default: the training repository) and
// returns its digest and when the push finished.
func (r *pushRegistry) push(repo, tag string) (string, time.Time) {
	r.t.Helper()
	if repo == "" {
		repo = r.repository
	}
	img, err := random.Image(256, 1)
	if err != nil {
		r.t.Fatal(err)
	}
	ref, err := name.NewTag(repo + ":" + tag)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		r.t.Fatalf("push %s: %v", ref, err)
	}
	d, _ := img.Digest()
	return d.String(), time.Now()
}

// Given a namespace with the push trigger, the real distribution registry notifying the real
// Argo Server: a tagged push starts exactly one ml-pipeline run with <repo>@<digest>; a blob
// push or a push to another repository starts none; a notification delivered twice starts one;
// a batch with two manifests starts two; with the Argo Server down, the registry's retries
// deliver the push once the server is back, and when the registry also restarted (its queue
// lost) the catch-up starts the run. The registry's token can submit gantry-trigger runs only.
//
// Not parallel: it stops the Argo Server, which the other tests' report checks use.
func TestRegistryPushStartsExactlyOneRunPerDigest(t *testing.T) {
	f := given(t)
	node, err := kube.CoreV1().Nodes().List(f.ctx, metav1.ListOptions{})
	if err != nil || len(node.Items) == 0 {
		t.Fatalf("nodes: %v", err)
	}
	// The first node: the test process (and so the registry it starts) runs in its namespace.
	nodeIP := ""
	for _, n := range node.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && n.Name == firstNode {
				nodeIP = a.Address
			}
		}
	}
	eventsURL := f.argoServerURL() + "/api/v1/events/" + f.ns + "/" + argo.EventDiscriminator
	token := f.tokenOf(argo.NotifierAccount)
	reg := f.startPushRegistry(eventsURL, token)

	// What a cluster owner sets: the repository as the nodes pull it, and as the trigger's pod
	// reaches the registry (the node's address).
	tmpl, err := argoWF.ArgoprojV1alpha1().WorkflowTemplates(f.ns).Get(f.ctx, argo.TriggerTemplate, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range tmpl.Spec.Arguments.Parameters {
		switch p.Name {
		case "repository":
			tmpl.Spec.Arguments.Parameters[i].Value = wfv1.AnyStringPtr(reg.repository)
		case "catch-up-repository":
			tmpl.Spec.Arguments.Parameters[i].Value = wfv1.AnyStringPtr(nodeIP + ":" + reg.port + "/" + argo.TrainImageRepository)
		}
	}
	if _, err := argoWF.ArgoprojV1alpha1().WorkflowTemplates(f.ns).Update(f.ctx, tmpl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if cron, err := argoWF.ArgoprojV1alpha1().CronWorkflows(f.ns).Get(f.ctx, argo.TriggerTemplate+"-catch-up", metav1.GetOptions{}); err != nil || !cron.Spec.Suspend {
		t.Fatalf("the catch-up CronWorkflow: %v (suspended until configured: %v)", err, err == nil && cron.Spec.Suspend)
	}
	catchUp := func() *wfv1.Workflow {
		t.Helper()
		run := strings.TrimPrefix(f.argo("submit", "--from", "cronwf/"+argo.TriggerTemplate+"-catch-up", "-o", "name"), "workflow.argoproj.io/")
		return f.waitRun(run, 3*time.Minute, "catch-up succeeded", phaseIs(wfv1.WorkflowSucceeded))
	}
	if w := catchUp(); triggerOutput(w, "adopted") != "0" {
		t.Fatalf("first catch-up of an empty repository adopted %q", triggerOutput(w, "adopted"))
	}

	// started maps every ml-pipeline run a trigger run reported as submitted to how often.
	started := map[string]int{}
	seen := map[string]bool{} // trigger runs counted
	collect := func() {
		t.Helper()
		list, err := argoWF.ArgoprojV1alpha1().Workflows(f.ns).List(f.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range list.Items {
			if !strings.HasPrefix(w.Name, argo.TriggerTemplate+"-") || seen[w.Name] || !w.Status.Fulfilled() {
				continue
			}
			if w.Status.Phase != wfv1.WorkflowSucceeded {
				t.Fatalf("trigger run %s: %s %s", w.Name, w.Status.Phase, w.Status.Message)
			}
			seen[w.Name] = true
			if s := triggerOutput(&w, "submitted"); s != "" {
				for _, run := range strings.Split(s, ",") {
					started[run]++
				}
			}
		}
	}
	// waitStarted waits until the digest's run exists, checks its image and deletes it (nothing
	// here needs it to train), and returns how long after since it appeared.
	waitStarted := func(digest string, since time.Time, timeout time.Duration) time.Duration {
		t.Helper()
		run := trigger.RunName("ml-pipeline", digest)
		var took time.Duration
		err := wait.PollUntilContextTimeout(f.ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			w, err := argoWF.ArgoprojV1alpha1().Workflows(f.ns).Get(ctx, run, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			took = time.Since(since)
			if img := w.Spec.Arguments.GetParameterByName("train-image"); img == nil || img.Value.String() != reg.repository+"@"+digest {
				t.Errorf("run %s: train-image %v, want %s@%s", run, img, reg.repository, digest)
			}
			return true, argoWF.ArgoprojV1alpha1().Workflows(f.ns).Delete(ctx, run, metav1.DeleteOptions{})
		})
		if err != nil {
			t.Fatalf("no run %s for %s within %s: %v (registry log: %s)", run, digest, timeout, err, filepath.Join(reg.dir, "registry.log"))
		}
		return took
	}
	waitTriggers := func(n int) {
		t.Helper()
		err := wait.PollUntilContextTimeout(f.ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			collect()
			return len(seen) >= n, nil
		})
		if err != nil {
			t.Fatalf("%d trigger runs finished, want %d", len(seen), n)
		}
	}

	// A tagged push: one run, by notification.
	a, pushed := reg.push("", "v1")
	t.Logf("push → run started (notification path): %s", waitStarted(a, pushed, 2*time.Minute).Round(100*time.Millisecond))
	// A blob alone, and an image in another repository, then a second image: only the second
	// starts a run (the registry delivers in order, so the first two were judged by then).
	layer, _ := random.Layer(128, "application/vnd.oci.image.layer.v1.tar")
	repo, _ := name.NewRepository(reg.repository)
	if err := remote.WriteLayer(repo, layer); err != nil {
		t.Fatal(err)
	}
	reg.push("127.0.0.1:"+reg.port+"/team/other", "v1")
	b, pushed := reg.push("", "v2")
	waitStarted(b, pushed, 2*time.Minute)
	waitTriggers(3) // the first catch-up, a, b

	// The same notification delivered twice, and a batch of two manifests and a blob.
	post := func(events ...map[string]any) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"events": events})
		req, _ := http.NewRequestWithContext(f.ctx, http.MethodPost, eventsURL, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d", eventsURL, resp.StatusCode)
		}
	}
	manifest := func(digest, tag string) map[string]any {
		return map[string]any{"action": "push", "target": map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest": digest, "repository": argo.TrainImageRepository, "tag": tag}, "request": map[string]any{"host": "127.0.0.1:" + reg.port}}
	}
	post(manifest(a, "v1"))
	c, d := "sha256:"+strings.Repeat("c", 64), "sha256:"+strings.Repeat("d", 64)
	post(map[string]any{"action": "push", "target": map[string]any{"mediaType": "application/octet-stream", "digest": "sha256:" + strings.Repeat("e", 64),
		"repository": argo.TrainImageRepository}}, manifest(c, "v3"), manifest(d, "v4"))
	waitStarted(c, time.Now(), 2*time.Minute)
	waitStarted(d, time.Now(), 2*time.Minute)
	waitTriggers(5)

	// The Argo Server down during a push: the registry retries and delivers when it is back.
	scaleArgoServer(f, 0)
	e, pushed := reg.push("", "v5")
	time.Sleep(3 * time.Second) // a few failed deliveries
	scaleArgoServer(f, 1)
	t.Logf("push with the Argo Server down → run started after it came back: %s", waitStarted(e, pushed, 3*time.Minute).Round(100*time.Millisecond))
	waitTriggers(6)
	// Down again, and the registry restarts before the server is back: the notification is gone,
	// the catch-up starts the run.
	scaleArgoServer(f, 0)
	g, _ := reg.push("", "v6")
	time.Sleep(2 * time.Second)
	reg.stop()
	reg.start()
	scaleArgoServer(f, 1)
	time.Sleep(5 * time.Second)
	if _, err := argoWF.ArgoprojV1alpha1().Workflows(f.ns).Get(f.ctx, trigger.RunName("ml-pipeline", g), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a run for the lost notification's digest exists before the catch-up: %v", err)
	}
	t0 := time.Now()
	w := catchUp()
	t.Logf("catch-up submitted → run started: %s", waitStarted(g, t0, time.Minute).Round(100*time.Millisecond))
	if triggerOutput(w, "submitted") != trigger.RunName("ml-pipeline", g) {
		t.Errorf("the catch-up submitted %q, want only the lost push's run", triggerOutput(w, "submitted"))
	}
	waitTriggers(7) // + the second catch-up

	want := []string{a, b, c, d, e, g}
	for _, dg := range want {
		if n := started[trigger.RunName("ml-pipeline", dg)]; n != 1 {
			t.Errorf("%s: %d runs submitted, want exactly 1", dg, n)
		}
	}
	if len(started) != len(want) {
		t.Errorf("runs submitted: %v, want one for each of %v", started, want)
	}

	// The registry's token submits gantry-trigger runs and nothing else.
	cfg := &rest.Config{Host: restHost(t), BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	notifier := wfclient.NewForConfigOrDie(cfg)
	own := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{GenerateName: "mine-"}, Spec: wfv1.WorkflowSpec{Entrypoint: "x",
		Templates: []wfv1.Template{{Name: "x", Container: &corev1.Container{Image: "busybox", Command: []string{"sh", "-c", "id"}}}}}}
	if _, err := notifier.ArgoprojV1alpha1().Workflows(f.ns).Create(f.ctx, own, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "may only submit") {
		t.Errorf("the registry's token created a Workflow of its own: %v", err)
	}
	other := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{GenerateName: "p-"}, Spec: wfv1.WorkflowSpec{WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: "ml-pipeline"}}}
	if _, err := notifier.ArgoprojV1alpha1().Workflows(f.ns).Create(f.ctx, other, metav1.CreateOptions{}); err == nil {
		t.Errorf("the registry's token submitted ml-pipeline directly")
	}
}

// triggerOutput is a gantry-trigger run's result (its trigger step, after any retries).
func triggerOutput(w *wfv1.Workflow, param string) string {
	if v := output(w, "trigger", param); v != "" {
		return v
	}
	for i := 4; i >= 0; i-- {
		if v := output(w, fmt.Sprintf("trigger(%d)", i), param); v != "" {
			return v
		}
	}
	return ""
}

// scaleArgoServer sets the Argo Server's replicas and waits until that many are ready (0: no
// pod left).
func scaleArgoServer(f *fixture, n int32) {
	f.t.Helper()
	s, err := kube.AppsV1().Deployments("argo").GetScale(f.ctx, "argo-server", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	s.Spec.Replicas = n
	if _, err := kube.AppsV1().Deployments("argo").UpdateScale(f.ctx, "argo-server", s, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(f.ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := kube.CoreV1().Pods("argo").List(ctx, metav1.ListOptions{LabelSelector: "app=argo-server"})
		if err != nil {
			return false, err
		}
		if n == 0 {
			return len(pods.Items) == 0, nil
		}
		var d *appsv1.Deployment
		if d, err = kube.AppsV1().Deployments("argo").Get(ctx, "argo-server", metav1.GetOptions{}); err != nil {
			return false, err
		}
		return d.Status.ReadyReplicas == n && d.Status.UpdatedReplicas == n, nil
	})
	if err != nil {
		f.t.Fatalf("argo-server did not reach %d replicas: %v", n, err)
	}
}

// restHost is the API server's URL from KUBECONFIG.
func restHost(t *testing.T) string {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Host
}

// Given the cluster's own registry wired by hack/cluster/push-trigger.sh to namespace A (the
// training repository gantry/fashion-trainer) and namespace B (its trigger configured for
// team-b/trainer at install time): a new training image pushed by tag into the cluster's registry
// starts exactly one run in A, with <repository>@<digest>, and none in B; the same image pushed
// under a second tag is a second notification and starts nothing; an image pushed to B's
// repository starts one run in B and none in A — also after gantry is reinstalled in B.
//
// Not parallel: wiring a namespace restarts the cluster's registry.
func TestClusterRegistryPushStartsOneRun(t *testing.T) {
	a, b := given(t), given(t)
	a.sh(nil, "hack/cluster/push-trigger.sh", a.ns)
	t.Cleanup(func() { _, _ = a.try(nil, "hack/cluster/push-trigger.sh", "--off", a.ns) })
	b.sh(nil, "hack/cluster/push-trigger.sh", "--repository", "team-b/trainer", b.ns)
	t.Cleanup(func() { _, _ = b.try(nil, "hack/cluster/push-trigger.sh", "--off", b.ns) })

	const registry = "127.0.0.1:5000" // the cluster's registry, as the nodes (and this test) reach it
	trainer := registry + "/" + argo.TrainImageRepository
	// push writes a new image (the trainer as built, one more label) to repo:tag.
	push := func(repo, tag string) (string, time.Time) {
		t.Helper()
		base, err := remote.Image(mustRef(t, trainer+":latest"))
		if err != nil {
			t.Fatalf("the trainer image ko built: %v", err)
		}
		cfg, err := base.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg = cfg.DeepCopy()
		if cfg.Config.Labels == nil {
			cfg.Config.Labels = map[string]string{}
		}
		cfg.Config.Labels["gantry.dev/e2e-push"] = a.ns + "/" + tag
		img, err := mutate.ConfigFile(base, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(mustRef(t, repo+":"+tag), img); err != nil {
			t.Fatalf("push %s:%s: %v", repo, tag, err)
		}
		d, _ := img.Digest()
		return d.String(), time.Now()
	}
	// runs lists f's ml-pipeline runs by their train-image.
	runs := func(f *fixture) map[string]string {
		t.Helper()
		list, err := argoWF.ArgoprojV1alpha1().Workflows(f.ns).List(f.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, w := range list.Items {
			if p := w.Spec.Arguments.GetParameterByName("train-image"); strings.HasPrefix(w.Name, "ml-pipeline-") && p != nil {
				out[w.Name] = p.Value.String()
			}
		}
		return out
	}
	// started waits for the digest's run in f, checks its image and stops it (it need not train).
	started := func(f *fixture, repo, digest string, since time.Time) {
		t.Helper()
		run := trigger.RunName("ml-pipeline", digest)
		err := wait.PollUntilContextTimeout(f.ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := argoWF.ArgoprojV1alpha1().Workflows(f.ns).Get(ctx, run, metav1.GetOptions{})
			return err == nil, nil
		})
		if err != nil {
			t.Fatalf("no run %s in %s within 2m of pushing %s@%s (registry log: %s)", run, f.ns, repo, digest, "~/.cache/gantry/cluster/run/logs/registry.log")
		}
		t.Logf("%s: push → run %s started in %.1fs", f.ns, run, time.Since(since).Seconds())
		if got := runs(f)[run]; got != repo+"@"+digest {
			t.Errorf("run %s: train-image %q, want %s@%s", run, got, repo, digest)
		}
		f.argo("terminate", run)
	}
	triggers := func(f *fixture) []wfv1.Workflow {
		t.Helper()
		list, err := argoWF.ArgoprojV1alpha1().Workflows(f.ns).List(f.ctx, metav1.ListOptions{
			LabelSelector: "workflows.argoproj.io/workflow-template=" + argo.TriggerTemplate})
		if err != nil {
			t.Fatal(err)
		}
		return list.Items
	}

	digest, at := push(trainer, "e2e-1")
	started(a, trainer, digest, at)

	// The same digest under a second tag: a second notification; its trigger run finds the run.
	before := len(triggers(a))
	if err := remote.Tag(mustRef(t, trainer+":e2e-1-again").(name.Tag), mustDescriptor(t, trainer+"@"+digest)); err != nil {
		t.Fatal(err)
	}
	var second *wfv1.Workflow
	err := wait.PollUntilContextTimeout(a.ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		ws := triggers(a)
		for i, w := range ws {
			if len(ws) > before && w.Status.Fulfilled() && triggerOutput(&w, "existing") == "1" {
				second = &ws[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no trigger run for the second tag's notification: %v", err)
	}
	if s := triggerOutput(second, "submitted"); second.Status.Phase != wfv1.WorkflowSucceeded || s != "" {
		t.Errorf("the second notification's trigger run %s: %s, submitted %q, want Succeeded and nothing", second.Name, second.Status.Phase, s)
	}

	// Reinstalling gantry in B (its release applies the generic binding and trigger parameters)
	// wires B again, for the repository it was wired for.
	b.sh(map[string]string{"SKIP_IMAGES": "1"}, "hack/cluster/gantry.sh", b.ns)

	// B's repository: one run in B.
	teamB := registry + "/team-b/trainer"
	digestB, atB := push(teamB, "e2e-1")
	started(b, teamB, digestB, atB)

	// Neither namespace started a run for the other's repository.
	if r := runs(a); len(r) != 1 {
		t.Errorf("runs in A (%s): %v, want only %s's", a.ns, r, digest)
	}
	if r := runs(b); len(r) != 1 {
		t.Errorf("runs in B (%s, trigger for team-b/trainer): %v, want only %s's", b.ns, r, digestB)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustDescriptor(t *testing.T, s string) *remote.Descriptor {
	t.Helper()
	d, err := remote.Get(mustRef(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
