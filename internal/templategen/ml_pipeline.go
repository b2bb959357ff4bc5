package templategen

import (
	"fmt"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// PipelineParam is a parameter of ml-pipeline with its default.
type PipelineParam struct{ Name, Default, Description string }

// PipelineParams run the Fashion-MNIST example out of the box (DESIGN §5). A parameter handed
// straight to one task's flag takes that flag's description; the others describe themselves.
func PipelineParams() []PipelineParam {
	flag := func(name, def, binary, template, flag string) PipelineParam {
		t, ok := FindTask(binary, template)
		if ok {
			for _, p := range t.Params {
				if p.Name == flag {
					return PipelineParam{name, def, p.Description}
				}
			}
		}
		panic(fmt.Sprintf("ml-pipeline parameter %s: %s/%s has no parameter %s", name, binary, template, flag))
	}
	return []PipelineParam{
		flag("model-name", "fashion-mnist", "model-publisher", "publish", "model-name"),
		{"train-image", Image("fashion-trainer"), "training image; the push trigger sets it to the pushed digest"},
		flag("hyperparameters", "epochs=10,learning-rate=0.001,batch-size=128", "train-launcher", "train", "hyperparameters"),
		flag("unschedulable-timeout", "10m", "train-launcher", "train", "unschedulable-timeout"),
		flag("dataset-uri", "s3://datasets/fashion-mnist/", "canary-evaluator", "evaluate", "dataset-uri"),
		{"bucket", "models", "bucket holding training outputs, the model registry and reports"},
		flag("s3-endpoint", "http://minio.gantry-system.svc:9000", "model-publisher", "publish", "s3-endpoint"),
		{"s3-secret", DefaultSecret, "Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the registry writers (publish, deploy's history, verify's audit, record)"},
		{"runs-s3-secret", RunsSecret, "Secret with S3 credentials that read the datasets and write runs/ only (training launcher, which narrows them further for the Job; canary and smoke)"},
		flag("server-image", Image("model-server"), "model-publisher", "deploy", "server-image"),
		flag("server-s3-secret", ReadSecret, "model-publisher", "deploy", "server-s3-secret"),
		flag("min-accuracy", "0.85", "canary-evaluator", "evaluate", "min-accuracy"),
		{"smoke-min-accuracy", "", "minimum accuracy of the smoke test in production (empty: min-accuracy); below it the release is rolled back"},
		flag("max-accuracy-drop", "0.02", "canary-evaluator", "evaluate", "max-accuracy-drop"),
		flag("max-p99-ms", "500", "canary-evaluator", "evaluate", "max-p99-ms"),
		flag("max-error-rate", "0.01", "canary-evaluator", "evaluate", "max-error-rate"),
		flag("retry-budget", "5m", "canary-evaluator", "evaluate", "retry-budget"),
		flag("approvers", "", "approver", "verify", "approvers"),
		{"approval-timeout", "24h", "how long to wait for a decision (seconds or a duration, as Argo's suspend takes it); silence rejects"},
		{"min-approvals", "1", "distinct approvers needed (approver approve RUN by each; a rejection by any one ends the wait)"},
		{"forbid-self-approval", "false", "true: whoever submitted the run cannot approve it (Argo Server creator label, or -l gantry.dev/submitted-by=<you> in kube mode)"},
		flag("notify-secret", "gantry-notify", "approver", "request", "notify-secret"),
		{"keep-staging", "false", "keep the staging server after the run"},
		flag("oci-ref", "", "model-publisher", "publish", "oci-ref"),
		flag("registry-secret", RegistrySecret, "model-publisher", "publish", "registry-secret"),
	}
}

// globalOutput is the workflow output name (exported by a task's Globals), or "" when no step
// has set it yet: a plain {{workflow.outputs.parameters.NAME}} would fail to resolve in the exit
// handler of a run that ended before that step.
func globalOutput(name string) string {
	return "{{=sprig.dig('outputs', 'parameters', '" + name + "', '', workflow)}}"
}

func wp(name string) string { return "{{workflow.parameters." + name + "}}" }
func tp(task, result string) string {
	return fmt.Sprintf("{{tasks.%s.outputs.parameters.%s}}", task, result)
}

func args(kv ...string) wfv1.Arguments {
	var a wfv1.Arguments
	for i := 0; i < len(kv); i += 2 {
		a.Parameters = append(a.Parameters, wfv1.Parameter{Name: kv[i], Value: wfv1.AnyStringPtr(kv[i+1])})
	}
	return a
}

// withArg adds one parameter to a.
func withArg(a wfv1.Arguments, name, value string) wfv1.Arguments {
	a.Parameters = append(a.Parameters, wfv1.Parameter{Name: name, Value: wfv1.AnyStringPtr(value)})
	return a
}

func ref(binary, template string) *wfv1.TemplateRef {
	return &wfv1.TemplateRef{Name: binary, Template: template}
}

// Pipeline is the ml-pipeline WorkflowTemplate (DESIGN §1).
func Pipeline() *wfv1.WorkflowTemplate {
	var params []wfv1.Parameter
	for _, pp := range PipelineParams() {
		params = append(params, wfv1.Parameter{Name: pp.Name, Value: wfv1.AnyStringPtr(pp.Default), Description: wfv1.AnyStringPtr(pp.Description)})
	}
	s3 := []string{"s3-endpoint", wp("s3-endpoint"), "s3-secret", wp("s3-secret")}
	runsS3 := []string{"s3-endpoint", wp("s3-endpoint"), "s3-secret", wp("runs-s3-secret")}
	with := func(base []string, extra ...string) wfv1.Arguments {
		return args(append(append([]string{}, extra...), base...)...)
	}
	registry := "s3://" + wp("bucket") + "/registry"
	runDir := "s3://" + wp("bucket") + "/runs/{{workflow.name}}"
	deployArgs := func(env string) wfv1.Arguments {
		return args("environment", env, "model-uri", tp("publish", "model-uri"), "model-digest", tp("publish", "model-digest"),
			"registry-uri", registry, "model-name", wp("model-name"), "server-image", wp("server-image"),
			"s3-secret", wp("s3-secret"), "server-s3-secret", wp("server-s3-secret"), "s3-endpoint", wp("s3-endpoint"))
	}
	tasks := []wfv1.DAGTask{
		{Name: "train", TemplateRef: ref("train-launcher", "train"), Arguments: with(runsS3,
			"image", wp("train-image"), "dataset-uri", wp("dataset-uri"), "output-uri", runDir+"/model/",
			"hyperparameters", wp("hyperparameters"), "unschedulable-timeout", wp("unschedulable-timeout"))},
		{Name: "publish", Depends: "train", TemplateRef: ref("model-publisher", "publish"), Arguments: with(s3,
			"source-uri", tp("train", "model-uri"), "registry-uri", registry, "model-name", wp("model-name"),
			"training-image-digest", wp("train-image"), "oci-ref", wp("oci-ref"), "registry-secret", wp("registry-secret"))},
		{Name: "deploy-staging", Depends: "publish", TemplateRef: ref("model-publisher", "deploy"), Arguments: deployArgs("staging")},
		{Name: "canary", Depends: "deploy-staging", TemplateRef: ref("canary-evaluator", "evaluate"), Arguments: with(runsS3,
			// The baseline is production when deploy-staging found one (empty: first deployment);
			// a production that exists but does not answer fails the canary.
			"endpoint", tp("deploy-staging", "endpoint"), "baseline-endpoint", tp("deploy-staging", "production-endpoint"), "baseline-optional", "false",
			"model-name", wp("model-name"), "model-digest", tp("publish", "model-digest"),
			"dataset-uri", wp("dataset-uri"), "min-accuracy", wp("min-accuracy"), "max-p99-ms", wp("max-p99-ms"),
			"max-accuracy-drop", wp("max-accuracy-drop"), "max-error-rate", wp("max-error-rate"), "retry-budget", wp("retry-budget"), "report-uri", runDir+"/canary/",
			// A failed canary fails this step with its reason as the message: no gate pod.
			"fail-on-reject", "true")},
		{Name: "request-approval", Depends: "canary", TemplateRef: ref("approver", "request"), Arguments: args(
			"notify-secret", wp("notify-secret"), "model-name", wp("model-name"), "model-version", tp("publish", "model-version"),
			"model-uri", tp("publish", "model-uri"), "accuracy", tp("canary", "accuracy"), "baseline-accuracy", tp("canary", "baseline-accuracy"),
			"p99-ms", tp("canary", "p99-ms"), "report-uri", tp("canary", "report-uri"))},
		// The run waits for approval as soon as the canary passed; the request (the notification)
		// goes out alongside, one pod start-up sooner than after it. Decisions bind to the
		// publish step's digest, not to the request; verify still needs both.
		{Name: "approval", Depends: "canary", Template: "approval",
			Arguments: args("timeout", wp("approval-timeout"), "min-approvals", wp("min-approvals"), "forbid-self-approval", wp("forbid-self-approval"), "approvers", wp("approvers"))},
		{Name: "verify-approval", Depends: "approval && request-approval", TemplateRef: ref("approver", "verify"), Arguments: with(s3,
			"timeout", wp("approval-timeout"), "approvers", wp("approvers"),
			"audit-uri", "s3://"+wp("bucket")+"/registry/"+wp("model-name")+"/approvals/"+tp("publish", "model-version")+"/",
			"model-name", wp("model-name"), "model-version", tp("publish", "model-version"), "model-digest", tp("publish", "model-digest"),
			"accuracy", tp("canary", "accuracy"), "baseline-accuracy", tp("canary", "baseline-accuracy"),
			// A rejection fails this step with "not promoted: <reason>": no gate pod.
			"fail-on-reject", "true")},
		// promote → smoke → rollback is one critical section per model (the release template's mutex).
		{Name: "release", Depends: "verify-approval", Template: "release", Arguments: args(
			"model-uri", tp("publish", "model-uri"), "model-digest", tp("publish", "model-digest"), "expect-live-digest", tp("canary", "baseline-digest"))},
	}
	approval := wfv1.Template{
		Name:    "approval",
		Suspend: &wfv1.SuspendTemplate{Duration: "{{inputs.parameters.timeout}}"},
		// The node's inputs are what `approver approve` and verify read the four-eyes rules from.
		// promote reads them from the node too: the controller writes them, and nobody else may.
		Inputs: wfv1.Inputs{Parameters: []wfv1.Parameter{{Name: "timeout"}, {Name: "min-approvals"}, {Name: "forbid-self-approval"}, {Name: "approvers"}}},
		Outputs: wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: "decision", Description: wfv1.AnyStringPtr("approved or rejected; plain `argo resume` approves"),
			ValueFrom: &wfv1.ValueFrom{Supplied: &wfv1.SuppliedValueFrom{}, Default: wfv1.AnyStringPtr("approved")}}}},
	}
	ip := func(name string) string { return "{{inputs.parameters." + name + "}}" }
	promoteArgs := deployArgs("production")
	for i, p := range promoteArgs.Parameters {
		switch p.Name {
		case "model-uri", "model-digest":
			promoteArgs.Parameters[i].Value = wfv1.AnyStringPtr(ip(p.Name))
		}
	}
	// Compare-and-swap: promote replaces only the production model the canary compared against.
	promoteArgs = withArg(promoteArgs, "expect-live-digest", ip("expect-live-digest"))
	failed := func(tasks ...string) string {
		var s string
		for _, t := range tasks {
			if s != "" {
				s += " || "
			}
			s += t + ".Failed || " + t + ".Errored"
		}
		return s
	}
	release := wfv1.Template{
		Name: "release",
		// One release per model at a time: a second run's promote waits here until the first
		// run's smoke test and any rollback are over. The compare-and-swap in promote then
		// refuses a candidate whose canary compared against a production that has changed.
		Synchronization: &wfv1.Synchronization{Mutexes: []*wfv1.Mutex{{Name: "gantry-release-" + wp("model-name")}}},
		Inputs:          wfv1.Inputs{Parameters: []wfv1.Parameter{{Name: "model-uri"}, {Name: "model-digest"}, {Name: "expect-live-digest"}}},
		DAG: &wfv1.DAGTemplate{Tasks: []wfv1.DAGTask{
			{Name: "promote", TemplateRef: ref("model-publisher", "deploy"), Arguments: promoteArgs},
			{Name: "smoke", Depends: "promote", TemplateRef: ref("canary-evaluator", "evaluate"), Arguments: with(runsS3,
				"endpoint", tp("promote", "endpoint"), "model-name", wp("model-name"), "model-digest", ip("model-digest"), "dataset-uri", wp("dataset-uri"), "limit", "500",
				"stage", "smoke", "fail-on-reject", "true", "min-accuracy", "{{=workflow.parameters['smoke-min-accuracy'] != '' ? workflow.parameters['smoke-min-accuracy'] : workflow.parameters['min-accuracy']}}", "max-p99-ms", wp("max-p99-ms"),
				"max-error-rate", wp("max-error-rate"), "retry-budget", wp("retry-budget"), "report-uri", runDir+"/smoke/")},
			// Every way the release can go wrong rolls back: promote failed (e.g. a server that
			// crashes), smoke errored, smoke failed (it fails its step with the reason). undo-run:
			// only this run's deploy is undone, never a model another run put there.
			{Name: "rollback", Depends: failed("promote", "smoke"), TemplateRef: ref("model-publisher", "rollback"),
				Arguments: args("environment", "production", "registry-uri", registry, "model-name", wp("model-name"), "server-image", wp("server-image"),
					"undo-run", "{{workflow.name}}",
					"s3-secret", wp("s3-secret"), "server-s3-secret", wp("server-s3-secret"), "s3-endpoint", wp("s3-endpoint"))},
			{Name: "rolled-back", Depends: "rollback", TemplateRef: ref("approver", "conclude"),
				Arguments: args("decision", "fail", "reason", "release failed; rollback: "+tp("rollback", "outcome"))},
		}},
	}
	exit := wfv1.Template{
		Name: "exit-handler",
		Steps: []wfv1.ParallelSteps{{Steps: []wfv1.WorkflowStep{
			// A run stopped in the middle of its release (`argo stop`: running steps are killed,
			// the release's own rollback never runs) is rolled back here: only this run's deploy,
			// idempotent, a no-op for a run that never changed production. A run terminated
			// (`argo terminate`: no exit handler) is settled by the model's next release step.
			{Name: "settle-release", TemplateRef: ref("model-publisher", "rollback"), When: "{{workflow.status}} != Succeeded",
				Arguments: args("environment", "production", "registry-uri", registry, "model-name", wp("model-name"), "server-image", wp("server-image"),
					"undo-run", "{{workflow.name}}",
					"s3-secret", wp("s3-secret"), "server-s3-secret", wp("server-s3-secret"), "s3-endpoint", wp("s3-endpoint"))},
			{Name: "teardown-staging", TemplateRef: ref("model-publisher", "teardown"), When: wp("keep-staging") + " != true",
				Arguments: args("environment", "staging", "model-name", wp("model-name"), "run-name", "{{workflow.name}}")},
			{Name: "record-outcome", TemplateRef: ref("model-publisher", "record"), Arguments: args(
				"status", "{{workflow.status}}", "failures", "{{workflow.failures}}", "model-version", globalOutput("model-version"),
				"registry-uri", registry, "model-name", wp("model-name"),
				"s3-endpoint", wp("s3-endpoint"), "s3-secret", wp("s3-secret"))},
		}}},
	}
	return &wfv1.WorkflowTemplate{
		TypeMeta: metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "WorkflowTemplate"},
		ObjectMeta: metav1.ObjectMeta{Name: "ml-pipeline", Labels: map[string]string{"app.kubernetes.io/part-of": "gantry"},
			Annotations: map[string]string{"workflows.argoproj.io/description": "train → publish → staging → canary → approval → production → smoke; approve with `argo resume RUN`"}},
		Spec: wfv1.WorkflowSpec{
			// No workflow-wide ServiceAccount: every step names its own (internal/rbac).
			Entrypoint: "pipeline", OnExit: "exit-handler",
			Arguments:             wfv1.Arguments{Parameters: params},
			PodGC:                 &wfv1.PodGC{Strategy: wfv1.PodGCOnWorkflowSuccess},
			ActiveDeadlineSeconds: ptr.To(int64(7 * 24 * 3600)),
			Templates: []wfv1.Template{
				{Name: "pipeline", DAG: &wfv1.DAGTemplate{Tasks: tasks}},
				approval, release, exit,
			},
		},
	}
}
