package publish

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// allowAll is the gate of tests about the release mechanics, not about approval.
type allowAll struct{}

func (allowAll) AllowRelease(context.Context, approve.Release) error { return nil }

// gateCluster is what the release gate reads: the caller's pod (owned by the run), the run with
// its approval node and decisions, and an API server whose approval policy refuses the probe
// (enforced=false: a namespace the policy does not select).
func gateCluster(t *testing.T, c *fake.Clientset, run string, enforced bool, annotate func(*wfv1.Workflow)) *argofake.Clientset {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: run + "-promote-1", Namespace: "ml", UID: "pod-uid",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: run, UID: "uid-" + "ml-1"}}}}
	if _, err := c.CoreV1().Pods("ml").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authnv1.SelfSubjectReview{Status: authnv1.SelfSubjectReviewStatus{UserInfo: authnv1.UserInfo{
			Username: "system:serviceaccount:ml:gantry-deploy",
			Extra:    map[string]authnv1.ExtraValue{"authentication.kubernetes.io/pod-name": {pod.Name}, "authentication.kubernetes.io/pod-uid": {"pod-uid"}}}}}, nil
	})
	c.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.CreateAction).GetObject().(metav1.Object).GetName()
		if !strings.HasPrefix(name, approve.PolicyProbePrefix) || !enforced {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, name,
			fmt.Errorf("ValidatingAdmissionPolicy 'gantry-approval' with binding 'gantry-approval' denied request: gantry's approval policy is in force here"))
	})
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	wf := &wfv1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: run, Namespace: "ml", UID: "uid-ml-1", CreationTimestamp: metav1.Time{Time: t0}},
		Status: wfv1.WorkflowStatus{Nodes: wfv1.Nodes{run + "-9": {ID: run + "-9", DisplayName: "approval", Type: wfv1.NodeTypeSuspend, Phase: wfv1.NodeSucceeded,
			StartedAt: metav1.Time{Time: t0.Add(time.Minute)}, FinishedAt: metav1.Time{Time: t0.Add(time.Hour)},
			Inputs:  &wfv1.Inputs{Parameters: []wfv1.Parameter{{Name: "timeout", Value: wfv1.AnyStringPtr("24h")}, {Name: "min-approvals", Value: wfv1.AnyStringPtr("1")}}},
			Outputs: &wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: "decision", Value: wfv1.AnyStringPtr("approved")}}}}}}}
	if annotate != nil {
		annotate(wf)
	}
	wfc := argofake.NewSimpleClientset(wf)
	apiCalls.Attach(wfc)
	return wfc
}

// Promote checks the approval itself, whatever led to it: a run with no decision, a decision on
// another digest, another run's pod, an unenforced namespace are all refused with exit 2 and leave
// production untouched; the approved digest of this run, deployed by this run's pod, goes ahead.
func TestPromoteDeploysOnlyWhatTheRunsApproversApproved(t *testing.T) {
	ctx := context.Background()
	decide := func(digest string) func(*wfv1.Workflow) {
		return func(wf *wfv1.Workflow) {
			wf.Annotations = map[string]string{approve.DecisionKey("alice@example.com"): "approved uid-ml-1/ml-1-9 " + digest + " alice@example.com"}
		}
	}
	for _, tc := range []struct {
		name     string
		run      string // --run-name
		enforced bool
		annotate func(*wfv1.Workflow)
		says     string // "" : allowed
	}{
		{"no decision: a resume that names nobody is no approval", "ml-1", true, nil, "names nobody"},
		{"a decision on another digest", "ml-1", true, decide("sha256:" + strings.Repeat("0", 64)), "decided on another candidate"},
		{"a namespace the approval policy does not select", "ml-1", false, decide("DIGEST"), "not in force"},
		{"no --run-name", "", true, decide("DIGEST"), "--run-name is required"},
		{"another run's approval, named from this pod", "ml-2", true, decide("DIGEST"), "not to run ml-2"},
		{"this run's approval of this digest", "ml-1", true, decide("DIGEST"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("ml-1", "w"), RegistryURI: "s3://models", ModelName: "fashion-mnist", Run: "ml-1"})
			if err != nil {
				t.Fatal(err)
			}
			uri, digest := p.URI, p.Manifest.Digest
			annotate := tc.annotate
			if annotate != nil {
				inner := annotate
				annotate = func(wf *wfv1.Workflow) {
					inner(wf)
					for k, v := range wf.Annotations {
						wf.Annotations[k] = strings.Replace(v, "DIGEST", digest, 1)
					}
				}
			}
			var wfc *argofake.Clientset
			c, _ := e.cluster(t, true, func(c *fake.Clientset) { wfc = gateCluster(t, c, "ml-1", tc.enforced, annotate) })
			d := NewDeployer(c, e.store, WithReleaseGate(approve.NewApprover(wfc, c)))
			_, err = d.Deploy(ctx, DeployOptions{Namespace: "ml", Environment: "production", ModelName: "fashion-mnist", ModelURI: uri, RegistryURI: "s3://models",
				ServerImage: "srv", Replicas: 1, RolloutTimeout: 5 * time.Second, Run: tc.run, ExpectLive: "none"})
			if tc.says == "" {
				if err != nil {
					t.Fatalf("approved release refused: %v", err)
				}
				return
			}
			if exitcode.Of(err) != exitcode.BadInput || err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v (exit %d), want exit 2 saying %q", err, exitcode.Of(err), tc.says)
			}
			if _, err := c.AppsV1().Deployments("ml").Get(ctx, "fashion-mnist-production", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("production exists after a refused release: %v", err)
			}
		})
	}
}

// On Tekton the gate follows the pod to its TaskRun and PipelineRun, and reads the run's
// decision ConfigMap: approved, naming this PipelineRun's UID, after the model was published.
func TestTektonPromoteNeedsItsRunsDecision(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, decision, runUID, says string
	}{
		{"no decision", "", "", "has no decision"},
		{"a decision on an earlier run of the same name", "approved", "uid-earlier", "has no decision naming it"},
		{"rejected", "rejected", "pr-uid", "was not approved"},
		{"approved", "approved", "pr-uid", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("pr-1", "w"), RegistryURI: "s3://models", ModelName: "fashion-mnist", Run: "pr-1"})
			if err != nil {
				t.Fatal(err)
			}
			tr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
				"metadata": map[string]any{"name": "pr-1-promote", "namespace": "ml", "uid": "tr-uid",
					"ownerReferences": []any{map[string]any{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": "pr-1", "uid": "pr-uid"}}}}}
			pr := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
				"metadata": map[string]any{"name": "pr-1", "namespace": "ml", "uid": "pr-uid"},
				"spec":     map[string]any{"params": []any{map[string]any{"name": "min-approvals", "value": "1"}}}}}
			dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
				map[schema.GroupVersionResource]string{approve.TaskRunsResource: "TaskRunList", approve.PipelineRunsResource: "PipelineRunList"}, tr, pr)
			apiCalls.Attach(dyn)
			c, _ := e.cluster(t, true, func(c *fake.Clientset) {
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pr-1-promote-pod", Namespace: "ml", UID: "pod-uid",
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "tekton.dev/v1", Kind: "TaskRun", Name: "pr-1-promote", UID: "tr-uid"}}}}
				if _, err := c.CoreV1().Pods("ml").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				if tc.decision != "" {
					cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: approve.DecisionConfigMapOf("pr-1", "alice"), Namespace: "ml", CreationTimestamp: metav1.Now(),
						Labels: map[string]string{approve.RunLabel: "pr-1"}},
						Data: map[string]string{"decision": tc.decision, "decidedBy": "alice", "runUID": tc.runUID}}
					if _, err := c.CoreV1().ConfigMaps("ml").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				c.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, &authnv1.SelfSubjectReview{Status: authnv1.SelfSubjectReviewStatus{UserInfo: authnv1.UserInfo{Username: "system:serviceaccount:ml:gantry-deploy",
						Extra: map[string]authnv1.ExtraValue{"authentication.kubernetes.io/pod-name": {pod.Name}, "authentication.kubernetes.io/pod-uid": {"pod-uid"}}}}}, nil
				})
				c.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
					name := a.(k8stesting.CreateAction).GetObject().(metav1.Object).GetName()
					if !strings.HasPrefix(name, approve.PolicyProbe(approve.TektonPolicy)) {
						return false, nil, nil
					}
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, name,
						fmt.Errorf("ValidatingAdmissionPolicy 'gantry-tekton-approval' with binding 'gantry-tekton-approval' denied request: gantry's approval policy is in force here"))
				})
			})
			d := NewDeployer(c, e.store, WithReleaseGate(approve.NewApprover(nil, c, approve.WithDynamic(dyn))))
			_, err = d.Deploy(ctx, DeployOptions{Namespace: "ml", Environment: "production", ModelName: "fashion-mnist", ModelURI: p.URI, RegistryURI: "s3://models",
				ServerImage: "srv", Replicas: 1, RolloutTimeout: 5 * time.Second, Run: "pr-1", ExpectLive: "none"})
			switch {
			case tc.says == "" && err != nil:
				t.Fatalf("approved Tekton release refused: %v", err)
			case tc.says != "" && (exitcode.Of(err) != exitcode.BadInput || err == nil || !strings.Contains(err.Error(), tc.says)):
				t.Fatalf("got %v (exit %d), want exit 2 saying %q", err, exitcode.Of(err), tc.says)
			}
		})
	}
}
