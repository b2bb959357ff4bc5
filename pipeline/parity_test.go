package pipeline_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	tkv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/gantry-ml/gantry/pipeline"
	"github.com/gantry-ml/gantry/pipeline/argo"
	"github.com/gantry-ml/gantry/pipeline/tekton"
)

// argoSteps are the steps of a rendered WorkflowTemplate by name: DAG tasks of every template and
// the exit handler's steps, with their arguments.
func argoSteps(w *wfv1.WorkflowTemplate) map[string]wfv1.Arguments {
	out := map[string]wfv1.Arguments{}
	for _, tm := range w.Spec.Templates {
		if tm.DAG != nil {
			for _, t := range tm.DAG.Tasks {
				out[t.Name] = t.Arguments
			}
		}
		for _, group := range tm.Steps {
			for _, s := range group.Steps {
				out[s.Name] = s.Arguments
			}
		}
	}
	return out
}

func tektonSteps(p *tkv1.Pipeline) map[string]tkv1.Params {
	out := map[string]tkv1.Params{}
	for _, t := range append(append([]tkv1.PipelineTask{}, p.Spec.Tasks...), p.Spec.Finally...) {
		out[t.Name] = t.Params
	}
	return out
}

func render(t *testing.T, l pipeline.Loop) (*wfv1.WorkflowTemplate, *tkv1.Pipeline, map[string]string) {
	t.Helper()
	w, err := argo.Render(l)
	if err != nil {
		t.Fatalf("argo: %v", err)
	}
	p, err := tekton.Render(l)
	if err != nil {
		t.Fatalf("tekton: %v", err)
	}
	omitted, err := tekton.Omitted(l)
	if err != nil {
		t.Fatal(err)
	}
	return w, p, omitted
}

// checkParity: every step of l is a step of both rendered engines with every argument, or an
// engine says why not (an approval's arguments the engine's approval does not take are listed
// by the renderer, and a Tekton step it does not carry is in tekton.Omitted with the reason).
func checkParity(t *testing.T, l pipeline.Loop) {
	t.Helper()
	w, p, omitted := render(t, l)
	as, ts := argoSteps(w), tektonSteps(p)
	for _, s := range l.AllSteps() {
		argoName := s.Name
		if s.Kind == pipeline.Approval {
			argoName = "verify-" + s.Name // and the suspended node s.Name
			if _, ok := as[s.Name]; !ok {
				t.Errorf("argo: approval %s has no suspended node", s.Name)
			}
		}
		if a, ok := as[argoName]; !ok {
			t.Errorf("argo: step %s is not rendered", s.Name)
		} else {
			for _, arg := range s.Args {
				inNode := s.Kind == pipeline.Approval && slices.ContainsFunc(as[s.Name].Parameters, func(p wfv1.Parameter) bool { return p.Name == arg.Name })
				if !inNode && !slices.ContainsFunc(a.Parameters, func(p wfv1.Parameter) bool { return p.Name == arg.Name }) && !argo.ApprovalDrops(arg.Name, s.Kind) {
					t.Errorf("argo: step %s lacks argument %s", s.Name, arg.Name)
				}
			}
		}
		if why, ok := omitted[s.Name]; ok {
			if why == "" {
				t.Errorf("tekton: step %s omitted without a reason", s.Name)
			}
			if _, ok := ts[s.Name]; ok {
				t.Errorf("tekton: step %s both omitted and rendered", s.Name)
			}
			continue
		}
		params, ok := ts[s.Name]
		if !ok {
			t.Errorf("tekton: step %s is not rendered and not listed as omitted", s.Name)
			continue
		}
		for _, arg := range s.Args {
			if _, failures := arg.Value.(pipeline.RunFailures); failures {
				if _, refused := tekton.Refusals[pipeline.FailureMessages]; !refused {
					t.Errorf("tekton: step %s drops %s without a refusal", s.Name, arg.Name)
				}
				continue
			}
			if !slices.ContainsFunc(params, func(p tkv1.Param) bool { return p.Name == arg.Name }) && !tekton.ApprovalDrops(arg.Name, s.Kind) {
				t.Errorf("tekton: step %s lacks argument %s", s.Name, arg.Name)
			}
		}
	}
}

func TestBothEnginesRenderEveryStepOfTheLoop(t *testing.T) {
	checkParity(t, pipeline.ML())
}

// A step added to the loop is rendered by both engines without touching them: here a second
// notification after the canary, and a finally step, each reading results.
func TestANewStepIsRenderedByBothEngines(t *testing.T) {
	l := pipeline.ML()
	l.Steps = append(l.Steps, pipeline.Step{Name: "notify-team", Binary: "approver", Template: "request", Args: []pipeline.Arg{
		{Name: "model-version", Value: pipeline.R("publish", "model-version")}, {Name: "model-uri", Value: pipeline.R("publish", "model-uri")},
		{Name: "accuracy", Value: pipeline.R("canary", "accuracy")}, {Name: "p99-ms", Value: pipeline.R("canary", "p99-ms")}}})
	l.Finally = append(l.Finally, pipeline.Step{Name: "teardown-again", Binary: "model-publisher", Template: "teardown",
		Args: []pipeline.Arg{{Name: "environment", Value: pipeline.Literal("staging")}}})
	checkParity(t, l)
	w, p, _ := render(t, l)
	if _, ok := argoSteps(w)["notify-team"]; !ok {
		t.Error("argo: the new step is missing")
	}
	for _, pt := range p.Spec.Tasks {
		if pt.Name == "notify-team" && !slices.Equal(pt.RunAfter, []string{"canary"}) {
			t.Errorf("tekton: notify-team runs after %v, want [canary] (publish is implied)", pt.RunAfter)
		}
	}
}

// What an engine cannot express is refused when generating, not left out: without its listed
// refusal, Tekton's renderer fails on the release section's mutex.
func TestARendererRefusesWhatItCannotExpress(t *testing.T) {
	why := tekton.Refusals[pipeline.SectionMutex]
	delete(tekton.Refusals, pipeline.SectionMutex)
	_, err := tekton.Render(pipeline.ML())
	tekton.Refusals[pipeline.SectionMutex] = why
	if err == nil || !strings.Contains(err.Error(), string(pipeline.SectionMutex)) {
		t.Errorf("tekton rendered a mutex it has no way to hold: %v", err)
	}
	// Argo has no condition on a step of the main DAG.
	l := pipeline.ML()
	l.Steps[1].When = pipeline.RunNotSucceeded{}
	if _, err := argo.Render(l); err == nil {
		t.Error("argo rendered a condition it does not render there")
	}
	// A finally step reading a result that may not exist must say so (PublishedResult).
	l = pipeline.ML()
	l.Finally[2].Args = append(l.Finally[2].Args, pipeline.Arg{Name: "failures", Value: pipeline.R("canary", "reason")})
	if _, err := argo.Render(l); err == nil {
		t.Error("a finally step read a Result")
	}
}

// Every capability the loop asks for is rendered by each engine (checked in its output) or
// refused with a reason: a new capability without either fails here.
func TestEveryCapabilityIsRenderedOrRefused(t *testing.T) {
	l := pipeline.ML()
	w, p, omitted := render(t, l)
	run, err := tekton.PipelineRun()
	if err != nil {
		t.Fatal(err)
	}
	templates := map[string]wfv1.Template{}
	for _, tm := range w.Spec.Templates {
		templates[tm.Name] = tm
	}
	var taskTemplates []wfv1.Template
	for _, wt := range argo.TaskTemplates() {
		taskTemplates = append(taskTemplates, wt.Spec.Templates...)
	}
	anyTemplate := func(f func(wfv1.Template) bool) bool { return slices.ContainsFunc(taskTemplates, f) }
	argoHas := map[pipeline.Capability]func() bool{
		pipeline.SectionMutex: func() bool {
			s := templates[l.Release.Name].Synchronization
			return s != nil && len(s.Mutexes) == 1
		},
		pipeline.OnFailureSteps: func() bool {
			return templates[l.Release.Name].DAG != nil && slices.ContainsFunc(templates[l.Release.Name].DAG.Tasks, func(t wfv1.DAGTask) bool { return strings.Contains(t.Depends, ".Failed") })
		},
		pipeline.RetryByExitCode: func() bool {
			return anyTemplate(func(t wfv1.Template) bool {
				return t.RetryStrategy != nil && t.RetryStrategy.Expression == argo.RetryExpression
			})
		},
		pipeline.StepSlots:       func() bool { return anyTemplate(func(t wfv1.Template) bool { return t.Synchronization != nil }) },
		pipeline.StepGauges:      func() bool { return anyTemplate(func(t wfv1.Template) bool { return t.Metrics != nil }) },
		pipeline.ReportArtifacts: func() bool { return anyTemplate(func(t wfv1.Template) bool { return len(t.Outputs.Artifacts) > 0 }) },
		pipeline.RunDeadline:     func() bool { return w.Spec.ActiveDeadlineSeconds != nil && *w.Spec.ActiveDeadlineSeconds > 0 },
		pipeline.FailureMessages: func() bool {
			return slices.ContainsFunc(argoSteps(w)["record-outcome"].Parameters, func(p wfv1.Parameter) bool { return p.Value.String() == "{{workflow.failures}}" })
		},
		pipeline.ResultOfOnFailure: func() bool { _, ok := argoSteps(w)["rolled-back"]; return ok },
	}
	tektonHas := map[pipeline.Capability]func() bool{
		pipeline.StepTimeouts: func() bool {
			return slices.ContainsFunc(p.Spec.Tasks, func(t tkv1.PipelineTask) bool { return t.Timeout != nil && t.Timeout.Duration > 0 })
		},
		pipeline.OnFailureSteps: func() bool {
			return slices.ContainsFunc(p.Spec.Finally, func(t tkv1.PipelineTask) bool { return t.Name == "rollback" && len(t.When) == 2 })
		},
		pipeline.RunDeadline: func() bool { return run.Spec.Timeouts != nil && run.Spec.Timeouts.Pipeline != nil },
	}
	caps := l.Capabilities()
	if len(caps) < 8 {
		t.Fatalf("the loop asks for only %v", caps)
	}
	for _, c := range caps {
		for _, e := range []struct {
			name     string
			has      map[pipeline.Capability]func() bool
			refusals map[pipeline.Capability]string
		}{{"argo", argoHas, argo.Refusals}, {"tekton", tektonHas, tekton.Refusals}} {
			check, checkable := e.has[c]
			why, refused := e.refusals[c]
			switch {
			case checkable && refused:
				t.Errorf("%s both renders and refuses %q", e.name, c)
			case refused && why == "":
				t.Errorf("%s refuses %q without a reason", e.name, c)
			case checkable && !check():
				t.Errorf("%s does not render %q", e.name, c)
			case !checkable && !refused:
				t.Errorf("%s neither renders (no check here) nor refuses %q", e.name, c)
			}
		}
	}
	if len(omitted) == 0 {
		t.Log("tekton omits no step")
	}
}

// Tekton's own validation (the webhook's code, in process) accepts the catalog and the pipeline.
func TestTektonValidatesEveryTaskAndThePipeline(t *testing.T) {
	ctx := context.Background()
	for _, task := range tekton.Tasks() {
		if err := task.Validate(ctx); err != nil {
			t.Errorf("task %s: %v", task.Name, err)
		}
	}
	p, err := tekton.Pipeline()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(ctx); err != nil {
		t.Errorf("pipeline: %v", err)
	}
	// Not a no-op: a task running after an unknown one is refused.
	p.Spec.Tasks[1].RunAfter = []string{"nope"}
	if err := p.Validate(ctx); err == nil {
		t.Error("tekton validation accepted runAfter an unknown task")
	}
}

// Check refuses a loop no engine could run.
func TestCheckRefusesBrokenLoops(t *testing.T) {
	for name, mut := range map[string]func(*pipeline.Loop){
		"unknown parameter": func(l *pipeline.Loop) { l.Steps[0].Args[0].Value = pipeline.P("nope") },
		"unknown argument": func(l *pipeline.Loop) {
			l.Steps[0].Args = append(l.Steps[0].Args, pipeline.Arg{Name: "nope", Value: pipeline.Literal("x")})
		},
		"missing required": func(l *pipeline.Loop) { l.Steps[0].Args = l.Steps[0].Args[1:] },
		"unknown result":   func(l *pipeline.Loop) { l.Steps[1].Args[0].Value = pipeline.R("train", "nope") },
		"later step":       func(l *pipeline.Loop) { l.Steps[0].After = []string{"publish"} },
		"unused parameter": func(l *pipeline.Loop) {
			l.Params = append(l.Params, pipeline.PipelineParam{Name: "unused"})
		},
	} {
		l := pipeline.ML()
		mut(&l)
		if err := l.Check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := pipeline.ML().Check(); err != nil {
		t.Fatal(err)
	}
}

// A task is the same container on both engines: image, command, arguments (in each engine's
// syntax), environment, mounts; only where results are collected differs.
func TestEveryTaskIsTheSameContainerOnBothEngines(t *testing.T) {
	steps := map[string]tkv1.Step{}
	for _, task := range tekton.Tasks() {
		steps[task.Name] = task.Spec.Steps[0]
	}
	argoSyntax := strings.NewReplacer("{{inputs.parameters.", "$(params.", "}}", ")", "--results-dir="+pipeline.ResultsDir, "--results-dir="+tekton.ResultsDir)
	n := 0
	for _, w := range argo.TaskTemplates() {
		for _, tm := range w.Spec.Templates {
			if _, refused := tekton.RefusedTasks[w.Name+"/"+tm.Name]; refused {
				continue
			}
			step, ok := steps[tekton.TaskName(w.Name, tm.Name)]
			if !ok {
				t.Errorf("%s/%s is on Argo, not on Tekton, and Tekton does not refuse it", w.Name, tm.Name)
				continue
			}
			n++
			c := tm.Container
			var args []string
			for _, a := range c.Args {
				args = append(args, argoSyntax.Replace(a))
			}
			if c.Image != step.Image || !slices.Equal(c.Command, step.Command) || !slices.Equal(args, step.Args) {
				t.Errorf("%s/%s: argo runs %s %v %v, tekton %s %v %v", w.Name, tm.Name, c.Image, c.Command, args, step.Image, step.Command, step.Args)
			}
			if len(c.Env) != len(step.Env) || len(c.VolumeMounts) != len(step.VolumeMounts) {
				t.Errorf("%s/%s: env %d vs %d, mounts %d vs %d", w.Name, tm.Name, len(c.Env), len(step.Env), len(c.VolumeMounts), len(step.VolumeMounts))
			}
		}
	}
	if n < 8 {
		t.Errorf("only %d tasks on both engines", n)
	}
}
