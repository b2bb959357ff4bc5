package train

import (
	"context"
	"github.com/gantry-ml/gantry/internal/kube"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// WorkflowsResource and PipelineRunsResource: the runs the launcher's Job belongs to.
var (
	WorkflowsResource    = kube.WorkflowsResource
	PipelineRunsResource = kube.PipelineRunsResource
)

// getRun finds the run ns/name: an Argo Workflow, else a Tekton PipelineRun. nil, nil: neither
// exists (or the launcher may read neither).
func getRun(ctx context.Context, client dynamic.Interface, ns, name string) (*unstructured.Unstructured, error) {
	var first error
	for _, r := range []schema.GroupVersionResource{WorkflowsResource, PipelineRunsResource} {
		u, err := client.Resource(r).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return u, nil
		}
		if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) && first == nil {
			first = err
		}
	}
	return nil, first
}

// RunStopping reports whether the run ns/name is ending. An Argo Workflow: stopped or terminated
// (spec.shutdown), being deleted, or finished. A Tekton PipelineRun: cancelled or stopped
// (spec.status), being deleted, or finished (its Succeeded condition is no longer Unknown). A
// launcher pod that is killed while its run goes on (eviction, node loss, `kubectl delete pod`)
// sees false and keeps the training Job, so that the step's retry re-attaches to it instead of
// training twice. Outside both engines (no such run) the answer is true: a cancel is then the
// whole run's cancel.
func RunStopping(client dynamic.Interface, ns, name string) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		run, err := getRun(ctx, client, ns, name)
		if err != nil {
			return false, err
		}
		if run == nil || run.GetDeletionTimestamp() != nil {
			return true, nil
		}
		if run.GetKind() == "PipelineRun" {
			switch s, _, _ := unstructured.NestedString(run.Object, "spec", "status"); s {
			case "Cancelled", "CancelledRunFinally", "StoppedRunFinally":
				return true, nil
			}
			conds, _, _ := unstructured.NestedSlice(run.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Succeeded" && m["status"] != "Unknown" {
					return true, nil
				}
			}
			return false, nil
		}
		if s, _, _ := unstructured.NestedString(run.Object, "spec", "shutdown"); s != "" {
			return true, nil
		}
		switch phase, _, _ := unstructured.NestedString(run.Object, "status", "phase"); phase {
		case "Succeeded", "Failed", "Error":
			return true, nil
		}
		return false, nil
	}
}

// RunOwner returns the owner reference to put on the training Job: the run (an Argo Workflow or
// a Tekton PipelineRun) ns/name, so that deleting the run (argo delete, kubectl delete
// pipelinerun, a TTL or pruner) garbage-collects its Job and Secret, while a retry of the step
// still finds the Job. Outside both engines there is no owner: nil. Neither is there when the
// launcher may not read runs (a user's own ServiceAccount without that right): the Job then
// outlives its run, as before.
func RunOwner(client dynamic.Interface, ns, name string) func(context.Context) (*metav1.OwnerReference, error) {
	return func(ctx context.Context) (*metav1.OwnerReference, error) {
		run, err := getRun(ctx, client, ns, name)
		if err != nil {
			return nil, kube.Classify("getting the run "+name, err)
		}
		if run == nil {
			return nil, nil
		}
		return &metav1.OwnerReference{APIVersion: run.GetAPIVersion(), Kind: run.GetKind(), Name: run.GetName(), UID: run.GetUID()}, nil
	}
}
