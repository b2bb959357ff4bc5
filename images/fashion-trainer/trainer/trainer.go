// Package trainer is the Fashion-MNIST example workload: it reads the dataset
// from a URI prefix, trains an MLP, and writes model.safetensors, config.json
// and metrics.json (last) to the output URI.
package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/gantry-ml/gantry/images/mlp"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/idx"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// Options of one training run.
type Options struct {
	DatasetURI string
	OutputURI  string
	Hidden     []int
	TrainLimit int // train on the first N images only (0: all)
	// FailAttempts makes the first N attempts fail on purpose, before training (a test hook for
	// the pipeline's retries). Attempts are counted with marker objects under OutputURI, which
	// the attempt that goes on deletes: they never reach the published model.
	FailAttempts int
	// FailExitCode is the exit code of an attempt failed on purpose: 1 (a failure, default) or
	// 3 (a transient infrastructure error, which the Job and the templates retry).
	FailExitCode int
	mlp.TrainOptions
}

// failMarker is the object that records failed attempt n.
func failMarker(out objstore.URI, n int) string {
	return out.Join(fmt.Sprintf(".fail-attempt-%d", n)).String()
}

// failOnPurpose fails the first o.FailAttempts attempts. The attempt that goes on returns a
// cleanup that removes the markers once the model is written (a pod of that attempt that is
// evicted and replaced still finds them, and goes on too).
func failOnPurpose(ctx context.Context, s objstore.Store, o Options, log *slog.Logger) (func() error, error) {
	none := func() error { return nil }
	if o.FailAttempts <= 0 {
		return none, nil
	}
	out, err := objstore.Parse(o.OutputURI)
	if err != nil {
		return none, err
	}
	out = out.Dir()
	done := 0
	for done < o.FailAttempts {
		if _, err := s.Stat(ctx, failMarker(out, done+1)); objstore.IsNotExist(err) {
			break
		} else if err != nil {
			return none, err
		}
		done++
	}
	if done < o.FailAttempts {
		if err := objstore.PutBytes(ctx, s, failMarker(out, done+1), []byte("failed on purpose\n")); err != nil {
			return none, err
		}
		err := fmt.Errorf("attempt %d of the first %d fails on purpose (--fail-attempts)", done+1, o.FailAttempts)
		if o.FailExitCode == exitcode.Transient {
			return none, exitcode.Retryable(err)
		}
		return none, err
	}
	log.Info("the first attempts failed on purpose; this one trains", "failed", done)
	return func() error {
		for n := 1; n <= done; n++ {
			if err := s.Delete(ctx, failMarker(out, n)); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// Metrics is metrics.json.
type Metrics struct {
	TestAccuracy  float64        `json:"test_accuracy"`
	TrainAccuracy float64        `json:"train_accuracy"`
	TrainLoss     float64        `json:"train_loss"`
	DatasetDigest string         `json:"dataset_digest"`
	TrainSamples  int            `json:"train_samples"`
	TestSamples   int            `json:"test_samples"`
	Layers        string         `json:"layers"`
	Optimizer     string         `json:"optimizer"`
	LearningRate  float64        `json:"learning_rate"`
	BatchSize     int            `json:"batch_size"`
	Seed          uint64         `json:"seed"`
	TrainSeconds  float64        `json:"train_seconds"`
	OfficialData  bool           `json:"official_dataset"`
	Epochs        []EpochMetrics `json:"epochs"`
}

// EpochMetrics is one epoch's line in metrics.json.
type EpochMetrics struct {
	mlp.EpochStats
	TestAccuracy float64 `json:"test_accuracy"`
}

// Validate checks the options (bad input, exit 2).
func (o Options) Validate() error {
	if o.DatasetURI == "" {
		return exitcode.Invalidf("--dataset-uri (GANTRY_DATASET_URI) is required")
	}
	if o.OutputURI == "" {
		return exitcode.Invalidf("--output-uri (GANTRY_OUTPUT_URI) is required")
	}
	for flag, u := range map[string]string{"dataset-uri": o.DatasetURI, "output-uri": o.OutputURI} {
		if _, err := objstore.Parse(u); err != nil {
			return fmt.Errorf("--%s: %w", flag, err)
		}
	}
	if len(o.Hidden) == 0 {
		return exitcode.Invalidf("--hidden needs at least one layer size")
	}
	for _, h := range o.Hidden {
		if h <= 0 || h > 8192 {
			return exitcode.Invalidf("--hidden size %d out of range 1..8192", h)
		}
	}
	if o.TrainLimit < 0 {
		return exitcode.Invalidf("--train-limit must not be negative")
	}
	if o.FailExitCode != 0 && o.FailExitCode != exitcode.Failed && o.FailExitCode != exitcode.Transient {
		return exitcode.Invalidf("--fail-exit-code %d: want 1 (a failure) or 3 (a transient error)", o.FailExitCode)
	}
	if err := o.TrainOptions.Validate(); err != nil {
		return exitcode.Invalid(err)
	}
	return nil
}

// Run trains and writes the outputs; metrics.json is written last.
func Run(ctx context.Context, s objstore.Store, o Options, log *slog.Logger) (*Metrics, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cleanup, err := failOnPurpose(ctx, s, o, log)
	if err != nil {
		return nil, err
	}
	train, err := idx.Load(ctx, s, o.DatasetURI, "train", len(mlp.FashionClasses))
	if err != nil {
		return nil, fmt.Errorf("loading training data: %w", err)
	}
	test, err := idx.Load(ctx, s, o.DatasetURI, "t10k", len(mlp.FashionClasses))
	if err != nil {
		return nil, fmt.Errorf("loading test data: %w", err)
	}
	official := train.CheckKnown("train") == nil && test.CheckKnown("t10k") == nil
	if !official {
		log.Warn("dataset differs from the official Fashion-MNIST files (md5 of uncompressed bytes)", "dataset", o.DatasetURI)
	}
	train = train.Subset(o.TrainLimit)
	if train.Images.Rows*train.Images.Cols != 784 || test.Images.Rows*test.Images.Cols != 784 {
		return nil, fmt.Errorf("images are %d×%d, want 28×28", train.Images.Rows, train.Images.Cols)
	}
	x, xt := mlp.Scale(train.Images.Pixels), mlp.Scale(test.Images.Pixels)
	m := mlp.New(mlp.NewConfig(o.Hidden...), o.Seed)
	met := &Metrics{DatasetDigest: train.Digest, TrainSamples: train.Images.N, TestSamples: test.Images.N,
		Layers: fmt.Sprint(m.Config.Layers), Optimizer: o.Optimizer, LearningRate: o.LearningRate,
		BatchSize: o.BatchSize, Seed: o.Seed, OfficialData: official}
	log.Info("training", "train", train.Images.N, "test", test.Images.N, "layers", m.Config.Layers, "epochs", o.Epochs, "optimizer", o.Optimizer)
	start := time.Now()
	err = mlp.Train(ctx, m, x, train.Labels, o.TrainOptions, func(st mlp.EpochStats) error {
		acc := m.Accuracy(xt, test.Labels)
		met.Epochs = append(met.Epochs, EpochMetrics{EpochStats: st, TestAccuracy: acc})
		log.Info("epoch", "epoch", st.Epoch, "of", o.Epochs, "loss", round(st.Loss), "train_accuracy", round(st.TrainAccuracy),
			"test_accuracy", round(acc), "seconds", round(st.Seconds))
		return nil
	})
	if err != nil {
		return nil, err
	}
	met.TrainSeconds = time.Since(start).Seconds()
	last := met.Epochs[len(met.Epochs)-1]
	met.TestAccuracy, met.TrainAccuracy, met.TrainLoss = last.TestAccuracy, last.TrainAccuracy, last.Loss
	if err := m.Save(ctx, s, o.OutputURI); err != nil {
		return nil, fmt.Errorf("saving model: %w", err)
	}
	b, _ := json.MarshalIndent(met, "", "  ")
	out, _ := objstore.Parse(o.OutputURI)
	if err := cleanup(); err != nil { // before metrics.json, which says the output is complete
		return nil, err
	}
	if err := objstore.PutBytes(ctx, s, out.Join(mlp.MetricsFile).String(), b); err != nil {
		return nil, fmt.Errorf("writing metrics: %w", err)
	}
	log.Info("model written", "output", out.Dir().String(), "test_accuracy", round(met.TestAccuracy))
	return met, nil
}

func round(f float64) float64 { return float64(int64(f*1e4+0.5)) / 1e4 }
