package approve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/google/go-cmp/cmp"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

const ns = "ml"

var t0 = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// run is a workflow suspended on its approval node.
func run(name string) *wfv1.Workflow {
	return &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Status: wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning, Nodes: wfv1.Nodes{
			name + "-1": {ID: name + "-1", Name: name + ".approval", DisplayName: "approval", Type: wfv1.NodeTypeSuspend, Phase: wfv1.NodeRunning,
				StartedAt: metav1.Time{Time: t0},
				Outputs: &wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: DecisionParam, Default: wfv1.AnyStringPtr(Approved),
					ValueFrom: &wfv1.ValueFrom{Supplied: &wfv1.SuppliedValueFrom{}}}}}},
			name + "-0": {ID: name + "-0", Name: name + ".canary", DisplayName: "canary", Type: wfv1.NodeTypePod, Phase: wfv1.NodeSucceeded},
		}},
	}
}

// finish ends the approval node the way Argo does: resume or expiry (default outputs).
func finish(wf *wfv1.Workflow, after time.Duration, decision string, message string) *wfv1.Workflow {
	n := wf.Status.Nodes[wf.Name+"-1"]
	n.Phase = wfv1.NodeSucceeded
	n.FinishedAt = metav1.Time{Time: t0.Add(after)}
	n.Outputs.Parameters[0].Value = wfv1.AnyStringPtr(decision)
	n.Message = message
	wf.Status.Nodes[wf.Name+"-1"] = n
	return wf
}

func whoami(user string) *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authnv1.SelfSubjectReview{Status: authnv1.SelfSubjectReviewStatus{UserInfo: authnv1.UserInfo{Username: user}}}, nil
	})
	enforced(c)
	return c
}

// enforced makes the fake API server refuse the policy probes, as the approval policies do in
// namespaces they are in force in.
func enforced(c *fake.Clientset) {
	c.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.CreateAction).GetObject().(metav1.Object).GetName()
		for _, p := range []string{ArgoPolicy, TektonPolicy} {
			if strings.HasPrefix(name, PolicyProbe(p)+"-") {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, name,
					fmt.Errorf("ValidatingAdmissionPolicy '%s' with binding '%s' denied request: gantry's approval policy %s is in force in this namespace", p, p, p))
			}
		}
		return false, nil, nil
	})
}

func verify(t *testing.T, wf *wfv1.Workflow, o VerifyOptions) *Verdict {
	t.Helper()
	store, _ := objstore.New(nil)
	o.Namespace, o.Run = ns, wf.Name
	wfc := argofake.NewSimpleClientset(wf)
	apiCalls.Attach(wfc)
	v, err := NewApprover(wfc, nil).Verify(context.Background(), store, o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyDecisions(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	for _, tc := range []struct {
		name      string
		wf        *wfv1.Workflow
		approvers []string
		want, by  string
		reasonHas string
	}{
		{name: "a resume that names nobody is not an approval", wf: finish(run("r1"), time.Hour, Approved, ""), want: Rejected, reasonHas: "names nobody"},
		{name: "supplied rejected rejects", wf: finish(run("r2"), time.Hour, Rejected, ""), want: Rejected},
		{name: "expired suspend is a rejection", wf: finish(run("r3"), day, Approved, ""), want: Rejected, reasonHas: "timed out after 24h0m0s"},
		{name: "unknown decision rejects", wf: finish(run("r4"), time.Hour, "maybe", ""), want: Rejected, reasonHas: `unknown decision "maybe"`},
		{name: "an argo resume is never matched against an allow-list (Argo's label form is lossy)", wf: func() *wfv1.Workflow {
			wf := finish(run("r5"), time.Hour, Approved, "Resumed by: map[User:alice]")
			wf.Labels = map[string]string{ArgoActorLabel: "alice", ArgoActionLabel: "Resume"}
			return wf
		}(), approvers: []string{"alice"}, want: Rejected, reasonHas: "cannot be matched exactly against the approvers list"},
		{name: "an argo resume the API server named approves", wf: func() *wfv1.Workflow {
			wf := finish(run("r6"), time.Hour, Approved, "Resumed by: map[User:alice]")
			wf.Labels = map[string]string{ArgoActorLabel: "alice", ArgoActionLabel: "Resume"}
			return wf
		}(), want: Approved, by: "alice"},
	} {
		v := verify(t, tc.wf, VerifyOptions{Timeout: day, Approvers: tc.approvers})
		if v.Decision != tc.want || (tc.by != "" && v.ApprovedBy != tc.by) || !strings.Contains(v.Reason, tc.reasonHas) {
			t.Errorf("%s: got %+v, want %s by %q reason containing %q", tc.name, v, tc.want, tc.by, tc.reasonHas)
		}
		if tc.want == Rejected && v.Values()["approved-by"] != "" {
			t.Errorf("%s: approved-by must be empty on a rejection", tc.name)
		}
	}
}

func TestDecideRecordsIdentityThenVerifyAudits(t *testing.T) {
	t.Parallel()
	wf := run("r1")
	wf.UID = "uid-r1"
	wf.Status.Nodes["r1-p"] = wfv1.NodeStatus{ID: "r1-p", DisplayName: "publish(0)", Type: wfv1.NodeTypePod, Phase: wfv1.NodeSucceeded, StartedAt: metav1.Time{Time: t0},
		Outputs: &wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: DigestResult, Value: wfv1.AnyStringPtr("sha256:abc")}}}}
	wfc := argofake.NewSimpleClientset(wf)
	apiCalls.Attach(wfc)
	kc := whoami("alice@example.com")
	apiCalls.Attach(kc)
	g := NewApprover(wfc, kc, WithClock(func() time.Time { return t0.Add(time.Hour) }))
	ctx := context.Background()
	d, err := g.Decide(ctx, DecideOptions{Namespace: ns, Run: "r1", Decision: "approve", Reason: "numbers look right"})
	if err != nil || d.By != "alice@example.com" || !d.Resumed {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	got, _ := wfc.ArgoprojV1alpha1().Workflows(ns).Get(ctx, "r1", metav1.GetOptions{})
	if want := "approved uid-r1/r1-1 sha256:abc alice@example.com"; got.Annotations[DecisionKey("alice@example.com")] != want || got.Annotations[ReasonKey("alice@example.com")] != "numbers look right" {
		t.Errorf("annotations %v, want %s = %q", got.Annotations, DecisionKey("alice@example.com"), want)
	}
	n := got.Status.Nodes["r1-1"]
	if n.Phase != wfv1.NodeSucceeded || n.Outputs.Parameters[0].Value.String() != Approved || n.Outputs.Parameters[0].ValueFrom != nil {
		t.Errorf("node after decide: %+v", n)
	}
	dir := t.TempDir()
	store, _ := objstore.New(nil)
	v, err := g.Verify(ctx, store, VerifyOptions{Namespace: ns, Run: "r1", Timeout: 24 * time.Hour, Approvers: []string{"alice@example.com"},
		AuditURI: "file://" + dir + "/", Candidate: Candidate{ModelVersion: "v1", Accuracy: "0.8861"}, ModelDigest: "sha256:abc"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Decision != Approved || v.ApprovedBy != "alice@example.com" || v.Reason != "numbers look right" {
		t.Errorf("verdict %+v", v)
	}
	b, err := os.ReadFile(filepath.Join(dir, "r1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var audit Verdict
	json.Unmarshal(b, &audit)
	if audit.ApprovedBy != "alice@example.com" || audit.Reason != "numbers look right" || audit.Candidate.Accuracy != "0.8861" {
		t.Errorf("audit record %s", b)
	}
	// Deciding again: the run no longer waits.
	if _, err := g.Decide(ctx, DecideOptions{Namespace: ns, Run: "r1", Decision: "reject", Reason: "x"}); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("second decision: %v, want exit 2", err)
	}
}

func TestRejectByOtherThanAllowListAndRejectNeedsReason(t *testing.T) {
	t.Parallel()
	wfc := argofake.NewSimpleClientset(run("r1"))
	g := NewApprover(wfc, whoami("mallory"), WithClock(func() time.Time { return t0.Add(time.Minute) }))
	ctx := context.Background()
	if _, err := g.Decide(ctx, DecideOptions{Namespace: ns, Run: "r1", Decision: "reject"}); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("reject without reason: %v", err)
	}
	if _, err := g.Decide(ctx, DecideOptions{Namespace: ns, Run: "nope", Decision: "approve"}); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("unknown run: %v", err)
	}
	if _, err := g.Decide(ctx, DecideOptions{Namespace: ns, Run: "r1", Decision: "approve"}); err != nil {
		t.Fatal(err)
	}
	store, _ := objstore.New(nil)
	v, err := g.Verify(ctx, store, VerifyOptions{Namespace: ns, Run: "r1", Approvers: []string{"alice"}})
	if err != nil || v.Decision != Rejected || !strings.Contains(v.Reason, "mallory is not in the approvers list") {
		t.Errorf("verdict %+v %v", v, err)
	}
}

// bound writes decision annotations the way Decide does, bound to bindTo ("" : this run's node).
func bound(wf *wfv1.Workflow, decision, user, bindTo string) *wfv1.Workflow {
	if wf.UID == "" {
		wf.UID = "uid-" + types.UID(wf.Name)
	}
	if bindTo == "" {
		bindTo = string(wf.UID) + "/" + wf.Name + "-1"
	}
	if wf.Annotations == nil {
		wf.Annotations = map[string]string{}
	}
	wf.Annotations[DecisionKey(user)] = decisionValue(decision, bindTo, "sha256:candidate", user)
	return wf
}

// Decisions count only for the approval node they were made on, only in the decider's own
// name, and never over an expiry: each forgery here must end rejected.
func TestForgedCopiedOrExpiredDecisionsNeverApprove(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	// A decision on another candidate (the run published anew after it) does not count.
	other := bound(finish(run("f12"), time.Hour, Approved, ""), Approved, "alice@example.com", "")
	if v := verify(t, other, VerifyOptions{Timeout: day, Approvers: []string{"alice@example.com"}, ModelDigest: "sha256:another"}); v.Decision != Rejected ||
		!strings.Contains(v.Reason, "decided on another candidate") {
		t.Errorf("a decision on another candidate: %s (%q)", v.Decision, v.Reason)
	}
	for _, tc := range []struct {
		name      string
		wf        *wfv1.Workflow
		want      string
		reasonHas string
	}{
		{"old-style hand-written annotations name nobody", func() *wfv1.Workflow {
			wf := finish(run("f1"), time.Hour, Approved, "")
			wf.Annotations = map[string]string{"gantry.dev/decision": Approved, "gantry.dev/decided-by": "alice@example.com"}
			return wf
		}(), Rejected, "names nobody"},
		{"a decision copied from another run (argo resubmit) does not count", bound(finish(run("f2"), time.Hour, Approved, ""), Approved, "alice@example.com", "uid-original/f2-1"),
			Rejected, "names nobody"},
		{"a decision bound to another node does not count", bound(finish(run("f3"), time.Hour, Approved, ""), Approved, "alice@example.com", "uid-f3/f3-0"),
			Rejected, "names nobody"},
		{"a decision under alice's key counts as whoever the value names (the policy binds the value to its writer)", func() *wfv1.Workflow {
			wf := finish(run("f8"), time.Hour, Approved, "")
			wf.UID = "uid-f8"
			wf.Annotations = map[string]string{DecisionKey("alice@example.com"): decisionValue(Approved, "uid-f8/f8-1", "sha256:candidate", "mallory")}
			return wf
		}(), Rejected, "mallory is not in the approvers list"},
		{"names that share Argo's label form are different people", func() *wfv1.Workflow {
			wf := bound(finish(run("f13"), time.Hour, Approved, ""), Approved, "alice:example.com", "")
			return bound(wf, Approved, "alice-example.com", "")
		}(), Rejected, "alice-example.com is not in the approvers list"},
		{"expiry wins over a copied decision", bound(finish(run("f4"), day, Approved, ""), Approved, "alice@example.com", "uid-original/f4-1"),
			Rejected, "timed out"},
		{"expiry wins even over a bound one", bound(finish(run("f5"), day+time.Minute, Approved, ""), Approved, "alice@example.com", ""),
			Rejected, "timed out"},
		{"a bound decision by an approver approves", bound(finish(run("f6"), time.Hour, Approved, ""), Approved, "alice@example.com", ""),
			Approved, ""},
		{"an argo resume (Argo's lossy label form) is never matched against an allow-list", func() *wfv1.Workflow {
			wf := finish(run("f7"), time.Hour, Approved, "Resumed by: map[User:alice@example.com]")
			wf.Labels = map[string]string{ArgoActorLabel: "alice-example.com", ArgoActionLabel: "Resume"}
			return wf
		}(), Rejected, "cannot be matched exactly"},
		{"an actor label without the Argo Server's resume message (copied by resubmit) does not count", func() *wfv1.Workflow {
			wf := finish(run("f9"), time.Hour, Approved, "")
			wf.Labels = map[string]string{ArgoActorLabel: "alice-example.com", ArgoActionLabel: "Resume"}
			return wf
		}(), Rejected, "names nobody"},
		{"a bound rejection by anyone wins over approvals", bound(bound(finish(run("f10"), time.Hour, Approved, ""), Approved, "alice@example.com", ""), Rejected, "bob", ""),
			Rejected, "rejected by bob"},
		{"an approval node that finished before the run was created (memoized resubmit) does not count", func() *wfv1.Workflow {
			wf := bound(finish(run("f11"), time.Hour, Approved, ""), Approved, "alice@example.com", "")
			wf.CreationTimestamp = metav1.Time{Time: t0.Add(2 * time.Hour)}
			return wf
		}(), Rejected, "copied"},
	} {
		v := verify(t, tc.wf, VerifyOptions{Timeout: day, Approvers: []string{"alice@example.com", "bob"}})
		if v.Decision != tc.want || !strings.Contains(v.Reason, tc.reasonHas) {
			t.Errorf("%s: %s (%q), want %s with %q", tc.name, v.Decision, v.Reason, tc.want, tc.reasonHas)
		}
		if v.Decision == Approved && v.ApprovedBy != "alice@example.com" {
			t.Errorf("%s: approved by %q, want the exact name alice@example.com", tc.name, v.ApprovedBy)
		}
	}
}

// withPolicy gives the run's approval node the four-eyes inputs and a submitter.
func withPolicy(wf *wfv1.Workflow, min string, forbidSelf bool, submitter string) *wfv1.Workflow {
	n := wf.Status.Nodes[wf.Name+"-1"]
	n.Inputs = &wfv1.Inputs{Parameters: []wfv1.Parameter{{Name: MinApprovalsParam, Value: wfv1.AnyStringPtr(min)},
		{Name: ForbidSelfParam, Value: wfv1.AnyStringPtr(fmt.Sprint(forbidSelf))}}}
	wf.Status.Nodes[wf.Name+"-1"] = n
	if submitter != "" {
		wf.Labels = map[string]string{SubmitterLabel: submitter}
	}
	wf.UID = "uid-" + types.UID(wf.Name)
	return wf
}

func TestFourEyes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	as := func(wfc *argofake.Clientset, who string) *Approver {
		return NewApprover(wfc, whoami(who), WithClock(func() time.Time { return t0.Add(time.Hour) }))
	}
	// min-approvals 2: alice's approval is recorded, the run still waits; twice alice is still
	// one; bob's makes two and resumes the node; verify names both.
	wfc := argofake.NewSimpleClientset(withPolicy(run("m1"), "2", false, ""))
	for i, step := range []struct {
		who         string
		resumed     bool
		have        int
		errContains string
	}{{"alice", false, 1, ""}, {"alice", false, 1, ""}, {"bob", true, 2, ""}} {
		d, err := as(wfc, step.who).Decide(ctx, DecideOptions{Namespace: ns, Run: "m1", Decision: "approve"})
		if err != nil || d.Resumed != step.resumed || d.Have != step.have || d.Need != 2 {
			t.Fatalf("step %d (%s): %+v, %v", i, step.who, d, err)
		}
	}
	store, _ := objstore.New(nil)
	v, err := as(wfc, "x").Verify(ctx, store, VerifyOptions{Namespace: ns, Run: "m1", Timeout: 24 * time.Hour})
	if err != nil || v.Decision != Approved || v.ApprovedBy != "alice,bob" {
		t.Errorf("two approvers: %+v, %v", v, err)
	}
	// One approval then a plain argo resume by someone (unnamed): one of two, rejected.
	one := bound(withPolicy(finish(run("m2"), time.Hour, Approved, ""), "2", false, ""), Approved, "alice", "")
	if v := verify(t, one, VerifyOptions{Timeout: 24 * time.Hour}); v.Decision != Rejected || !strings.Contains(v.Reason, "1 of 2 required approvals (alice)") {
		t.Errorf("one approver of two: %+v", v)
	}
	// forbid-self-approval: the submitter cannot approve (Decide refuses, exit 2), and an
	// approval by them recorded anyway does not count.
	wfc = argofake.NewSimpleClientset(withPolicy(run("s1"), "1", true, "alice-example.com"))
	if _, err := as(wfc, "alice@example.com").Decide(ctx, DecideOptions{Namespace: ns, Run: "s1", Decision: "approve"}); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "submitted run s1") {
		t.Errorf("self-approval: %v, want exit 2", err)
	}
	self := bound(withPolicy(finish(run("s2"), time.Hour, Approved, ""), "1", true, "alice-example.com"), Approved, "alice@example.com", "")
	if v := verify(t, self, VerifyOptions{Timeout: 24 * time.Hour}); v.Decision != Rejected || !strings.Contains(v.Reason, "submitted the run") {
		t.Errorf("self-approval recorded anyway: %+v", v)
	}
	other := bound(withPolicy(finish(run("s3"), time.Hour, Approved, ""), "1", true, "alice-example.com"), Approved, "bob", "")
	if v := verify(t, other, VerifyOptions{Timeout: 24 * time.Hour}); v.Decision != Approved || v.ApprovedBy != "bob" {
		t.Errorf("another approver: %+v", v)
	}
	// forbid-self with no recorded submitter: nobody can tell, so it is a rejection.
	unknown := bound(withPolicy(finish(run("s4"), time.Hour, Approved, ""), "1", true, ""), Approved, "bob", "")
	if v := verify(t, unknown, VerifyOptions{Timeout: 24 * time.Hour}); v.Decision != Rejected || !strings.Contains(v.Reason, "does not say who submitted") {
		t.Errorf("unknown submitter: %+v", v)
	}
	// Bad four-eyes inputs are bad input.
	bad := withPolicy(finish(run("b1"), time.Hour, Approved, ""), "zero", false, "")
	if _, err := NewApprover(argofake.NewSimpleClientset(bad), nil).Verify(ctx, store, VerifyOptions{Namespace: ns, Run: "b1"}); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("min-approvals zero: %v, want exit 2", err)
	}
}

func TestDecideRetriesConflicts(t *testing.T) {
	t.Parallel()
	wfc := argofake.NewSimpleClientset(run("r1"))
	var conflicts atomic.Int32
	wfc.PrependReactor("update", "workflows", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts.Add(1) <= 2 {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "workflows"}, "r1", errors.New("changed"))
		}
		return false, nil, nil
	})
	if _, err := NewApprover(wfc, nil).Decide(context.Background(), DecideOptions{Namespace: ns, Run: "r1", Decision: "approve", Identity: "bob"}); err != nil {
		t.Fatalf("Decide with 2 conflicts: %v", err)
	}
	if conflicts.Load() != 3 {
		t.Errorf("%d update attempts, want 3", conflicts.Load())
	}
}

func TestDecisionTheAPIServerRefusesIsBadInputNotRetried(t *testing.T) {
	t.Parallel()
	wfc := argofake.NewSimpleClientset(run("r1"))
	var updates atomic.Int32
	wfc.PrependReactor("update", "workflows", func(k8stesting.Action) (bool, runtime.Object, error) {
		updates.Add(1)
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "argoproj.io", Resource: "workflows"}, "r1",
			errors.New("ValidatingAdmissionPolicy 'gantry-approval' denied request: only approvers may write gantry decisions"))
	})
	_, err := NewApprover(wfc, nil).Decide(context.Background(), DecideOptions{Namespace: ns, Run: "r1", Decision: "approve", Identity: "mallory"})
	if exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "only approvers") || updates.Load() != 1 {
		t.Errorf("forbidden decision: %v after %d updates, want exit 2 after 1", err, updates.Load())
	}
}

func TestListShowsWaitingRunsWithCandidate(t *testing.T) {
	t.Parallel()
	done := finish(run("r0"), time.Hour, Approved, "")
	waiting := run("r1")
	// The request step's candidate result, as Argo stores it in the run's status.
	waiting.Status.Nodes["r1-r"] = wfv1.NodeStatus{ID: "r1-r", DisplayName: "request-approval", Type: wfv1.NodeTypePod, Phase: wfv1.NodeSucceeded,
		StartedAt: metav1.Time{Time: t0}, Outputs: &wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: CandidateResult,
			Value: wfv1.AnyStringPtr(`{"modelVersion":"20261125T090001Z-abc","accuracy":"0.8861","baselineAccuracy":"0.8790"}`)}}}}
	wfc := argofake.NewSimpleClientset(waiting, done)
	apiCalls.Attach(wfc)
	g := NewApprover(wfc, nil)
	ctx := context.Background()
	l, err := g.List(ctx, ns, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Run != "r1" || l[0].Candidate.Accuracy != "0.8861" || l[0].Need != 1 {
		t.Errorf("List = %+v", l)
	}
	// Every namespace: a run waiting in another namespace shows up with its namespace.
	other := run("r9")
	other.Namespace = "team-b"
	if _, err := wfc.ArgoprojV1alpha1().Workflows("team-b").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	all, err := g.List(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, w := range all {
		got[w.Run] = w.Namespace
	}
	if diff := cmp.Diff(map[string]string{"r1": ns, "r9": "team-b"}, got); diff != "" {
		t.Errorf("List all namespaces (-want +got):\n%s", diff)
	}
}

func TestRequestRetriesWebhook(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var got Message
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
	}))
	defer ts.Close()
	o := RequestOptions{Namespace: ns, Run: "ml-pipeline-x", NotifyURL: ts.URL + "/hooks/T000/SECRET-TOKEN", Retries: 3,
		Candidate: Candidate{ModelName: "fashion-mnist", ModelVersion: "v1", Accuracy: "0.8861", BaselineAccuracy: "0.8790", P99Ms: "4.20", ReportURI: "s3://r/report.html"}}
	n, err := NewApprover(nil, nil).Request(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !n.Delivered || n.Values()["notified"] != "true" || calls.Load() != 3 || got.Run != "ml-pipeline-x" {
		t.Errorf("delivered %v after %d calls, received %+v", n.Delivered, calls.Load(), got)
	}
	for _, want := range []string{"argo resume ml-pipeline-x -n ml", "approver reject ml-pipeline-x", "0.8861 vs production 0.8790", "p99 4.20 ms", "s3://r/report.html"} {
		if !strings.Contains(n.Message.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, n.Message.Text)
		}
	}
}

// Notification is best effort: a webhook that stays down, refuses, or does not exist leaves the
// result notified=false and no error, so the run goes on to wait for a decision. The webhook
// URL is a secret: it appears in no log line, error or result.
func TestUndeliveredRequestIsAResultAndNeverLeaksTheWebhook(t *testing.T) {
	t.Parallel()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "x", 503) }))
	defer down.Close()
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "x", 404) }))
	defer refuse.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for name, base := range map[string]string{"down": down.URL, "refuses": refuse.URL, "unreachable": gone.URL} {
		var logs bytes.Buffer
		a := NewApprover(nil, nil, WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
		o := RequestOptions{Namespace: ns, Run: "r1", NotifyURL: base + "/hooks/T000/SECRET-TOKEN?sig=SECRET-SIG", Retries: 1}
		n, err := a.Request(context.Background(), o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n.Delivered || n.Values()["notified"] != "false" || n.Reason == "" {
			t.Errorf("%s: %+v", name, n)
		}
		all := logs.String() + n.Reason + fmt.Sprint(n.Values())
		if strings.Contains(all, "SECRET") {
			t.Errorf("%s: the webhook's secret path leaked:\n%s", name, all)
		}
		if !strings.Contains(logs.String(), "not delivered") {
			t.Errorf("%s: the failure was not logged:\n%s", name, logs.String())
		}
	}
	if _, err := NewApprover(nil, nil).Request(context.Background(), RequestOptions{Run: "r1", NotifyURL: "ftp://host/SECRET"}); exitcode.Of(err) != exitcode.BadInput || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("bad URL: %v", err)
	}
}

func TestTektonWaitSeesRecordedDecisionOrTimesOut(t *testing.T) {
	t.Parallel()
	// A decision left by an earlier run of the same name (made an hour ago) never counts.
	old := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DecisionConfigMapOf("pr-1", "alice"), Namespace: ns, CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Hour)),
		Labels: map[string]string{RunLabel: "pr-1"}},
		Data: map[string]string{"decision": Approved, "decidedBy": "alice"}}
	kc := whoami("alice")
	if err := kc.Tracker().Add(old); err != nil {
		t.Fatal(err)
	}
	kc.PrependReactor("create", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(*corev1.ConfigMap).CreationTimestamp = metav1.Now() // as the API server does
		return false, nil, nil
	})
	apiCalls.Attach(kc)
	g := NewApprover(nil, kc)
	ctx := context.Background()
	v, err := g.Wait(ctx, nil, WaitOptions{Namespace: ns, Run: "pr-1", Timeout: 300 * time.Millisecond})
	if err != nil || v.Decision != Rejected || !strings.Contains(v.Reason, "timed out") {
		t.Errorf("timeout with only an earlier run's decision: %+v %v", v, err)
	}
	type res struct {
		v   *Verdict
		err error
	}
	ch := make(chan res, 1)
	go func() {
		v, err := g.Wait(ctx, nil, WaitOptions{Namespace: ns, Run: "pr-2", Timeout: 10 * time.Second, Approvers: []string{"alice"}})
		ch <- res{v, err}
	}()
	time.Sleep(100 * time.Millisecond) // let the watch start; a decision before it is seen by the initial list anyway
	if _, err := g.Record(ctx, DecideOptions{Namespace: ns, Run: "pr-2", Decision: "approve"}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.err != nil || r.v.Decision != Approved || r.v.ApprovedBy != "alice" {
			t.Errorf("wait: %+v %v", r.v, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not see the decision")
	}
	if _, err := g.Record(ctx, DecideOptions{Namespace: ns, Run: "pr-2", Decision: "reject", Reason: "late"}); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("second decision: %v", err)
	}
}

func TestConclude(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		decision string
		code     int
	}{{"approved", 0}, {"pass", 0}, {"rejected", 1}, {"fail", 1}, {"", 2}, {"{{tasks.canary.outputs.parameters.verdict}}", 2}} {
		err := Conclude(tc.decision, "canary failed: accuracy 0.41")
		if exitcode.Of(err) != tc.code {
			t.Errorf("Conclude(%q) = %v, want code %d", tc.decision, err, tc.code)
		}
		if tc.code == 1 && err.Error() != "canary failed: accuracy 0.41" {
			t.Errorf("message %q", err)
		}
	}
}

// A decision names the PipelineRun it was made on (its UID): one made on another run of the
// same name (deleted and created again) never counts; the matching one does, and the wait
// writes the audit record with the candidate.
func TestWaitBindsTheDecisionToTheRunUID(t *testing.T) {
	t.Parallel()
	kc := whoami("alice")
	kc.PrependReactor("create", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(*corev1.ConfigMap).CreationTimestamp = metav1.NewTime(time.Now().Add(time.Second))
		return false, nil, nil
	})
	apiCalls.Attach(kc)
	g := NewApprover(nil, kc)
	ctx := context.Background()
	decide := func(uid string) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DecisionConfigMapOf("pr-3", "alice"), Namespace: ns, Labels: map[string]string{RunLabel: "pr-3"}},
			Data: map[string]string{"decision": Approved, "decidedBy": "alice", "runUID": uid}}
		_ = kc.CoreV1().ConfigMaps(ns).Delete(ctx, cm.Name, metav1.DeleteOptions{})
		if _, err := kc.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	decide("uid-of-an-earlier-run")
	v, err := g.Wait(ctx, nil, WaitOptions{Namespace: ns, Run: "pr-3", RunUID: "uid-3", Timeout: 300 * time.Millisecond})
	if err != nil || v.Decision != Rejected || !strings.Contains(v.Reason, "timed out") {
		t.Errorf("a decision on another run of the same name: %+v %v, want a timeout", v, err)
	}
	decide("uid-3")
	s, _ := objstore.New(nil)
	dir := t.TempDir()
	v, err = g.Wait(ctx, s, WaitOptions{Namespace: ns, Run: "pr-3", RunUID: "uid-3", Timeout: 5 * time.Second,
		AuditURI: "file://" + dir + "/", Candidate: Candidate{ModelVersion: "v1"}})
	if err != nil || v.Decision != Approved || v.ApprovedBy != "alice" {
		t.Fatalf("this run's decision: %+v %v", v, err)
	}
	b, err := objstore.ReadAll(ctx, s, "file://"+dir+"/pr-3.json", 1<<20)
	var audit Verdict
	if err != nil || json.Unmarshal(b, &audit) != nil || audit.Decision != Approved || audit.Candidate.ModelVersion != "v1" || len(audit.Approvers) != 1 {
		t.Errorf("audit record %s (%v)", b, err)
	}
}

// approve --tekton names the PipelineRun's UID in the decision; a run that does not exist is bad
// input and nothing is written.
func TestRecordNamesThePipelineRunUID(t *testing.T) {
	t.Parallel()
	pr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
		"metadata": map[string]any{"name": "pr-9", "namespace": ns, "uid": "uid-9"}}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{PipelineRunsResource: "PipelineRunList"}, pr)
	kc := whoami("alice")
	apiCalls.Attach(kc, dyn)
	g := NewApprover(nil, kc, WithDynamic(dyn))
	ctx := context.Background()
	if _, err := g.Record(ctx, DecideOptions{Namespace: ns, Run: "pr-9", Decision: "approve"}); err != nil {
		t.Fatal(err)
	}
	cm, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, DecisionConfigMapOf("pr-9", "alice"), metav1.GetOptions{})
	if err != nil || cm.Data["runUID"] != "uid-9" || cm.Data["decidedBy"] != "alice" {
		t.Errorf("decision %+v (%v): want runUID uid-9 decided by alice", cm, err)
	}
	_, err = g.Record(ctx, DecideOptions{Namespace: ns, Run: "no-such-run", Decision: "approve"})
	if exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("a decision on a run that does not exist: %v, want bad input", err)
	}
	if _, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, DecisionConfigMapOf("no-such-run", "alice"), metav1.GetOptions{}); err == nil {
		t.Errorf("a decision was written for a run that does not exist")
	}
}

// A person may approve as soon as the request reaches them, before the wait's process starts: a
// decision naming this run's UID counts however old it is; one naming no UID and older than the
// wait does not (it may be an earlier run's of the same name).
func TestWaitCountsAnEarlierDecisionOnlyWhenItNamesTheRun(t *testing.T) {
	t.Parallel()
	earlier := metav1.NewTime(time.Now().Add(-time.Minute))
	kc := whoami("alice")
	for run, uid := range map[string]string{"pr-5": "uid-5", "pr-6": ""} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DecisionConfigMapOf(run, "alice"), Namespace: ns, CreationTimestamp: earlier, Labels: map[string]string{RunLabel: run}},
			Data: map[string]string{"decision": Approved, "decidedBy": "alice", "runUID": uid}}
		if err := kc.Tracker().Add(cm); err != nil {
			t.Fatal(err)
		}
	}
	apiCalls.Attach(kc)
	g := NewApprover(nil, kc)
	ctx := context.Background()
	v, err := g.Wait(ctx, nil, WaitOptions{Namespace: ns, Run: "pr-5", RunUID: "uid-5", Timeout: 5 * time.Second})
	if err != nil || v.Decision != Approved {
		t.Errorf("a decision naming this run, made before the wait: %+v %v, want approved", v, err)
	}
	v, err = g.Wait(ctx, nil, WaitOptions{Namespace: ns, Run: "pr-6", RunUID: "uid-6", Timeout: 300 * time.Millisecond})
	if err != nil || v.Decision != Rejected || !strings.Contains(v.Reason, "timed out") {
		t.Errorf("a decision naming no run, made before the wait: %+v %v, want a timeout", v, err)
	}
}

// Identities are exact: names that share Argo's label form (or differ only past 63 characters)
// get distinct keys, every key is a valid annotation name, and the value gives back the exact
// name, spaces and all.
func TestDecisionKeysAreInjectiveAndValuesRoundTrip(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 249)
	names := []string{"alice@example.com", "alice-example.com", "alice:example.com", "alice/example.com", "alice.example.com",
		"system:serviceaccount:ml:alice", "system-serviceaccount-ml-alice", "ålice@exämple.com", "алиса", "alice example", "alice  example",
		long + "a", long + "b", "-alice-", "alice"}
	keys := map[string]string{}
	for _, n := range names {
		k := DecisionKey(n)
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("DecisionKey(%q) = %q is no valid annotation name: %v", n, k, errs)
		}
		if errs := validation.IsQualifiedName(ReasonKey(n)); len(errs) > 0 {
			t.Errorf("ReasonKey(%q): %v", n, errs)
		}
		if other, ok := keys[k]; ok {
			t.Errorf("%q and %q share the key %s", n, other, k)
		}
		keys[k] = n
		r, ok := parseRecord(k, decisionValue(Approved, "uid/node", "sha256:abc", n))
		if !ok || r.User != n || r.Decision != Approved || r.For != "uid/node" || r.Digest != "sha256:abc" {
			t.Errorf("round trip of %q: %+v, %v", n, r, ok)
		}
	}
	if NormalIdentity("alice@example.com") != NormalIdentity("alice:example.com") {
		t.Errorf("the label form is expected to be lossy (that is why decisions do not use it)")
	}
}

// The approval node's inputs are what verify and promote read the rules from: an allow-list of
// exact names (spaces inside a name kept), and Argo's suspend durations.
func TestApprovalNodeInputs(t *testing.T) {
	t.Parallel()
	n := wfv1.NodeStatus{Inputs: &wfv1.Inputs{Parameters: []wfv1.Parameter{
		{Name: ApproversParam, Value: wfv1.AnyStringPtr("alice@example.com, system:serviceaccount:ml:bob ,\nCarol Smith,,")},
		{Name: TimeoutParam, Value: wfv1.AnyStringPtr("2d")}, {Name: MinApprovalsParam, Value: wfv1.AnyStringPtr("2")}}}}
	p, err := policyOf(n)
	if err != nil || !slices.Equal(p.Approvers, []string{"alice@example.com", "system:serviceaccount:ml:bob", "Carol Smith"}) || p.Timeout != 48*time.Hour || p.MinApprovals != 2 {
		t.Errorf("policyOf = %+v, %v", p, err)
	}
	for in, want := range map[string]time.Duration{"30": 30 * time.Second, "90s": 90 * time.Second, "24h": 24 * time.Hour, "": 0} {
		if got, err := suspendDuration(in); err != nil || got != want {
			t.Errorf("suspendDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"soon", "1w", "xd"} {
		if _, err := suspendDuration(bad); err == nil {
			t.Errorf("suspendDuration(%q): no error", bad)
		}
	}
}

// Four-eyes on Tekton: one decision ConfigMap per person; two distinct approvers are needed, the
// submitter does not count under forbid-self-approval, a second decision by the same person is
// refused, and any rejection rejects.
func TestTektonFourEyes(t *testing.T) {
	t.Parallel()
	now := time.Now()
	decision := func(run, who, d string) corev1.ConfigMap {
		return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DecisionConfigMapOf(run, who), Labels: map[string]string{RunLabel: run}, CreationTimestamp: metav1.NewTime(now)},
			Data: map[string]string{"decision": d, "decidedBy": who, "runUID": "uid"}}
	}
	set := func(cms ...corev1.ConfigMap) map[string]corev1.ConfigMap {
		m := map[string]corev1.ConfigMap{}
		for _, cm := range cms {
			m[cm.Name] = cm
		}
		return m
	}
	c := tektonCount{RunUID: "uid", MinApprovals: 2, ForbidSelf: true, Submitter: NormalIdentity("alice@example.com")}
	for _, tc := range []struct {
		name      string
		decisions map[string]corev1.ConfigMap
		done      bool
		want      string
	}{
		{"one of two", set(decision("pr", "bob", Approved)), false, "1 of 2 required approvals"},
		{"the submitter does not count", set(decision("pr", "bob", Approved), decision("pr", "alice@example.com", Approved)), false, "submitted the run"},
		{"two others", set(decision("pr", "bob", Approved), decision("pr", "carol", Approved)), true, "approved by bob, carol"},
		{"a rejection by anyone", set(decision("pr", "bob", Approved), decision("pr", "carol", Approved), decision("pr", "dave", Rejected)), true, "rejected by dave"},
	} {
		got, done := countTekton(tc.decisions, c)
		if done != tc.done || !strings.Contains(got.Reason, tc.want) {
			t.Errorf("%s: done %v, %+v; want done %v saying %q", tc.name, done, got, tc.done, tc.want)
		}
	}
	if got, _ := countTekton(set(decision("pr", "bob", Approved)), tektonCount{RunUID: "uid", MinApprovals: 1, ForbidSelf: true}); got.Decision == Approved {
		t.Errorf("forbid-self-approval with no recorded submitter approved: %+v", got)
	}
	// Through the API: bob records, then again (refused: a decision never changes).
	pr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
		"metadata": map[string]any{"name": "pr-7", "namespace": ns, "uid": "uid-7", "labels": map[string]any{SubmitterLabel: "alice-example.com"}}}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{PipelineRunsResource: "PipelineRunList"}, pr)
	ctx := context.Background()
	kc := whoami("bob")
	apiCalls.Attach(kc, dyn)
	if _, err := NewApprover(nil, kc, WithDynamic(dyn)).Record(ctx, DecideOptions{Namespace: ns, Run: "pr-7", Decision: "approve"}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewApprover(nil, kc, WithDynamic(dyn)).Record(ctx, DecideOptions{Namespace: ns, Run: "pr-7", Decision: "reject", Reason: "x"}); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("bob's second decision: %v, want exit 2", err)
	}
	v, err := NewApprover(nil, kc, WithDynamic(dyn)).Wait(ctx, nil, WaitOptions{Namespace: ns, Run: "pr-7", RunUID: "uid-7", Timeout: 300 * time.Millisecond, MinApprovals: 2, ForbidSelf: true})
	if err != nil || v.Decision != Rejected || !strings.Contains(v.Reason, "1 of 2 required approvals") {
		t.Errorf("wait with one of two approvals: %+v %v", v, err)
	}
}

// Fail closed: verify (Argo) and wait (Tekton) refuse, exit 2 saying how to fix it, in a
// namespace where the approval policy's probe is admitted.
func TestVerifyAndWaitRefuseWhereThePolicyIsNotInForce(t *testing.T) {
	t.Parallel()
	kc := fake.NewClientset() // admits the probe: no policy here
	wfc := argofake.NewSimpleClientset(finish(run("nf"), time.Hour, Approved, ""))
	apiCalls.Attach(kc, wfc)
	g := NewApprover(wfc, kc)
	store, _ := objstore.New(nil)
	if _, err := g.Verify(context.Background(), store, VerifyOptions{Namespace: ns, Run: "nf", Timeout: time.Hour}); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(fmt.Sprint(err), "not in force") {
		t.Errorf("verify where the policy is not in force: %v, want exit 2", err)
	}
	if _, err := g.Wait(context.Background(), nil, WaitOptions{Namespace: ns, Run: "nf", Timeout: time.Second}); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(fmt.Sprint(err), "not in force") {
		t.Errorf("wait where the policy is not in force: %v, want exit 2", err)
	}
	// Where it is in force, verify goes on to count.
	enforced(kc)
	if v, err := g.Verify(context.Background(), store, VerifyOptions{Namespace: ns, Run: "nf", Timeout: time.Hour}); err != nil || v.Decision != Rejected {
		t.Errorf("verify where the policy is in force: %+v %v", v, err)
	}
}
