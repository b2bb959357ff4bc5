// Package tekton renders gantry's loop (package pipeline) as Tekton objects with Tekton's own
// v1 API types: one catalog Task per task template (same images, same flags), the ml-pipeline
// Pipeline and an example PipelineRun. What Tekton cannot express is refused when generating
// (Refusals, RefusedTasks), never left out silently.
package tekton

import (
	"fmt"
	"slices"
	"strings"
	"time"

	tkv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/gantry-ml/gantry/pipeline"
)

// MinVersion is the oldest Tekton Pipelines the catalog tasks need.
const MinVersion = "0.50.0"

// ResultsDir is where Tekton collects a step's results.
const ResultsDir = "/tekton/results"

// RefusedTasks are the tasks the Tekton catalog does not carry, and why.
var RefusedTasks = map[string]string{
	"train-launcher/trigger": "it submits Argo Workflows: the push trigger is Argo's (events API, CronWorkflow)",
	"approver/verify":        "it reads an Argo approval node: on Tekton, approver wait decides and audits",
}

// Refusals are what Tekton does not express of a loop, and why; anything else it cannot render
// fails the generation.
var Refusals = map[pipeline.Capability]string{
	pipeline.SectionMutex: "Tekton has no mutex: promote's Lease serialises the releases of a model (Argo, Tekton and the CLI alike), " +
		"its compare-and-swap refuses a candidate whose canary compared against another production, and rollback undoes only its own run",
	pipeline.RetryByExitCode: "Tekton retries a failed TaskRun whatever its exit code: only tasks that never answer \"no\" with a failure " +
		"(no fail-on-reject, not the approval) are retried, twice; bad input is tried again and fails again at once",
	pipeline.StepSlots:       "Tekton has no semaphores: bound concurrent trainings and evaluations with a ResourceQuota or Kueue",
	pipeline.StepGauges:      "Tekton has no per-task metrics: the controller counts TaskRuns, the report JSON holds the figures",
	pipeline.ReportArtifacts: "no artifacts: the reports are in the object store at report-uri",
	pipeline.FailureMessages: "a finally task sees $(tasks.status) but not the failed tasks' messages: the run record has the status only",
	pipeline.ResultOfOnFailure: "a finally task cannot read another finally task's result: an on-failure step reading one (the Argo run's " +
		"\"release failed; rollback: <outcome>\" conclusion) is not rendered; the run has already failed with promote's or smoke's reason",
}

// approvalDrops are the approval's arguments approver wait does not take, and why.
var approvalDrops = map[string]string{
	"model-digest": "approver wait binds decisions to the PipelineRun's UID; promote deploys the digest publish wrote",
}

// paramNotes replace a pipeline parameter's description where Tekton differs.
var paramNotes = map[string]string{
	"forbid-self-approval": "true: whoever submitted the run cannot approve it (kubectl create the PipelineRun with label gantry.dev/submitted-by=<you>)",
}

// TaskName is a task template's Tekton Task: the binary, or binary-template where one binary has
// several.
func TaskName(binary, template string) string {
	if binary == "canary-evaluator" || binary == "train-launcher" {
		return binary
	}
	return binary + "-" + template
}

func str(s string) *tkv1.ParamValue { return tkv1.NewStructuredValues(s) }

// Tasks are catalog-style Tasks for the same images: params with descriptions, results via
// --results-dir=/tekton/results, no scripts.
func Tasks() []*tkv1.Task {
	var out []*tkv1.Task
	for _, t := range pipeline.Tasks() {
		if _, refused := RefusedTasks[t.Binary+"/"+t.Template]; refused {
			continue
		}
		out = append(out, task(t))
	}
	return out
}

func pp(name string) string { return "$(params." + name + ")" }

func task(t pipeline.Task) *tkv1.Task {
	var params tkv1.ParamSpecs
	for _, pr := range t.Params {
		ps := tkv1.ParamSpec{Name: pr.Name, Type: tkv1.ParamTypeString, Description: pr.Description}
		switch {
		case pr.RunDefault:
			ps.Default = str("") // the pipeline passes the run's name
		case pr.Default != nil:
			ps.Default = str(*pr.Default)
		}
		params = append(params, ps)
	}
	var results []tkv1.TaskResult
	for _, r := range t.Results {
		results = append(results, tkv1.TaskResult{Name: r, Description: "gantry result " + r + " (≤ 1 KB)"})
	}
	c, volumes := t.Container(pp, ResultsDir)
	step := tkv1.Step{Name: t.Template, Image: c.Image, Command: c.Command, Args: c.Args, Env: c.Env,
		ComputeResources: c.Resources, SecurityContext: c.SecurityContext, VolumeMounts: c.VolumeMounts}
	return &tkv1.Task{
		TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "Task"},
		ObjectMeta: metav1.ObjectMeta{Name: TaskName(t.Binary, t.Template), Labels: map[string]string{"app.kubernetes.io/version": "0.1", "app.kubernetes.io/part-of": "gantry"},
			Annotations: map[string]string{"tekton.dev/pipelines.minVersion": MinVersion, "tekton.dev/categories": "MLOps", "tekton.dev/tags": "ml, gantry",
				"tekton.dev/displayName": "gantry " + t.Binary + " " + t.Template}},
		Spec: tkv1.TaskSpec{Description: t.Description, Params: params, Results: results, Steps: []tkv1.Step{step}, Volumes: volumes},
	}
}

// spell spells a value in a pipeline task's parameter.
func spell(v pipeline.Value) (string, error) {
	switch x := v.(type) {
	case pipeline.Literal:
		return string(x), nil
	case pipeline.Input:
		return pp(string(x)), nil
	case pipeline.Result:
		return fmt.Sprintf("$(tasks.%s.results.%s)", x.Step, x.Name), nil
	case pipeline.PublishedResult:
		return fmt.Sprintf("$(tasks.%s.results.%s)", x.Step, x.Name), nil
	case pipeline.RunName:
		return "$(context.pipelineRun.name)", nil
	case pipeline.RunUID:
		return "$(context.pipelineRun.uid)", nil
	case pipeline.RunStatus:
		return "$(tasks.status)", nil
	case pipeline.Concat:
		var b strings.Builder
		for _, p := range x {
			s, err := spell(p)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("tekton: no spelling for %T", v)
}

// Pipeline renders ml-pipeline.
func Pipeline() (*tkv1.Pipeline, error) { return Render(pipeline.ML()) }

// Omitted are the steps of l the Tekton pipeline does not carry as tasks of their own, each with
// why (what else renders it, or the refusal).
func Omitted(l pipeline.Loop) (map[string]string, error) {
	_, _, omitted, err := render(l)
	return omitted, err
}

// rendered is a pipeline task and the gantry task it runs (for the run's accounts).
type rendered struct {
	pt   tkv1.PipelineTask
	task pipeline.Task
}

// Render renders a loop as a Pipeline: the steps and the release section as tasks, an approval
// as approver wait, the section's on-failure steps and the finally steps in finally.
func Render(l pipeline.Loop) (*tkv1.Pipeline, error) {
	tasks, finally, _, err := render(l)
	if err != nil {
		return nil, err
	}
	var params tkv1.ParamSpecs
	for _, p := range l.Params {
		d := p.Description
		if n, ok := paramNotes[p.Name]; ok {
			d = n
		}
		params = append(params, tkv1.ParamSpec{Name: p.Name, Type: tkv1.ParamTypeString, Description: d, Default: str(p.Default)})
	}
	var pts, fts []tkv1.PipelineTask
	for _, r := range tasks {
		pts = append(pts, r.pt)
	}
	for _, r := range finally {
		fts = append(fts, r.pt)
	}
	return &tkv1.Pipeline{
		TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{Name: l.Name, Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"},
			Annotations: map[string]string{"tekton.dev/pipelines.minVersion": MinVersion}},
		Spec: tkv1.PipelineSpec{Description: "gantry's " + l.Description + " loop on Tekton, with rollback, staging teardown and the run record in finally; approve with `approver approve RUN --tekton`.",
			Params: params, Tasks: pts, Finally: fts},
	}, nil
}

func render(l pipeline.Loop) (tasks, finally []rendered, omitted map[string]string, err error) {
	omitted = map[string]string{}
	if err := l.Check(); err != nil {
		return nil, nil, nil, err
	}
	for _, c := range l.Capabilities() {
		switch c {
		case pipeline.StepTimeouts, pipeline.OnFailureSteps, pipeline.RunDeadline:
		default:
			if _, ok := Refusals[c]; !ok {
				return nil, nil, nil, fmt.Errorf("the Tekton renderer cannot render %q", c)
			}
		}
	}
	step := func(s pipeline.Step, finally bool) (rendered, error) {
		t, _ := pipeline.FindTask(s.Binary, s.Template)
		if s.Kind == pipeline.Approval {
			t, _ = pipeline.FindTask("approver", "wait")
		}
		pt := tkv1.PipelineTask{Name: s.Name, TaskRef: &tkv1.TaskRef{Name: TaskName(t.Binary, t.Template)}}
		if !finally {
			pt.RunAfter = l.Direct(s.Deps())
		}
		if t.Has("run-name") {
			if _, ok := s.Arg("run-name"); !ok {
				pt.Params = append(pt.Params, tkv1.Param{Name: "run-name", Value: *str("$(context.pipelineRun.name)")})
			}
		}
		for _, a := range s.Args {
			if !t.Has(a.Name) {
				if _, ok := approvalDrops[a.Name]; s.Kind == pipeline.Approval && ok {
					continue
				}
				return rendered{}, fmt.Errorf("step %s passes %s, which Tekton's %s does not take", s.Name, a.Name, pt.TaskRef.Name)
			}
			if usesFailures(a.Value) {
				continue // Refusals[FailureMessages]
			}
			v, err := spell(a.Value)
			if err != nil {
				return rendered{}, fmt.Errorf("step %s, %s: %w", s.Name, a.Name, err)
			}
			pt.Params = append(pt.Params, tkv1.Param{Name: a.Name, Value: *str(v)})
		}
		if s.Timeout != "" {
			d, err := time.ParseDuration(s.Timeout)
			if err != nil {
				return rendered{}, fmt.Errorf("step %s: timeout %q: %w", s.Name, s.Timeout, err)
			}
			pt.Timeout = &metav1.Duration{Duration: d}
		}
		if t.Retry && !t.Has("fail-on-reject") && s.Kind != pipeline.Approval {
			pt.Retries = 2 // Refusals[RetryByExitCode]
		}
		switch c := s.When.(type) {
		case nil:
		case pipeline.ParamIsNot:
			pt.When = append(pt.When, tkv1.WhenExpression{Input: pp(c.Param), Operator: selection.NotIn, Values: []string{c.Value}})
		case pipeline.RunNotSucceeded:
			pt.When = append(pt.When, tkv1.WhenExpression{Input: "$(tasks.status)", Operator: selection.NotIn, Values: []string{"Succeeded", "Completed"}})
		case pipeline.AnyFailed:
			// In finally: the section ran (its first step is not None) and the run failed. The
			// section's steps run only after everything before them succeeded, so the failure is
			// theirs.
			pt.When = append(pt.When, tkv1.WhenExpression{Input: "$(tasks." + c[0] + ".status)", Operator: selection.NotIn, Values: []string{"None"}},
				tkv1.WhenExpression{Input: "$(tasks.status)", Operator: selection.In, Values: []string{"Failed"}})
		default:
			return rendered{}, fmt.Errorf("step %s: Tekton renders no %T", s.Name, c)
		}
		return rendered{pt, t}, nil
	}
	add := func(to *[]rendered, s pipeline.Step, fin bool) error {
		r, err := step(s, fin)
		if err != nil {
			return err
		}
		*to = append(*to, r)
		return nil
	}
	for _, s := range l.Steps {
		if err := add(&tasks, s, false); err != nil {
			return nil, nil, nil, err
		}
	}
	for i, s := range l.Release.Steps {
		if i == 0 {
			s.After = append(append([]string{}, l.Release.After...), s.After...)
		}
		if err := add(&tasks, s, false); err != nil {
			return nil, nil, nil, err
		}
	}
	onFailure := map[string]bool{}
	for _, s := range l.Release.OnFailure {
		reads := false
		for _, a := range s.Args {
			for _, r := range pipeline.Results(a.Value) {
				if onFailure[r.Step] {
					reads = true
				}
			}
		}
		if reads || slices.ContainsFunc(s.After, func(d string) bool { return onFailure[d] }) {
			if _, ok := Refusals[pipeline.ResultOfOnFailure]; !ok {
				return nil, nil, nil, fmt.Errorf("on-failure step %s reads another on-failure step, which a Tekton finally task cannot", s.Name)
			}
			omitted[s.Name] = Refusals[pipeline.ResultOfOnFailure]
			continue
		}
		onFailure[s.Name] = true
		if err := add(&finally, s, true); err != nil {
			return nil, nil, nil, err
		}
	}
	for _, s := range l.Finally {
		if s.Settles == l.Release.Name && len(onFailure) > 0 {
			// The section's on-failure steps are finally tasks here: they run on every ending but
			// success once the section started, stopped runs included. They are the settle.
			omitted[s.Name] = "the " + l.Release.Name + " section's on-failure steps run in finally on every ending but success: they settle it"
			continue
		}
		if pub := publishedResults(s); len(pub) > 0 {
			// A finally task reading a result that was never written is skipped: the step runs as
			// two tasks, with the results when their steps succeeded and without them otherwise.
			with, without := s, s
			without.Name = strings.Replace(s.Name, "-outcome", "", 1) + "-unpublished"
			without.Args = nil
			for _, a := range s.Args {
				if _, ok := a.Value.(pipeline.PublishedResult); !ok {
					without.Args = append(without.Args, a)
				}
			}
			if err := add(&finally, with, true); err != nil {
				return nil, nil, nil, err
			}
			if err := add(&finally, without, true); err != nil {
				return nil, nil, nil, err
			}
			for _, p := range pub {
				finally[len(finally)-2].pt.When = append(finally[len(finally)-2].pt.When, tkv1.WhenExpression{Input: "$(tasks." + p.Step + ".status)", Operator: selection.In, Values: []string{"Succeeded"}})
				finally[len(finally)-1].pt.When = append(finally[len(finally)-1].pt.When, tkv1.WhenExpression{Input: "$(tasks." + p.Step + ".status)", Operator: selection.NotIn, Values: []string{"Succeeded"}})
			}
			continue
		}
		if err := add(&finally, s, true); err != nil {
			return nil, nil, nil, err
		}
	}
	return tasks, finally, omitted, nil
}

func usesFailures(v pipeline.Value) bool {
	switch x := v.(type) {
	case pipeline.RunFailures:
		return true
	case pipeline.Concat:
		return slices.ContainsFunc(x, usesFailures)
	}
	return false
}

func publishedResults(s pipeline.Step) []pipeline.PublishedResult {
	var out []pipeline.PublishedResult
	for _, a := range s.Args {
		if p, ok := a.Value.(pipeline.PublishedResult); ok {
			out = append(out, p)
		}
	}
	return out
}

// PipelineRun is the example run of the loop: each task as its template's ServiceAccount,
// timeouts that outlast the approval wait.
func PipelineRun() (*tkv1.PipelineRun, error) {
	l := pipeline.ML()
	tasks, finally, _, err := render(l)
	if err != nil {
		return nil, err
	}
	var specs []tkv1.PipelineTaskRunSpec
	for _, r := range append(tasks, finally...) {
		specs = append(specs, tkv1.PipelineTaskRunSpec{PipelineTaskName: r.pt.Name, ServiceAccountName: r.task.Account()})
	}
	deadline, err := time.ParseDuration(l.Deadline)
	if err != nil {
		return nil, err
	}
	return &tkv1.PipelineRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: l.Name + "-", Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"}},
		Spec: tkv1.PipelineRunSpec{
			PipelineRef: &tkv1.PipelineRef{Name: l.Name},
			Params:      tkv1.Params{{Name: "hyperparameters", Value: *str("epochs=2,learning-rate=0.001,batch-size=128")}},
			// The loop's deadline; the approval waits up to approval-timeout.
			Timeouts:     &tkv1.TimeoutFields{Pipeline: &metav1.Duration{Duration: deadline}, Tasks: &metav1.Duration{Duration: deadline - time.Hour}, Finally: &metav1.Duration{Duration: time.Hour}},
			TaskRunSpecs: specs,
		},
	}, nil
}

// ApprovalDrops says whether Tekton's approval leaves out the argument name (approvalDrops).
func ApprovalDrops(name string, kind pipeline.Kind) bool {
	_, ok := approvalDrops[name]
	return ok && kind == pipeline.Approval
}
