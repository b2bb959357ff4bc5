package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/google/go-cmp/cmp"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

// kubelet marks every Deployment rolled out once it is applied, like the
// deployment controller and kubelet would.
// kubelet rolls out every Deployment in ns, as the real controllers would. It rewrites the status
// every 20 ms, not once per change: the fake clientset's watch does not resume from the list's
// resourceVersion, so a waiter that lists before a single status write and watches after it
// would never see the rollout finish (the flake this helper once had).
func kubelet(t *testing.T, c kubernetes.Interface, ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l, err := c.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, d := range l.Items {
				// A patch of the status alone: writing back the listed object would undo a deploy
				// that landed since the list (the fake checks no resourceVersion).
				r := *d.Spec.Replicas
				st, _ := json.Marshal(map[string]any{"status": appsv1.DeploymentStatus{ObservedGeneration: d.Generation,
					Replicas: r, UpdatedReplicas: r, AvailableReplicas: r, ReadyReplicas: r}})
				c.AppsV1().Deployments(ns).Patch(ctx, d.Name, types.MergePatchType, st, metav1.PatchOptions{}, "status")
			}
		}
	}()
}

// cluster is a fake API server whose calls are recorded for the RBAC check, with the fake
// kubelet rolling Deployments out when rollout is set, and a Deployer on it. setup runs before
// anything uses the clientset (its reactors must not change while the kubelet calls it).
func (e *env) cluster(t *testing.T, rollout bool, setup ...func(*fake.Clientset)) (*fake.Clientset, *Deployer) {
	c := fake.NewClientset()
	leasesWithResourceVersions(c)
	for _, f := range setup {
		f(c)
	}
	apiCalls.Attach(c) // first in the chain: it records every call, then lets the others answer
	if rollout {
		kubelet(t, c, "ml")
	}
	return c, NewDeployer(c, e.store, WithReleaseGate(allowAll{}))
}

// leasesWithResourceVersions makes the fake API server treat Leases as the real one does: every
// write gets a new resourceVersion, and an update that carries another than the current one is a
// Conflict. The fake's own tracker overwrites whatever it is given, so two electors could both
// "acquire" one Lease — the release lock's mutual exclusion rests on this check.
func leasesWithResourceVersions(c *fake.Clientset) {
	var mu sync.Mutex
	var rv int64
	gvr := coordinationv1.SchemeGroupVersion.WithResource("leases")
	c.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		rv++
		l.ResourceVersion = strconv.FormatInt(rv, 10)
		if err := c.Tracker().Create(gvr, l, l.Namespace); err != nil {
			return true, nil, err
		}
		return true, l, nil
	})
	c.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		cur, err := c.Tracker().Get(gvr, l.Namespace, l.Name)
		if err != nil {
			return true, nil, err
		}
		if now := cur.(*coordinationv1.Lease).ResourceVersion; now != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(gvr.GroupResource(), l.Name, fmt.Errorf("resourceVersion %q is not the current %q", l.ResourceVersion, now))
		}
		rv++
		l.ResourceVersion = strconv.FormatInt(rv, 10)
		if err := c.Tracker().Update(gvr, l, l.Namespace); err != nil {
			return true, nil, err
		}
		return true, l, nil
	})
}

func (e *env) deployOpts(env string) DeployOptions {
	return DeployOptions{Namespace: "ml", Environment: env, ModelName: "fashion-mnist", RegistryURI: "s3://models",
		ServerImage: "registry.local/model-server@sha256:99", Replicas: 2, S3Endpoint: "http://minio:9000", S3Secret: "s3-credentials",
		Run: "ml-pipeline-abc", RolloutTimeout: 10 * time.Second}
}

func TestDeployApplyTwiceIsNoOpAndRollbackRestores(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, true)
	v1, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("r1", "w1"), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("r2", "w2"), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
	if err != nil {
		t.Fatal(err)
	}
	o := e.deployOpts("production")
	o.ModelURI = v1.URI
	first, err := d.Deploy(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if first.Endpoint != "http://fashion-mnist-production.ml.svc:8501" || first.PreviousModelURI != "" {
		t.Errorf("first deploy: %+v", first)
	}
	dep, _ := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
	ctr := dep.Spec.Template.Spec.Containers[0]
	args := strings.Join(ctr.Args, " ")
	if !strings.Contains(args, "--model-digest="+v1.Manifest.Digest) || !strings.Contains(args, "--model-uri="+v1.URI) {
		t.Errorf("server args %q", args)
	}
	for _, env := range ctr.Env {
		if env.Value != "" && strings.HasPrefix(env.Name, "AWS_") {
			t.Errorf("credential %s passed by value", env.Name)
		}
	}
	if dep.Annotations[AnnModelDigest] != v1.Manifest.Digest {
		t.Errorf("annotations %v", dep.Annotations)
	}
	if a := dep.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("model server mounts a ServiceAccount token (%v)", a)
	}

	again, err := d.Deploy(e.ctx, o)
	if err != nil || !again.Unchanged {
		t.Errorf("second apply of the same model: %+v %v, want unchanged", again, err)
	}
	// Server-side apply of the same configuration changes nothing: not the spec (no rollout),
	// not the annotations that record the model and the one to roll back to, not the object.
	dep2, _ := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if diff := cmp.Diff(dep.Spec, dep2.Spec); diff != "" {
		t.Errorf("re-applying the same model changed the Deployment's spec (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(dep.Annotations, dep2.Annotations); diff != "" {
		t.Errorf("re-applying the same model changed the Deployment's annotations (-first +second):\n%s", diff)
	}
	if dep2.ResourceVersion != dep.ResourceVersion || dep2.Generation != dep.Generation {
		t.Errorf("re-applying the same model wrote the Deployment: resourceVersion %s → %s, generation %d → %d",
			dep.ResourceVersion, dep2.ResourceVersion, dep.Generation, dep2.Generation)
	}

	o.ModelURI = v2.URI
	promoted, err := d.Deploy(e.ctx, o)
	if err != nil || promoted.PreviousModelURI != v1.URI {
		t.Fatalf("promote v2: %+v %v", promoted, err)
	}
	back, err := d.Rollback(e.ctx, e.deployOpts("production"))
	if err != nil {
		t.Fatal(err)
	}
	if back.ModelURI != v1.URI || back.PreviousModelURI != v2.URI {
		t.Errorf("rollback: %+v", back)
	}
	dep3, _ := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if dep3.Annotations[AnnModelURI] != v1.URI {
		t.Errorf("after rollback the deployment serves %s", dep3.Annotations[AnnModelURI])
	}
	got := e.productionHistory(t)
	want := []string{v1.Manifest.Version, v2.Manifest.Version, v1.Manifest.Version + "(rollback)"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("history %v, want %v", got, want)
	}

	if err := d.Teardown(e.ctx, DeployOptions{Namespace: "ml", ModelName: "fashion-mnist", Environment: "production"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("deployment still there: %v", err)
	}
	if err := d.Teardown(e.ctx, DeployOptions{Namespace: "ml", ModelName: "fashion-mnist", Environment: "production"}); err != nil {
		t.Errorf("teardown twice: %v", err)
	}
}

// Rollback undoes the last promotion, once: a retry or a second rollback never returns to the
// model rolled back from, and the first model of an environment rolls back to nothing live.
func TestRollbackIsIdempotentAndNeverReturnsToTheBadModel(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, true)
	v := e.models(3)
	serving := func() string {
		dep, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "nothing"
		}
		return dep.Annotations[AnnModelURI]
	}
	deploy := func(p *Published, run string) {
		o := e.deployOpts("production")
		o.ModelURI, o.Run = p.URI, run
		if _, err := d.Deploy(e.ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	rollback := func(run string) *Deployed {
		o := e.deployOpts("production")
		o.Run = run
		r, err := d.Rollback(e.ctx, o)
		if err != nil {
			t.Fatalf("rollback by %s: %v", run, err)
		}
		return r
	}
	// First model of the environment fails its smoke test: nothing stays live.
	deploy(v[0], "run-a")
	if r := rollback("run-a"); r.PreviousModelURI != v[0].URI || serving() != "nothing" {
		t.Errorf("first-deploy rollback: %+v, serving %s", r, serving())
	}
	if r := rollback("run-a"); !r.Unchanged || serving() != "nothing" {
		t.Errorf("retried first-deploy rollback: %+v, serving %s", r, serving())
	}
	// v0 again (good), then v1 (bad) rolled back: v0; a retry or another rollback stays on v0.
	deploy(v[0], "run-b")
	deploy(v[1], "run-c")
	if r := rollback("run-c"); r.ModelURI != v[0].URI || r.PreviousModelURI != v[1].URI || serving() != v[0].URI {
		t.Errorf("rollback: %+v, serving %s", r, serving())
	}
	for _, run := range []string{"run-c", "someone-else"} {
		if r := rollback(run); r.ModelURI != v[0].URI || !r.Unchanged || serving() != v[0].URI {
			t.Errorf("second rollback by %s: %+v, serving %s (the rolled-back model must never return)", run, r, serving())
		}
	}
	// v2 promoted then rolled back: back to v0, skipping v1, which was rolled back from.
	deploy(v[2], "run-d")
	if r := rollback("run-d"); r.ModelURI != v[0].URI || serving() != v[0].URI {
		t.Errorf("rollback after a rollback: %+v, serving %s", r, serving())
	}
}

// The canary's baseline comes from the API server: deploy reports production's endpoint when a
// production server exists, and nothing on a first deployment.
func TestDeployReportsWhetherProductionExists(t *testing.T) {
	e := newEnv(t)
	_, d := e.cluster(t, true)
	p, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("r1", "w"), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
	if err != nil {
		t.Fatal(err)
	}
	staging := e.deployOpts("staging")
	staging.ModelURI = p.URI
	first, err := d.Deploy(e.ctx, staging)
	if err != nil || first.Values()["production-endpoint"] != "" {
		t.Fatalf("staging before any production: %+v %v, want no production-endpoint", first, err)
	}
	prod := e.deployOpts("production")
	prod.ModelURI = p.URI
	if _, err := d.Deploy(e.ctx, prod); err != nil {
		t.Fatal(err)
	}
	again, err := d.Deploy(e.ctx, staging)
	if err != nil || again.Values()["production-endpoint"] != "http://fashion-mnist-production.ml.svc:8501" {
		t.Errorf("staging with production live: %+v %v", again, err)
	}
}

func equalSpec(a, b *appsv1.Deployment) bool {
	return a.Spec.Template.Spec.Containers[0].Image == b.Spec.Template.Spec.Containers[0].Image &&
		strings.Join(a.Spec.Template.Spec.Containers[0].Args, " ") == strings.Join(b.Spec.Template.Spec.Containers[0].Args, " ")
}

func TestDeployRefusesUnpublishedOrMismatchedModel(t *testing.T) {
	e := newEnv(t)
	_, d := e.cluster(t, false)
	o := e.deployOpts("staging")
	o.ModelURI = e.trainerOutput("r1", "w") // trainer output: no manifest
	if _, err := d.Deploy(e.ctx, o); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "not a published") {
		t.Errorf("unpublished: %v", err)
	}
	p, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: o.ModelURI, RegistryURI: "s3://models", ModelName: "fashion-mnist"})
	if err != nil {
		t.Fatal(err)
	}
	o.ModelURI, o.ModelDigest = p.URI, "sha256:0000"
	if _, err := d.Deploy(e.ctx, o); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("digest mismatch: %v", err)
	}
	if r, err := d.Rollback(e.ctx, e.deployOpts("production")); err != nil || !r.Unchanged || r.ModelURI != "" {
		t.Errorf("rollback with nothing live: %+v %v, want a no-op", r, err)
	}
}

// A server that crash-loops ends the rollout at once, explained with its exit code and last log
// lines — also when the crash comes after the Deployment's last status change (nothing but the
// periodic look at the pods sees it) — while a pod of the model being replaced is not blamed.
func TestFailedRolloutIsExplained(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, false)
	d.podCheckEvery = 100 * time.Millisecond
	p, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("r1", "w"), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
	if err != nil {
		t.Fatal(err)
	}
	staging := Name("fashion-mnist", "staging", e.deployOpts("staging").Run)
	crashing := func(name, digest string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ml", Labels: map[string]string{"app.kubernetes.io/name": staging},
			Annotations: map[string]string{AnnModelDigest: digest}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "model-server",
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 10s"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2}}}}}}
	}
	// The previous model's pod crash-loops too: not this rollout's problem.
	if _, err := c.CoreV1().Pods("ml").Create(e.ctx, crashing(staging+"-old", "sha256:previous"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(500 * time.Millisecond) // after the apply and its events
		_, _ = c.CoreV1().Pods("ml").Create(e.ctx, crashing(staging+"-new", p.Manifest.Digest), metav1.CreateOptions{})
	}()
	o := e.deployOpts("staging")
	o.ModelURI = p.URI
	start := time.Now()
	_, err = d.Deploy(e.ctx, o)
	if err == nil || !strings.Contains(err.Error(), staging+"-new") || !strings.Contains(err.Error(), "CrashLoopBackOff") ||
		!strings.Contains(err.Error(), "exit code 2") || !strings.Contains(err.Error(), "fake logs") {
		t.Errorf("err = %v, want the new pod's crash loop explained with exit code and last logs", err)
	}
	if strings.Contains(fmt.Sprint(err), "not rolled out within") {
		t.Errorf("the crash was found only at the rollout timeout (%s): %v", time.Since(start), err)
	}
}

// Promotion is a compare-and-swap: it replaces only the production model the canary compared
// against (or nothing, "none"); an older approval never overwrites a newer production, and a
// retried promote over its own model goes through.
func TestPromoteReplacesOnlyWhatTheCanaryComparedAgainst(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, true)
	var vs []*Published
	for i, w := range []string{"w1", "w2", "w3"} {
		v, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput(fmt.Sprintf("cas%d", i), w), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	promote := func(v *Published, expect string) error {
		o := e.deployOpts("production")
		o.ModelURI, o.ExpectLive = v.URI, expect
		_, err := d.Deploy(e.ctx, o)
		return err
	}
	live := func() string {
		dep, _ := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
		return dep.Annotations[AnnModelDigest]
	}
	if err := promote(vs[0], "none"); err != nil { // first deploy: there was no production
		t.Fatal(err)
	}
	// Two runs' canaries both compared against v1; v3's promotion lands first.
	if err := promote(vs[2], vs[0].Manifest.Digest); err != nil {
		t.Fatal(err)
	}
	err := promote(vs[1], vs[0].Manifest.Digest)
	if exitcode.Of(err) != exitcode.Failed || !strings.Contains(err.Error(), "changed since the canary (now "+vs[2].Manifest.Digest) {
		t.Errorf("an older approval over a newer production: %v, want exit 1, production changed", err)
	}
	if live() != vs[2].Manifest.Digest {
		t.Errorf("production serves %s, want v3 still", live())
	}
	if err := promote(vs[1], "none"); exitcode.Of(err) != exitcode.Failed {
		t.Errorf("expecting no production where one runs: %v, want refused", err)
	}
	if err := promote(vs[2], vs[0].Manifest.Digest); err != nil { // v3's promote retried
		t.Errorf("a retried promote over its own model: %v", err)
	}
}

// productionHistory is namespace ml's production history: versions, rollbacks marked.
func (e *env) productionHistory(t *testing.T) []string {
	t.Helper()
	h, err := readHistory(e.ctx, e.store, "s3://models", "fashion-mnist", "ml", "production")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range h.Entries {
		got = append(got, en.Version+map[bool]string{true: "(rollback)"}[en.Rollback])
	}
	return got
}

func (e *env) publishN(t *testing.T, n int) []*Published {
	t.Helper()
	var v []*Published
	for i := range n {
		p, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput(fmt.Sprintf("r%d", i), fmt.Sprintf("w%d", i)), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
		if err != nil {
			t.Fatal(err)
		}
		v = append(v, p)
	}
	return v
}

// Two overlapping runs each get their own staging server: neither replaces the other's
// candidate, and tearing one down leaves the other serving.
func TestStagingIsOneServerPerRun(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, true)
	v := e.publishN(t, 2)
	var names []string
	for i, run := range []string{"ml-pipeline-aaaaa", "ml-pipeline-bbbbb"} {
		o := e.deployOpts("staging")
		o.ModelURI, o.Run = v[i].URI, run
		res, err := d.Deploy(e.ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		name := Name("fashion-mnist", "staging", run)
		if len(name) > 63 || !strings.HasPrefix(res.Endpoint, "http://"+name+".ml.svc:") {
			t.Errorf("run %s staged at %s, want its own server %s (a DNS label)", run, res.Endpoint, name)
		}
		names = append(names, name)
	}
	if names[0] == names[1] {
		t.Fatalf("both runs staged at %s", names[0])
	}
	serving := func(name string) string {
		dep, err := c.AppsV1().Deployments("ml").Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return "nothing"
		}
		return dep.Annotations[AnnModelURI]
	}
	for i, n := range names {
		if got := serving(n); got != v[i].URI {
			t.Errorf("%s serves %s, want %s", n, got, v[i].URI)
		}
	}
	if err := d.Teardown(e.ctx, DeployOptions{Namespace: "ml", ModelName: "fashion-mnist", Environment: "staging", Run: "ml-pipeline-aaaaa"}); err != nil {
		t.Fatal(err)
	}
	if serving(names[0]) != "nothing" || serving(names[1]) != v[1].URI {
		t.Errorf("after tearing down the first run's staging: %s serves %s, %s serves %s", names[0], serving(names[0]), names[1], serving(names[1]))
	}
	o := e.deployOpts("staging")
	if _, err := d.Rollback(e.ctx, o); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("rollback of staging: %v, want bad input (only production rolls back)", err)
	}
}

// A release's rollback undoes only its own run's deploy, including one that failed after
// changing the Deployment but before the history recorded it, and twice is once.
func TestRollbackUndoesOnlyItsOwnRunIncludingAnIncompleteDeploy(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, true)
	v := e.publishN(t, 2)
	deps := c.AppsV1().Deployments("ml")
	serving := func() string {
		dep, err := deps.Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "nothing"
		}
		return dep.Annotations[AnnModelURI]
	}
	o := e.deployOpts("production")
	o.ModelURI, o.Run = v[0].URI, "run-a"
	if _, err := d.Deploy(e.ctx, o); err != nil {
		t.Fatal(err)
	}
	rollback := func(run string) *Deployed {
		t.Helper()
		o := e.deployOpts("production")
		o.Run, o.UndoRun = run, run
		r, err := d.Rollback(e.ctx, o)
		if err != nil {
			t.Fatalf("rollback by %s: %v", run, err)
		}
		return r
	}
	// run-b's promote was refused by its compare-and-swap: production is run-a's, left alone.
	if r := rollback("run-b"); !r.Unchanged || serving() != v[0].URI || !strings.Contains(r.Outcome, "deployed by run-a, not by run-b") {
		t.Errorf("rollback of a run whose promote changed nothing: %+v, serving %s", r, serving())
	}
	// run-b's promote changed the Deployment, then failed (its server crashed): no history entry.
	dep, err := deps.Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep.Annotations[AnnModelURI], dep.Annotations[AnnModelDigest], dep.Annotations[AnnRun] = v[1].URI, v[1].Manifest.Digest, "run-b"
	if _, err := deps.Update(e.ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := rollback("run-b"); serving() != v[0].URI || !strings.Contains(r.Outcome, "never completed") {
		t.Errorf("rollback of an incomplete promote: %+v, serving %s, want %s", r, serving(), v[0].URI)
	}
	for range 2 {
		if r := rollback("run-b"); !r.Unchanged || serving() != v[0].URI || !strings.Contains(r.Outcome, "already rolled back") {
			t.Errorf("rollback again: %+v, serving %s, want still %s (twice is once)", r, serving(), v[0].URI)
		}
	}
	got := e.productionHistory(t)
	if want := []string{v[0].Manifest.Version, v[0].Manifest.Version + "(rollback)"}; !cmp.Equal(got, want) {
		t.Errorf("history %v, want %v", got, want)
	}
}

// The first promotion of a model fails before it is recorded (a crashing server): the rollback
// removes production instead of leaving an unverified model serving, and says so.
func TestRollbackOfAnIncompleteFirstDeployRemovesProduction(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, false) // nothing ever becomes available
	v := e.publishN(t, 1)
	o := e.deployOpts("production")
	o.ModelURI, o.Run, o.RolloutTimeout = v[0].URI, "run-a", 300*time.Millisecond
	if _, err := d.Deploy(e.ctx, o); err == nil {
		t.Fatal("deploy of a server that never becomes available succeeded")
	}
	o.UndoRun = "run-a"
	r, err := d.Rollback(e.ctx, o)
	if err != nil || !strings.Contains(r.Outcome, "removed the production server") {
		t.Fatalf("rollback: %+v %v", r, err)
	}
	if _, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("production still exists after rolling back its first, failed deploy: %v", err)
	}
	if r, err := d.Rollback(e.ctx, o); err != nil || !r.Unchanged || !strings.Contains(r.Outcome, "nothing to roll back") {
		t.Errorf("second rollback: %+v %v", r, err)
	}
}

// Two namespaces serving the same model from one registry each roll back their own production:
// the history is per namespace.
func TestHistoryIsPerNamespace(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, true)
	kubelet(t, c, "other")
	v := e.publishN(t, 2)
	for i, ns := range []string{"ml", "other"} {
		o := e.deployOpts("production")
		o.Namespace, o.ModelURI = ns, v[i].URI
		if _, err := d.Deploy(e.ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	o := e.deployOpts("production")
	o.Namespace = "other"
	r, err := d.Rollback(e.ctx, o)
	if err != nil || !strings.Contains(r.Outcome, "first model") {
		t.Errorf("rollback in namespace other: %+v %v, want its first model removed (not ml's model)", r, err)
	}
	if dep, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{}); err != nil || dep.Annotations[AnnModelURI] != v[0].URI {
		t.Errorf("ml's production after other's rollback: %v", err)
	}
}

// failingStore fails the history's conditional writes while failPuts > 0 (a transient store error
// at the worst moment).
type failingStore struct {
	objstore.Store
	failPuts atomic.Int32
}

func (s *failingStore) ReadVersion(ctx context.Context, uri string, limit int64) ([]byte, string, error) {
	return s.Store.(objstore.Conditional).ReadVersion(ctx, uri, limit)
}

func (s *failingStore) PutIf(ctx context.Context, uri string, b []byte, version string) error {
	if strings.Contains(uri, "/environments/") && s.failPuts.Add(-1) >= 0 {
		return fmt.Errorf("injected: connection reset writing %s", uri)
	}
	return s.Store.(objstore.Conditional).PutIf(ctx, uri, b, version)
}

// A rollback interrupted at each of its side effects — the history write failing, the
// Deployment write or delete failing after the history is written — and then retried (as Argo's
// retry or an operator's argo retry does) leaves production on the model live before the failed
// one, the history saying so, and a later rollback never returning to the failed model. (Before:
// a retry after the history write failed saw its own rollback as an unfinished deploy and put
// the failed model back; after a first-deploy teardown it left the failed model recorded as live.)
func TestRollbackRetriedAfterACrashAtEachSideEffect(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first bool   // the failed model is the environment's first
		fail  string // "history", or the API verb that fails once: "patch" (apply), "delete"
	}{
		{"history write fails", false, "history"},
		{"apply fails after the history is written", false, "patch"},
		{"first deploy: history write fails", true, "history"},
		{"first deploy: delete fails after the history is written", true, "delete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fs := &failingStore{Store: e.store}
			var armed, failed atomic.Bool
			c, _ := e.cluster(t, true, func(c *fake.Clientset) {
				if tc.fail == "history" {
					return
				}
				c.PrependReactor(tc.fail, "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
					// the Deployment's own write once armed: not the fake kubelet's status patches
					if p, ok := a.(k8stesting.PatchAction); !armed.Load() || a.GetSubresource() != "" || ok && p.GetPatchType() != types.ApplyPatchType {
						return false, nil, nil
					}
					if !failed.CompareAndSwap(false, true) {
						return false, nil, nil
					}
					return true, nil, apierrors.NewInternalError(fmt.Errorf("injected"))
				})
			})
			d := NewDeployer(c, fs, WithReleaseGate(allowAll{}))
			v := e.models(2)
			deploy := func(p *Published, run string) {
				o := e.deployOpts("production")
				o.ModelURI, o.Run = p.URI, run
				if _, err := d.Deploy(e.ctx, o); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.first {
				deploy(v[0], "run-good")
			}
			deploy(v[1], "run-bad")
			if tc.fail == "history" {
				fs.failPuts.Store(1)
			} else {
				armed.Store(true)
			}
			o := e.deployOpts("production")
			o.Run, o.UndoRun = "run-bad", "run-bad"
			if _, err := d.Rollback(e.ctx, o); err == nil {
				t.Fatalf("the injected failure (%s) did not fail the rollback", tc.fail)
			}
			if _, err := d.Rollback(e.ctx, o); err != nil { // the retry
				t.Fatalf("retried rollback: %v", err)
			}
			want := v[0].URI
			if tc.first {
				want = "nothing"
			}
			serving := func() string {
				dep, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return "nothing"
				}
				return dep.Annotations[AnnModelURI]
			}
			h, err := readHistory(e.ctx, e.store, "s3://models", "fashion-mnist", "ml", "production")
			if err != nil {
				t.Fatal(err)
			}
			head := "nothing"
			if cur, ok := h.current(); ok {
				head = cur.ModelURI
			}
			if serving() != want || head != want {
				t.Errorf("after the retry: serving %s, history's head %s; want %s (the failed model is %s)", serving(), head, want, v[1].URI)
			}
			// An operator's later rollback never returns to the failed model.
			o.UndoRun = ""
			o.Run = "operator"
			if _, err := d.Rollback(e.ctx, o); err != nil {
				t.Fatal(err)
			}
			if s := serving(); s == v[1].URI {
				t.Errorf("a later rollback returned to the failed model %s", s)
			}
		})
	}
}

// The rollout wait judges the rollout this step applied: a status written for an older
// generation — a ProgressDeadlineExceeded left by a timed-out promote — is neither done nor a
// failure (a rollback right after it used to fail at once), and a Deployment whose pods were
// switched to another model by a concurrent release is never counted as this step's rollout.
func TestRolledOutJudgesOnlyThisStepsRollout(t *testing.T) {
	dep := func(gen, observed int64, digest string, cond ...appsv1.DeploymentCondition) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "m-production", Generation: gen},
			Spec:   appsv1.DeploymentSpec{Replicas: ptr32(1), Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnModelDigest: digest}}}},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1, Conditions: cond}}
		return d
	}
	applied := time.Now().Add(-time.Minute)
	deadline := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "timed out",
		LastUpdateTime: metav1.Now()}
	stale := deadline
	stale.LastUpdateTime = metav1.NewTime(applied.Add(-time.Second))
	for _, tc := range []struct {
		name    string
		d       *appsv1.Deployment
		gen     int64
		done    bool
		errLike string
	}{
		{"the old rollout's deadline, our generation not yet observed", dep(5, 4, "sha256:a", deadline), 5, false, ""},
		{"our generation observed and available", dep(5, 5, "sha256:a"), 5, true, ""},
		{"our generation observed and past its deadline", dep(5, 5, "sha256:a", deadline), 5, false, "progress deadline"},
		{"our generation observed, the previous rollout's deadline still there", dep(5, 5, "sha256:a", stale), 5, true, ""},
		{"a later generation (someone scaled) not yet observed", dep(6, 5, "sha256:a"), 5, false, ""},
		{"pods switched to another model", dep(6, 6, "sha256:b"), 5, false, "changed by another release"},
		{"a stale view from before this step's apply (another model, an older generation)", dep(4, 4, "sha256:b"), 5, false, ""},
	} {
		done, err := rolledOut(tc.d, tc.gen, "sha256:a", applied)
		if done != tc.done || (tc.errLike == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.errLike)) {
			t.Errorf("%s: done=%v err=%v; want done=%v err like %q", tc.name, done, err, tc.done, tc.errLike)
		}
	}
}

func ptr32(i int32) *int32 { return &i }

// fastLocks makes the release lock's lease short for tests.
func fastLocks(d *Deployer) *Deployer {
	d.lockTiming = lockTiming{LeaseDuration: time.Second, RenewDeadline: 800 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
	return d
}

// Releases of one model started at once — as from Argo, Tekton and a person at the CLI, each
// its own Deployer (process) on one API server and one registry, every one compared by its
// canary against the same production — are serialised by the release lock: in every round
// exactly one replaces production, the others are refused by the compare-and-swap with its
// reason, production serves the history's head, and the history gains one entry per round.
func TestConcurrentReleasesAreLinearisable(t *testing.T) {
	e := newEnv(t)
	c, _ := e.cluster(t, true)
	const writers, rounds = 3, 20
	var deployers [writers]*Deployer
	for i := range deployers {
		deployers[i] = fastLocks(NewDeployer(c, e.store, WithReleaseGate(allowAll{})))
	}
	serving := func() string {
		dep, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "none"
		}
		return dep.Annotations[AnnModelDigest]
	}
	entries := 0
	pub := e.publisher() // one publisher: it reads each committed manifest once
	for round := range rounds {
		base := serving()
		var cands [writers]*Published
		for i := range cands {
			p, err := pub.Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput(fmt.Sprintf("r%d-%d", round, i), fmt.Sprintf("w%d-%d", round, i)),
				RegistryURI: "s3://models", ModelName: "fashion-mnist"})
			if err != nil {
				t.Fatal(err)
			}
			cands[i] = p
		}
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for _, i := range rand.Perm(writers) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := e.deployOpts("production")
				o.ModelURI, o.Run, o.ExpectLive = cands[i].URI, fmt.Sprintf("run-%d-%d", round, i), base
				_, errs[i] = deployers[i].Deploy(e.ctx, o)
			}()
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Fatalf("round %d: writers %d and %d both replaced production %s", round, won, i, base)
			case err == nil:
				won = i
			case exitcode.Of(err) != exitcode.Failed || !strings.Contains(err.Error(), "changed since the canary"):
				t.Errorf("round %d: writer %d lost with %v (exit %d), want the compare-and-swap's refusal", round, i, err, exitcode.Of(err))
			}
		}
		if won < 0 {
			t.Fatalf("round %d: no writer replaced production: %v", round, errs)
		}
		h, err := readHistory(e.ctx, e.store, "s3://models", "fashion-mnist", "ml", "production")
		if err != nil {
			t.Fatal(err)
		}
		entries++
		head, _ := h.current()
		if len(h.Entries) != entries || head.Digest != cands[won].Manifest.Digest || serving() != head.Digest {
			t.Fatalf("round %d: %d history entries (want %d), head %s, serving %s, winner %s", round, len(h.Entries), entries, head.Digest, serving(), cands[won].Manifest.Digest)
		}
	}
	l, err := c.CoordinationV1().Leases("ml").Get(e.ctx, ReleaseLockName("fashion-mnist"), metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "" {
		t.Errorf("the release lock after the last release: %+v %v, want released", l, err)
	}
}

// A release holder that died (its Lease no longer renewed) blocks the next release for about
// one lease duration, then the next one takes the lock over.
func TestReleaseTakesOverACrashedHoldersLock(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, true)
	d = fastLocks(d)
	p, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("r1", "w"), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
	if err != nil {
		t.Fatal(err)
	}
	dead, secs := "run-0/killed-pod/1", int32(d.lockTiming.LeaseDuration/time.Second)
	now := metav1.NewMicroTime(time.Now())
	if _, err := c.CoordinationV1().Leases("ml").Create(e.ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: ReleaseLockName("fashion-mnist"), Namespace: "ml"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &dead, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	o := e.deployOpts("production")
	o.ModelURI, o.ExpectLive = p.URI, "none"
	start := time.Now()
	if _, err := d.Deploy(e.ctx, o); err != nil {
		t.Fatal(err)
	}
	blocked := time.Since(start)
	if blocked < d.lockTiming.LeaseDuration {
		t.Errorf("the release went ahead after %s while a holder's %s lease was still valid", blocked, d.lockTiming.LeaseDuration)
	}
	t.Logf("a crashed holder blocked the next release for %s (lease duration %s)", blocked.Round(10*time.Millisecond), d.lockTiming.LeaseDuration)
}

// models publishes n distinct versions of fashion-mnist.
func (e *env) models(n int) []*Published {
	e.t.Helper()
	v := make([]*Published, n)
	for i := range v {
		p, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput(fmt.Sprintf("r%d", i), fmt.Sprintf("w%d", i)), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
		if err != nil {
			e.t.Fatal(err)
		}
		v[i] = p
	}
	return v
}

// A rollback returns to what was live — the model and the server image it was served with — not
// to the old model on the new server image of the release being rolled back (a combination
// nobody tested). A new server image for the same model is a release of its own.
func TestRollbackRestoresTheServerImageItServedWith(t *testing.T) {
	e := newEnv(t)
	c, d := e.cluster(t, true)
	v := e.models(2)
	image := func() string {
		dep, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return dep.Annotations[AnnModelURI] + " on " + dep.Spec.Template.Spec.Containers[0].Image
	}
	release := func(p *Published, img, run string) {
		o := e.deployOpts("production")
		o.ModelURI, o.ServerImage, o.Run = p.URI, img, run
		if _, err := d.Deploy(e.ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	undo := func(run, img string) {
		o := e.deployOpts("production")
		o.ServerImage, o.Run, o.UndoRun = img, run, run
		if _, err := d.Rollback(e.ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	release(v[0], "registry.local/model-server@sha256:01", "run-1")
	release(v[0], "registry.local/model-server@sha256:02", "run-2") // a server upgrade alone
	if h := e.productionHistory(t); len(h) != 2 {
		t.Fatalf("history %v: the server upgrade is not a release of its own", h)
	}
	undo("run-2", "registry.local/model-server@sha256:02")
	if got, want := image(), v[0].URI+" on registry.local/model-server@sha256:01"; got != want {
		t.Errorf("after rolling back the server upgrade: %s, want %s", got, want)
	}
	release(v[1], "registry.local/model-server@sha256:03", "run-3")
	undo("run-3", "registry.local/model-server@sha256:03")
	if got, want := image(), v[0].URI+" on registry.local/model-server@sha256:01"; got != want {
		t.Errorf("after rolling back run-3 (a new model on a new server): %s, want %s", got, want)
	}
}

// Given a model live in production, when the next promote's rollout never finishes (its pods
// never become available: the deployment controller marks the rollout ProgressDeadlineExceeded
// and promote times out), then the release's rollback succeeds at once — the deadline belongs to
// the rollout it undoes, not to its own — production serves the earlier model, and the history
// records the promote as aborted, never as live.
//
// On a real kube-apiserver (its generations and status subresource are what the rollout wait
// judges; client-go's fake keeps no generation).
func TestRollbackAfterATimedOutPromote(t *testing.T) {
	e := newEnv(t)
	v := e.models(2)
	if (testenv.ClusterBinary("kube-apiserver") == "" || testenv.ClusterBinary("etcd") == "") && os.Getenv("GANTRY_REQUIRE_APISERVER") == "" {
		t.Skip("no kube-apiserver here (hack/cluster/build.sh k8s etcd); CI runs this once the cluster's binaries are built")
	}
	c := kubernetes.NewForConfigOrDie(startRealAPIServer(t, false).cfg)
	d := fastLocks(NewDeployer(c, e.store, WithReleaseGate(allowAll{})))
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	// The controller and kubelet: every rollout of v[0] completes; v[1]'s never does.
	go func() {
		for ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
			l, err := c.AppsV1().Deployments("ml").List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, dep := range l.Items {
				r := *dep.Spec.Replicas
				st := map[string]any{"observedGeneration": dep.Generation, "replicas": r, "updatedReplicas": r, "availableReplicas": r, "readyReplicas": r}
				// v[1]'s rollout never progresses; its timed-out condition stays on the status (as
				// the deployment controller keeps it) after the rollback observes its generation.
				if dep.Spec.Template.Annotations[AnnModelDigest] == v[1].Manifest.Digest {
					st["updatedReplicas"] = 0
					st["conditions"] = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
						Reason: "ProgressDeadlineExceeded", Message: "ReplicaSet has timed out progressing.", LastUpdateTime: metav1.Now()}}
				}
				b, _ := json.Marshal(map[string]any{"status": st})
				_, _ = c.AppsV1().Deployments("ml").Patch(ctx, dep.Name, types.MergePatchType, b, metav1.PatchOptions{}, "status")
			}
		}
	}()
	promote := func(p *Published, run, expect string) error {
		o := e.deployOpts("production")
		o.ModelURI, o.Run, o.ExpectLive, o.RolloutTimeout = p.URI, run, expect, 3*time.Second
		_, err := d.Deploy(e.ctx, o)
		return err
	}
	if err := promote(v[0], "run-0", "none"); err != nil {
		t.Fatal(err)
	}
	err := promote(v[1], "run-1", v[0].Manifest.Digest)
	if err == nil || !strings.Contains(err.Error(), "not rolled out within") {
		t.Fatalf("the promote whose rollout never finishes: %v, want it timed out", err)
	}
	o := e.deployOpts("production")
	o.Run, o.UndoRun = "run-1", "run-1"
	res, err := d.Rollback(e.ctx, o)
	if err != nil {
		t.Fatalf("the rollback after the timed-out promote: %v", err)
	}
	dep, _ := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if got := dep.Annotations[AnnModelURI]; got != v[0].URI || !strings.Contains(res.Outcome, "rolled back to") {
		t.Errorf("after the rollback production serves %s (%s), want %s", got, res.Outcome, v[0].URI)
	}
	h, err := readHistory(e.ctx, e.store, "s3://models", "fashion-mnist", "ml", "production")
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := h.current(); cur.ModelURI != v[0].URI || len(h.Entries) != 2 || !h.Entries[1].Aborted {
		t.Errorf("history %+v: want the first model live and the timed-out promote aborted", h.Entries)
	}
}

// The compare-and-swap on the Deployment is against another release, not the deployment
// controller: an apply that conflicts because only the status was written in between (same
// generation, same model) is made again and succeeds; one that conflicts because another model
// was applied in between is refused as retryable ("another release?"), nothing overwritten.
func TestDeployConflictOnAStatusWriteIsAppliedAgainOnAnotherReleaseRefused(t *testing.T) {
	e := newEnv(t)
	v := e.publishN(t, 3)
	gvr := appsv1.SchemeGroupVersion.WithResource("deployments")
	var mu sync.Mutex // the reactor also runs on the simulated kubelet's goroutine
	var conflicts int
	var between func(c *fake.Clientset) // what "someone else" writes before the conflict
	set := func(w func(c *fake.Clientset)) { mu.Lock(); between = w; mu.Unlock() }
	c, d := e.cluster(t, true, func(c *fake.Clientset) {
		c.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() != "" {
				return false, nil, nil
			}
			mu.Lock()
			w := between
			between = nil
			if w != nil {
				conflicts++
			}
			mu.Unlock()
			if w == nil {
				return false, nil, nil
			}
			w(c)
			return true, nil, apierrors.NewConflict(gvr.GroupResource(), a.(k8stesting.PatchAction).GetName(), fmt.Errorf("the object has been modified"))
		})
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return conflicts }
	o := e.deployOpts("production")
	o.ModelURI = v[0].URI
	if _, err := d.Deploy(e.ctx, o); err != nil {
		t.Fatal(err)
	}
	touch := func(model string) func(c *fake.Clientset) {
		return func(c *fake.Clientset) {
			dep, _ := c.Tracker().Get(gvr, "ml", "fashion-mnist-production")
			x := dep.(*appsv1.Deployment).DeepCopy()
			x.ResourceVersion += "0"
			x.Status.ObservedGeneration++
			if model != "" {
				x.Annotations[AnnModelURI] = model
			}
			_ = c.Tracker().Update(gvr, x, "ml")
		}
	}

	set(touch("")) // the deployment controller reporting
	o.ModelURI = v[1].URI
	if _, err := d.Deploy(e.ctx, o); err != nil || count() != 1 {
		t.Fatalf("deploy across a status write: %v (%d conflicts), want it applied again", err, count())
	}
	dep, _ := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if dep.Annotations[AnnModelURI] != v[1].URI {
		t.Errorf("production serves %s, want %s", dep.Annotations[AnnModelURI], v[1].URI)
	}

	set(touch("s3://models/registry/fashion-mnist/versions/other")) // another release
	o.ModelURI = v[2].URI
	_, err := d.Deploy(e.ctx, o)
	if err == nil || !strings.Contains(err.Error(), "another release?") || exitcode.Of(err) != exitcode.Transient {
		t.Fatalf("deploy across another release's apply: %v, want refused as retryable", err)
	}
	dep, _ = c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if dep.Annotations[AnnModelURI] != "s3://models/registry/fashion-mnist/versions/other" {
		t.Errorf("the other release's model was overwritten: %s", dep.Annotations[AnnModelURI])
	}
}
