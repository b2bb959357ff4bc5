package main

import (
	"errors"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/canary"
)

func newApp() *cli.App {
	e := taskcli.Env
	flags := []cli.Flag{
		&cli.StringFlag{Name: "endpoint", EnvVars: e("endpoint"), Usage: "candidate model server base URL, e.g. http://fashion-mnist-staging:8501"},
		&cli.StringFlag{Name: "baseline-endpoint", EnvVars: e("baseline-endpoint"), Usage: "production model server base URL; scored on the same samples for --max-accuracy-drop"},
		&cli.BoolFlag{Name: "baseline-optional", EnvVars: e("baseline-optional"), Usage: "skip the baseline gate when the baseline answers no request (first deployment)"},
		&cli.StringFlag{Name: "model-name", Value: "fashion-mnist", EnvVars: e("model-name"), Usage: "served model name"},
		&cli.StringFlag{Name: "baseline-model-name", EnvVars: e("baseline-model-name"), Usage: "baseline's served model name (default: --model-name)"},
		&cli.StringFlag{Name: "protocol", Value: "v1", EnvVars: e("protocol"), Usage: "v1 (TF Serving REST :predict) or v2 (KServe Open Inference Protocol /infer)"},
		&cli.StringFlag{Name: "dataset-uri", EnvVars: e("dataset-uri"), Usage: "prefix holding the labelled IDX .gz files (file:// or s3://)"},
		&cli.StringFlag{Name: "split", Value: "t10k", EnvVars: e("split"), Usage: "t10k or train"},
		&cli.IntFlag{Name: "limit", EnvVars: e("limit"), Usage: "score a reproducible sample of N images (0: all)"},
		&cli.Uint64Flag{Name: "seed", Value: 1, EnvVars: e("seed"), Usage: "sample seed"},
		&cli.IntFlag{Name: "batch-size", Value: 64, EnvVars: e("batch-size"), Usage: "instances per request"},
		&cli.IntFlag{Name: "concurrency", Value: 4, EnvVars: e("concurrency"), Usage: "requests in flight"},
		&cli.DurationFlag{Name: "request-timeout", Value: 30 * time.Second, EnvVars: e("request-timeout"), Usage: "timeout of one request"},
		&cli.IntFlag{Name: "retries", Value: 3, EnvVars: e("retries"), Usage: "retries of a request that failed transiently (connection errors, 5xx, 429)"},
		&cli.Float64Flag{Name: "min-accuracy", EnvVars: e("min-accuracy"), Usage: "gate: fail below this accuracy (0: off)"},
		&cli.Float64Flag{Name: "max-p99-ms", EnvVars: e("max-p99-ms"), Usage: "gate: fail when request p99 latency exceeds this (0: off)"},
		&cli.Float64Flag{Name: "max-error-rate", Value: 0.01, EnvVars: e("max-error-rate"), Usage: "gate: fail when more than this share of samples got no answer"},
		&cli.Float64Flag{Name: "max-accuracy-drop", Value: 0.02, EnvVars: e("max-accuracy-drop"), Usage: "gate (with a baseline): fail when accuracy is this much below the baseline's"},
		&cli.StringFlag{Name: "report-uri", EnvVars: e("report-uri"), Usage: "prefix for report.json and report.html (file:// or s3://)"},
		&cli.BoolFlag{Name: "fail-on-reject", EnvVars: e("fail-on-reject"), Usage: "exit 1 when the verdict is fail (default: exit 0 with verdict=fail)"},
	}
	flags = append(flags, taskcli.StoreFlags()...)
	flags = append(flags, taskcli.CommonFlags()...)
	return &cli.App{
		Name:      "canary-evaluator",
		Usage:     "score a served model on real predictions and decide pass or fail",
		UsageText: "canary-evaluator --endpoint URL --dataset-uri s3://datasets/fashion-mnist/ [--baseline-endpoint URL] [gates]",
		Description: "Sends batched, concurrent predict requests for a labelled dataset, computes accuracy, per-class\n" +
			"precision/recall, confusion matrix, latency p50/p90/p99, throughput and error rate, and applies the\n" +
			"gates. Results: verdict (pass|fail), accuracy, baseline-accuracy, p99-ms, reason, report-uri.\n" +
			"A failed gate is a result (exit 0) unless --fail-on-reject. Exit 2: bad input; 3: transient error.",
		Flags: flags,
		Action: func(c *cli.Context) error {
			log, err := taskcli.Logger(c)
			if err != nil {
				return err
			}
			o := canary.Options{
				Endpoint: c.String("endpoint"), BaselineEndpoint: c.String("baseline-endpoint"), BaselineOptional: c.Bool("baseline-optional"), ModelName: c.String("model-name"),
				BaselineModel: c.String("baseline-model-name"), Protocol: c.String("protocol"), DatasetURI: c.String("dataset-uri"),
				Split: c.String("split"), Limit: c.Int("limit"), Seed: c.Uint64("seed"), BatchSize: c.Int("batch-size"),
				Concurrency: c.Int("concurrency"), RequestTimeout: c.Duration("request-timeout"), Retries: c.Int("retries"),
				MinAccuracy: c.Float64("min-accuracy"), MaxP99Ms: c.Float64("max-p99-ms"), MaxErrorRate: c.Float64("max-error-rate"),
				MaxAccuracyDrop: c.Float64("max-accuracy-drop"), ReportURI: c.String("report-uri"),
			}
			if err := o.Validate(); err != nil {
				return err
			}
			store, err := taskcli.Store(c)
			if err != nil {
				return err
			}
			rep, err := canary.NewEvaluator(store, canary.WithLogger(log)).Evaluate(c.Context, o)
			if err != nil {
				return err
			}
			if err := taskcli.WriteResults(c, rep.Values()); err != nil {
				return err
			}
			if rep.Verdict == canary.Fail && c.Bool("fail-on-reject") {
				return exitcode.With(exitcode.Failed, errors.New(rep.Reason))
			}
			return nil
		},
	}
}
