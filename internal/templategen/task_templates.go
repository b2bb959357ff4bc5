// Package pipeline builds gantry's Argo WorkflowTemplates (one per task
// binary, plus the ml-pipeline DAG), RBAC, the push trigger and the Tekton
// catalog from Go, with the Argo v3 API types. cmd/gen-templates writes them
// to templates/.
package templategen

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	apiv1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Module is the Go import path prefix of gantry's binaries.
const Module = "github.com/gantry-ml/gantry"

// Names of things the templates share.
const (
	ResultsDir     = "/tmp/results"
	ServiceAccount = "gantry-pipeline"
	DefaultSecret  = "gantry-s3"
)

// Image is the ko:// reference of a binary; `ko resolve` pins it by digest.
// Command is the binary's path inside its ko-built image. Templates name it explicitly so Argo's
// emissary executor (and Tekton's entrypoint) never has to look the image's entrypoint up in the
// registry at run time: no registry round trip per step, no pull credentials in the controller.
func Command(binary string) []string { return []string{"/ko-app/" + binary} }

func Image(binary string) string {
	if binary == "model-server" || binary == "fashion-trainer" {
		return "ko://" + Module + "/images/" + binary
	}
	return "ko://" + Module + "/cmd/" + binary
}

// Param is one input parameter of a task template. Unless EnvOnly, it is
// passed to the binary as --<Name>=<value>.
type Param struct {
	Name, Description string
	Default           *string
	// Env, when set, passes the value as this environment variable instead of a flag.
	Env string
	// NotAFlag marks parameters used elsewhere in the template (e.g. the Secret name).
	NotAFlag bool
}

func p(name, desc string) Param { return Param{Name: name, Description: desc} }
func pd(name, def, desc string) Param {
	return Param{Name: name, Description: desc, Default: ptr.To(def)}
}

// Task is one template of a per-binary WorkflowTemplate.
type Task struct {
	Binary      string
	Template    string   // template name inside the WorkflowTemplate
	Subcommand  []string // e.g. ["publish"]
	Description string
	Params      []Param
	Fixed       []string // fixed flags, e.g. --delete-on-cancel
	Results     []string
	// Globals are results also exported as workflow outputs of the same name
	// ({{workflow.outputs.parameters.NAME}}), e.g. for the exit handler.
	Globals []string
	Metrics *wfv1.Metrics
	Retry   bool // API-calling: retried on exit 3 and pod errors
}

var (
	s3Secret   = Param{Name: "s3-secret", Description: "Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", Default: ptr.To(DefaultSecret), NotAFlag: true}
	s3Endpoint = pd("s3-endpoint", "", "S3 endpoint URL, e.g. http://minio.gantry:9000 (empty: AWS)")
	runName    = pd("run-name", "{{workflow.name}}", "the run this step belongs to")
)

// Tasks are every per-binary template, in file order.
func Tasks() []Task {
	return []Task{
		{Binary: "train-launcher", Template: "train", Description: "Run one training Job to completion (re-attaching after restarts) and verify its model.",
			Params: []Param{runName, p("image", "training image, pinned by digest"), p("dataset-uri", "dataset prefix handed to the trainer"),
				p("output-uri", "where the trainer writes model + metrics.json"),
				Param{Name: "hyperparameters", Description: "comma-separated KEY=VALUE hyperparameters (values without commas)", Default: ptr.To(""), Env: "GANTRY_HYPERPARAMETER"},
				pd("cpu", "1", "CPU request"), pd("memory", "2Gi", "memory request and limit"), pd("timeout", "2h", "Job deadline"),
				pd("env-from-secret", DefaultSecret, "Secret whose keys become the trainer's environment"), s3Endpoint, s3Secret},
			Fixed: []string{"--delete-on-cancel"}, Results: []string{"job-name", "model-uri", "metrics", "duration-seconds"}, Retry: true},
		{Binary: "model-publisher", Template: "publish", Subcommand: []string{"publish"}, Description: "Publish trainer output as an immutable model version.",
			Params: []Param{runName, p("source-uri", "trainer output prefix"), p("registry-uri", "model registry prefix, e.g. s3://models"),
				pd("model-name", "fashion-mnist", "model name"), pd("training-image-digest", "", "training image recorded in the manifest"),
				pd("oci-ref", "", "also push an OCI artifact to this repository"), s3Endpoint, s3Secret},
			Results: []string{"model-version", "model-uri", "model-digest", "oci-digest"}, Globals: []string{"model-version"}, Retry: true},
		{Binary: "model-publisher", Template: "deploy", Subcommand: []string{"deploy"}, Description: "Serve a published version in an environment and wait for the rollout.",
			Params: []Param{runName, p("environment", "staging or production"), p("model-uri", "published version prefix"), p("model-digest", "its digest"),
				p("registry-uri", "model registry prefix (environment history)"), pd("model-name", "fashion-mnist", "model name"),
				p("server-image", "model server image"), pd("replicas", "1", "server replicas"), pd("rollout-timeout", "5m", "rollout deadline"),
				pd("s3-secret", DefaultSecret, "Secret the server reads the model with"), s3Endpoint},
			Results: []string{"endpoint", "previous-model-uri", "model-uri"}, Retry: true},
		{Binary: "model-publisher", Template: "rollback", Subcommand: []string{"rollback"}, Description: "Return an environment to its previous model.",
			Params: []Param{runName, p("environment", "staging or production"), p("registry-uri", "model registry prefix"), pd("model-name", "fashion-mnist", "model name"),
				p("server-image", "model server image"), pd("replicas", "1", "server replicas"), pd("rollout-timeout", "5m", "rollout deadline"),
				pd("s3-secret", DefaultSecret, "Secret the server reads the model with"), s3Endpoint},
			Results: []string{"endpoint", "previous-model-uri", "model-uri"}, Retry: true},
		{Binary: "model-publisher", Template: "record", Subcommand: []string{"record"}, Description: "Record how a pipeline run ended next to the model's versions.",
			Params: []Param{runName, p("status", "the run's status"), pd("failures", "", "JSON list of failed steps"), pd("model-version", "", "published version"),
				p("registry-uri", "model registry prefix"), pd("model-name", "fashion-mnist", "model name"), s3Endpoint, s3Secret},
			Results: []string{"record-uri"}, Retry: true},
		{Binary: "model-publisher", Template: "teardown", Subcommand: []string{"teardown"}, Description: "Delete an environment's Deployment and Service.",
			Params: []Param{p("environment", "staging or production"), pd("model-name", "fashion-mnist", "model name")}, Retry: true},
		{Binary: "canary-evaluator", Template: "evaluate", Description: "Score a served model on real predictions against the gates.",
			Params: []Param{p("endpoint", "candidate server URL"), pd("baseline-endpoint", "", "production server URL (same samples)"),
				pd("baseline-optional", "true", "skip the baseline gate when it answers nothing (first deployment)"),
				pd("model-name", "fashion-mnist", "served model name"), pd("protocol", "v1", "v1 or v2"), p("dataset-uri", "labelled dataset prefix"),
				pd("limit", "0", "sample size (0: all)"), pd("min-accuracy", "0", "gate"), pd("max-p99-ms", "0", "gate"), pd("max-error-rate", "0.01", "gate"),
				pd("max-accuracy-drop", "0.02", "gate against the baseline"), pd("report-uri", "", "where report.json/html go"), s3Endpoint, s3Secret},
			Results: []string{"verdict", "accuracy", "baseline-accuracy", "p99-ms", "reason", "report-uri"}, Retry: true,
			Metrics: &wfv1.Metrics{Prometheus: []*wfv1.Prometheus{
				{Name: "gantry_canary_accuracy", Help: "Canary accuracy of the candidate model", Labels: []*wfv1.MetricLabel{{Key: "model", Value: "{{inputs.parameters.model-name}}"}},
					Gauge: &wfv1.Gauge{Value: "{{outputs.parameters.accuracy}}", Realtime: ptr.To(false)}, When: "{{status}} == Succeeded"},
				{Name: "gantry_canary_p99_ms", Help: "Canary p99 request latency in ms", Labels: []*wfv1.MetricLabel{{Key: "model", Value: "{{inputs.parameters.model-name}}"}},
					Gauge: &wfv1.Gauge{Value: "{{outputs.parameters.p99-ms}}", Realtime: ptr.To(false)}, When: "{{status}} == Succeeded"},
			}}},
		{Binary: "approver", Template: "request", Subcommand: []string{"request"}, Description: "Notify people that a candidate waits for approval.",
			Params: []Param{runName, pd("notify-url", "", "webhook (empty: log only)"), pd("model-name", "fashion-mnist", "model"), p("model-version", "candidate version"),
				p("model-uri", "candidate URI"), p("accuracy", "canary accuracy"), pd("baseline-accuracy", "", "production accuracy"), p("p99-ms", "canary p99"),
				pd("report-uri", "", "canary report")},
			Results: []string{"message"}, Retry: true},
		{Binary: "approver", Template: "verify", Subcommand: []string{"verify"}, Description: "Read the approval decision; silence and unknown approvers are rejections.",
			Params: []Param{runName, pd("timeout", "24h", "the approval suspend's duration"), pd("approvers", "", "allow-list (empty: anyone)"),
				pd("audit-uri", "", "prefix for the audit record"), pd("model-name", "fashion-mnist", "model"), pd("model-version", "", "candidate version"),
				pd("accuracy", "", "canary accuracy"), pd("baseline-accuracy", "", "production accuracy"), s3Endpoint, s3Secret},
			Results: []string{"decision", "approved-by", "reason", "waited-seconds"}, Retry: true,
			Metrics: &wfv1.Metrics{Prometheus: []*wfv1.Prometheus{{Name: "gantry_approval_wait_seconds", Help: "Seconds a candidate waited for a decision",
				Labels: []*wfv1.MetricLabel{{Key: "decision", Value: "{{outputs.parameters.decision}}"}},
				Gauge:  &wfv1.Gauge{Value: "{{outputs.parameters.waited-seconds}}", Realtime: ptr.To(false)}, When: "{{status}} == Succeeded"}}}},
		{Binary: "approver", Template: "gate", Subcommand: []string{"gate"}, Description: "Fail the run with the reason unless the decision is approved/pass.",
			Params: []Param{p("decision", "approved|rejected|pass|fail"), pd("reason", "", "message of the failed run")}},
	}
}

// RetryExpression retries transient infrastructure errors (exit 3) and pod
// errors (evictions, deleted pods), never bad input (2) or a failure (1).
const RetryExpression = `asInt(lastRetry.exitCode) == 3 || lastRetry.status == "Error"`

// RetryStrategy is every API-calling step's retry strategy.
func RetryStrategy() *wfv1.RetryStrategy {
	return &wfv1.RetryStrategy{
		Limit:       ptr.To(intstrFromInt(4)),
		RetryPolicy: wfv1.RetryPolicyAlways,
		Expression:  RetryExpression,
		Backoff:     &wfv1.Backoff{Duration: "10s", Factor: ptr.To(intstrFromInt(2)), MaxDuration: "10m"},
	}
}

// Flags returns the flags a task's container passes (for the CLI-definition test).
func (t Task) Flags() []string {
	var out []string
	for _, a := range t.args() {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		out = append(out, name)
	}
	for _, pr := range t.Params {
		if pr.Env != "" {
			out = append(out, strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(pr.Env, "GANTRY_"), "_", "-")))
		}
	}
	sort.Strings(out)
	return out
}

func (t Task) args() []string {
	var args []string
	for _, pr := range t.Params {
		if pr.NotAFlag || pr.Env != "" {
			continue
		}
		args = append(args, fmt.Sprintf("--%s={{inputs.parameters.%s}}", pr.Name, pr.Name))
	}
	args = append(args, t.Fixed...)
	if len(t.Results) > 0 {
		args = append(args, "--results-dir="+ResultsDir)
	}
	return args
}

func (t Task) template() wfv1.Template {
	tm := wfv1.Template{Name: t.Template, Metrics: t.Metrics}
	for _, pr := range t.Params {
		ip := wfv1.Parameter{Name: pr.Name, Description: wfv1.AnyStringPtr(pr.Description)}
		if pr.Default != nil {
			ip.Value = wfv1.AnyStringPtr(*pr.Default)
		}
		tm.Inputs.Parameters = append(tm.Inputs.Parameters, ip)
	}
	for _, r := range t.Results {
		op := wfv1.Parameter{Name: r, ValueFrom: &wfv1.ValueFrom{Path: ResultsDir + "/" + r, Default: wfv1.AnyStringPtr("")}}
		if slices.Contains(t.Globals, r) {
			op.GlobalName = r
		}
		tm.Outputs.Parameters = append(tm.Outputs.Parameters, op)
	}
	c := &apiv1.Container{
		Name: "main", Image: Image(t.Binary), Command: Command(t.Binary), Args: append(append([]string{}, t.Subcommand...), t.args()...),
		Env:                      []apiv1.EnvVar{{Name: "GANTRY_LOG_FORMAT", Value: "json"}},
		TerminationMessagePolicy: apiv1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             []apiv1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
		SecurityContext: &apiv1.SecurityContext{RunAsNonRoot: ptr.To(true), ReadOnlyRootFilesystem: ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false), Capabilities: &apiv1.Capabilities{Drop: []apiv1.Capability{"ALL"}}},
		Resources: apiv1.ResourceRequirements{Requests: apiv1.ResourceList{apiv1.ResourceCPU: mustQ("50m"), apiv1.ResourceMemory: mustQ("64Mi")}},
	}
	if t.Binary == "canary-evaluator" {
		c.Resources.Requests[apiv1.ResourceMemory] = mustQ("256Mi")
	}
	for _, pr := range t.Params {
		if pr.Env != "" {
			c.Env = append(c.Env, apiv1.EnvVar{Name: pr.Env, Value: "{{inputs.parameters." + pr.Name + "}}"})
		}
		if pr.Name == "s3-secret" {
			for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
				c.Env = append(c.Env, apiv1.EnvVar{Name: k, ValueFrom: &apiv1.EnvVarSource{SecretKeyRef: &apiv1.SecretKeySelector{
					LocalObjectReference: apiv1.LocalObjectReference{Name: "{{inputs.parameters.s3-secret}}"}, Key: k}}})
			}
		}
	}
	tm.Container = c
	tm.Volumes = []apiv1.Volume{{Name: "tmp", VolumeSource: apiv1.VolumeSource{EmptyDir: &apiv1.EmptyDirVolumeSource{}}}}
	if t.Retry {
		tm.RetryStrategy = RetryStrategy()
	}
	return tm
}

// TaskTemplates groups the tasks into one WorkflowTemplate per binary.
func TaskTemplates() []*wfv1.WorkflowTemplate {
	var out []*wfv1.WorkflowTemplate
	byBinary := map[string]*wfv1.WorkflowTemplate{}
	for _, t := range Tasks() {
		w, ok := byBinary[t.Binary]
		if !ok {
			w = &wfv1.WorkflowTemplate{
				TypeMeta:   metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "WorkflowTemplate"},
				ObjectMeta: metav1.ObjectMeta{Name: t.Binary, Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"}},
				Spec:       wfv1.WorkflowSpec{ServiceAccountName: ServiceAccount},
			}
			byBinary[t.Binary] = w
			out = append(out, w)
		}
		w.Spec.Templates = append(w.Spec.Templates, t.template())
		w.Annotations = map[string]string{"workflows.argoproj.io/description": "gantry " + t.Binary + ": reusable via templateRef {name: " + t.Binary + ", template: <name>}"}
	}
	return out
}

// FindTask returns the task with binary and template name.
func FindTask(binary, template string) (Task, bool) {
	for _, t := range Tasks() {
		if t.Binary == binary && t.Template == template {
			return t, true
		}
	}
	return Task{}, false
}

// FlagProblems checks every flag the generated templates (Argo and Tekton)
// pass to binary against its real CLI definition, via missing; it returns how
// many templates use the binary and what is missing.
func FlagProblems(binary string, missing func(subcommand, flags []string) []string) (int, []string) {
	n := 0
	var problems []string
	for _, t := range append(Tasks(), TektonOnlyTasks()...) {
		if t.Binary != binary {
			continue
		}
		n++
		if m := missing(t.Subcommand, t.Flags()); len(m) > 0 {
			problems = append(problems, fmt.Sprintf("template %s/%s passes %v, which %s does not define", t.Binary, t.Template, m, binary))
		}
	}
	return n, problems
}

func intstrFromInt(i int) intstr.IntOrString { return intstr.FromInt32(int32(i)) }

func mustQ(s string) resource.Quantity { return resource.MustParse(s) }
