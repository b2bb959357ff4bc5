package approve

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/argoproj/argo-workflows/v3/util/file"
	"github.com/argoproj/argo-workflows/v3/workflow/packer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// compress stores the run's nodes as Argo's controller does past MAX_WORKFLOW_SIZE.
func compress(t *testing.T, wf *wfv1.Workflow) *wfv1.Workflow {
	t.Helper()
	b, err := json.Marshal(wf.Status.Nodes)
	if err != nil {
		t.Fatal(err)
	}
	wf.Status.CompressedNodes, wf.Status.Nodes = file.CompressEncodeString(string(b)), nil
	return wf
}

// A run big enough for Argo to compress its node status is listed, decided and verified like any
// other, and stays compressed after the decision (the controller reads it back).
func TestCompressedNodeStatusIsReadAndKeptCompressed(t *testing.T) {
	t.Parallel()
	wf := run("big")
	wf.UID = "uid-big"
	wf.Status.Nodes["big-p"] = wfv1.NodeStatus{ID: "big-p", DisplayName: "publish(0)", Type: wfv1.NodeTypePod, Phase: wfv1.NodeSucceeded, StartedAt: metav1.Time{Time: t0},
		Outputs: &wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: DigestResult, Value: wfv1.AnyStringPtr("sha256:abc")},
			{Name: CandidateResult, Value: wfv1.AnyStringPtr(`{"modelVersion":"v1","accuracy":"0.8861"}`)}}}}
	wfc := argofake.NewSimpleClientset(compress(t, wf))
	apiCalls.Attach(wfc)
	kc := whoami("alice")
	apiCalls.Attach(kc)
	g := NewApprover(wfc, kc, WithClock(func() time.Time { return t0.Add(time.Hour) }))
	ctx := context.Background()

	l, err := g.List(ctx, ns, "")
	if err != nil || len(l) != 1 || l[0].Run != "big" || l[0].Candidate.Accuracy != "0.8861" {
		t.Fatalf("List = %+v, %v; want the compressed run waiting with its candidate", l, err)
	}
	if d, err := g.Decide(ctx, DecideOptions{Namespace: ns, Run: "big", Decision: "approve"}); err != nil || !d.Resumed {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	got, _ := wfc.ArgoprojV1alpha1().Workflows(ns).Get(ctx, "big", metav1.GetOptions{})
	if len(got.Status.Nodes) != 0 || got.Status.CompressedNodes == "" {
		t.Fatalf("after the decision: %d plain nodes, compressed %q; want the nodes compressed as they came", len(got.Status.Nodes), got.Status.CompressedNodes)
	}
	if err := packer.DecompressWorkflow(got); err != nil {
		t.Fatal(err)
	}
	if n := got.Status.Nodes["big-1"]; n.Phase != wfv1.NodeSucceeded || n.Outputs.Parameters[0].Value.String() != Approved || len(got.Status.Nodes) != 3 {
		t.Errorf("approval node after the decision, as Argo decompresses it: %+v (%d nodes)", n, len(got.Status.Nodes))
	}
	if want := "approved uid-big/big-1 sha256:abc alice"; got.Annotations[DecisionKey("alice")] != want {
		t.Errorf("decision %q, want %q", got.Annotations[DecisionKey("alice")], want)
	}
	store, _ := objstore.New(nil)
	v, err := g.Verify(ctx, store, VerifyOptions{Namespace: ns, Run: "big", Timeout: 24 * time.Hour, ModelDigest: "sha256:abc"})
	if err != nil || v.Decision != Approved || v.ApprovedBy != "alice" {
		t.Errorf("Verify = %+v, %v; want approved by alice", v, err)
	}
}

// Node status in Argo's database (offloaded) or compressed beyond reading is bad input with the
// reason, never a silent "not waiting" or "rejected": the approver cannot see the approval node.
func TestUnreadableNodeStatusIsBadInput(t *testing.T) {
	t.Parallel()
	offloaded := run("offloaded")
	offloaded.Status.Nodes, offloaded.Status.OffloadNodeStatusVersion = nil, "fnv:1234"
	corrupt := run("corrupt")
	corrupt.Status.Nodes, corrupt.Status.CompressedNodes = nil, "not base64 gzip"
	wfc := argofake.NewSimpleClientset(offloaded, corrupt, run("plain"))
	apiCalls.Attach(wfc)
	g := NewApprover(wfc, whoami("alice"))
	ctx := context.Background()
	store, _ := objstore.New(nil)
	for name, want := range map[string]string{"offloaded": "nodeStatusOffLoad", "corrupt": "compressed node status"} {
		_, err := g.Decide(ctx, DecideOptions{Namespace: ns, Run: name, Decision: "approve"})
		if exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), want) {
			t.Errorf("Decide %s: %v, want exit 2 mentioning %q", name, err, want)
		}
		_, err = g.Verify(ctx, store, VerifyOptions{Namespace: ns, Run: name, Timeout: time.Hour})
		if exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), want) {
			t.Errorf("Verify %s: %v, want exit 2 mentioning %q", name, err, want)
		}
	}
	l, err := g.List(ctx, ns, "")
	if err != nil || len(l) != 1 || l[0].Run != "plain" {
		t.Errorf("List = %+v, %v; want only the readable run", l, err)
	}
}
