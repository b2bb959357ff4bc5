package trigger

import (
	"context"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wffake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/rbac"
	"github.com/gantry-ml/gantry/internal/rbac/rbactest"
)

// apiCalls records the trigger's calls; after the suite they must be what gantry-trigger grants.
var apiCalls = rbactest.New()

func TestMain(m *testing.M) {
	os.Exit(rbactest.Main(m, apiCalls, rbactest.Check{Account: rbac.AccountFor("train-launcher", "trigger")}))
}

const ns = "ml"

type env struct {
	t    *testing.T
	wf   *wffake.Clientset
	kube *kfake.Clientset
	reg  string // host of the test registry
	repo string // <reg>/team/trainer
	// status, when set, is what the registry answers instead of serving.
	status atomic.Int32
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, wf: wffake.NewSimpleClientset(), kube: kfake.NewSimpleClientset()}
	apiCalls.Attach(e.wf, e.kube)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := e.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.reg = strings.TrimPrefix(srv.URL, "http://")
	e.repo = e.reg + "/team/trainer"
	return e
}

// push pushes a random image under tag and returns its digest.
func (e *env) push(tag string) string {
	e.t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	ref, _ := name.NewTag(e.repo + ":" + tag)
	if err := remote.Write(ref, img); err != nil {
		e.t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

func (e *env) run(o Options) (*Result, error) {
	o.Repository, o.Template, o.Parameter, o.Namespace = e.repo, "ml-pipeline", "train-image", ns
	return New(e.wf, e.kube).Run(context.Background(), o)
}

// runs returns the run names and their train-image parameters.
func (e *env) runs() map[string]string {
	e.t.Helper()
	list, err := e.wf.ArgoprojV1alpha1().Workflows(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, w := range list.Items {
		if w.Spec.WorkflowTemplateRef == nil || w.Spec.WorkflowTemplateRef.Name != "ml-pipeline" {
			e.t.Errorf("%s is not an ml-pipeline run: %+v", w.Name, w.Spec)
		}
		out[w.Name] = w.Spec.Arguments.GetParameterByName("train-image").Value.String()
	}
	return out
}

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// A notification batch with two pushed digests starts two runs, named by the digest, each with
// <repository>@<digest>; the same notification again — or after the runs were deleted — none.
func TestEachPushedDigestGetsExactlyOneRun(t *testing.T) {
	e := newEnv(t)
	res, err := e.run(Options{Digests: []string{d1, d2}, Params: [][2]string{{"epochs", "3"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ml-pipeline-111111111111": e.repo + "@" + d1, "ml-pipeline-222222222222": e.repo + "@" + d2}
	if got := e.runs(); !maps.Equal(got, want) || len(res.Submitted) != 2 {
		t.Fatalf("runs %v (submitted %v), want %v", got, res.Submitted, want)
	}
	w, _ := e.wf.ArgoprojV1alpha1().Workflows(ns).Get(context.Background(), "ml-pipeline-111111111111", metav1.GetOptions{})
	if w.Spec.Arguments.GetParameterByName("epochs").Value.String() != "3" || w.Labels[LabelTriggered] != "push" {
		t.Errorf("run %s: params %v labels %v", w.Name, w.Spec.Arguments.Parameters, w.Labels)
	}
	again, err := e.run(Options{Digests: []string{d1, d2}})
	if err != nil || len(again.Submitted) != 0 || len(again.Existing) != 2 {
		t.Fatalf("the same notification again: %+v %v, want no new run", again, err)
	}
	for name := range want { // runs garbage-collected after they finished
		if err := e.wf.ArgoprojV1alpha1().Workflows(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if later, err := e.run(Options{Digests: []string{d1}}); err != nil || len(later.Submitted) != 0 || len(e.runs()) != 0 {
		t.Errorf("a digest whose run was deleted was run again: %+v %v", later, err)
	}
}

// Two digests with the same first 12 hex (the run name) are never taken for each other.
func TestRunNameCollisionIsAnErrorNotASkip(t *testing.T) {
	e := newEnv(t)
	if _, err := e.run(Options{Digests: []string{d1}}); err != nil {
		t.Fatal(err)
	}
	twin := "sha256:111111111111" + strings.Repeat("f", 52)
	if _, err := e.run(Options{Digests: []string{twin}}); err == nil || !strings.Contains(err.Error(), "collision") {
		t.Errorf("a digest sharing the run name with another: %v", err)
	}
}

// A trigger that died between creating the run and recording it: the next delivery finds the
// run by its name, starts none and records it.
func TestRunWithoutLedgerEntryIsNotRunTwice(t *testing.T) {
	e := newEnv(t)
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: RunName("ml-pipeline", d1), Namespace: ns}}
	if _, err := e.wf.ArgoprojV1alpha1().Workflows(ns).Create(context.Background(), wf, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := e.run(Options{Digests: []string{d1}})
	if err != nil || len(res.Submitted) != 0 || len(res.Existing) != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := e.kube.CoreV1().ConfigMaps(ns).Get(context.Background(), ledgerName("ml-pipeline", d1), metav1.GetOptions{}); err != nil {
		t.Errorf("the ledger entry was not written: %v", err)
	}
}

// The catch-up lists the repository's tags: the first one adopts what is there (no runs);
// afterwards a digest pushed while no notification arrived gets one run, once, and a digest the
// notification already ran gets none.
func TestCatchUpStartsRunsForMissedPushesOnly(t *testing.T) {
	e := newEnv(t)
	old := e.push("v1")
	e.push("v1-again") // another tag, another image
	res, err := e.run(Options{CatchUp: true})
	if err != nil || res.Adopted != 2 || len(e.runs()) != 0 {
		t.Fatalf("first catch-up: %+v %v, runs %v; want 2 adopted, no run", res, err, e.runs())
	}
	notified := e.push("v2")
	if _, err := e.run(Options{Digests: []string{notified}}); err != nil {
		t.Fatal(err)
	}
	missed := e.push("v3")
	e.push("v3-alias") // a second tag on a new image…
	alias, _ := name.NewTag(e.repo + ":v3-same")
	src, _ := name.NewTag(e.repo + ":v3")
	desc, _ := remote.Get(src)
	img, _ := desc.Image()
	if err := remote.Write(alias, img); err != nil { // …and the missed image under a second tag
		t.Fatal(err)
	}
	res, err = e.run(Options{CatchUp: true})
	if err != nil {
		t.Fatal(err)
	}
	runs := e.runs()
	if runs[RunName("ml-pipeline", missed)] != e.repo+"@"+missed || len(runs) != 3 || len(res.Submitted) != 2 {
		t.Errorf("catch-up runs %v (submitted %v): want the notified one, the missed one once, and v3-alias's", runs, res.Submitted)
	}
	if _, ok := runs[RunName("ml-pipeline", old)]; ok {
		t.Errorf("an adopted digest was run: %v", runs)
	}
	w, _ := e.wf.ArgoprojV1alpha1().Workflows(ns).Get(context.Background(), RunName("ml-pipeline", missed), metav1.GetOptions{})
	if w.Labels[LabelTriggered] != "catch-up" {
		t.Errorf("the missed push's run says it came from %q", w.Labels[LabelTriggered])
	}
	res, err = e.run(Options{CatchUp: true})
	if err != nil || len(res.Submitted) != 0 {
		t.Errorf("a third catch-up submitted %v (%v)", res.Submitted, err)
	}
}

// A repository nobody pushed to yet has nothing to catch up.
func TestCatchUpOfAMissingRepositoryDoesNothing(t *testing.T) {
	e := newEnv(t)
	if res, err := e.run(Options{CatchUp: true}); err != nil || res.Adopted != 0 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestBadInputIsExit2AndCreatesNothing(t *testing.T) {
	e := newEnv(t)
	for name, o := range map[string]Options{
		"not a digest":      {Digests: []string{d1, "latest"}},
		"nothing to do":     {},
		"image param twice": {Digests: []string{d1}, Params: [][2]string{{"train-image", "x"}}},
	} {
		if _, err := e.run(o); exitcode.Of(err) != exitcode.BadInput {
			t.Errorf("%s: %v (exit %d), want exit 2", name, err, exitcode.Of(err))
		}
	}
	o := Options{Digests: []string{d1}, Repository: "Not A Repo", Template: "ml-pipeline", Parameter: "train-image", Namespace: ns}
	if _, err := New(e.wf, e.kube).Run(context.Background(), o); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("bad repository: %v", err)
	}
	if len(e.runs()) != 0 {
		t.Errorf("bad input created runs %v", e.runs())
	}
	for _, s := range []string{`["` + d1 + `","` + d2 + `"]`, d1 + "," + d2, d1 + " " + d2} {
		if got, err := ParseDigests(s); err != nil || !slices.Equal(got, []string{d1, d2}) {
			t.Errorf("ParseDigests(%q) = %v %v", s, got, err)
		}
	}
	if _, err := ParseDigests(`["x",`); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("a broken JSON list: %v", err)
	}
}

// The registry refusing the credentials is bad input; a registry or API server that is down is
// transient (exit 3), and nothing is half-done: the retry completes it.
func TestErrorsAreClassified(t *testing.T) {
	e := newEnv(t)
	e.status.Store(http.StatusUnauthorized)
	if _, err := e.run(Options{CatchUp: true}); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("401: %v (exit %d)", err, exitcode.Of(err))
	}
	e.status.Store(http.StatusServiceUnavailable)
	if _, err := e.run(Options{CatchUp: true}); exitcode.Of(err) != exitcode.Transient {
		t.Errorf("503: %v (exit %d)", err, exitcode.Of(err))
	}
	e.status.Store(0)
	fail := true
	e.wf.PrependReactor("create", "workflows", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fail {
			return true, nil, apierrors.NewServiceUnavailable("etcd leader change")
		}
		return false, nil, nil
	})
	if _, err := e.run(Options{Digests: []string{d1}}); exitcode.Of(err) != exitcode.Transient {
		t.Errorf("API server unavailable: %v (exit %d)", err, exitcode.Of(err))
	}
	if _, err := e.kube.CoreV1().ConfigMaps(ns).Get(context.Background(), ledgerName("ml-pipeline", d1), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a digest whose run was not created is in the ledger: %v", err)
	}
	fail = false
	if res, err := e.run(Options{Digests: []string{d1}}); err != nil || len(res.Submitted) != 1 {
		t.Errorf("the retry: %+v %v", res, err)
	}
}
