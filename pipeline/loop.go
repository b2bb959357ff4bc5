// Package pipeline is gantry's loop described once, for every engine: the task binaries'
// templates (Tasks: image, parameters read from each binary's flags, results, account, retries,
// slots) and the ml-pipeline (Loop: steps, typed arguments, dependencies, conditions, the
// approval, the release section, the finally steps). It names no engine: pipeline/argo and
// pipeline/tekton render it with their engines' own API types, and refuse — when generating,
// never silently — what their engine cannot express (Refusals). cmd/gen-templates writes what
// they render to templates/.
//
// Adding a step: add it to ML (and its task to Tasks when it is new); both renderers then render
// it or the generator fails (the parity test names what is missing). Adding an engine: a package
// that renders a Loop and lists its Refusals, and a case in the parity test.
package pipeline

import (
	"fmt"
	"slices"
	"strings"
)

// Value is what a step's argument receives; each engine spells it in its own syntax.
type Value interface{ isValue() }

type (
	// Literal is a fixed string.
	Literal string
	// Param is a parameter of the pipeline.
	Input string
	// Result is a result of an earlier step (which the step therefore depends on).
	Result struct{ Step, Name string }
	// PublishedResult is a result of an earlier step, or "" when that step did not run or did
	// not succeed: only finally steps take it (a run that ended before the step).
	PublishedResult struct{ Step, Name string }
	// RunName and RunUID are the engine's identity of the run (Argo Workflow, Tekton PipelineRun).
	RunName struct{}
	RunUID  struct{}
	// RunStatus is how the run ended, for a finally step: Succeeded, Failed, Error (Argo) or
	// Succeeded, Failed, Completed (Tekton).
	RunStatus struct{}
	// RunFailures are the failed steps' messages (JSON), when the engine has them.
	RunFailures struct{}
	// Concat joins values into one string, e.g. "s3://" + bucket + "/runs/" + run.
	Concat []Value
)

func (Literal) isValue()         {}
func (Input) isValue()           {}
func (Result) isValue()          {}
func (PublishedResult) isValue() {}
func (RunName) isValue()         {}
func (RunUID) isValue()          {}
func (RunStatus) isValue()       {}
func (RunFailures) isValue()     {}
func (Concat) isValue()          {}

// P is the pipeline parameter name.
func P(name string) Input { return Input(name) }

// R is step's result name.
func R(step, name string) Result { return Result{step, name} }

// Arg is one argument of a step: the task parameter Name receives Value.
type Arg struct {
	Name  string
	Value Value
}

// Kind is what a step is beyond "run the task".
type Kind int

const (
	// Run runs its task.
	Run Kind = iota
	// Approval waits for people's decisions and records them (the audit record), failing the
	// step on a rejection or the timeout. Engines do it differently: Argo suspends a node (the
	// decisions are written on it) and runs approver verify; Tekton runs approver wait. Its
	// arguments are the union of what those take (ApprovalArgs says which engine takes which).
	Approval
)

// Condition says when a step runs beyond its dependencies.
type Condition interface{ isCondition() }

type (
	// ParamIsNot runs the step unless the pipeline parameter Param equals Value.
	ParamIsNot struct{ Param, Value string }
	// RunNotSucceeded runs a finally step only when the run did not succeed.
	RunNotSucceeded struct{}
	// AnyFailed runs a section's on-failure step when one of Steps failed (or errored).
	AnyFailed []string
)

func (ParamIsNot) isCondition()      {}
func (RunNotSucceeded) isCondition() {}
func (AnyFailed) isCondition()       {}

// Step is one step of the loop.
type Step struct {
	Name string
	// Binary and Template name the task (Tasks) the step runs; an Approval names approver's.
	Binary, Template string
	Kind             Kind
	Args             []Arg
	// After are the steps that must have succeeded first (besides those whose results it reads).
	After []string
	When  Condition
	// Timeout bounds the step where the engine bounds each step ("0s": none, the task bounds itself).
	Timeout string
	// Settles names the section this finally step settles when the run stopped inside it (the
	// section's own on-failure steps never ran): an engine whose on-failure steps already run on
	// every ending but success renders the settle as those.
	Settles string
	// Comment explains the step in the generated files.
	Comment string
}

// Section is a run of steps that is one critical section per model: no two runs' sections
// overlap, and its on-failure steps undo what it did.
type Section struct {
	Name string
	// Mutex is the name of the lock (per model) the section holds from its first step to its
	// last on-failure step.
	Mutex     Value
	After     []string
	Steps     []Step
	OnFailure []Step
	Comment   string
}

// Loop is a pipeline: parameters, steps (a DAG by dependencies and results read), one release
// section after them, and finally steps that run however the run ended.
type Loop struct {
	Name, Description string
	Params            []PipelineParam
	Steps             []Step
	Release           Section
	Finally           []Step
	// Deadline bounds the whole run (e.g. "168h").
	Deadline string
}

// Deps are the steps s depends on: After and every step whose result an argument reads, in
// order of first mention.
func (s Step) Deps() []string {
	deps := append([]string{}, s.After...)
	for _, a := range s.Args {
		for _, r := range Results(a.Value) {
			if !slices.Contains(deps, r.Step) {
				deps = append(deps, r.Step)
			}
		}
	}
	return deps
}

// Results lists the step results v reads.
func Results(v Value) []Result {
	var out []Result
	for _, l := range leaves(v) {
		if r, ok := l.(Result); ok {
			out = append(out, r)
		}
	}
	return out
}

// leaves are the values v is made of: v itself, or a concatenation's parts, flattened.
func leaves(v Value) []Value {
	c, ok := v.(Concat)
	if !ok {
		if v == nil {
			return nil
		}
		return []Value{v}
	}
	var out []Value
	for _, p := range c {
		out = append(out, leaves(p)...)
	}
	return out
}

// Arg returns the value of the argument name.
func (s Step) Arg(name string) (Value, bool) {
	for _, a := range s.Args {
		if a.Name == name {
			return a.Value, true
		}
	}
	return nil, false
}

// AllSteps are every step of the loop: the steps, the release section's and its on-failure
// steps, the finally steps.
func (l Loop) AllSteps() []Step {
	out := append([]Step{}, l.Steps...)
	out = append(out, l.Release.Steps...)
	out = append(out, l.Release.OnFailure...)
	return append(out, l.Finally...)
}

// Check refuses a loop that no engine could run: unknown tasks or parameters, an argument its
// task does not take, a task parameter without a default that nobody passes, a result no step
// writes, a dependency on a later or unknown step, a pipeline parameter nobody reads.
func (l Loop) Check() error {
	params := map[string]bool{}
	for _, p := range l.Params {
		params[p.Name] = true
	}
	used := map[string]bool{}
	seen := map[string]Task{}
	var errs []string
	check := func(s Step, finally bool) {
		t, ok := FindTask(s.Binary, s.Template)
		if !ok && s.Kind != Approval {
			errs = append(errs, fmt.Sprintf("step %s: no task %s/%s", s.Name, s.Binary, s.Template))
			return
		}
		for _, d := range s.After {
			if _, ok := seen[d]; !ok {
				errs = append(errs, fmt.Sprintf("step %s runs after %s, which is not an earlier step", s.Name, d))
			}
		}
		for _, a := range s.Args {
			for _, v := range leaves(a.Value) {
				switch x := v.(type) {
				case Input:
					used[string(x)] = true
					if !params[string(x)] {
						errs = append(errs, fmt.Sprintf("step %s reads parameter %s, which the pipeline does not have", s.Name, x))
					}
				case Result, PublishedResult:
					var step, name string
					if r, ok := x.(Result); ok {
						step, name = r.Step, r.Name
						if finally {
							errs = append(errs, fmt.Sprintf("finally step %s reads %s.%s: a finally step takes a PublishedResult (the step may not have run)", s.Name, step, name))
						}
					} else {
						p := x.(PublishedResult)
						step, name = p.Step, p.Name
					}
					st, ok := seen[step]
					if !ok {
						errs = append(errs, fmt.Sprintf("step %s reads a result of %s, which is not an earlier step", s.Name, step))
					} else if !slices.Contains(st.Results, name) {
						errs = append(errs, fmt.Sprintf("step %s reads result %s of %s, which %s/%s does not write", s.Name, name, step, st.Binary, st.Template))
					}
				}
			}
		}
		if c, ok := s.When.(ParamIsNot); ok {
			used[c.Param] = true
		}
		if s.Kind != Approval { // an approval's arguments are checked per engine (ApprovalArgs)
			for _, a := range s.Args {
				if !t.Has(a.Name) {
					errs = append(errs, fmt.Sprintf("step %s passes %s, which %s/%s does not take", s.Name, a.Name, s.Binary, s.Template))
				}
			}
			for _, p := range t.Params {
				if _, ok := s.Arg(p.Name); !ok && p.Default == nil && !p.FlagDefault && !p.RunDefault {
					errs = append(errs, fmt.Sprintf("step %s does not pass %s, which %s/%s requires", s.Name, p.Name, s.Binary, s.Template))
				}
			}
		}
		if _, dup := seen[s.Name]; dup {
			errs = append(errs, "two steps named "+s.Name)
		}
		seen[s.Name] = t
	}
	for _, s := range l.Steps {
		check(s, false)
	}
	if l.Release.Mutex != nil {
		for _, d := range l.Release.After {
			if _, ok := seen[d]; !ok {
				errs = append(errs, fmt.Sprintf("section %s runs after %s, which is not an earlier step", l.Release.Name, d))
			}
		}
	}
	for _, s := range l.Release.Steps {
		check(s, false)
	}
	for _, s := range l.Release.OnFailure {
		check(s, false)
	}
	for _, s := range l.Finally {
		check(s, true)
	}
	for _, v := range leaves(l.Release.Mutex) {
		if in, ok := v.(Input); ok {
			used[string(in)] = true
		}
	}
	for _, p := range l.Params {
		if !used[p.Name] {
			errs = append(errs, "parameter "+p.Name+" is read by no step")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("pipeline %s: %s", l.Name, strings.Join(errs, "; "))
	}
	return nil
}

// Capability is something a loop or its tasks ask of an engine beyond running a step.
type Capability string

// The capabilities a renderer renders or refuses (its Refusals, with the reason).
const (
	StepTimeouts    Capability = "a timeout per step"
	SectionMutex    Capability = "one release section per model at a time (a mutex held across its steps)"
	OnFailureSteps  Capability = "a section's on-failure steps reading the failed section's results"
	RetryByExitCode Capability = "retries of transient failures only (exit 3, pod errors), never of bad input (exit 2)"
	StepSlots       Capability = "cluster-wide slots of CPU-heavy steps (semaphores)"
	StepGauges      Capability = "metrics from a step's results"
	ReportArtifacts Capability = "a step's report files as artifacts the engine serves"
	RunDeadline     Capability = "a deadline of the whole run"
	FailureMessages Capability = "the failed steps' messages, read by a finally step"
	// ResultOfOnFailure: an on-failure step reads another on-failure step's result.
	ResultOfOnFailure Capability = "an on-failure step reading another on-failure step's result"
)

// Capabilities lists what l and its tasks ask of an engine.
func (l Loop) Capabilities() []Capability {
	var out []Capability
	add := func(c Capability) {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if l.Deadline != "" {
		add(RunDeadline)
	}
	if l.Release.Mutex != nil {
		add(SectionMutex)
	}
	if len(l.Release.OnFailure) > 0 {
		add(OnFailureSteps)
	}
	onFailure := map[string]bool{}
	for _, s := range l.Release.OnFailure {
		for _, d := range s.Deps() {
			if onFailure[d] {
				add(ResultOfOnFailure)
			}
		}
		onFailure[s.Name] = true
	}
	for _, s := range l.AllSteps() {
		if s.Timeout != "" && s.Timeout != "0s" {
			add(StepTimeouts)
		}
		for _, a := range s.Args {
			if _, ok := a.Value.(RunFailures); ok {
				add(FailureMessages)
			}
		}
		t, ok := FindTask(s.Binary, s.Template)
		if !ok {
			continue
		}
		if t.Retry {
			add(RetryByExitCode)
		}
		if t.Semaphore != "" {
			add(StepSlots)
		}
		if len(t.Gauges) > 0 {
			add(StepGauges)
		}
		if len(t.Reports) > 0 {
			add(ReportArtifacts)
		}
	}
	return out
}

// Direct drops from deps every step another of them already depends on (directly or not): the
// dependencies an engine must be told; the rest follow.
func (l Loop) Direct(deps []string) []string {
	of := map[string][]string{}
	for _, s := range l.AllSteps() {
		of[s.Name] = s.Deps()
	}
	var ancestors func(n string, seen map[string]bool)
	ancestors = func(n string, seen map[string]bool) {
		for _, d := range of[n] {
			if !seen[d] {
				seen[d] = true
				ancestors(d, seen)
			}
		}
	}
	implied := map[string]bool{}
	for _, d := range deps {
		ancestors(d, implied)
	}
	var out []string
	for _, d := range deps {
		if !implied[d] && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}
