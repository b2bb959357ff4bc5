// Package canary scores a served model on real predictions: it sends
// batched, concurrent predict requests for a labelled dataset to an endpoint
// (TF Serving REST v1 or KServe v2), optionally to a baseline on the same
// samples, computes accuracy, per-class precision/recall, the confusion
// matrix, latency percentiles, throughput and error rate, applies the gates,
// and writes report.json and a self-contained report.html.
package canary

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// Options of one evaluation. Zero gates are off.
type Options struct {
	Endpoint         string // base URL, e.g. http://model.staging:8501
	BaselineEndpoint string
	// BaselineOptional skips the baseline gate when the baseline answers no
	// request at all (e.g. no production model yet), saying so in the reason.
	BaselineOptional bool
	ModelName        string
	// ModelDigest is the candidate the endpoint must serve (its v2 model metadata's digest);
	// another model — another run's, in a shared staging — is refused without being scored.
	ModelDigest    string
	BaselineModel  string // default ModelName
	Protocol       string // v1 | v2 (binary tensors when the server lists the extension) | v2-json
	DatasetURI     string // prefix with the IDX files
	Split          string // t10k (default) or train
	Limit          int    // sample this many images (0: all)
	Seed           uint64
	BatchSize      int
	Concurrency    int
	RequestTimeout time.Duration
	Retries        int
	// BatchRetries is how many more times a batch that got no answer is sent after the first
	// pass (rounds with backoff, 1 s doubling to 30 s), within RetryBudget of time.
	BatchRetries int
	RetryBudget  time.Duration

	MinAccuracy float64
	// StageMinAccuracy, when not empty, replaces MinAccuracy (Validate parses it).
	StageMinAccuracy string
	MaxP99Ms         float64
	MaxErrorRate     float64
	MaxAccuracyDrop  float64 // only with a baseline

	ReportURI string // prefix for report.json and report.html; empty: none
	// ReportDir is a local directory that also receives report.json and report.html (the Argo
	// template's output artifacts); empty: none.
	ReportDir string

	// Stage names the evaluation in its reason ("canary failed: …", "smoke failed: …").
	Stage string

	// ClassNames name the dataset's labels in order; their number is the number of classes.
	ClassNames []string
}

// FashionMNISTClasses are the default ClassNames: Fashion-MNIST's labels in order.
var FashionMNISTClasses = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// Validate checks the options; errors are bad input naming the flag.
func (o *Options) Validate() error {
	check := func(flag, u string, required bool) error {
		if u == "" {
			if required {
				return exitcode.Invalidf("--%s is required", flag)
			}
			return nil
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return exitcode.Invalidf("--%s %q: want http(s)://host[:port]", flag, u)
		}
		return nil
	}
	if err := check("endpoint", o.Endpoint, true); err != nil {
		return err
	}
	if err := check("baseline-endpoint", o.BaselineEndpoint, false); err != nil {
		return err
	}
	if o.ModelName == "" {
		return exitcode.Invalidf("--model-name is required")
	}
	if o.Stage == "" {
		o.Stage = "canary"
	}
	if o.BaselineModel == "" {
		o.BaselineModel = o.ModelName
	}
	if o.Protocol != "v1" && o.Protocol != "v2" && o.Protocol != "v2-json" {
		return exitcode.Invalidf("--protocol %q: want v1 (TF Serving REST), v2 (Open Inference Protocol; binary tensors when the server has the extension) or v2-json", o.Protocol)
	}
	if o.DatasetURI == "" {
		return exitcode.Invalidf("--dataset-uri is required")
	}
	if _, err := objstore.Parse(o.DatasetURI); err != nil {
		return fmt.Errorf("--dataset-uri: %w", err)
	}
	if len(o.ClassNames) == 0 {
		o.ClassNames = FashionMNISTClasses
	}
	names := make([]string, len(o.ClassNames))
	for i, n := range o.ClassNames {
		if names[i] = strings.TrimSpace(n); names[i] == "" {
			return exitcode.Invalidf("--class-names: name %d is empty", i+1)
		}
	}
	o.ClassNames = names
	if len(o.ClassNames) < 2 || len(o.ClassNames) > 1000 {
		return exitcode.Invalidf("--class-names: want 2..1000 names, got %d", len(o.ClassNames))
	}
	if o.Split == "" {
		o.Split = "t10k"
	}
	if o.Split != "t10k" && o.Split != "train" {
		return exitcode.Invalidf("--split %q: want t10k or train", o.Split)
	}
	if o.ReportURI != "" {
		if _, err := objstore.Parse(o.ReportURI); err != nil {
			return fmt.Errorf("--report-uri: %w", err)
		}
	}
	if o.ReportDir != "" && !filepath.IsAbs(o.ReportDir) {
		return exitcode.Invalidf("--report-dir %q: want an absolute path", o.ReportDir)
	}
	switch {
	case o.Limit < 0:
		return exitcode.Invalidf("--limit must not be negative")
	case o.BatchSize <= 0 || o.BatchSize > 4096:
		return exitcode.Invalidf("--batch-size %d: want 1..4096", o.BatchSize)
	case o.Concurrency <= 0 || o.Concurrency > 256:
		return exitcode.Invalidf("--concurrency %d: want 1..256", o.Concurrency)
	case o.RequestTimeout <= 0:
		return exitcode.Invalidf("--request-timeout must be positive")
	case o.Retries < 0 || o.Retries > 20:
		return exitcode.Invalidf("--retries %d: want 0..20", o.Retries)
	case o.BatchRetries < 0 || o.BatchRetries > 10:
		return exitcode.Invalidf("--batch-retries %d: want 0..10", o.BatchRetries)
	case o.RetryBudget < 0:
		return exitcode.Invalidf("--retry-budget %s: must not be negative", o.RetryBudget)
	case o.StageMinAccuracy != "" && !o.stageMinAccuracy():
		return exitcode.Invalidf("--stage-min-accuracy %q: want a number 0..1 or empty", o.StageMinAccuracy)
	case o.MinAccuracy < 0 || o.MinAccuracy > 1:
		return exitcode.Invalidf("--min-accuracy %g: want 0..1", o.MinAccuracy)
	case o.MaxErrorRate < 0 || o.MaxErrorRate > 1:
		return exitcode.Invalidf("--max-error-rate %g: want 0..1", o.MaxErrorRate)
	case o.MaxAccuracyDrop < 0 || o.MaxAccuracyDrop > 1:
		return exitcode.Invalidf("--max-accuracy-drop %g: want 0..1", o.MaxAccuracyDrop)
	case o.MaxP99Ms < 0:
		return exitcode.Invalidf("--max-p99-ms must not be negative")
	}
	return nil
}

// stageMinAccuracy makes StageMinAccuracy the accuracy gate; false when it is not a number.
func (o *Options) stageMinAccuracy() bool {
	v, err := strconv.ParseFloat(strings.TrimSpace(o.StageMinAccuracy), 64)
	if err != nil {
		return false
	}
	o.MinAccuracy = v
	return true
}
