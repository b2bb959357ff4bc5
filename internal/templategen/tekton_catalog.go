package templategen

import (
	"fmt"
	"strings"

	"github.com/gantry-ml/gantry/internal/rbac"
)

// TektonMinVersion is the oldest Tekton Pipelines the catalog tasks need.
const TektonMinVersion = "0.50.0"

type obj = map[string]any

func tektonTaskName(t Task) string {
	if t.Binary == "canary-evaluator" || t.Binary == "train-launcher" {
		return t.Binary
	}
	return t.Binary + "-" + t.Template
}

// TektonTasks are catalog-style Tasks for the same images: params with
// descriptions, results via --results-dir=/tekton/results, no scripts.
func TektonTasks() []obj {
	var out []obj
	for _, t := range Tasks() {
		if t.Binary == "train-launcher" && t.Template == "trigger" {
			continue // it submits Argo Workflows: the push trigger is Argo's (events API, CronWorkflow)
		}
		if t.Binary == "approver" && t.Template == "verify" {
			continue // it reads an Argo approval node: on Tekton, approver wait decides and audits
		}
		out = append(out, tektonTask(t))
	}
	for _, t := range TektonOnlyTasks() {
		out = append(out, tektonTask(t))
	}
	return out
}

// TektonOnlyTasks exist only in the Tekton catalog (Argo suspends instead).
func TektonOnlyTasks() []Task {
	ts, err := resolve([]Task{{Binary: "approver", Template: "wait", Subcommand: []string{"wait"},
		Description: "Block until an approver runs `approver approve|reject RUN --tekton`, or time out (rejected); write the audit record.",
		Params: []Param{req("run-name"), def("run-uid"), def("timeout"), def("approvers"), def("min-approvals"), def("forbid-self-approval"), def("audit-uri"), def("fail-on-reject"),
			set("model-name", "fashion-mnist"), def("model-version"), def("model-uri"), def("accuracy"), def("baseline-accuracy"), def("p99-ms"), def("report-uri"),
			s3Endpoint, s3Secret},
		Results: []string{"decision", "approved-by", "reason", "waited-seconds"}}})
	if err != nil {
		panic(err)
	}
	return ts
}

func tektonTask(t Task) obj {
	var params []obj
	for _, pr := range t.Params {
		po := obj{"name": pr.Name, "type": "string", "description": pr.Description}
		if pr.Default != nil {
			def := *pr.Default
			if def == "{{workflow.name}}" {
				def = ""
			}
			po["default"] = def
		}
		params = append(params, po)
	}
	var results []obj
	for _, r := range t.Results {
		results = append(results, obj{"name": r, "description": "gantry result " + r + " (≤ 1 KB)"})
	}
	args := append([]string{}, t.Subcommand...)
	for _, a := range t.args() {
		a = strings.ReplaceAll(a, "{{inputs.parameters.", "$(params.")
		a = strings.ReplaceAll(a, "}}", ")")
		a = strings.Replace(a, "--results-dir="+ResultsDir, "--results-dir=/tekton/results", 1)
		args = append(args, a)
	}
	env := []obj{{"name": "GANTRY_LOG_FORMAT", "value": "json"}}
	for _, pr := range t.Params {
		switch {
		case pr.SecretKey != "":
			env = append(env, obj{"name": pr.Env, "valueFrom": obj{"secretKeyRef": obj{"name": "$(params." + pr.Name + ")", "key": pr.SecretKey, "optional": true}}})
		case pr.Env != "":
			env = append(env, obj{"name": pr.Env, "value": "$(params." + pr.Name + ")"})
		}
		if pr.Name == "s3-secret" {
			for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
				env = append(env, obj{"name": k, "valueFrom": obj{"secretKeyRef": obj{"name": "$(params.s3-secret)", "key": k}}})
			}
		}
	}
	memory := "64Mi"
	if t.Binary == "canary-evaluator" {
		memory = "256Mi"
	}
	// As the Argo templates: a read-only root with a writable /tmp, no privileges.
	step := obj{"name": t.Template, "image": Image(t.Binary), "command": Command(t.Binary), "args": args, "env": env,
		"computeResources": obj{"requests": obj{"cpu": "50m", "memory": memory}},
		"securityContext": obj{"runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
			"capabilities": obj{"drop": []string{"ALL"}}}}
	mounts := []obj{{"name": "tmp", "mountPath": "/tmp"}}
	volumes := []obj{{"name": "tmp", "emptyDir": obj{}}}
	if t.has(registrySecret.Name) {
		step["env"] = append(env, obj{"name": "DOCKER_CONFIG", "value": DockerConfigDir})
		mounts = append(mounts, obj{"name": "registry-credentials", "mountPath": DockerConfigDir, "readOnly": true})
		volumes = append(volumes, obj{"name": "registry-credentials", "secret": obj{"secretName": "$(params." + registrySecret.Name + ")", "optional": true,
			"items": []obj{{"key": ".dockerconfigjson", "path": "config.json"}}}})
	}
	step["volumeMounts"] = mounts
	spec := obj{"description": t.Description, "params": params, "results": results, "steps": []obj{step}, "volumes": volumes}
	return obj{
		"apiVersion": "tekton.dev/v1", "kind": "Task",
		"metadata": obj{"name": tektonTaskName(t), "labels": obj{"app.kubernetes.io/version": "0.1", "app.kubernetes.io/part-of": "gantry"},
			"annotations": obj{"tekton.dev/pipelines.minVersion": TektonMinVersion, "tekton.dev/categories": "MLOps", "tekton.dev/tags": "ml, gantry",
				"tekton.dev/displayName": "gantry " + t.Binary + " " + t.Template}},
		"spec": spec,
	}
}

// Tekton pipeline tasks' timeouts. "0s" is none: the training Job's own deadline and the
// approval wait's own timeout bound those two (a TaskRun without one gets Tekton's default, 60
// min, which would cut a 24 h approval wait short).
var tektonTimeouts = map[string]string{
	"train": "0s", "publish": "30m", "deploy-staging": "15m", "canary": "30m", "request-approval": "10m", "approval": "0s",
	"promote": "15m", "smoke": "15m", "rollback": "15m", "teardown-staging": "10m", "record-outcome": "10m", "record-unpublished": "10m",
}

// tektonPipelineTasks names each pipeline task's gantry Task (binary/template): the PipelineRun
// runs each as that template's ServiceAccount (taskRunSpecs).
var tektonPipelineTasks = []struct{ Name, Binary, Template string }{
	{"train", "train-launcher", "train"}, {"publish", "model-publisher", "publish"}, {"deploy-staging", "model-publisher", "deploy"},
	{"canary", "canary-evaluator", "evaluate"}, {"request-approval", "approver", "request"}, {"approval", "approver", "wait"},
	{"promote", "model-publisher", "deploy"}, {"smoke", "canary-evaluator", "evaluate"},
	{"rollback", "model-publisher", "rollback"}, {"teardown-staging", "model-publisher", "teardown"}, {"record-outcome", "model-publisher", "record"},
	{"record-unpublished", "model-publisher", "record"},
}

// TektonPipelineParams are ml-pipeline's parameters on Tekton: Argo's (four-eyes included: one
// decision ConfigMap per run and person).
func TektonPipelineParams() []PipelineParam {
	var out []PipelineParam
	for _, p := range PipelineParams() {
		switch p.Name {
		case "forbid-self-approval":
			p.Description = "true: whoever submitted the run cannot approve it (kubectl create the PipelineRun with label gantry.dev/submitted-by=<you>)"
		case "smoke-min-accuracy":
			// Tekton has no expressions to fall back to min-accuracy when it is empty.
			p.Default, p.Description = "0.85", "minimum accuracy of the smoke test in production; below it the release is rolled back"
		}
		out = append(out, p)
	}
	return out
}

// TektonPipeline is the same loop as the Argo ml-pipeline: train → publish → staging → canary →
// approval (approver wait; the request goes out alongside) → promote → smoke, and in finally:
// rollback when promote or smoke failed, staging teardown and the run record.
func TektonPipeline() obj {
	pp := func(name string) string { return "$(params." + name + ")" }
	res := func(task, r string) string { return fmt.Sprintf("$(tasks.%s.results.%s)", task, r) }
	kv := func(pairs ...string) []obj {
		var out []obj
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, obj{"name": pairs[i], "value": pairs[i+1]})
		}
		return out
	}
	task := func(name, ref string, after []string, params []obj) obj {
		o := obj{"name": name, "taskRef": obj{"name": ref}, "params": params, "timeout": tektonTimeouts[name]}
		if len(after) > 0 {
			o["runAfter"] = after
		}
		return o
	}
	run := "$(context.pipelineRun.name)"
	registry := "s3://" + pp("bucket") + "/registry"
	runDir := "s3://" + pp("bucket") + "/runs/" + run
	s3 := []string{"s3-endpoint", pp("s3-endpoint"), "s3-secret", pp("s3-secret")}
	runsS3 := []string{"s3-endpoint", pp("s3-endpoint"), "s3-secret", pp("runs-s3-secret")}
	with := func(base []string, extra ...string) []obj {
		return kv(append(append([]string{}, extra...), base...)...)
	}
	var params []obj
	for _, p := range TektonPipelineParams() {
		params = append(params, obj{"name": p.Name, "type": "string", "description": p.Description, "default": p.Default})
	}
	deploy := func(name, env string, after []string, extra ...string) obj {
		return task(name, "model-publisher-deploy", after, kv(append([]string{"run-name", run, "environment", env, "model-uri", res("publish", "model-uri"),
			"model-digest", res("publish", "model-digest"), "registry-uri", registry, "model-name", pp("model-name"), "server-image", pp("server-image"),
			"s3-secret", pp("s3-secret"), "server-s3-secret", pp("server-s3-secret"), "s3-endpoint", pp("s3-endpoint")}, extra...)...))
	}
	train := task("train", "train-launcher", nil, with(runsS3, "run-name", run, "image", pp("train-image"), "dataset-uri", pp("dataset-uri"),
		"output-uri", runDir+"/model/", "hyperparameters", pp("hyperparameters"), "unschedulable-timeout", pp("unschedulable-timeout")))
	// A killed or evicted launcher pod fails its TaskRun; the retry re-attaches to the same Job
	// (named after the run). Tekton retries whatever the exit code: bad input (exit 2) is tried
	// again too, and fails again at once.
	train["retries"] = 2
	tasks := []obj{
		train,
		task("publish", "model-publisher-publish", []string{"train"}, with(s3, "run-name", run, "source-uri", res("train", "model-uri"),
			"registry-uri", registry, "model-name", pp("model-name"), "training-image-digest", pp("train-image"), "oci-ref", pp("oci-ref"),
			"registry-secret", pp("registry-secret"))),
		deploy("deploy-staging", "staging", []string{"publish"}),
		// A failed canary fails this task with its reason: nothing after it runs.
		task("canary", "canary-evaluator", []string{"deploy-staging"}, with(runsS3, "endpoint", res("deploy-staging", "endpoint"),
			"baseline-endpoint", res("deploy-staging", "production-endpoint"), "baseline-optional", "false", "model-name", pp("model-name"),
			"model-digest", res("publish", "model-digest"), "dataset-uri", pp("dataset-uri"), "min-accuracy", pp("min-accuracy"), "max-p99-ms", pp("max-p99-ms"),
			"max-accuracy-drop", pp("max-accuracy-drop"), "max-error-rate", pp("max-error-rate"), "retry-budget", pp("retry-budget"),
			"report-uri", runDir+"/canary/", "fail-on-reject", "true")),
		task("request-approval", "approver-request", []string{"canary"}, kv("run-name", run, "notify-secret", pp("notify-secret"), "model-name", pp("model-name"),
			"model-version", res("publish", "model-version"), "model-uri", res("publish", "model-uri"), "accuracy", res("canary", "accuracy"),
			"baseline-accuracy", res("canary", "baseline-accuracy"), "p99-ms", res("canary", "p99-ms"), "report-uri", res("canary", "report-uri"))),
		// The wait starts with the request (decisions bind to this PipelineRun's UID, made after
		// the wait began); a rejection or the timeout fails it with "not promoted: <reason>".
		task("approval", "approver-wait", []string{"canary"}, with(s3, "run-name", run, "run-uid", "$(context.pipelineRun.uid)",
			"timeout", pp("approval-timeout"), "approvers", pp("approvers"), "min-approvals", pp("min-approvals"),
			"forbid-self-approval", pp("forbid-self-approval"), "fail-on-reject", "true",
			"audit-uri", registry+"/"+pp("model-name")+"/approvals/"+res("publish", "model-version")+"/",
			"model-name", pp("model-name"), "model-version", res("publish", "model-version"), "model-uri", res("publish", "model-uri"),
			"accuracy", res("canary", "accuracy"), "baseline-accuracy", res("canary", "baseline-accuracy"), "p99-ms", res("canary", "p99-ms"),
			"report-uri", res("canary", "report-uri"))),
		// Compare-and-swap: promote replaces only the production model the canary compared against.
		deploy("promote", "production", []string{"approval", "request-approval"}, "expect-live-digest", res("canary", "baseline-digest")),
		task("smoke", "canary-evaluator", []string{"promote"}, with(runsS3, "endpoint", res("promote", "endpoint"), "model-name", pp("model-name"),
			"model-digest", res("publish", "model-digest"), "dataset-uri", pp("dataset-uri"), "limit", "500", "stage", "smoke", "fail-on-reject", "true",
			"min-accuracy", pp("smoke-min-accuracy"), "max-p99-ms", pp("max-p99-ms"), "max-error-rate", pp("max-error-rate"),
			"retry-budget", pp("retry-budget"), "report-uri", runDir+"/smoke/")),
	}
	teardown := task("teardown-staging", "model-publisher-teardown", nil, kv("run-name", run, "environment", "staging", "model-name", pp("model-name")))
	teardown["when"] = []obj{{"input": pp("keep-staging"), "operator": "notin", "values": []string{"true"}}}
	teardown["retries"] = 2
	// Every way the release can go wrong after promote rolls back: promote ran (it is not None)
	// and the tasks failed. Promote runs only after everything before it succeeded, so the
	// failure is promote's or smoke's. undo-run: only this run's deploy is undone, never a model
	// another run put there.
	rollback := task("rollback", "model-publisher-rollback", nil, kv("run-name", run, "environment", "production", "registry-uri", registry,
		"model-name", pp("model-name"), "server-image", pp("server-image"), "undo-run", run,
		"s3-secret", pp("s3-secret"), "server-s3-secret", pp("server-s3-secret"), "s3-endpoint", pp("s3-endpoint")))
	rollback["when"] = []obj{{"input": "$(tasks.promote.status)", "operator": "notin", "values": []string{"None"}},
		{"input": "$(tasks.status)", "operator": "in", "values": []string{"Failed"}}}
	// One transient error must not leave a failed model serving: the rollback is idempotent at
	// every crash point (its history entry is written first), so it is retried like train; so are
	// the other finally tasks, which are idempotent too.
	rollback["retries"] = 2
	// The run record names the version when publish got that far. A finally task that reads a
	// result which was never written is skipped, so a run that ended before publish records
	// through a second task, without the version: exactly one of the two runs.
	recordArgs := func(extra ...string) []obj {
		return kv(append([]string{"run-name", run, "status", "$(tasks.status)", "registry-uri", registry, "model-name", pp("model-name"),
			"s3-endpoint", pp("s3-endpoint"), "s3-secret", pp("s3-secret")}, extra...)...)
	}
	record := task("record-outcome", "model-publisher-record", nil, recordArgs("model-version", res("publish", "model-version")))
	record["when"] = []obj{{"input": "$(tasks.publish.status)", "operator": "in", "values": []string{"Succeeded"}}}
	recordEarly := task("record-unpublished", "model-publisher-record", nil, recordArgs())
	recordEarly["when"] = []obj{{"input": "$(tasks.publish.status)", "operator": "notin", "values": []string{"Succeeded"}}}
	record["retries"], recordEarly["retries"] = 2, 2
	return obj{
		"apiVersion": "tekton.dev/v1", "kind": "Pipeline",
		"metadata": obj{"name": "ml-pipeline", "labels": obj{"app.kubernetes.io/part-of": "gantry"},
			"annotations": obj{"tekton.dev/pipelines.minVersion": TektonMinVersion}},
		"spec": obj{"description": "gantry's train → publish → staging → canary → approval → production → smoke loop on Tekton, with rollback, " +
			"staging teardown and the run record in finally; approve with `approver approve RUN --tekton`.",
			"params": params, "tasks": tasks, "finally": []obj{rollback, teardown, record, recordEarly}},
	}
}

// TektonPipelineRun is the example run of ml-pipeline: each task as its template's
// ServiceAccount, timeouts that outlast the approval wait.
func TektonPipelineRun() obj {
	var specs []obj
	for _, t := range tektonPipelineTasks {
		specs = append(specs, obj{"pipelineTaskName": t.Name, "serviceAccountName": rbac.AccountFor(t.Binary, t.Template).Name})
	}
	return obj{
		"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
		"metadata": obj{"generateName": "ml-pipeline-", "labels": obj{"app.kubernetes.io/part-of": "gantry"}},
		"spec": obj{
			"pipelineRef": obj{"name": "ml-pipeline"},
			"params":      []obj{{"name": "hyperparameters", "value": "epochs=2,learning-rate=0.001,batch-size=128"}},
			// Argo's ml-pipeline has a 7-day deadline; the approval waits up to approval-timeout.
			"timeouts":     obj{"pipeline": "168h", "tasks": "167h", "finally": "1h"},
			"taskRunSpecs": specs,
		},
	}
}
