// Package command is the canary-evaluator CLI: its flags bind straight into
// canary.Options, and the generated templates and tasks/canary/README.md read
// their descriptions and defaults from here.
package command

import (
	"errors"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/canary"
)

// ociDigestFlag is --oci-digest: the evaluated version's OCI artifact, a subject of its attestation.
func ociDigestFlag(p *string) cli.Flag {
	return &cli.StringFlag{Name: "oci-digest", Destination: p,
		Usage: "with --signing-key: the version's OCI artifact, REPO@sha256:… (publish's oci-digest; empty: none) — also a subject of the attestation, the one cosign verify-attestation matches"}
}

// Name is the binary's name (and image and template name).
const Name = "canary-evaluator"

// New returns the canary-evaluator app.
func New() *cli.App {
	var (
		o            canary.Options
		failOnReject bool
		common       taskcli.Common
		store        taskcli.Store
		signing      taskcli.Signing
		// where the evaluation attestation goes (with --signing-key)
		registry, version, artifact string
	)
	flags := []cli.Flag{
		&cli.StringFlag{Name: "endpoint", Destination: &o.Endpoint, Usage: "candidate model server base URL, e.g. http://fashion-mnist-staging:8501"},
		&cli.StringFlag{Name: "baseline-endpoint", Destination: &o.BaselineEndpoint, Usage: "production model server base URL; scored on the same samples for --max-accuracy-drop"},
		&cli.BoolFlag{Name: "baseline-optional", Destination: &o.BaselineOptional, Usage: "skip the baseline gate when the baseline answers no request (first deployment)"},
		&cli.StringFlag{Name: "model-name", Value: "fashion-mnist", Destination: &o.ModelName, Usage: "served model name"},
		&cli.StringFlag{Name: "model-digest", Destination: &o.ModelDigest,
			Usage: "the candidate's digest: the endpoint must say it serves it (v2 model metadata), else the canary fails without scoring (empty: not checked)"},
		&cli.StringFlag{Name: "baseline-model-name", Destination: &o.BaselineModel, Usage: "baseline's served model name (default: --model-name)"},
		&cli.StringFlag{Name: "protocol", Value: "v2", Destination: &o.Protocol, Usage: "v2 (Open Inference Protocol /infer: binary tensors when the server lists binary_tensor_data in GET /v2, JSON otherwise; the report says which), v2-json, or v1 (TF Serving REST :predict, row format)"},
		&cli.StringFlag{Name: "dataset-uri", Destination: &o.DatasetURI, Usage: "prefix holding the labelled IDX .gz files (file:// or s3://)"},
		&cli.StringFlag{Name: "split", Value: "t10k", Destination: &o.Split, Usage: "t10k or train"},
		&cli.GenericFlag{Name: "class-names", Value: taskcli.List(&o.ClassNames), Usage: "the dataset's label names in label order, comma-separated (default: Fashion-MNIST's ten)"},
		&cli.IntFlag{Name: "limit", Destination: &o.Limit, Usage: "score a reproducible sample of N images (0: all)"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Destination: &o.Seed, Usage: "sample seed"},
		&cli.IntFlag{Name: "batch-size", Value: 64, Destination: &o.BatchSize, Usage: "instances per request"},
		&cli.IntFlag{Name: "concurrency", Value: 4, Destination: &o.Concurrency, Usage: "requests in flight"},
		&cli.DurationFlag{Name: "request-timeout", Value: 30 * time.Second, Destination: &o.RequestTimeout, Usage: "timeout of one request"},
		&cli.IntFlag{Name: "retries", Value: 3, Destination: &o.Retries, Usage: "retries of a request that failed transiently (connection errors, 5xx, 429)"},
		&cli.IntFlag{Name: "batch-retries", Value: 3, Destination: &o.BatchRetries, Usage: "after the first pass, send a batch that got no answer (timeout, reset, 408/429/502/503/504) again up to this many times, with backoff"},
		&cli.DurationFlag{Name: "retry-budget", Value: 5 * time.Minute, Destination: &o.RetryBudget, Usage: "how long the batch retries may take in all; what is still unanswered then counts in the error rate"},
		&cli.Float64Flag{Name: "min-accuracy", Destination: &o.MinAccuracy, Usage: "gate: fail below this accuracy (0: off)"},
		&cli.StringFlag{Name: "stage-min-accuracy", Destination: &o.StageMinAccuracy,
			Usage: "this stage's accuracy gate instead of --min-accuracy, when not empty (a pipeline passes its canary floor as --min-accuracy and an optional smoke floor here)"},
		&cli.Float64Flag{Name: "max-p99-ms", Destination: &o.MaxP99Ms, Usage: "gate: fail when request p99 latency exceeds this (0: off)"},
		&cli.Float64Flag{Name: "max-error-rate", Value: 0.01, Destination: &o.MaxErrorRate, Usage: "gate: fail when more than this share of samples got an error answer or, after the retries, no answer"},
		&cli.Float64Flag{Name: "max-accuracy-drop", Value: 0.02, Destination: &o.MaxAccuracyDrop, Usage: "gate (with a baseline): fail when accuracy is this much below the baseline's"},
		&cli.StringFlag{Name: "report-uri", Destination: &o.ReportURI, Usage: "prefix for report.json and report.html (file:// or s3://)"},
		&cli.StringFlag{Name: "report-dir", Destination: &o.ReportDir, Usage: "local directory that also receives report.json and report.html (the Argo template's output artifacts)"},
		&cli.BoolFlag{Name: "fail-on-reject", Destination: &failOnReject, Usage: "exit 1 with the reason (the step's message) when the verdict is fail, after writing the results; never retried (default: exit 0 with verdict=fail)"},
		&cli.StringFlag{Name: "stage", Value: "canary", Destination: &o.Stage, Usage: "what this evaluation is (canary, smoke, …): it names the verdict's reason and labels the template's metrics"},
		&cli.StringFlag{Name: "registry-uri", Destination: &registry, Usage: "with --signing-key: the model registry prefix the evaluated version lives in (its attestation is kept beside it)"},
		&cli.StringFlag{Name: "model-version", Destination: &version, Usage: "with --signing-key: the evaluated version (its manifest and --model-digest name the attestation's subject)"},
		ociDigestFlag(&artifact),
	}
	return &cli.App{
		Name:      Name,
		Usage:     "score a served model on real predictions and decide pass or fail",
		UsageText: "canary-evaluator --endpoint URL --dataset-uri s3://datasets/fashion-mnist/ [--baseline-endpoint URL] [gates]",
		Description: "Sends batched, concurrent predict requests for a labelled dataset, computes accuracy, per-class\n" +
			"precision/recall, confusion matrix, latency p50/p90/p99, throughput and error rate, and applies the\n" +
			"gates. Results: verdict (pass|fail), accuracy, baseline-accuracy, p99-ms, reason, report-uri.\n" +
			"With --signing-key the verdict is signed as the model's evaluation attestation (pass or fail: promote counts only a pass).\n" +
			"A failed gate is a result (exit 0) unless --fail-on-reject. Exit 2: bad input; 3: transient error.",
		Flags: taskcli.Flags(flags, signing.Flags(attest.Evaluation), store.Flags(), common.Flags()),
		Action: func(c *cli.Context) error {
			log, err := common.Logger(c.App.ErrWriter)
			if err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			signer, err := signing.Signer()
			if err != nil {
				return err
			}
			if signer != nil && (registry == "" || version == "" || o.ModelDigest == "") {
				return exitcode.Invalidf("--signing-key needs --registry-uri, --model-version and --model-digest: the attestation is about that version")
			}
			s, err := store.Open()
			if err != nil {
				return err
			}
			rep, err := canary.NewEvaluator(s, canary.WithLogger(log)).Evaluate(c.Context, o)
			if err != nil {
				return err
			}
			if signer != nil {
				_, uri, err := signer.SignVersion(c.Context, s, attest.Version{Registry: registry, Model: o.ModelName, Version: version, Artifact: artifact},
					attest.Evaluation, rep.Evaluation(o))
				if err != nil {
					return err
				}
				log.Info("signed the evaluation", "attestation", uri, "keyid", signer.KeyID(), "verdict", rep.Verdict)
			}
			if err := common.WriteResults(c.App.Writer, rep.Values()); err != nil {
				return err
			}
			if rep.Verdict == canary.Fail && failOnReject {
				return exitcode.With(exitcode.Failed, errors.New(rep.Reason))
			}
			return nil
		},
	}
}
