package pipeline

import "fmt"

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

// ML is ml-pipeline: train → publish → staging → canary → approval (the request goes out
// alongside) → the release (promote → smoke, rolled back when either fails), and finally: the
// release settled when the run stopped inside it, staging torn down, the run recorded.
func ML() Loop {
	run := RunName{}
	registry := Concat{Literal("s3://"), P("bucket"), Literal("/registry")}
	runDir := Concat{Literal("s3://"), P("bucket"), Literal("/runs/"), run}
	args := func(kv ...any) []Arg {
		var out []Arg
		for i := 0; i < len(kv); i += 2 {
			v := kv[i+1]
			if s, ok := v.(string); ok {
				v = Literal(s)
			}
			out = append(out, Arg{kv[i].(string), v.(Value)})
		}
		return out
	}
	s3 := args("s3-endpoint", P("s3-endpoint"), "s3-secret", P("s3-secret"))
	runsS3 := args("s3-endpoint", P("s3-endpoint"), "s3-secret", P("runs-s3-secret"))
	with := func(base []Arg, kv ...any) []Arg { return append(args(kv...), base...) }
	digest, uri, version := R("publish", "model-digest"), R("publish", "model-uri"), R("publish", "model-version")
	deploy := func(env string, kv ...any) []Arg {
		return with(args("registry-uri", registry, "model-name", P("model-name"), "server-image", P("server-image"),
			"s3-secret", P("s3-secret"), "server-s3-secret", P("server-s3-secret"), "s3-endpoint", P("s3-endpoint")),
			append([]any{"environment", env, "model-uri", uri, "model-digest", digest}, kv...)...)
	}
	rollback := with(args("s3-secret", P("s3-secret"), "server-s3-secret", P("server-s3-secret"), "s3-endpoint", P("s3-endpoint")),
		"environment", "production", "registry-uri", registry, "model-name", P("model-name"), "server-image", P("server-image"),
		"undo-run", run)
	evaluate := func(stage string, kv ...any) []Arg {
		return with(runsS3, append(kv, "model-name", P("model-name"), "model-digest", digest, "dataset-uri", P("dataset-uri"),
			"min-accuracy", P("min-accuracy"), "max-p99-ms", P("max-p99-ms"), "max-error-rate", P("max-error-rate"), "retry-budget", P("retry-budget"),
			"report-uri", Concat{runDir, Literal("/" + stage + "/")}, "registry-uri", registry, "model-version", version, "oci-digest", R("publish", "oci-digest"),
			// A failed gate fails the step with its reason as the message: no gate step.
			"fail-on-reject", "true")...)
	}
	return Loop{
		Name:        "ml-pipeline",
		Description: "train → publish → staging → canary → approval → production → smoke",
		Params:      PipelineParams(),
		Deadline:    "168h",
		Steps: []Step{
			{Name: "train", Binary: "train-launcher", Template: "train", Timeout: "0s",
				Comment: "a killed or evicted launcher re-attaches to the same Job (named after the run); the Job's own deadline bounds it",
				Args: with(runsS3, "image", P("train-image"), "dataset-uri", P("dataset-uri"), "output-uri", Concat{runDir, Literal("/model/")},
					"hyperparameters", P("hyperparameters"), "unschedulable-timeout", P("unschedulable-timeout"))},
			{Name: "publish", Binary: "model-publisher", Template: "publish", Timeout: "30m",
				Args: with(s3, "source-uri", R("train", "model-uri"), "registry-uri", registry, "model-name", P("model-name"),
					"training-image-digest", P("train-image"), "oci-ref", P("oci-ref"), "registry-secret", P("registry-secret"))},
			{Name: "deploy-staging", Binary: "model-publisher", Template: "deploy", Timeout: "15m", Args: deploy("staging")},
			{Name: "canary", Binary: "canary-evaluator", Template: "evaluate", Timeout: "30m",
				Comment: "the baseline is production when deploy-staging found one (empty: first deployment); a production that exists but does not answer fails the canary",
				Args: evaluate("canary", "endpoint", R("deploy-staging", "endpoint"), "baseline-endpoint", R("deploy-staging", "production-endpoint"),
					"baseline-optional", "false", "max-accuracy-drop", P("max-accuracy-drop"))},
			{Name: "request-approval", Binary: "approver", Template: "request", Timeout: "10m",
				Args: args("notify-secret", P("notify-secret"), "model-name", P("model-name"), "model-version", version, "model-uri", uri,
					"accuracy", R("canary", "accuracy"), "baseline-accuracy", R("canary", "baseline-accuracy"), "p99-ms", R("canary", "p99-ms"),
					"report-uri", R("canary", "report-uri"))},
			{Name: "approval", Kind: Approval, Binary: "approver", After: []string{"canary"}, Timeout: "0s",
				Comment: "the run waits for approval as soon as the canary passed; the request goes out alongside. Decisions bind to this run and the published digest; a rejection or the timeout fails the step with \"not promoted: <reason>\"",
				Args: with(s3, "run-uid", RunUID{}, "timeout", P("approval-timeout"), "approvers", P("approvers"), "min-approvals", P("min-approvals"),
					"forbid-self-approval", P("forbid-self-approval"), "fail-on-reject", "true",
					"audit-uri", Concat{registry, Literal("/"), P("model-name"), Literal("/approvals/"), version, Literal("/")},
					"model-name", P("model-name"), "model-version", version, "model-digest", digest, "model-uri", uri, "registry-uri", registry, "oci-digest", R("publish", "oci-digest"),
					"accuracy", R("canary", "accuracy"), "baseline-accuracy", R("canary", "baseline-accuracy"), "p99-ms", R("canary", "p99-ms"),
					"report-uri", R("canary", "report-uri"))},
		},
		Release: Section{
			Name:    "release",
			Mutex:   Concat{Literal("gantry-release-"), P("model-name")},
			After:   []string{"approval", "request-approval"},
			Comment: "one release per model at a time: a second run's promote waits until the first run's smoke test and any rollback are over; the compare-and-swap in promote then refuses a candidate whose canary compared against a production that has changed",
			Steps: []Step{
				{Name: "promote", Binary: "model-publisher", Template: "deploy", Timeout: "15m",
					Comment: "compare-and-swap: promote replaces only the production model the canary compared against",
					Args:    deploy("production", "expect-live-digest", R("canary", "baseline-digest"))},
				{Name: "smoke", Binary: "canary-evaluator", Template: "evaluate", Timeout: "15m",
					Args: evaluate("smoke", "endpoint", R("promote", "endpoint"), "limit", "500", "stage", "smoke", "stage-min-accuracy", P("smoke-min-accuracy"))},
			},
			OnFailure: []Step{
				{Name: "rollback", Binary: "model-publisher", Template: "rollback", When: AnyFailed{"promote", "smoke"}, Timeout: "15m",
					Comment: "every way the release can go wrong rolls back (promote failed, smoke failed or errored); undo-run: only this run's deploy is undone, never a model another run put there",
					Args:    rollback},
				{Name: "rolled-back", Binary: "approver", Template: "conclude", After: []string{"rollback"},
					Args: args("decision", "fail", "reason", Concat{Literal("release failed; rollback: "), R("rollback", "outcome")})},
			},
		},
		Finally: []Step{
			{Name: "settle-release", Binary: "model-publisher", Template: "rollback", When: RunNotSucceeded{}, Settles: "release", Timeout: "15m",
				Comment: "a run stopped inside its release (its own rollback never ran) is rolled back: only this run's deploy, idempotent, a no-op for a run that never changed production; a run ended without its finally steps is settled by the model's next release step",
				Args:    rollback},
			{Name: "teardown-staging", Binary: "model-publisher", Template: "teardown", When: ParamIsNot{"keep-staging", "true"}, Timeout: "10m",
				Args: args("environment", "staging", "model-name", P("model-name"))},
			{Name: "record-outcome", Binary: "model-publisher", Template: "record", Timeout: "10m",
				Comment: "the run record names the version when publish got that far; the version's attestations go to its OCI artifact (when pushed)",
				Args: with(s3, "status", RunStatus{}, "failures", RunFailures{}, "model-version", PublishedResult{"publish", "model-version"},
					"registry-uri", registry, "model-name", P("model-name"), "oci-digest", PublishedResult{"publish", "oci-digest"}, "registry-secret", P("registry-secret"))},
		},
	}
}
