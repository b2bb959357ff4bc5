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

// WorkflowsResource is Argo's Workflow resource.
var WorkflowsResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}

// ArgoRunStopping reports whether the Argo run (Workflow) ns/name is ending: stopped or
// terminated (spec.shutdown), being deleted, already finished, or gone. A launcher pod that is
// killed while its run goes on (eviction, node loss, `kubectl delete pod`) sees false and keeps
// the training Job, so that the step's retry re-attaches to it instead of training twice. Outside
// Argo (no such Workflow) the answer is true: a cancel is then the whole run's cancel.
func ArgoRunStopping(client dynamic.Interface, ns, name string) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		wf, err := client.Resource(WorkflowsResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if wf.GetDeletionTimestamp() != nil {
			return true, nil
		}
		if s, _, _ := unstructured.NestedString(wf.Object, "spec", "shutdown"); s != "" {
			return true, nil
		}
		switch phase, _, _ := unstructured.NestedString(wf.Object, "status", "phase"); phase {
		case "Succeeded", "Failed", "Error":
			return true, nil
		}
		return false, nil
	}
}

// ArgoRunOwner returns the owner reference to put on the training Job: the Argo run (Workflow)
// ns/name, so that deleting the run (argo delete, a workflow TTL or archive GC) garbage-collects
// its Job and Secret, while a retry of the run still finds the Job. Outside Argo (no such
// Workflow) there is no owner: nil. Neither is there when the launcher may not read Workflows (a
// user's own ServiceAccount without that right): the Job then outlives its run, as before.
func ArgoRunOwner(client dynamic.Interface, ns, name string) func(context.Context) (*metav1.OwnerReference, error) {
	return func(ctx context.Context) (*metav1.OwnerReference, error) {
		wf, err := client.Resource(WorkflowsResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return nil, nil
		}
		if err != nil {
			return nil, kube.Classify("getting the run's Workflow "+name, err)
		}
		return &metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf.GetName(), UID: wf.GetUID()}, nil
	}
}
