//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/tasks/approve"
	"github.com/gantry-ml/gantry/tasks/canary"
	"github.com/gantry-ml/gantry/tasks/publish"
)

// quick trains a small model fast (12k images, one 64-unit layer): these tests are about
// releases, not accuracy, and run several trainings side by side on 2 cores.
func quick(seed int, extra ...string) []string {
	return append([]string{fmt.Sprintf("hyperparameters=epochs=2,hidden=64,train-limit=12000,seed=%d", seed), "min-accuracy=0.7"}, extra...)
}

// stagingServers lists the namespace's staging Deployments: run → model digest.
func (f *fixture) stagingServers() map[string]string {
	f.t.Helper()
	l, err := kube.AppsV1().Deployments(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: publish.LabelEnvironment + "=staging"})
	if err != nil {
		f.t.Fatal(err)
	}
	m := map[string]string{}
	for _, d := range l.Items {
		m[d.Annotations[publish.AnnRun]] = d.Annotations[publish.AnnModelDigest]
	}
	return m
}

// production is the digest the production server says it serves (v2 model metadata), or ""
// when there is no production server.
func (f *fixture) production() string {
	f.t.Helper()
	svc, err := kube.CoreV1().Services(f.ns).Get(f.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ""
	}
	if err != nil {
		f.t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:%d/v2/models/fashion-mnist", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
	var md struct {
		Parameters struct{ Digest string } `json:"parameters"`
	}
	// The Service may still be switching endpoints after a rollout: a few tries.
	for i := 0; ; i++ {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&md)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 200 {
				return md.Parameters.Digest
			}
		}
		if i == 10 {
			f.t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(time.Second)
	}
}

// history is the namespace's production history: the digests, oldest first, "(rollback)",
// "(aborted)" (a release that did not complete) and "(pending)" marked.
func (f *fixture) history() []string {
	f.t.Helper()
	b, err := objstore.ReadAll(f.ctx, f.store("gantry-s3"), "s3://models/registry/fashion-mnist/environments/"+f.ns+"/production.json", 1<<20)
	if objstore.IsNotExist(err) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var h publish.History
	if err := json.Unmarshal(b, &h); err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, e := range h.Entries {
		mark := map[bool]string{true: "(rollback)"}[e.Rollback]
		switch {
		case e.Aborted:
			mark = "(aborted)"
		case e.Pending:
			mark = "(pending)"
		}
		out = append(out, e.Digest+mark)
	}
	return out
}

// released runs the pipeline with params, approves it and waits until it succeeded: the digest
// it put into production.
func (f *fixture) released(params ...string) string {
	f.t.Helper()
	run := f.submit(params...)
	f.waitRun(run, 2*toApproval, "approval waiting", awaitingApproval)
	f.approveAsAdmin(run)
	w := f.waitRun(run, toEnd, "run succeeded", phaseIs(wfv1.WorkflowSucceeded))
	return output(w, "publish(0)", "model-digest")
}

// canaryReport reads the run's canary report.json.
func (f *fixture) canaryReport(run string) canary.Report {
	f.t.Helper()
	b, err := objstore.ReadAll(f.ctx, f.store("gantry-s3"), "s3://models/runs/"+run+"/canary/report.json", 16<<20)
	if err != nil {
		f.t.Fatalf("canary report of %s: %v", run, err)
	}
	var r canary.Report
	if err := json.Unmarshal(b, &r); err != nil {
		f.t.Fatal(err)
	}
	return r
}

// Given three runs of one model submitted within seconds (one deliberately weak), when two are
// approved at the same moment, then each canary scored its own model on its own staging server,
// none was torn down under another run, exactly one release wins the mutex and promotes, and
// the other's approval — based on a production that has since changed — is refused by the
// compare-and-swap, leaving production and its history on the winner.
func TestOverlappingRunsReleaseOnlyTheirOwnModel(t *testing.T) {
	t.Parallel()
	f := given(t)
	runs := []string{f.submit(quick(1)...), f.submit(quick(2)...),
		f.submit("hyperparameters=epochs=1,hidden=64,train-limit=2000,learning-rate=0.000001", "min-accuracy=0.7")}
	weak := runs[2]
	f.waitRun(weak, 3*toApproval, "the weak run failed its canary", phaseIs(wfv1.WorkflowFailed))
	var ws []*wfv1.Workflow
	for _, run := range runs[:2] {
		ws = append(ws, f.waitRun(run, 3*toApproval, "approval waiting", awaitingApproval))
	}
	// Both waiting runs still have their own staging server, serving their own model, after the
	// weak run's exit handler tore its own down.
	staged := f.stagingServers()
	digests := map[string]string{}
	for i, run := range runs[:2] {
		digests[run] = output(ws[i], "publish(0)", "model-digest")
		if staged[run] == "" || staged[run] != digests[run] {
			t.Errorf("staging of %s: %q, want its own model %s (all staging: %v)", run, staged[run], digests[run], staged)
		}
	}
	if _, ok := staged[weak]; ok || digests[runs[0]] == digests[runs[1]] {
		t.Errorf("staging %v: the weak run's server should be gone, and the two models differ", staged)
	}
	for _, run := range runs {
		r := f.canaryReport(run)
		want := digests[run]
		if run == weak {
			want = output(f.waitRun(run, time.Minute, "ended", phaseIs(wfv1.WorkflowFailed)), "publish(0)", "model-digest")
		}
		if r.Candidate.ModelDigest != want || r.Candidate.Samples == 0 {
			t.Errorf("%s's canary scored %q (%d samples), want its own model %s", run, r.Candidate.ModelDigest, r.Candidate.Samples, want)
		}
		if r.Baseline != nil {
			t.Errorf("%s's canary compared against a baseline %+v: there was no production yet", run, r.Baseline)
		}
	}
	// Both approved at once: the release mutex lets one through; the other is refused.
	for _, run := range runs[:2] {
		f.approveAsAdmin(run)
	}
	var won, lost string
	for _, run := range runs[:2] {
		w := f.waitRun(run, toEnd+2*time.Minute, "run ended", func(w *wfv1.Workflow) bool { return w.Status.Fulfilled() })
		switch w.Status.Phase {
		case wfv1.WorkflowSucceeded:
			won = run
		default:
			lost = run
			if msgs := nodeMessages(w); !strings.Contains(msgs, "production changed since the canary") {
				t.Errorf("%s failed without the compare-and-swap refusal: %s", run, msgs)
			}
			if rb := output(w, "rollback(0)", "outcome"); !strings.Contains(rb, "nothing to roll back") {
				t.Errorf("%s's rollback outcome %q: it must not touch the winner's production", run, rb)
			}
		}
	}
	if won == "" || lost == "" {
		t.Fatalf("winner %q, refused %q: want exactly one of each", won, lost)
	}
	if got := f.production(); got != digests[won] {
		t.Errorf("production serves %s, want the winner %s's %s", got, won, digests[won])
	}
	if h := f.history(); !slices.Equal(h, []string{digests[won]}) {
		t.Errorf("production history %v, want only the winner's %s", h, digests[won])
	}
	if left := f.stagingServers(); len(left) > 0 {
		t.Errorf("staging left behind: %v", left)
	}
}

// Given a model's first release, when its smoke test in production fails
// (smoke-min-accuracy above what it reaches), then the release rolls back by removing
// production — no unverified model is left serving — and the run says so.
func TestFirstReleaseFailingItsSmokeTestLeavesNothingServing(t *testing.T) {
	t.Parallel()
	f := given(t)
	run := f.submit(quick(3, "smoke-min-accuracy=0.99")...)
	f.waitRun(run, 2*toApproval, "approval waiting", awaitingApproval)
	f.approveAsAdmin(run)
	w := f.waitRun(run, toEnd, "run failed", phaseIs(wfv1.WorkflowFailed))
	if out := output(w, "rollback(0)", "outcome"); !strings.Contains(out, "removed the production server") {
		t.Errorf("rollback outcome %q, want production removed; %s", out, summary(w))
	}
	if msgs := nodeMessages(w); !strings.Contains(msgs, "release failed; rollback: removed") {
		t.Errorf("the run does not say what happened: %s", msgs)
	}
	f.notPromoted()
	digest := output(w, "publish(0)", "model-digest")
	if h := f.history(); !slices.Equal(h, []string{digest, "(rollback)"}) {
		t.Errorf("production history %v, want %s then a rollback to nothing", h, digest)
	}
}

// Given a model in production and two candidates waiting for approval, when the first one's
// promote fails (its server cannot start in production: the read credentials it needs are gone),
// then the release rolls back to the model in production; and when the second one is promoted but
// fails its smoke test (smoke-min-accuracy above what it reaches), production is back on the
// previous model again and serves it.
func TestFailedPromoteAndFailedSmokeAreRolledBack(t *testing.T) {
	t.Parallel()
	f := given(t)
	good := f.released(quick(4)...)

	second, third := f.submit(quick(5)...), f.submit(quick(6, "smoke-min-accuracy=0.99")...)
	for _, run := range []string{second, third} {
		w := f.waitRun(run, 3*toApproval, "approval waiting", awaitingApproval)
		if output(w, "canary(0)", "baseline-digest") != good {
			t.Fatalf("%s's canary compared against %q, want production's %s", run, output(w, "canary(0)", "baseline-digest"), good)
		}
	}
	// The production server's read credentials disappear: new server pods cannot start, the
	// pods already serving keep running.
	secret, err := kube.CoreV1().Secrets(f.ns).Get(f.ctx, "gantry-s3-read", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kube.CoreV1().Secrets(f.ns).Delete(f.ctx, "gantry-s3-read", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.approveAsAdmin(second)
	w2 := f.waitRun(second, toEnd+6*time.Minute, "second run failed", phaseIs(wfv1.WorkflowFailed))
	if n := w2.Status.Nodes.FindByDisplayName("promote"); n == nil || n.Phase != wfv1.NodeFailed {
		t.Errorf("promote did not fail: %s", summary(w2))
	}
	if out := output(w2, "rollback(0)", "outcome"); !strings.Contains(out, "rolled back to") {
		t.Errorf("rollback outcome %q, want back to the first model; %s", out, summary(w2))
	}
	if got := f.production(); got != good {
		t.Errorf("production serves %s after the rollback, want the first run's %s", got, good)
	}
	bad := output(w2, "publish(0)", "model-digest")
	for _, e := range f.history() {
		if strings.HasPrefix(e, bad) && e != bad+"(aborted)" {
			t.Errorf("history %v records the model whose promote failed as live", f.history())
		}
	}

	// The credentials are back; the third candidate is promoted, fails its smoke test, and is
	// rolled back: production serves the first model again.
	secret.ResourceVersion, secret.UID = "", ""
	if _, err := kube.CoreV1().Secrets(f.ns).Create(f.ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.approveAsAdmin(third)
	w3 := f.waitRun(third, toEnd+2*time.Minute, "third run failed", phaseIs(wfv1.WorkflowFailed))
	if n := w3.Status.Nodes.FindByDisplayName("smoke(0)"); n == nil || n.Phase != wfv1.NodeFailed || !strings.Contains(n.Message, "smoke failed") {
		t.Errorf("smoke step: %+v, want Failed saying why; %s", n, summary(w3))
	}
	if out := output(w3, "rollback(0)", "outcome"); !strings.Contains(out, "rolled back to") {
		t.Errorf("rollback outcome %q, want back to the first model; %s", out, summary(w3))
	}
	if got := f.production(); got != good {
		t.Errorf("production serves %s after the smoke test failed, want the first run's %s", got, good)
	}
	weak := output(w3, "publish(0)", "model-digest")
	if h := f.history(); len(h) < 2 || h[len(h)-2] != weak || h[len(h)-1] != good+"(rollback)" {
		t.Errorf("history %v: want the third model, then a rollback to %s", h, good)
	}
}

// Given a model in production, when a second run is stopped (`argo stop`) in the middle of its
// release — its promote has changed production, its smoke test has not passed — then its exit
// handler settles the release: production serves the first model again, and the history records
// the second one as aborted or rolled back, with nothing left pending.
func TestStoppedReleaseIsRolledBack(t *testing.T) {
	t.Parallel()
	f := given(t)
	good := f.released(quick(8)...)

	second := f.submit(quick(9)...)
	f.waitRun(second, 2*toApproval, "approval waiting", awaitingApproval)
	f.approveAsAdmin(second)
	// The moment the second run's promote has changed production, the run is stopped.
	deadline := time.Now().Add(toEnd)
	for {
		dep, err := kube.AppsV1().Deployments(f.ns).Get(f.ctx, "fashion-mnist-production", metav1.GetOptions{})
		if err == nil && dep.Annotations[publish.AnnRun] == second {
			break
		}
		if time.Now().After(deadline) {
			f.dump()
			t.Fatalf("the second run's promote never changed production within %s", toEnd)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.argo("stop", second)
	t.Logf("stopped %s during its release", second)
	w := f.waitRun(second, toEnd, "stopped run finished", phaseIs(wfv1.WorkflowFailed))
	if n := w.Status.Nodes.FindByDisplayName("settle-release"); n == nil || n.Phase != wfv1.NodeSucceeded {
		t.Fatalf("the exit handler did not settle the release: %+v; %s", n, summary(w))
	}
	out := output(w, "settle-release", "outcome")
	if !strings.Contains(out, "rolled back to") {
		t.Errorf("settle-release outcome %q, want rolled back to the first model; %s", out, summary(w))
	}
	if got := f.production(); got != good {
		t.Errorf("production serves %s after the stopped release, want the first run's %s", got, good)
	}
	bad := output(w, "publish(0)", "model-digest")
	h := f.history()
	for _, e := range h {
		if strings.HasSuffix(e, "(pending)") {
			t.Errorf("history %v: an intent is still pending", h)
		}
	}
	if n := len(h); n == 0 || h[n-1] != good+"(rollback)" && h[n-1] != bad+"(aborted)" {
		t.Errorf("history %v: want the stopped release (%s) aborted or rolled back to %s", h, bad, good)
	}
	t.Logf("settle-release: %s; history %v", out, h)
}

// operatorOptions are the options of an operator's `model-publisher rollback` in the test's
// namespace, taken from a staging server of run (its image, store endpoint and read Secret).
func (f *fixture) operatorOptions(run string) publish.DeployOptions {
	f.t.Helper()
	l, err := kube.AppsV1().Deployments(f.ns).List(f.ctx, metav1.ListOptions{LabelSelector: publish.LabelEnvironment + "=staging"})
	if err != nil {
		f.t.Fatal(err)
	}
	o := publish.DeployOptions{Namespace: f.ns, Environment: "production", ModelName: "fashion-mnist", RegistryURI: "s3://models/registry",
		Replicas: 1, Run: "operator", RolloutTimeout: 3 * time.Minute}
	for _, d := range l.Items {
		if d.Annotations[publish.AnnRun] != run {
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		o.ServerImage = c.Image
		for _, e := range c.Env {
			switch {
			case e.Name == "GANTRY_S3_ENDPOINT":
				o.S3Endpoint = e.Value
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				o.S3Secret = e.ValueFrom.SecretKeyRef.Name
			}
		}
	}
	if o.ServerImage == "" {
		f.t.Fatalf("no staging server of %s", run)
	}
	return o
}

// Given one model released at the same moment from Argo and from Tekton — both approved at once,
// both canaries compared against the same production — while an operator rolls production back
// at the CLI (the code of `model-publisher rollback`, as the namespace's admin), then gantry's own
// release lock and compare-and-swap serialise them: both runs end; a run that did not promote was
// refused with a reason (the compare-and-swap: production changed since its canary) or rolled
// back; the history has no intent pending, and production serves its head.
func TestReleasesFromArgoTektonAndTheCLIAreSerialised(t *testing.T) {
	t.Parallel()
	f := given(t)
	argoRun := f.submit(quick(12)...)
	tekRun := f.tektonRun("hyperparameters=epochs=2,hidden=64,train-limit=12000,seed=13", "min-accuracy=0.7", "smoke-min-accuracy=0.7")
	f.waitRun(argoRun, 2*toApproval, "Argo approval waiting", awaitingApproval)
	f.waitTekton(tekRun, 2*tektonToApproval, "Tekton approval waiting", approvalWaiting)
	f.people()
	op := f.operatorOptions(argoRun)
	operator := publish.NewDeployer(kube, f.store("gantry-s3"))

	var wg sync.WaitGroup
	var argoErr, tekErr, cliErr error
	var cli *publish.Deployed
	wg.Add(3)
	go func() {
		defer wg.Done()
		_, argoErr = approve.NewApprover(argoWF, kube).Decide(f.ctx, approve.DecideOptions{Namespace: f.ns, Run: argoRun, Decision: "approve", Reason: "e2e"})
	}()
	go func() {
		defer wg.Done()
		_, tekErr = f.try(nil, filepath.Join(binDir, "approver"), "approve", tekRun, "--tekton", "--kubeconfig", f.kubeconfigOf(alice), "-n", f.ns)
	}()
	go func() {
		defer wg.Done()
		time.Sleep(time.Duration(rand.IntN(20)) * time.Second) // somewhere in the releases
		cli, cliErr = operator.Rollback(f.ctx, op)
	}()
	wg.Wait()
	if argoErr != nil || tekErr != nil || cliErr != nil {
		t.Fatalf("approving on Argo: %v; on Tekton: %v; the operator's rollback: %v", argoErr, tekErr, cliErr)
	}
	t.Logf("the operator's rollback: %s", cli.Outcome)

	w := f.waitRun(argoRun, toEnd+3*time.Minute, "Argo run ended", func(w *wfv1.Workflow) bool { return w.Status.Phase.Completed() })
	pr, trs := f.waitTekton(tekRun, tektonToEnd+3*time.Minute, "Tekton run ended", func(pr *unstructured.Unstructured, _ map[string]*unstructured.Unstructured) bool {
		s, _, _ := succeeded(pr)
		return s == "True" || s == "False"
	})
	argoPromoted := w.Status.Nodes.FindByDisplayName("promote") != nil && w.Status.Nodes.FindByDisplayName("promote").Phase == wfv1.NodeSucceeded
	tekPromoted := false
	if tr := trs["promote"]; tr != nil {
		s, _, _ := succeeded(tr)
		tekPromoted = s == "True"
	}
	t.Logf("Argo %s: %s; Tekton %s: %s", argoRun, summary(w), tekRun, tektonSummary(pr, trs))
	if !argoPromoted && !tekPromoted {
		t.Errorf("neither release promoted")
	}
	// A run that did not promote says why: the compare-and-swap refused it.
	if n := w.Status.Nodes.FindByDisplayName("promote(0)"); !argoPromoted && (n == nil || !strings.Contains(n.Message, "changed since the canary")) {
		t.Errorf("the Argo run did not promote and does not say it was refused by the compare-and-swap: %s", nodeMessages(w))
	}
	if tr := trs["promote"]; !tekPromoted && tr != nil {
		if _, _, msg := succeeded(tr); !strings.Contains(msg, "changed since the canary") {
			t.Errorf("the Tekton run did not promote: %q, want the compare-and-swap's refusal", msg)
		}
	}
	h := f.history()
	head := ""
	for _, e := range h {
		switch {
		case strings.HasSuffix(e, "(pending)"):
			t.Errorf("history %v: an intent is still pending", h)
		case strings.HasSuffix(e, "(aborted)"):
		case strings.HasSuffix(e, "(rollback)"):
			head = strings.TrimSuffix(e, "(rollback)")
		default:
			head = e
		}
	}
	if got := f.production(); got != head {
		t.Errorf("production serves %q, its history's head is %q (history %v)", got, head, h)
	}
	t.Logf("history %v", h)
}
