// Package argo renders gantry's loop (package pipeline) as Argo Workflows objects with Argo's
// v3 API types: one WorkflowTemplate per task binary (reusable via templateRef), the
// ml-pipeline WorkflowTemplate, and the push trigger. What Argo cannot express is refused when
// generating (Refusals), never left out.
package argo

import (
	"slices"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	apiv1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/gantry-ml/gantry/pipeline"
)

// RetryExpression retries transient infrastructure errors (exit 3) and pod
// errors (evictions, deleted pods), never bad input (2) or a failure (1).
const RetryExpression = `asInt(lastRetry.exitCode) == 3 || lastRetry.status == "Error"`

// RetryStrategy is every API-calling step's retry strategy.
func RetryStrategy() *wfv1.RetryStrategy {
	return &wfv1.RetryStrategy{
		Limit:       ptr.To(intstr.FromInt32(4)),
		RetryPolicy: wfv1.RetryPolicyAlways,
		Expression:  RetryExpression,
		Backoff:     &wfv1.Backoff{Duration: "10s", Factor: ptr.To(intstr.FromInt32(2)), MaxDuration: "10m"},
	}
}

func ip(name string) string { return "{{inputs.parameters." + name + "}}" }

// template renders one task as a template of its binary's WorkflowTemplate.
func template(t pipeline.Task) wfv1.Template {
	// Each template runs as its own ServiceAccount with exactly what its code calls (internal/rbac).
	tm := wfv1.Template{Name: t.Template, Metrics: metrics(t.Gauges), ServiceAccountName: t.Account()}
	for _, pr := range t.Params {
		p := wfv1.Parameter{Name: pr.Name, Description: wfv1.AnyStringPtr(pr.Description)}
		switch {
		case pr.RunDefault:
			p.Value = wfv1.AnyStringPtr("{{workflow.name}}")
		case pr.Default != nil:
			p.Value = wfv1.AnyStringPtr(*pr.Default)
		}
		tm.Inputs.Parameters = append(tm.Inputs.Parameters, p)
	}
	for _, r := range t.Results {
		op := wfv1.Parameter{Name: r, ValueFrom: &wfv1.ValueFrom{Path: pipeline.ResultsDir + "/" + r, Default: wfv1.AnyStringPtr("")}}
		if slices.Contains(t.Globals, r) {
			op.GlobalName = r
		}
		tm.Outputs.Parameters = append(tm.Outputs.Parameters, op)
	}
	for _, r := range t.Reports {
		tm.Outputs.Artifacts = append(tm.Outputs.Artifacts, wfv1.Artifact{Name: strings.ReplaceAll(r, ".", "-"), Path: pipeline.ReportsDir + "/" + r,
			Optional: true, Archive: &wfv1.ArchiveStrategy{None: &wfv1.NoneStrategy{}}})
	}
	c, volumes := t.Container(ip, pipeline.ResultsDir)
	c.Name, c.TerminationMessagePolicy = "main", apiv1.TerminationMessageFallbackToLogsOnError
	tm.Container, tm.Volumes = &c, volumes
	if t.Retry {
		tm.RetryStrategy = RetryStrategy()
	}
	if t.Semaphore != "" {
		tm.Synchronization = &wfv1.Synchronization{Semaphores: []*wfv1.SemaphoreRef{{Namespace: pipeline.SemaphoresNamespace,
			ConfigMapKeyRef: &apiv1.ConfigMapKeySelector{LocalObjectReference: apiv1.LocalObjectReference{Name: pipeline.SemaphoresConfigMap}, Key: t.Semaphore}}}}
	}
	return tm
}

// metrics are a task's gauges as Argo's Prometheus metrics, emitted when the step succeeded.
func metrics(gauges []pipeline.Gauge) *wfv1.Metrics {
	if len(gauges) == 0 {
		return nil
	}
	m := &wfv1.Metrics{}
	for _, g := range gauges {
		var labels []*wfv1.MetricLabel
		for _, l := range g.Labels {
			v := ip(l.Param)
			if l.Result != "" {
				v = "{{outputs.parameters." + l.Result + "}}"
			}
			labels = append(labels, &wfv1.MetricLabel{Key: l.Key, Value: v})
		}
		m.Prometheus = append(m.Prometheus, &wfv1.Prometheus{Name: g.Name, Help: g.Help, Labels: labels,
			Gauge: &wfv1.Gauge{Value: "{{outputs.parameters." + g.Result + "}}", Realtime: ptr.To(false)}, When: "{{status}} == Succeeded"})
	}
	return m
}

// TaskTemplates groups the tasks into one WorkflowTemplate per binary (the tasks Argo refuses —
// RefusedTasks — left out, each for its reason).
func TaskTemplates() []*wfv1.WorkflowTemplate {
	var out []*wfv1.WorkflowTemplate
	byBinary := map[string]*wfv1.WorkflowTemplate{}
	for _, t := range pipeline.Tasks() {
		if _, refused := RefusedTasks[t.Binary+"/"+t.Template]; refused {
			continue
		}
		w, ok := byBinary[t.Binary]
		if !ok {
			w = &wfv1.WorkflowTemplate{
				TypeMeta:   metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "WorkflowTemplate"},
				ObjectMeta: metav1.ObjectMeta{Name: t.Binary, Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"}},
			}
			byBinary[t.Binary] = w
			out = append(out, w)
		}
		w.Spec.Templates = append(w.Spec.Templates, template(t))
		w.Annotations = map[string]string{"workflows.argoproj.io/description": "gantry " + t.Binary + ": reusable via templateRef {name: " + t.Binary + ", template: <name>}"}
	}
	return out
}
