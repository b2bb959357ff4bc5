package argo

import (
	"fmt"
	"slices"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-ml/gantry/pipeline"
)

// RefusedTasks are the tasks Argo's catalog does not carry, and why.
var RefusedTasks = map[string]string{
	"approver/wait": "Argo suspends the approval node instead (decisions are written on it) and runs approver verify",
}

// Refusals are what Argo does not express of a loop, and why; anything else it cannot render
// fails the generation.
var Refusals = map[pipeline.Capability]string{
	pipeline.StepTimeouts: "the tasks bound themselves (rollout-timeout, the approval timeout, the training Job's deadline) and the run has its deadline",
}

// approvalNode are the approval's arguments the suspended node takes as inputs (the four-eyes
// rules, read from the node by approver approve, verify and promote).
var approvalNode = []string{"timeout", "min-approvals", "forbid-self-approval", "approvers"}

// approvalDrops are the approval's arguments neither the node nor approver verify takes on
// Argo, and why.
var approvalDrops = map[string]string{
	"run-uid":    "decisions are written on the run's own approval node",
	"model-uri":  "the request carries it to the approvers; verify audits the digest",
	"p99-ms":     "the request carries it to the approvers",
	"report-uri": "the request carries it to the approvers",
}

// scope spells values where a template of the pipeline reads them.
type scope struct {
	// tasks are the task of each step of the loop.
	tasks map[string]pipeline.Task
	// inputs maps results read from outside a section to the section template's inputs.
	inputs map[pipeline.Result]string
}

func (sc scope) spell(v pipeline.Value) (string, error) {
	switch x := v.(type) {
	case pipeline.Literal:
		return string(x), nil
	case pipeline.Input:
		return "{{workflow.parameters." + string(x) + "}}", nil
	case pipeline.Result:
		if in, ok := sc.inputs[x]; ok {
			return ip(in), nil
		}
		return fmt.Sprintf("{{tasks.%s.outputs.parameters.%s}}", x.Step, x.Name), nil
	case pipeline.PublishedResult:
		t, ok := sc.tasks[x.Step]
		if !ok || !slices.Contains(t.Globals, x.Name) {
			return "", fmt.Errorf("%s.%s is read after the run but is not a global output of its task (Task.Globals)", x.Step, x.Name)
		}
		// The workflow output, or "" when no step has set it yet: a plain
		// {{workflow.outputs.parameters.NAME}} would fail to resolve in the exit handler of a
		// run that ended before that step.
		return "{{=sprig.dig('outputs', 'parameters', '" + x.Name + "', '', workflow)}}", nil
	case pipeline.RunName:
		return "{{workflow.name}}", nil
	case pipeline.RunUID:
		return "{{workflow.uid}}", nil
	case pipeline.RunStatus:
		return "{{workflow.status}}", nil
	case pipeline.RunFailures:
		return "{{workflow.failures}}", nil
	case pipeline.Concat:
		var b strings.Builder
		for _, p := range x {
			s, err := sc.spell(p)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("argo: no spelling for %T", v)
}

func (sc scope) args(s pipeline.Step, only func(name string) bool) (wfv1.Arguments, error) {
	var a wfv1.Arguments
	for _, arg := range s.Args {
		if only != nil && !only(arg.Name) {
			continue
		}
		v, err := sc.spell(arg.Value)
		if err != nil {
			return a, fmt.Errorf("step %s, %s: %w", s.Name, arg.Name, err)
		}
		a.Parameters = append(a.Parameters, wfv1.Parameter{Name: arg.Name, Value: wfv1.AnyStringPtr(v)})
	}
	return a, nil
}

func ref(s pipeline.Step) *wfv1.TemplateRef {
	return &wfv1.TemplateRef{Name: s.Binary, Template: s.Template}
}

// depends spells deps as an Argo depends expression; an approval's dependents wait for its verify.
func depends(deps []string, approvals map[string]bool) string {
	var out []string
	for _, d := range deps {
		if approvals[d] {
			d = "verify-" + d
		}
		out = append(out, d)
	}
	return strings.Join(out, " && ")
}

func failed(steps []string) string {
	var out []string
	for _, t := range steps {
		out = append(out, t+".Failed || "+t+".Errored")
	}
	return strings.Join(out, " || ")
}

// Pipeline renders ml-pipeline.
func Pipeline() (*wfv1.WorkflowTemplate, error) { return Render(pipeline.ML()) }

// Render renders a loop as one WorkflowTemplate: the steps as the entrypoint's DAG, an approval as
// a suspended node and approver verify, the release section as a DAG template holding a mutex
// (its on-failure steps inside it, on the section's failed steps), the finally steps as the
// exit handler.
func Render(l pipeline.Loop) (*wfv1.WorkflowTemplate, error) {
	if err := l.Check(); err != nil {
		return nil, err
	}
	stepTask := map[string]pipeline.Task{}
	for _, s := range l.AllSteps() {
		t, _ := pipeline.FindTask(s.Binary, s.Template)
		stepTask[s.Name] = t
	}
	for _, s := range l.AllSteps() {
		if s.Timeout != "" && s.Timeout != "0s" {
			if _, ok := Refusals[pipeline.StepTimeouts]; !ok {
				return nil, fmt.Errorf("step %s has a timeout, which the Argo renderer does not render", s.Name)
			}
		}
	}
	var params []wfv1.Parameter
	for _, pp := range l.Params {
		params = append(params, wfv1.Parameter{Name: pp.Name, Value: wfv1.AnyStringPtr(pp.Default), Description: wfv1.AnyStringPtr(pp.Description)})
	}
	top := scope{tasks: stepTask}
	approvals := map[string]bool{}
	var tasks []wfv1.DAGTask
	var extra []wfv1.Template
	for _, s := range l.Steps {
		if s.When != nil {
			return nil, fmt.Errorf("step %s: conditions are rendered on section and finally steps only", s.Name)
		}
		if s.Kind == pipeline.Approval {
			ts, tm, err := approval(l, top, s, approvals)
			if err != nil {
				return nil, err
			}
			tasks = append(tasks, ts...)
			extra = append(extra, tm)
			approvals[s.Name] = true
			continue
		}
		a, err := top.args(s, nil)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, wfv1.DAGTask{Name: s.Name, Depends: depends(l.Direct(s.Deps()), approvals), TemplateRef: ref(s), Arguments: a})
	}
	if r := l.Release; len(r.Steps) > 0 {
		task, tm, err := section(l, top, r, approvals)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, task)
		extra = append(extra, tm)
	}
	exit, err := finally(top, l.Finally)
	if err != nil {
		return nil, err
	}
	deadline, err := time.ParseDuration(l.Deadline)
	if err != nil {
		return nil, fmt.Errorf("deadline %q: %w", l.Deadline, err)
	}
	templates := append([]wfv1.Template{{Name: "pipeline", DAG: &wfv1.DAGTemplate{Tasks: tasks}}}, extra...)
	spec := wfv1.WorkflowSpec{
		// No workflow-wide ServiceAccount: every step names its own (internal/rbac).
		Entrypoint:            "pipeline",
		Arguments:             wfv1.Arguments{Parameters: params},
		PodGC:                 &wfv1.PodGC{Strategy: wfv1.PodGCOnWorkflowSuccess},
		ActiveDeadlineSeconds: ptr.To(int64(deadline.Seconds())),
	}
	if exit != nil {
		spec.OnExit = exit.Name
		templates = append(templates, *exit)
	}
	spec.Templates = templates
	return &wfv1.WorkflowTemplate{
		TypeMeta: metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "WorkflowTemplate"},
		ObjectMeta: metav1.ObjectMeta{Name: l.Name, Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"},
			Annotations: map[string]string{"workflows.argoproj.io/description": l.Description + "; approve with `argo resume RUN`"}},
		Spec: spec,
	}, nil
}

// approval renders an approval step as a suspended node (its template holds the four-eyes rules
// as inputs, and the decision as a supplied output: plain `argo resume` approves) and
// verify-<name> (approver verify), which reads the decisions and fails on a rejection.
func approval(l pipeline.Loop, sc scope, s pipeline.Step, approvals map[string]bool) ([]wfv1.DAGTask, wfv1.Template, error) {
	verify, ok := pipeline.FindTask("approver", "verify")
	if !ok {
		return nil, wfv1.Template{}, fmt.Errorf("approval %s: no approver verify task", s.Name)
	}
	for _, a := range s.Args {
		if !slices.Contains(approvalNode, a.Name) && !verify.Has(a.Name) {
			if _, ok := approvalDrops[a.Name]; !ok {
				return nil, wfv1.Template{}, fmt.Errorf("approval %s passes %s, which neither Argo's approval node nor approver verify takes", s.Name, a.Name)
			}
		}
	}
	node, err := sc.args(s, func(n string) bool { return slices.Contains(approvalNode, n) })
	if err != nil {
		return nil, wfv1.Template{}, err
	}
	va, err := sc.args(s, verify.Has)
	if err != nil {
		return nil, wfv1.Template{}, err
	}
	var inputs []wfv1.Parameter
	for _, p := range node.Parameters {
		inputs = append(inputs, wfv1.Parameter{Name: p.Name})
	}
	timeout := ""
	for _, p := range node.Parameters {
		if p.Name == "timeout" {
			timeout = ip("timeout")
		}
	}
	tm := wfv1.Template{
		Name:    s.Name,
		Suspend: &wfv1.SuspendTemplate{Duration: timeout},
		// The node's inputs are what `approver approve` and verify read the four-eyes rules from.
		// promote reads them from the node too: the controller writes them, and nobody else may.
		Inputs: wfv1.Inputs{Parameters: inputs},
		Outputs: wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: "decision", Description: wfv1.AnyStringPtr("approved or rejected; plain `argo resume` approves"),
			ValueFrom: &wfv1.ValueFrom{Supplied: &wfv1.SuppliedValueFrom{}, Default: wfv1.AnyStringPtr("approved")}}}},
	}
	// The node waits on the steps the approval names (not on those whose results only verify
	// reads: they ran before those anyway).
	tasks := []wfv1.DAGTask{
		{Name: s.Name, Depends: depends(l.Direct(s.After), approvals), Template: s.Name, Arguments: node},
		{Name: "verify-" + s.Name, Depends: s.Name, TemplateRef: &wfv1.TemplateRef{Name: "approver", Template: "verify"}, Arguments: va},
	}
	return tasks, tm, nil
}

// section renders the release section as a DAG template holding the section's mutex: results
// read from outside it become its inputs; its on-failure steps run inside it.
func section(l pipeline.Loop, top scope, r pipeline.Section, approvals map[string]bool) (wfv1.DAGTask, wfv1.Template, error) {
	inside := map[string]bool{}
	for _, s := range append(append([]pipeline.Step{}, r.Steps...), r.OnFailure...) {
		inside[s.Name] = true
	}
	sc := scope{tasks: top.tasks, inputs: map[pipeline.Result]string{}}
	var outer []pipeline.Result
	names := map[string]pipeline.Result{}
	for _, s := range append(append([]pipeline.Step{}, r.Steps...), r.OnFailure...) {
		for _, a := range s.Args {
			for _, res := range pipeline.Results(a.Value) {
				if inside[res.Step] {
					continue
				}
				if _, ok := sc.inputs[res]; ok {
					continue
				}
				name := res.Name
				if other, taken := names[name]; taken && other != res {
					name = res.Step + "-" + res.Name
				}
				names[name] = res
				sc.inputs[res] = name
				outer = append(outer, res)
			}
		}
	}
	var in []wfv1.Parameter
	var pass wfv1.Arguments
	var deps []string
	deps = append(deps, r.After...)
	for _, res := range outer {
		in = append(in, wfv1.Parameter{Name: sc.inputs[res]})
		v, _ := top.spell(res)
		pass.Parameters = append(pass.Parameters, wfv1.Parameter{Name: sc.inputs[res], Value: wfv1.AnyStringPtr(v)})
		if !slices.Contains(deps, res.Step) {
			deps = append(deps, res.Step)
		}
	}
	mutex, err := top.spell(r.Mutex)
	if err != nil {
		return wfv1.DAGTask{}, wfv1.Template{}, err
	}
	var tasks []wfv1.DAGTask
	for _, s := range append(append([]pipeline.Step{}, r.Steps...), r.OnFailure...) {
		a, err := sc.args(s, nil)
		if err != nil {
			return wfv1.DAGTask{}, wfv1.Template{}, err
		}
		var d string
		switch c := s.When.(type) {
		case nil:
			var own []string
			for _, dep := range s.Deps() {
				if inside[dep] {
					own = append(own, dep)
				}
			}
			d = depends(own, nil)
		case pipeline.AnyFailed:
			d = failed(c)
		default:
			return wfv1.DAGTask{}, wfv1.Template{}, fmt.Errorf("section step %s: Argo renders no %T there", s.Name, c)
		}
		tasks = append(tasks, wfv1.DAGTask{Name: s.Name, Depends: d, TemplateRef: ref(s), Arguments: a})
	}
	tm := wfv1.Template{
		Name:            r.Name,
		Synchronization: &wfv1.Synchronization{Mutexes: []*wfv1.Mutex{{Name: mutex}}},
		Inputs:          wfv1.Inputs{Parameters: in},
		DAG:             &wfv1.DAGTemplate{Tasks: tasks},
	}
	return wfv1.DAGTask{Name: r.Name, Depends: depends(l.Direct(deps), approvals), Template: r.Name, Arguments: pass}, tm, nil
}

// finally renders the finally steps as the exit handler: one parallel group of steps.
func finally(top scope, steps []pipeline.Step) (*wfv1.Template, error) {
	if len(steps) == 0 {
		return nil, nil
	}
	sc := scope{tasks: top.tasks}
	var group []wfv1.WorkflowStep
	for _, s := range steps {
		a, err := sc.args(s, nil)
		if err != nil {
			return nil, err
		}
		st := wfv1.WorkflowStep{Name: s.Name, TemplateRef: ref(s), Arguments: a}
		switch c := s.When.(type) {
		case nil:
		case pipeline.RunNotSucceeded:
			st.When = "{{workflow.status}} != Succeeded"
		case pipeline.ParamIsNot:
			st.When = "{{workflow.parameters." + c.Param + "}} != " + c.Value
		default:
			return nil, fmt.Errorf("finally step %s: Argo renders no %T there", s.Name, c)
		}
		group = append(group, st)
	}
	return &wfv1.Template{Name: "exit-handler", Steps: []wfv1.ParallelSteps{{Steps: group}}}, nil
}

// ApprovalDrops says whether Argo's approval leaves out the argument name (approvalDrops).
func ApprovalDrops(name string, kind pipeline.Kind) bool {
	_, ok := approvalDrops[name]
	return ok && kind == pipeline.Approval
}
