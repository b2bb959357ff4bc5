package kube

import "k8s.io/apimachinery/pkg/runtime/schema"

// The runs of the engines gantry runs under, read through dynamic clients (gantry does not
// import Tekton's module): Argo's Workflow and Tekton's PipelineRun.
var (
	WorkflowsResource    = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}
	PipelineRunsResource = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"}
	TaskRunsResource     = schema.GroupVersionResource{Group: "tekton.dev", Version: "v1", Resource: "taskruns"}
)
