package main

import (
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/mlp"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/internal/trainer"
)

// hp lists the env vars of a hyperparameter flag: GANTRY_<FLAG> and the
// GANTRY_HP_<FLAG> train-launcher sets for --hyperparameter FLAG=V.
func hp(flag string) []string {
	return append(taskcli.Env(flag), "GANTRY_HP_"+strings.ToUpper(strings.ReplaceAll(flag, "-", "_")))
}

func newApp() *cli.App {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "dataset-uri", EnvVars: taskcli.Env("dataset-uri"), Usage: "prefix holding the four Fashion-MNIST .gz files (file:// or s3://)"},
		&cli.StringFlag{Name: "output-uri", EnvVars: taskcli.Env("output-uri"), Usage: "where to write model.safetensors, config.json and metrics.json"},
		&cli.IntFlag{Name: "epochs", Value: 10, EnvVars: hp("epochs"), Usage: "training epochs"},
		&cli.StringFlag{Name: "hidden", Value: "256,128", EnvVars: hp("hidden"), Usage: "hidden layer sizes, e.g. 256,128 or 256x128"},
		&cli.Float64Flag{Name: "learning-rate", Value: 1e-3, EnvVars: hp("learning-rate"), Usage: "learning rate"},
		&cli.IntFlag{Name: "batch-size", Value: 128, EnvVars: hp("batch-size"), Usage: "mini-batch size"},
		&cli.StringFlag{Name: "optimizer", Value: "adam", EnvVars: hp("optimizer"), Usage: "adam or sgd (momentum 0.9)"},
		&cli.StringFlag{Name: "schedule", Value: "cosine", EnvVars: hp("schedule"), Usage: "learning-rate schedule: cosine (decays to 0) or constant"},
		&cli.IntFlag{Name: "train-limit", EnvVars: hp("train-limit"), Usage: "train on the first N images only, for quick runs (0: all 60000)"},
		&cli.Uint64Flag{Name: "seed", Value: 1, EnvVars: hp("seed"), Usage: "random seed; the same seed gives the same model"},
		&cli.IntFlag{Name: "threads", EnvVars: taskcli.Env("threads"), Usage: "worker goroutines (default: all cores); does not change the result"},
	}
	flags = append(flags, taskcli.StoreFlags()...)
	flags = append(flags, taskcli.LogFormatFlag, taskcli.LogLevelFlag)
	return &cli.App{
		Name:  "fashion-trainer",
		Usage: "train the Fashion-MNIST example MLP and write model.safetensors, config.json and metrics.json",
		Description: "Reads GANTRY_DATASET_URI, trains a ReLU MLP with softmax cross-entropy on all cores,\n" +
			"and writes the model to GANTRY_OUTPUT_URI; metrics.json is written last. Hyperparameters come from\n" +
			"flags, GANTRY_<FLAG> or GANTRY_HP_<FLAG> (what train-launcher --hyperparameter sets).",
		Flags: flags,
		Action: func(c *cli.Context) error {
			log, err := taskcli.Logger(c)
			if err != nil {
				return err
			}
			var hidden []int
			for _, f := range strings.FieldsFunc(c.String("hidden"), func(r rune) bool { return r == ',' || r == 'x' || r == ' ' }) {
				n, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil {
					return exitcode.Invalidf("--hidden %q: want comma-separated sizes like 256,128", c.String("hidden"))
				}
				hidden = append(hidden, n)
			}
			o := trainer.Options{
				DatasetURI: c.String("dataset-uri"), OutputURI: c.String("output-uri"), Hidden: hidden, TrainLimit: c.Int("train-limit"),
				TrainOptions: mlp.TrainOptions{Epochs: c.Int("epochs"), BatchSize: c.Int("batch-size"), LearningRate: c.Float64("learning-rate"),
					Optimizer: c.String("optimizer"), Schedule: c.String("schedule"), Seed: c.Uint64("seed"), Workers: c.Int("threads")},
			}
			if err := o.Validate(); err != nil {
				return err
			}
			store, err := taskcli.Store(c)
			if err != nil {
				return err
			}
			_, err = trainer.Run(c.Context, store, o, log)
			return err
		},
	}
}
