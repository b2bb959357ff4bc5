package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/images/fashion-trainer/trainer"
	"github.com/gantry-ml/gantry/internal/taskcli"
)

// hp lists the env vars of a hyperparameter flag: GANTRY_<FLAG> and the
// GANTRY_HP_<FLAG> train-launcher sets for --hyperparameter FLAG=V.
func hp(flag string) []string {
	return append(taskcli.Env(flag), "GANTRY_HP_"+strings.ToUpper(strings.ReplaceAll(flag, "-", "_")))
}

// sizes binds --hidden ("256,128" or "256x128") to a list of layer sizes.
type sizes struct{ p *[]int }

func (v sizes) Set(s string) error {
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == 'x' || r == ' ' }) {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("%q: want comma-separated sizes like 256,128", s)
		}
		out = append(out, n)
	}
	*v.p = out
	return nil
}

func (v sizes) String() string {
	parts := make([]string, len(*v.p))
	for i, n := range *v.p {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func newApp() *cli.App {
	var (
		o      = trainer.Options{Hidden: []int{256, 128}}
		common taskcli.Common
		store  taskcli.Store
	)
	flags := []cli.Flag{
		&cli.StringFlag{Name: "dataset-uri", Destination: &o.DatasetURI, Usage: "prefix holding the four Fashion-MNIST .gz files (file:// or s3://)"},
		&cli.StringFlag{Name: "output-uri", Destination: &o.OutputURI, Usage: "where to write model.safetensors, config.json and metrics.json"},
		&cli.IntFlag{Name: "epochs", Value: 10, EnvVars: hp("epochs"), Destination: &o.Epochs, Usage: "training epochs"},
		&cli.GenericFlag{Name: "hidden", Value: sizes{&o.Hidden}, EnvVars: hp("hidden"), Usage: "hidden layer sizes, e.g. 256,128 or 256x128"},
		&cli.Float64Flag{Name: "learning-rate", Value: 1e-3, EnvVars: hp("learning-rate"), Destination: &o.LearningRate, Usage: "learning rate"},
		&cli.IntFlag{Name: "batch-size", Value: 128, EnvVars: hp("batch-size"), Destination: &o.BatchSize, Usage: "mini-batch size"},
		&cli.StringFlag{Name: "optimizer", Value: "adam", EnvVars: hp("optimizer"), Destination: &o.Optimizer, Usage: "adam or sgd (momentum 0.9)"},
		&cli.StringFlag{Name: "schedule", Value: "cosine", EnvVars: hp("schedule"), Destination: &o.Schedule, Usage: "learning-rate schedule: cosine (decays to 0) or constant"},
		&cli.IntFlag{Name: "train-limit", EnvVars: hp("train-limit"), Destination: &o.TrainLimit, Usage: "train on the first N images only, for quick runs (0: all 60000)"},
		&cli.Uint64Flag{Name: "seed", Value: 1, EnvVars: hp("seed"), Destination: &o.Seed, Usage: "random seed; the same seed gives the same model"},
		&cli.IntFlag{Name: "threads", Destination: &o.Workers, Usage: "worker goroutines (default: all cores); does not change the result"},
		&cli.IntFlag{Name: "fail-attempts", EnvVars: hp("fail-attempts"), Destination: &o.FailAttempts,
			Usage: "fail the first N attempts on purpose, before training (tests the pipeline's retries; markers under --output-uri, removed by the attempt that trains)"},
		&cli.IntFlag{Name: "fail-exit-code", Value: 1, EnvVars: hp("fail-exit-code"), Destination: &o.FailExitCode,
			Usage: "the exit code of an attempt failed on purpose: 1 (a failure) or 3 (a transient error, retried)"},
	}
	return &cli.App{
		Name:  "fashion-trainer",
		Usage: "train the Fashion-MNIST example MLP and write model.safetensors, config.json and metrics.json",
		Description: "Reads GANTRY_DATASET_URI, trains a ReLU MLP with softmax cross-entropy on all cores,\n" +
			"and writes the model to GANTRY_OUTPUT_URI; metrics.json is written last. Hyperparameters come from\n" +
			"flags, GANTRY_<FLAG> or GANTRY_HP_<FLAG> (what train-launcher --hyperparameter sets).",
		Flags: taskcli.Flags(flags, store.Flags(), common.LogFlags()),
		Action: func(c *cli.Context) error {
			log, err := common.Logger(c.App.ErrWriter)
			if err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			s, err := store.Open()
			if err != nil {
				return err
			}
			_, err = trainer.Run(c.Context, s, o, log)
			return err
		},
	}
}
