package templategen

import (
	"fmt"
	"strings"
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
		Description: "Block until a person runs `approver approve|reject RUN --tekton`, or time out (rejected).",
		Params:      []Param{req("run-name"), def("timeout"), def("approvers")},
		Results:     []string{"decision", "approved-by", "reason", "waited-seconds"}}})
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
	step := obj{"name": t.Template, "image": Image(t.Binary), "command": Command(t.Binary), "args": args, "env": env,
		"securityContext": obj{"runAsNonRoot": true, "allowPrivilegeEscalation": false}}
	var volumes []obj
	if t.has(registrySecret.Name) {
		step["env"] = append(env, obj{"name": "DOCKER_CONFIG", "value": DockerConfigDir})
		step["volumeMounts"] = []obj{{"name": "registry-credentials", "mountPath": DockerConfigDir, "readOnly": true}}
		volumes = []obj{{"name": "registry-credentials", "secret": obj{"secretName": "$(params." + registrySecret.Name + ")", "optional": true,
			"items": []obj{{"key": ".dockerconfigjson", "path": "config.json"}}}}}
	}
	spec := obj{"description": t.Description, "params": params, "results": results, "steps": []obj{step}}
	if volumes != nil {
		spec["volumes"] = volumes
	}
	return obj{
		"apiVersion": "tekton.dev/v1", "kind": "Task",
		"metadata": obj{"name": tektonTaskName(t), "labels": obj{"app.kubernetes.io/version": "0.1", "app.kubernetes.io/part-of": "gantry"},
			"annotations": obj{"tekton.dev/pipelines.minVersion": TektonMinVersion, "tekton.dev/categories": "MLOps", "tekton.dev/tags": "ml, gantry",
				"tekton.dev/displayName": "gantry " + t.Binary + " " + t.Template}},
		"spec": spec,
	}
}

// TektonPipeline chains the Tasks; `approver wait` stands in for the approval suspend.
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
		o := obj{"name": name, "taskRef": obj{"name": ref}, "params": params}
		if len(after) > 0 {
			o["runAfter"] = after
		}
		return o
	}
	run := "$(context.pipelineRun.name)"
	registry := "s3://" + pp("bucket") + "/registry"
	s3 := []string{"s3-endpoint", pp("s3-endpoint"), "s3-secret", pp("s3-secret")}
	runsS3 := []string{"s3-endpoint", pp("s3-endpoint"), "s3-secret", pp("runs-s3-secret")}
	var params []obj
	for _, p := range PipelineParams() {
		if p.Name == "min-approvals" || p.Name == "forbid-self-approval" {
			continue // Argo's approval node only so far: approver wait records one decision
		}
		params = append(params, obj{"name": p.Name, "type": "string", "description": p.Description, "default": p.Default})
	}
	deploy := func(name, env string, after string) obj {
		return task(name, "model-publisher-deploy", []string{after}, kv("run-name", run, "environment", env, "model-uri", res("publish", "model-uri"),
			"model-digest", res("publish", "model-digest"), "registry-uri", registry, "model-name", pp("model-name"), "server-image", pp("server-image"),
			"s3-secret", pp("s3-secret"), "server-s3-secret", pp("server-s3-secret"), "s3-endpoint", pp("s3-endpoint")))
	}
	tasks := []obj{
		task("train", "train-launcher", nil, kv(append([]string{"run-name", run, "image", pp("train-image"), "dataset-uri", pp("dataset-uri"),
			"output-uri", "s3://" + pp("bucket") + "/runs/" + run + "/model/", "hyperparameters", pp("hyperparameters")}, runsS3...)...)),
		task("publish", "model-publisher-publish", []string{"train"}, kv(append([]string{"run-name", run, "source-uri", res("train", "model-uri"),
			"registry-uri", registry, "model-name", pp("model-name"), "training-image-digest", pp("train-image"), "oci-ref", pp("oci-ref")}, s3...)...)),
		deploy("deploy-staging", "staging", "publish"),
		task("canary", "canary-evaluator", []string{"deploy-staging"}, kv(append([]string{"endpoint", res("deploy-staging", "endpoint"),
			"baseline-endpoint", res("deploy-staging", "production-endpoint"), "baseline-optional", "false", "model-name", pp("model-name"),
			"dataset-uri", pp("dataset-uri"), "min-accuracy", pp("min-accuracy"), "max-p99-ms", pp("max-p99-ms"), "max-accuracy-drop", pp("max-accuracy-drop"),
			"report-uri", "s3://" + pp("bucket") + "/runs/" + run + "/canary/"}, runsS3...)...)),
		task("canary-verdict", "approver-conclude", []string{"canary"}, kv("decision", res("canary", "verdict"), "reason", res("canary", "reason"))),
		task("request-approval", "approver-request", []string{"canary-verdict"}, kv("run-name", run, "notify-secret", pp("notify-secret"), "model-name", pp("model-name"),
			"model-version", res("publish", "model-version"), "model-uri", res("publish", "model-uri"), "accuracy", res("canary", "accuracy"),
			"baseline-accuracy", res("canary", "baseline-accuracy"), "p99-ms", res("canary", "p99-ms"), "report-uri", res("canary", "report-uri"))),
		task("approval", "approver-wait", []string{"request-approval"}, kv("run-name", run, "timeout", pp("approval-timeout"), "approvers", pp("approvers"))),
		task("approval-verdict", "approver-conclude", []string{"approval"}, kv("decision", res("approval", "decision"), "reason", "not promoted: "+res("approval", "reason"))),
		deploy("promote", "production", "approval-verdict"),
	}
	teardown := task("teardown-staging", "model-publisher-teardown", nil, kv("environment", "staging", "model-name", pp("model-name")))
	teardown["when"] = []obj{{"input": pp("keep-staging"), "operator": "notin", "values": []string{"true"}}}
	return obj{
		"apiVersion": "tekton.dev/v1", "kind": "Pipeline",
		"metadata": obj{"name": "ml-pipeline", "annotations": obj{"tekton.dev/pipelines.minVersion": TektonMinVersion}},
		"spec": obj{"description": "gantry's train → publish → staging → canary → approval → production loop on Tekton; approve with `approver approve RUN --tekton`.",
			"params": params, "tasks": tasks,
			"finally": []obj{teardown}},
	}
}
