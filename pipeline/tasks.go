package pipeline

import (
	"slices"

	apiv1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"k8s.io/utils/ptr"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/rbac"
)

// Module is the Go import path prefix of gantry's binaries.
const Module = "github.com/gantry-ml/gantry"

// Names of things the templates share.
const (
	ResultsDir    = "/tmp/results"
	ReportsDir    = "/tmp/reports"
	DefaultSecret = "gantry-s3"
	// S3SecretParam is the parameter naming the Secret whose AWS_* keys reach the binary.
	S3SecretParam = "s3-secret"
	// ReadSecret holds the model servers' read-only S3 credentials (they cannot write the registry).
	ReadSecret = "gantry-s3-read"
	// RunsSecret may read the datasets and write runs/ (training launcher, canary), not the registry.
	RunsSecret = "gantry-s3-runs"
	// RegistrySecret is the default docker-config Secret (type kubernetes.io/dockerconfigjson) with
	// the OCI registry's push credentials.
	RegistrySecret = "gantry-registry"
	// DockerConfigDir is where that Secret is mounted; DOCKER_CONFIG points there, so
	// go-containerregistry's default keychain reads its config.json.
	DockerConfigDir = "/var/run/gantry/docker"
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

// Param is one input parameter of a task template. Unless NotAFlag or Env, it
// is passed to the binary as --<Name>=<value>. Its description (and, with
// FlagDefault, its default) comes from the binary's CLI definition, so each
// flag is described once: in tasks/<task>/command.
type Param struct {
	Name string
	// Flag is the CLI flag behind the parameter when its name differs (default: Name).
	Flag string
	// Description is filled in from the flag; set it only on parameters that are not flags.
	Description string
	// Default nil: the caller must pass the parameter. FlagDefault: the flag's own default.
	// RunDefault: the run's name, as the engine spells it (a template's default where the engine
	// has one, else passed by the pipeline).
	Default     *string
	FlagDefault bool
	RunDefault  bool
	// Env, when set, passes the value as this environment variable (one the flag reads) instead of a flag.
	Env string
	// NotAFlag marks parameters used elsewhere in the template (e.g. the Secret name).
	NotAFlag bool
	// SecretKey makes the parameter the name of a Secret whose key SecretKey reaches the binary
	// as Env (read by Flag) through a secretKeyRef: never an argument, a parameter value or a
	// log line. The Secret is optional: without it the variable is unset.
	SecretKey string
}

// req is a parameter every caller passes; def one with the flag's default; set one with a
// default of the template's own (e.g. {{workflow.name}}, or a resource request).
func req(name string) Param        { return Param{Name: name} }
func def(name string) Param        { return Param{Name: name, FlagDefault: true} }
func set(name, value string) Param { return Param{Name: name, Default: ptr.To(value)} }

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
	// Gauges are metrics the engine exports from the step's results when it succeeds.
	Gauges []Gauge
	Retry  bool // API-calling: retried on exit 3 and pod errors
	// Semaphore is the key of the cluster's semaphore ConfigMap (SemaphoresConfigMap) whose slot
	// the step takes while it runs: the CPU-heavy steps queue there, not whole runs.
	Semaphore string
	// Signs is the evidence role whose key the step signs with: its Secret (attest.SigningSecret)
	// is mounted into this step only, optionally (without it the step signs nothing), and the
	// admission policy gantry-signing-keys admits it only into pods running as this step's account.
	Signs attest.Role
	// Reports are files the binary writes into ReportsDir (its --report-dir), declared as
	// optional output artifacts in the namespace's default artifact repository: `argo get` lists
	// them, the Argo Server and UI serve them. Artifact name: the file name with '.' → '-'.
	Reports []string
}

var (
	s3Secret = Param{Name: "s3-secret", Description: "Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", Default: ptr.To(DefaultSecret), NotAFlag: true}
	// runsSecret is the credential of the steps that read datasets and write runs/ only.
	runsSecret = Param{Name: "s3-secret", Description: "Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY that may read the datasets and write runs/ (not the registry)",
		Default: ptr.To(RunsSecret), NotAFlag: true}
	// s3Endpoint is optional: empty is AWS.
	s3Endpoint = def("s3-endpoint")
	runName    = Param{Name: "run-name", RunDefault: true}
	// notifySecret holds the approval webhook's URL, a secret (a Slack webhook URL is a credential).
	// registrySecret is the optional docker-config Secret of the OCI push (see DockerConfigDir).
	registrySecret = Param{Name: "registry-secret", NotAFlag: true, Default: ptr.To(RegistrySecret),
		Description: "Secret of type kubernetes.io/dockerconfigjson with the OCI registry's credentials, mounted as $DOCKER_CONFIG/config.json (optional: without it, anonymous)"}
	notifySecret = Param{Name: "notify-secret", Flag: "notify-url", Env: "GANTRY_NOTIFY_URL", SecretKey: "url", Default: ptr.To("gantry-notify"),
		Description: "Secret whose key url holds the approval webhook URL (optional: without it the request is only logged)"}
)

// Tasks are every per-binary template, in file order, with descriptions and
// defaults read from the binaries' CLI definitions. A parameter naming a flag
// its binary does not define panics: the generator and its tests stop there.
func Tasks() []Task {
	ts, err := resolve(rawTasks())
	if err != nil {
		panic(err)
	}
	return ts
}

func rawTasks() []Task {
	return []Task{
		{Binary: "train-launcher", Template: "train", Description: "Run one training Job to completion (re-attaching after restarts) and verify its model.",
			Params: []Param{runName, req("image"), req("dataset-uri"), req("output-uri"),
				{Name: "hyperparameters", Flag: "hyperparameter", Default: ptr.To(""), Env: "GANTRY_HYPERPARAMETER"},
				set("cpu", "1"), set("memory", "2Gi"), def("timeout"), def("unschedulable-timeout"), def("env-from-secret"), set("scoped-credentials", "true"), def("sts-endpoint"), def("sts-role-arn"),
				set("service-account", rbac.TrainingAccount), s3Endpoint, runsSecret},
			Fixed: []string{"--delete-on-cancel"}, Results: []string{"job-name", "model-uri", "metrics", "duration-seconds"}, Retry: true, Semaphore: "train"},
		{Binary: "train-launcher", Template: "trigger", Subcommand: []string{"trigger"}, Description: "Start one pipeline run per pushed training-image digest (from a notification, or --catch-up).",
			Params:  []Param{def("digests"), def("catch-up"), req("repository"), def("catch-up-repository"), def("template"), def("parameter"), registrySecret},
			Results: []string{"submitted", "existing", "adopted"}, Retry: true},
		{Binary: "model-publisher", Template: "publish", Subcommand: []string{"publish"}, Description: "Publish trainer output as an immutable model version.",
			Params:  []Param{runName, req("source-uri"), req("registry-uri"), def("model-name"), def("training-image-digest"), def("oci-ref"), def("oci-format"), registrySecret, s3Endpoint, s3Secret},
			Results: []string{"model-version", "model-uri", "model-digest", "oci-digest"}, Globals: []string{"model-version", "oci-digest"}, Retry: true, Signs: attest.Training},
		{Binary: "model-publisher", Template: "deploy", Subcommand: []string{"deploy"}, Description: "Serve a published version in an environment and wait for the rollout.",
			Params: []Param{runName, req("environment"), req("model-uri"), req("model-digest"), req("registry-uri"), def("model-name"),
				req("server-image"), def("replicas"), def("rollout-timeout"), set("server-s3-secret", ReadSecret), set("service-account", rbac.ModelServerAccount),
				def("expect-live-digest"), s3Endpoint, s3Secret},
			Results: []string{"endpoint", "previous-model-uri", "model-uri", "production-endpoint"}, Retry: true},
		{Binary: "model-publisher", Template: "rollback", Subcommand: []string{"rollback"}, Description: "Return an environment to its previous model.",
			Params: []Param{runName, req("environment"), req("registry-uri"), def("model-name"), req("server-image"), def("replicas"), def("rollout-timeout"),
				set("server-s3-secret", ReadSecret), set("service-account", rbac.ModelServerAccount), def("undo-run"), s3Endpoint, s3Secret},
			Results: []string{"endpoint", "previous-model-uri", "model-uri", "outcome"}, Retry: true},
		{Binary: "model-publisher", Template: "record", Subcommand: []string{"record"}, Description: "Record how a pipeline run ended next to the model's versions.",
			Params:  []Param{runName, req("status"), def("failures"), def("model-version"), req("registry-uri"), def("model-name"), def("oci-digest"), registrySecret, s3Endpoint, s3Secret},
			Results: []string{"record-uri"}, Retry: true},
		{Binary: "model-publisher", Template: "teardown", Subcommand: []string{"teardown"}, Description: "Delete an environment's Deployment and Service.",
			Params: []Param{runName, req("environment"), def("model-name")}, Retry: true},
		{Binary: "canary-evaluator", Template: "evaluate", Description: "Score a served model on real predictions against the gates.",
			Params: []Param{req("endpoint"), def("baseline-endpoint"), set("baseline-optional", "true"), def("model-name"), def("model-digest"), def("protocol"), req("dataset-uri"),
				def("limit"), def("min-accuracy"), def("stage-min-accuracy"), def("max-p99-ms"), def("max-error-rate"), def("max-accuracy-drop"), def("retry-budget"), def("report-uri"), def("stage"), def("fail-on-reject"),
				def("registry-uri"), def("model-version"), def("oci-digest"), s3Endpoint, runsSecret},
			Signs: attest.Evaluation,
			Fixed: []string{"--report-dir=" + ReportsDir}, Reports: []string{"report.html", "report.json"},
			Results: []string{"verdict", "accuracy", "baseline-accuracy", "baseline-digest", "p99-ms", "reason", "report-uri"}, Retry: true, Semaphore: "evaluate",
			Gauges: []Gauge{
				{Name: "gantry_canary_accuracy", Help: "Accuracy of the evaluated model, by stage (canary, smoke)", Labels: []Label{{Key: "model", Param: "model-name"}, {Key: "stage", Param: "stage"}}, Result: "accuracy"},
				{Name: "gantry_canary_p99_ms", Help: "p99 request latency in ms of the evaluated model, by stage (canary, smoke)", Labels: []Label{{Key: "model", Param: "model-name"}, {Key: "stage", Param: "stage"}}, Result: "p99-ms"},
			}},
		{Binary: "approver", Template: "request", Subcommand: []string{"request"}, Description: "Notify people that a candidate waits for approval.",
			Params: []Param{runName, notifySecret, set("model-name", "fashion-mnist"), req("model-version"), req("model-uri"), req("accuracy"),
				def("baseline-accuracy"), req("p99-ms"), def("report-uri")},
			Results: []string{"message", "notified", "candidate"}, Retry: true},
		{Binary: "approver", Template: "verify", Subcommand: []string{"verify"}, Description: "Read the approval decision; silence and unknown approvers are rejections.",
			Params: []Param{runName, req("timeout"), def("approvers"), def("audit-uri"), def("model-digest"), set("model-name", "fashion-mnist"), def("model-version"),
				def("accuracy"), def("baseline-accuracy"), def("fail-on-reject"), def("registry-uri"), def("oci-digest"), s3Endpoint, s3Secret},
			Signs:   attest.Approval,
			Results: []string{"decision", "approved-by", "reason", "waited-seconds"}, Retry: true,
			Gauges: []Gauge{{Name: "gantry_approval_wait_seconds", Help: "Seconds a candidate waited for a decision", Labels: []Label{{Key: "decision", Result: "decision"}}, Result: "waited-seconds"}}},
		// The approval wait of engines without a suspend step (Tekton): Argo suspends and runs verify.
		{Binary: "approver", Template: "wait", Subcommand: []string{"wait"},
			Description: "Block until an approver runs `approver approve|reject RUN --tekton`, or time out (rejected); write the audit record.",
			Params: []Param{req("run-name"), def("run-uid"), def("timeout"), def("approvers"), def("min-approvals"), def("forbid-self-approval"), def("audit-uri"), def("fail-on-reject"),
				set("model-name", "fashion-mnist"), def("model-version"), def("model-uri"), def("accuracy"), def("baseline-accuracy"), def("p99-ms"), def("report-uri"),
				def("model-digest"), def("registry-uri"), def("oci-digest"), s3Endpoint, s3Secret},
			Results: []string{"decision", "approved-by", "reason", "waited-seconds"}, Signs: attest.Approval},
		{Binary: "approver", Template: "conclude", Subcommand: []string{"conclude"}, Description: "Fail the run with the reason unless the decision is approved/pass.",
			Params: []Param{req("decision"), def("reason")}},
	}
}

// The cluster's semaphores for the CPU-heavy steps: one ConfigMap for the whole cluster (CPU is
// the cluster's), each key a number of slots. A step waits for a slot before its pod starts (the
// training: before its Job exists, so queueing is never "unschedulable"); a run waiting for its
// approval holds none.
const (
	SemaphoresConfigMap = "gantry-semaphores"
	SemaphoresNamespace = "gantry-system"
)

// DefaultSemaphores sizes the slots for the local 2-node, 2-core cluster: two trainings (one CPU
// each) and two evaluations at a time. Size them for a cluster by editing the ConfigMap: Argo
// reads the limit again when it changes.
var DefaultSemaphores = map[string]string{"train": "2", "evaluate": "2"}

// has says whether the task takes the parameter.
func (t Task) Has(name string) bool {
	return slices.ContainsFunc(t.Params, func(p Param) bool { return p.Name == name })
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

// Gauge is a metric an engine exports from a succeeded step: its value is the result Result,
// its labels the step's parameters or results.
type Gauge struct {
	Name, Help, Result string
	Labels             []Label
}

// Label is a metric label whose value is the step's parameter Param or its result Result.
type Label struct{ Key, Param, Result string }

// Args are the binary's arguments after its subcommand: every flag parameter as
// --NAME=<ref(NAME)> (ref spells a task parameter in the engine's syntax), the fixed flags, and
// --results-dir=resultsDir when the task has results.
func (t Task) Args(ref func(param string) string, resultsDir string) []string {
	var args []string
	for _, pr := range t.Params {
		if pr.NotAFlag || pr.Env != "" {
			continue
		}
		args = append(args, "--"+pr.Name+"="+ref(pr.Name))
	}
	args = append(args, t.Fixed...)
	if t.Signs != "" {
		args = append(args, "--signing-key="+attest.SigningKeyFile)
	}
	if len(t.Results) > 0 {
		args = append(args, "--results-dir="+resultsDir)
	}
	return args
}

// CPU is the CPU the task's container requests: the steps wait on APIs and servers; the
// training Job and the model servers request their own.
func (t Task) CPU() string { return "50m" }

// Account is the ServiceAccount the task's step runs as, with exactly the verbs its code calls
// (internal/rbac).
func (t Task) Account() string { return rbac.AccountFor(t.Binary, t.Template).Name }

// Memory is the memory the task's container requests.
func (t Task) Memory() string {
	if t.Binary == "canary-evaluator" {
		return "256Mi"
	}
	return "64Mi"
}

// RegistrySecretParam is the name of the parameter whose docker-config Secret is mounted at
// DockerConfigDir.
const RegistrySecretParam = "registry-secret"

// Container is the task's container as every engine runs it — image, command, arguments after
// the subcommand, environment (Secrets by reference, never as arguments), requests, a read-only
// root with a writable /tmp, no privileges — and the volumes it mounts. ref spells a task
// parameter in the engine's syntax; resultsDir is where the engine collects results.
func (t Task) Container(ref func(param string) string, resultsDir string) (apiv1.Container, []apiv1.Volume) {
	c := apiv1.Container{
		Image: Image(t.Binary), Command: Command(t.Binary), Args: append(append([]string{}, t.Subcommand...), t.Args(ref, resultsDir)...),
		Env:          []apiv1.EnvVar{{Name: "GANTRY_LOG_FORMAT", Value: "json"}},
		VolumeMounts: []apiv1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
		SecurityContext: &apiv1.SecurityContext{RunAsNonRoot: ptr.To(true), ReadOnlyRootFilesystem: ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false), Capabilities: &apiv1.Capabilities{Drop: []apiv1.Capability{"ALL"}}},
		Resources: apiv1.ResourceRequirements{Requests: apiv1.ResourceList{apiv1.ResourceCPU: resource.MustParse(t.CPU()), apiv1.ResourceMemory: resource.MustParse(t.Memory())}},
	}
	for _, pr := range t.Params {
		switch {
		case pr.SecretKey != "":
			c.Env = append(c.Env, apiv1.EnvVar{Name: pr.Env, ValueFrom: &apiv1.EnvVarSource{SecretKeyRef: &apiv1.SecretKeySelector{
				LocalObjectReference: apiv1.LocalObjectReference{Name: ref(pr.Name)}, Key: pr.SecretKey, Optional: ptr.To(true)}}})
		case pr.Env != "":
			c.Env = append(c.Env, apiv1.EnvVar{Name: pr.Env, Value: ref(pr.Name)})
		}
		if pr.Name == S3SecretParam {
			for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
				c.Env = append(c.Env, apiv1.EnvVar{Name: k, ValueFrom: &apiv1.EnvVarSource{SecretKeyRef: &apiv1.SecretKeySelector{
					LocalObjectReference: apiv1.LocalObjectReference{Name: ref(S3SecretParam)}, Key: k}}})
			}
		}
	}
	volumes := []apiv1.Volume{{Name: "tmp", VolumeSource: apiv1.VolumeSource{EmptyDir: &apiv1.EmptyDirVolumeSource{}}}}
	if t.Has(RegistrySecretParam) {
		c.Env = append(c.Env, apiv1.EnvVar{Name: "DOCKER_CONFIG", Value: DockerConfigDir})
		c.VolumeMounts = append(c.VolumeMounts, apiv1.VolumeMount{Name: "registry-credentials", MountPath: DockerConfigDir, ReadOnly: true})
		volumes = append(volumes, apiv1.Volume{Name: "registry-credentials", VolumeSource: apiv1.VolumeSource{Secret: &apiv1.SecretVolumeSource{
			SecretName: ref(RegistrySecretParam), Optional: ptr.To(true),
			Items: []apiv1.KeyToPath{{Key: apiv1.DockerConfigJsonKey, Path: "config.json"}}}}})
	}
	if t.Signs != "" {
		c.VolumeMounts = append(c.VolumeMounts, apiv1.VolumeMount{Name: "signing-key", MountPath: attest.SigningKeyDir, ReadOnly: true})
		volumes = append(volumes, apiv1.Volume{Name: "signing-key", VolumeSource: apiv1.VolumeSource{Secret: &apiv1.SecretVolumeSource{
			SecretName: attest.SigningSecret(t.Signs), Optional: ptr.To(true),
			Items: []apiv1.KeyToPath{{Key: attest.SigningKeyName, Path: attest.SigningKeyName}}}}})
	}
	return c, volumes
}

// SigningAccounts are, per evidence role, the accounts of the steps that sign as it: the only
// pods its key's Secret may be mounted into.
func SigningAccounts() map[attest.Role][]string {
	out := map[attest.Role][]string{}
	for _, t := range Tasks() {
		if t.Signs != "" && !slices.Contains(out[t.Signs], t.Account()) {
			out[t.Signs] = append(out[t.Signs], t.Account())
		}
	}
	return out
}
