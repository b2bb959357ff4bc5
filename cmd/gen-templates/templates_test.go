package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/workflow/validate"
	"github.com/google/go-cmp/cmp"
	apiv1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/gantry-ml/gantry/internal/rbac"
	"github.com/gantry-ml/gantry/pipeline"
	"github.com/gantry-ml/gantry/pipeline/argo"
	"github.com/gantry-ml/gantry/pipeline/cluster"
	"github.com/gantry-ml/gantry/pipeline/tekton"
)

// argoPipeline is the rendered ml-pipeline WorkflowTemplate.
func argoPipeline(t *testing.T) *wfv1.WorkflowTemplate {
	t.Helper()
	w, err := argo.Pipeline()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

type wftGetter map[string]*wfv1.WorkflowTemplate

func (g wftGetter) Get(name string) (*wfv1.WorkflowTemplate, error) {
	if w, ok := g[name]; ok {
		return w, nil
	}
	return nil, fmt.Errorf("workflowtemplate %q not found", name)
}

type cwftGetter struct{}

func (cwftGetter) Get(name string) (*wfv1.ClusterWorkflowTemplate, error) {
	return nil, fmt.Errorf("clusterworkflowtemplate %q not found", name)
}

// fromYAML reads a generated file back, so validation sees exactly what users apply.
func fromYAML(t *testing.T, name string) *wfv1.WorkflowTemplate {
	t.Helper()
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.SplitN(string(files[name]), "---\n", 2)[1]
	var w wfv1.WorkflowTemplate
	if err := yaml.UnmarshalStrict([]byte(doc), &w); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &w
}

func TestArgoValidatesEveryTemplate(t *testing.T) {
	getter := wftGetter{}
	for _, w := range argo.TaskTemplates() {
		getter[w.Name] = fromYAML(t, w.Name+".yaml")
	}
	getter["ml-pipeline"] = fromYAML(t, "ml-pipeline.yaml")
	var cron *wfv1.CronWorkflow
	for _, o := range argo.PushTrigger(argo.TrainImageRepository) {
		switch v := o.(type) {
		case *wfv1.WorkflowTemplate:
			getter[v.Name] = v
		case *wfv1.CronWorkflow:
			cron = v
		}
	}
	if err := validate.ValidateCronWorkflow(context.Background(), getter, cwftGetter{}, cron, nil); err != nil {
		t.Errorf("%s: %v", cron.Name, err)
	}
	for name, w := range getter {
		for _, lint := range []bool{false, true} {
			if err := validate.ValidateWorkflowTemplate(getter, cwftGetter{}, w, nil, validate.ValidateOpts{Lint: lint, WorkflowTemplateValidation: true}); err != nil {
				t.Errorf("%s (lint=%t): %v", name, lint, err)
			}
		}
	}
	// A broken reference must be caught: the validation is not a no-op.
	broken := argoPipeline(t)
	broken.Spec.Templates[0].DAG.Tasks[1].TemplateRef.Template = "nope"
	if err := validate.ValidateWorkflowTemplate(getter, cwftGetter{}, broken, nil, validate.ValidateOpts{}); err == nil {
		t.Error("validation accepted a templateRef to a missing template")
	}
}

func TestEveryAPICallingStepRetriesOnlyTransientErrors(t *testing.T) {
	t.Parallel()
	apiCalling := map[string]bool{"train-launcher": true, "model-publisher": true, "canary-evaluator": true}
	for _, w := range argo.TaskTemplates() {
		for _, tm := range w.Spec.Templates {
			calls := apiCalling[w.Name] || tm.Name == "request" || tm.Name == "verify"
			rs := tm.RetryStrategy
			if calls && (rs == nil || rs.Expression != argo.RetryExpression || rs.Backoff == nil || rs.Limit == nil || rs.RetryPolicy != wfv1.RetryPolicyAlways) {
				t.Errorf("%s/%s calls APIs but has retry strategy %+v", w.Name, tm.Name, rs)
			}
			if tm.Name == "conclude" && rs != nil {
				t.Errorf("approver/conclude turns a verdict into a failure: it must never be retried")
			}
		}
	}
	for _, code := range []string{"2", "1"} {
		if strings.Contains(argo.RetryExpression, "== "+code) {
			t.Errorf("retry expression retries exit %s", code)
		}
	}
}

func TestApprovalSuspendsWithDecisionAndTimeout(t *testing.T) {
	t.Parallel()
	var found bool
	for _, tm := range argoPipeline(t).Spec.Templates {
		if tm.Suspend == nil {
			continue
		}
		found = true
		if tm.Suspend.Duration != "{{inputs.parameters.timeout}}" {
			t.Errorf("suspend duration %q", tm.Suspend.Duration)
		}
		ps := tm.Outputs.Parameters
		if len(ps) != 1 || ps[0].Name != "decision" || ps[0].ValueFrom == nil || ps[0].ValueFrom.Supplied == nil || ps[0].ValueFrom.Default.String() != "approved" {
			t.Errorf("approval outputs %+v: want a supplied decision defaulting to approved (plain argo resume approves)", ps)
		}
	}
	if !found {
		t.Fatal("no suspend node")
	}
	// Verify runs after it with the same timeout, so silence is a rejection.
	for _, task := range argoPipeline(t).Spec.Templates[0].DAG.Tasks {
		if task.Name == "approval" {
			// The node's inputs carry the four-eyes rules approver approve and verify read.
			for name, want := range map[string]string{"timeout": "{{workflow.parameters.approval-timeout}}",
				"min-approvals": "{{workflow.parameters.min-approvals}}", "forbid-self-approval": "{{workflow.parameters.forbid-self-approval}}"} {
				if got := argValue(task.Arguments, name); got != want {
					t.Errorf("approval argument %s = %q, want %q", name, got, want)
				}
			}
		}
		if task.Name == "verify-approval" {
			if task.Depends != "approval" || argValue(task.Arguments, "timeout") != "{{workflow.parameters.approval-timeout}}" {
				t.Errorf("verify-approval: depends %q timeout %q", task.Depends, argValue(task.Arguments, "timeout"))
			}
		}
		// The release waits for the decision and for the request (a run nobody was told of is
		// not released).
		if task.Name == "release" && task.Depends != "verify-approval && request-approval" {
			t.Errorf("release depends %q, want verify-approval && request-approval", task.Depends)
		}
	}
	y, _ := ToYAML(argoPipeline(t))
	if !strings.Contains(string(y), "supplied: {}") {
		t.Error("YAML lost valueFrom.supplied")
	}
}

// The exit handler records the version the run published: publish exports it as the workflow
// output the record step reads, through an expression that yields "" when publish never ran.
func TestExitHandlerRecordsThePublishedVersion(t *testing.T) {
	t.Parallel()
	pl := fromYAML(t, "ml-pipeline.yaml")
	var record *wfv1.WorkflowStep
	for _, tm := range pl.Spec.Templates {
		if tm.Name != pl.Spec.OnExit {
			continue
		}
		for _, ps := range tm.Steps {
			for i := range ps.Steps {
				if ps.Steps[i].TemplateRef != nil && ps.Steps[i].TemplateRef.Template == "record" {
					record = &ps.Steps[i]
				}
			}
		}
	}
	if record == nil {
		t.Fatalf("exit handler %q has no record step", pl.Spec.OnExit)
	}
	var want []string
	for _, arg := range []string{"model-version", "oci-digest"} {
		got := argValue(record.Arguments, arg)
		m := regexp.MustCompile(`^\{\{=sprig\.dig\('outputs', 'parameters', '([a-z0-9-]+)', '', workflow\)\}\}$`).FindStringSubmatch(got)
		if m == nil {
			t.Fatalf("record %s = %q, want a workflow output with an empty default", arg, got)
		}
		want = append(want, "publish."+arg+"→"+m[1])
	}
	var exported []string
	for _, tm := range fromYAML(t, "model-publisher.yaml").Spec.Templates {
		for _, o := range tm.Outputs.Parameters {
			if o.GlobalName != "" {
				exported = append(exported, tm.Name+"."+o.Name+"→"+o.GlobalName)
			}
		}
	}
	if !slices.Equal(exported, want) {
		t.Errorf("model-publisher exports %v, want %v", exported, want)
	}
}

func argValue(a wfv1.Arguments, name string) string {
	for _, p := range a.Parameters {
		if p.Name == name && p.Value != nil {
			return p.Value.String()
		}
	}
	return ""
}

var refRE = regexp.MustCompile(`\{\{(inputs|workflow)\.parameters\.([a-z0-9-]+)\}\}`)

func TestNoParameterUnusedOrUndefined(t *testing.T) {
	t.Parallel()
	for _, w := range argo.TaskTemplates() {
		for _, tm := range w.Spec.Templates {
			body, _ := yaml.Marshal(struct {
				C any
				M any
				V any
			}{tm.Container, tm.Metrics, tm.Volumes})
			defined := map[string]bool{}
			for _, p := range tm.Inputs.Parameters {
				defined[p.Name] = true
				if !strings.Contains(string(body), "{{inputs.parameters."+p.Name+"}}") {
					t.Errorf("%s/%s: input %s is never used", w.Name, tm.Name, p.Name)
				}
				if p.Description == nil || p.Description.String() == "" {
					t.Errorf("%s/%s: input %s has no description", w.Name, tm.Name, p.Name)
				}
			}
			for _, m := range refRE.FindAllStringSubmatch(string(body), -1) {
				if m[1] == "inputs" && !defined[m[2]] {
					t.Errorf("%s/%s uses undefined input %s", w.Name, tm.Name, m[2])
				}
			}
		}
	}
	pl := argoPipeline(t)
	body, _ := json.Marshal(pl.Spec.Templates)
	for _, p := range pl.Spec.Arguments.Parameters {
		if !strings.Contains(string(body), "{{workflow.parameters."+p.Name+"}}") && !strings.Contains(string(body), "workflow.parameters['"+p.Name+"']") {
			t.Errorf("ml-pipeline parameter %s is never used", p.Name)
		}
	}
	// Every argument a DAG task passes is an input of the template it calls.
	var dagTasks []wfv1.DAGTask
	for _, tm := range pl.Spec.Templates {
		if tm.DAG != nil {
			dagTasks = append(dagTasks, tm.DAG.Tasks...)
		}
	}
	if len(dagTasks) < 12 {
		t.Fatalf("only %d DAG tasks found in ml-pipeline", len(dagTasks))
	}
	for _, task := range dagTasks {
		if task.TemplateRef == nil {
			continue
		}
		tk, ok := pipeline.FindTask(task.TemplateRef.Name, task.TemplateRef.Template)
		if !ok {
			t.Errorf("task %s calls unknown %s/%s", task.Name, task.TemplateRef.Name, task.TemplateRef.Template)
			continue
		}
		inputs := map[string]bool{}
		for _, p := range tk.Params {
			inputs[p.Name] = true
			if p.Default == nil && !p.RunDefault && argValue(task.Arguments, p.Name) == "" {
				t.Errorf("task %s does not pass required %s", task.Name, p.Name)
			}
		}
		for _, a := range task.Arguments.Parameters {
			if !inputs[a.Name] {
				t.Errorf("task %s passes %s, which %s/%s does not take", task.Name, a.Name, tk.Binary, tk.Template)
			}
		}
	}
}

func TestEveryImageIsKo(t *testing.T) {
	t.Parallel()
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	imgRE := regexp.MustCompile(`(?m)image: (\S+)`)
	n := 0
	for name, b := range files {
		if strings.HasSuffix(name, ".md") {
			continue
		}
		for _, m := range imgRE.FindAllStringSubmatch(string(b), -1) {
			n++
			if !strings.HasPrefix(m[1], "ko://"+pipeline.Module+"/") {
				t.Errorf("%s: image %s is not a ko:// reference", name, m[1])
			}
		}
		if !strings.HasPrefix(string(b), Header) {
			t.Errorf("%s lacks the generated header", name)
		}
		meaningful := strings.NewReplacer("supplied: {}", "", "emptyDir: {}", "", "none: {}", "").Replace(string(b))
		for _, bad := range []string{"creationTimestamp", ": {}\n", "name: \"\"", "status:"} {
			if strings.Contains(meaningful, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d images found", n)
	}
}

func TestTektonShape(t *testing.T) {
	t.Parallel()
	paramRE := regexp.MustCompile(`\$\(params\.([a-z0-9-]+)\)`)
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tekton.Tasks() {
		b := []byte(strings.SplitN(string(files["tekton/"+task.Name+".yaml"]), "---\n", 2)[1])
		var shape struct {
			APIVersion string `json:"apiVersion"`
			Kind       string
			Metadata   struct {
				Name        string
				Labels      map[string]string
				Annotations map[string]string
			}
			Spec struct {
				Description string
				Params      []struct{ Name, Type, Description, Default string }
				Results     []struct{ Name, Description string }
				Steps       []struct {
					Name, Image, Script string
					Args, Command       []string
					Env                 []map[string]any
					SecurityContext     map[string]any   `json:"securityContext"`
					VolumeMounts        []map[string]any `json:"volumeMounts"`
					ComputeResources    map[string]any   `json:"computeResources"`
				}
				Volumes []map[string]any
			}
		}
		if err := yaml.UnmarshalStrict(b, &shape); err != nil {
			t.Fatalf("%v", err)
		}
		name := shape.Metadata.Name
		if shape.APIVersion != "tekton.dev/v1" || shape.Kind != "Task" || shape.Metadata.Annotations["tekton.dev/pipelines.minVersion"] == "" || shape.Spec.Description == "" {
			t.Errorf("%s: not a catalog-style Task: %+v", name, shape)
		}
		defined := map[string]bool{}
		for _, p := range shape.Spec.Params {
			if p.Description == "" || p.Type != "string" || defined[p.Name] {
				t.Errorf("%s: param %+v", name, p)
			}
			defined[p.Name] = true
		}
		for _, m := range paramRE.FindAllStringSubmatch(string(b), -1) {
			if !defined[m[1]] {
				t.Errorf("%s references undefined param %s", name, m[1])
			}
		}
		for _, s := range shape.Spec.Steps {
			if s.Script != "" {
				t.Errorf("%s: steps must not use scripts", name)
			}
			if len(shape.Spec.Results) > 0 && !contains(s.Args, "--results-dir=/tekton/results") {
				t.Errorf("%s: results declared but not written to /tekton/results", name)
			}
		}
		// Results share the 4096-byte termination message. Free text (reason, metrics,
		// message) is capped at 1 KB by the binaries; the rest are URIs, digests and numbers (< 256 B).
		budget := 0
		for _, r := range shape.Spec.Results {
			if r.Name == "reason" || r.Name == "metrics" || r.Name == "message" {
				budget += 1024
			} else {
				budget += 256
			}
		}
		if budget > 4096 {
			t.Errorf("%s: results may need %d bytes, over Tekton's 4096", name, budget)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestCommittedTemplatesAreCurrent(t *testing.T) {
	t.Parallel()
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("..", "..", "templates", name))
		if err != nil || string(got) != string(want) {
			t.Errorf("templates/%s is stale (run hack/update-generated.sh): %v", name, err)
		}
	}
}

// ko puts a binary at /ko-app/<last element of its import path>; a template that names another
// path fails only at run time, so check that every container's command matches its image.
func TestCommandMatchesKoEntrypoint(t *testing.T) {
	t.Parallel()
	n := 0
	for _, wft := range argo.TaskTemplates() {
		for _, tmpl := range wft.Spec.Templates {
			if tmpl.Container == nil {
				continue
			}
			n++
			img := tmpl.Container.Image
			want := "/ko-app/" + img[strings.LastIndex(img, "/")+1:]
			if len(tmpl.Container.Command) != 1 || tmpl.Container.Command[0] != want {
				t.Errorf("%s/%s: command %q, want [%s] for image %s", wft.Name, tmpl.Name, tmpl.Container.Command, want, img)
			}
		}
	}
	for _, task := range tekton.Tasks() {
		for _, step := range task.Spec.Steps {
			n++
			img := step.Image
			if got, want := step.Command, pipeline.Command(img[strings.LastIndex(img, "/")+1:]); !cmp.Equal(got, want) {
				t.Errorf("tekton step %s: command %v, want %v", step.Name, got, want)
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d containers checked", n)
	}
}

// The approval webhook URL is a credential: no template takes it as a parameter or passes it as
// an argument; the request step reads it from a Secret, which may be absent (log only).
func TestWebhookURLOnlyFromASecret(t *testing.T) {
	t.Parallel()
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if strings.Contains(string(b), "notify-url") {
			t.Errorf("%s mentions notify-url: the webhook URL must come from a Secret", name)
		}
	}
	var c *apiv1.Container
	for _, w := range argo.TaskTemplates() {
		for _, tm := range w.Spec.Templates {
			if w.Name == "approver" && tm.Name == "request" {
				c = tm.Container
			}
		}
	}
	if c == nil {
		t.Fatal("no approver/request")
	}
	var env *apiv1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "GANTRY_NOTIFY_URL" {
			env = &c.Env[i]
		}
	}
	if env == nil || env.Value != "" || env.ValueFrom == nil || env.ValueFrom.SecretKeyRef == nil ||
		env.ValueFrom.SecretKeyRef.Key != "url" || env.ValueFrom.SecretKeyRef.Optional == nil || !*env.ValueFrom.SecretKeyRef.Optional {
		t.Errorf("GANTRY_NOTIFY_URL = %+v, want an optional secretKeyRef to key url", env)
	}
}

// The canary compares with production only when deploy-staging found one, and a production that
// exists must answer: the baseline is never skipped on a guess from a failed request.
func TestCanaryBaselineIsTheProductionDeployFound(t *testing.T) {
	t.Parallel()
	for _, task := range argoPipeline(t).Spec.Templates[0].DAG.Tasks {
		if task.Name != "canary" {
			continue
		}
		if got := argValue(task.Arguments, "baseline-endpoint"); got != "{{tasks.deploy-staging.outputs.parameters.production-endpoint}}" {
			t.Errorf("baseline-endpoint = %q", got)
		}
		if got := argValue(task.Arguments, "baseline-optional"); got != "false" {
			t.Errorf("baseline-optional = %q, want false", got)
		}
		return
	}
	t.Fatal("no canary task")
}

// Least privilege: every step template names its own ServiceAccount; none of them may update or
// patch Workflows or create ConfigMaps (the approval object); the pods gantry creates get no
// token; the workflow itself names no ServiceAccount that a step could fall back to.
func TestEveryStepRunsAsItsOwnLeastPrivilegedAccount(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, w := range argo.TaskTemplates() {
		if w.Spec.ServiceAccountName != "" {
			t.Errorf("%s: workflow-wide ServiceAccount %q", w.Name, w.Spec.ServiceAccountName)
		}
		for _, tm := range w.Spec.Templates {
			if tm.ServiceAccountName == "" {
				t.Errorf("%s/%s runs as the namespace's default ServiceAccount", w.Name, tm.Name)
			}
			seen[tm.ServiceAccountName] = true
		}
	}
	seen[rbac.AccountFor("approver", "wait").Name] = true // Tekton only (a PipelineRun's taskRunSpecs name it)
	if argoPipeline(t).Spec.ServiceAccountName != "" {
		t.Errorf("ml-pipeline names a workflow-wide ServiceAccount")
	}
	for _, o := range cluster.RBAC() {
		switch r := o.(type) {
		case *rbacv1.Role:
			if r.Name == cluster.ApproverRole || r.Name == cluster.OperatorRole {
				continue
			}
			if !seen[r.Name] {
				t.Errorf("Role %s belongs to no template", r.Name)
			}
			for _, rule := range r.Rules {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						// The push trigger's purpose is to create runs (never to update one: the approval
						// policy denies a create that carries approval nodes) and its ledger ConfigMaps
						// (a Tekton decision ConfigMap is the approval policy's to refuse).
						if r.Name == rbac.AccountFor("train-launcher", "trigger").Name && (res == "workflows" && v == "create" || res == "configmaps" && (v == "get" || v == "create")) {
							continue
						}
						if (res == "workflows" && v != "get") || (res == "configmaps" && v != "list" && v != "watch" && v != "get") || v == "*" {
							t.Errorf("Role %s may %s %s: no step may write Workflows or create the approval object", r.Name, v, res)
						}
					}
				}
			}
		case *apiv1.ServiceAccount:
			if (r.Name == rbac.TrainingAccount || r.Name == rbac.ModelServerAccount) && (r.AutomountServiceAccountToken == nil || *r.AutomountServiceAccountToken) {
				t.Errorf("ServiceAccount %s mounts a token", r.Name)
			}
		}
	}
	train, _ := pipeline.FindTask("train-launcher", "train")
	deploy, _ := pipeline.FindTask("model-publisher", "deploy")
	for task, want := range map[*pipeline.Task]string{&train: rbac.TrainingAccount, &deploy: rbac.ModelServerAccount} {
		found := false
		for _, p := range task.Params {
			found = found || (p.Name == "service-account" && p.Default != nil && *p.Default == want)
		}
		if !found {
			t.Errorf("%s/%s does not run its pods as %s", task.Binary, task.Template, want)
		}
	}
}

// Every finally task of the Tekton pipeline is retried: a transient error in the rollback would
// otherwise leave the failed model serving (its retry is safe: the rollback is idempotent).
func TestTektonFinallyTasksAreRetried(t *testing.T) {
	t.Parallel()
	p, err := tekton.Pipeline()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Finally) == 0 {
		t.Fatal("no finally tasks")
	}
	for _, f := range p.Spec.Finally {
		if f.Retries < 1 {
			t.Errorf("finally task %v has no retries", f.Name)
		}
	}
}

// The CPU-heavy steps — training and evaluation (canary, smoke) — each take a slot of the
// cluster's semaphore before their pod starts; nothing else does, so a run waiting for its
// approval (or its release) holds no slot, and the slots' ConfigMap exists with every key used.
func TestOnlyTheCPUHeavyStepsTakeASemaphoreSlot(t *testing.T) {
	t.Parallel()
	want := map[string]string{"train-launcher/train": "train", "canary-evaluator/evaluate": "evaluate"}
	cm := cluster.Semaphores()
	for _, w := range argo.TaskTemplates() {
		for _, tm := range w.Spec.Templates {
			key, heavy := want[w.Name+"/"+tm.Name]
			s := tm.Synchronization
			switch {
			case !heavy && s != nil:
				t.Errorf("%s/%s takes a lock %+v: only training and evaluation queue", w.Name, tm.Name, s)
			case heavy && (s == nil || len(s.Semaphores) != 1 || s.Semaphores[0].ConfigMapKeyRef == nil):
				t.Errorf("%s/%s takes no semaphore slot: %+v", w.Name, tm.Name, s)
			case heavy:
				ref := s.Semaphores[0]
				if ref.Namespace != cm.Namespace || ref.ConfigMapKeyRef.Name != cm.Name || ref.ConfigMapKeyRef.Key != key || cm.Data[key] == "" {
					t.Errorf("%s/%s takes %s/%s[%s]; the installer creates %s/%s with %v", w.Name, tm.Name, ref.Namespace, ref.ConfigMapKeyRef.Name, ref.ConfigMapKeyRef.Key, cm.Namespace, cm.Name, cm.Data)
				}
			}
		}
	}
	for _, tm := range argoPipeline(t).Spec.Templates {
		if tm.Name == "approval" && tm.Synchronization != nil {
			t.Errorf("the approval holds a lock while people decide")
		}
	}
}
