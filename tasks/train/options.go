// Package train runs one training Job to completion: it creates (or
// re-attaches to) a batch/v1 Job with a deterministic name, watches it and its
// pods, streams the training logs, fails fast with a reason, and verifies the
// model and metrics.json exist at the output URI afterwards.
package train

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// Options describe one training run.
type Options struct {
	Namespace string
	// Run is the run this training belongs to (Argo: the workflow name). When set it labels the
	// Job and its pods and, without JobName, derives the Job's name.
	Run string
	// JobName is the Job's name; the same name re-attaches to the same Job.
	JobName string
	// Owner, when set, owns the Job (the Argo run: deleting the run deletes its Job).
	Owner   *metav1.OwnerReference
	Image   string
	Command []string
	Args    []string
	// Env and Hyperparameters are KEY=VALUE pairs in order. A hyperparameter
	// K=V reaches the container as GANTRY_HP_<K> and inside GANTRY_HYPERPARAMETERS (JSON).
	Env             [][2]string
	Hyperparameters [][2]string
	// EnvFromSecret names a Secret whose keys become the container's env (S3 credentials).
	EnvFromSecret string
	// ScopedCredentials gives the Job temporary S3 credentials that may read the dataset and
	// write the output prefix only (STS AssumeRole with a session policy; see Minter), in a
	// Secret of its own, instead of EnvFromSecret.
	ScopedCredentials bool
	CPU, Memory       string
	GPUs              int
	ServiceAccount    string
	// Timeout bounds the Job (activeDeadlineSeconds).
	Timeout time.Duration
	// UnschedulableTimeout fails the run when a pod stays unschedulable this long.
	UnschedulableTimeout time.Duration
	BackoffLimit         int
	DatasetURI           string
	OutputURI            string
	// S3Endpoint is handed to the container as GANTRY_S3_ENDPOINT when set.
	S3Endpoint     string
	DeleteOnCancel bool
	// Labels are added to the Job and its pods (e.g. the workflow name).
	Labels map[string]string
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks every option; all errors are bad input naming the flag.
func (o *Options) Validate() error {
	if o.Run != "" {
		if o.JobName == "" {
			o.JobName = JobNameFor(o.Run)
		}
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		o.Labels["gantry.dev/run"] = RunLabel(o.Run)
	}
	if o.JobName == "" {
		return exitcode.Invalidf("--job-name or --run-name is required")
	}
	if errs := validation.IsDNS1123Label(o.JobName); len(errs) > 0 {
		return exitcode.Invalidf("--job-name %q: %s", o.JobName, strings.Join(errs, "; "))
	}
	if o.Image == "" {
		return exitcode.Invalidf("--image is required")
	}
	if strings.ContainsAny(o.Image, " \t\n") {
		return exitcode.Invalidf("--image %q contains white space", o.Image)
	}
	for _, kv := range o.Env {
		if !envNameRE.MatchString(kv[0]) {
			return exitcode.Invalidf("--env %s: not a valid environment variable name", kv[0])
		}
	}
	for _, kv := range o.Hyperparameters {
		if !envNameRE.MatchString(strings.ReplaceAll(kv[0], "-", "_")) {
			return exitcode.Invalidf("--hyperparameter %s: want letters, digits, - or _", kv[0])
		}
	}
	for flag, q := range map[string]string{"cpu": o.CPU, "memory": o.Memory} {
		if q == "" {
			continue
		}
		if _, err := resource.ParseQuantity(q); err != nil {
			return exitcode.Invalidf("--%s %q: %v", flag, q, err)
		}
	}
	if o.GPUs < 0 {
		return exitcode.Invalidf("--gpus %d: must not be negative", o.GPUs)
	}
	if o.Timeout <= 0 {
		return exitcode.Invalidf("--timeout must be positive")
	}
	if o.UnschedulableTimeout <= 0 {
		return exitcode.Invalidf("--unschedulable-timeout must be positive")
	}
	if o.BackoffLimit < 0 {
		return exitcode.Invalidf("--backoff-limit must not be negative")
	}
	if o.OutputURI == "" {
		return exitcode.Invalidf("--output-uri is required")
	}
	if o.ScopedCredentials && o.EnvFromSecret != "" {
		return exitcode.Invalidf("--env-from-secret %s and --scoped-credentials: the Job gets one set of S3 credentials; choose one", o.EnvFromSecret)
	}
	if _, err := objstore.Parse(o.OutputURI); err != nil {
		return fmt.Errorf("--output-uri: %w", err)
	}
	if o.DatasetURI != "" {
		if _, err := objstore.Parse(o.DatasetURI); err != nil {
			return fmt.Errorf("--dataset-uri: %w", err)
		}
	}
	for k, v := range o.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return exitcode.Invalidf("label %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return exitcode.Invalidf("label %s=%q: %s", k, v, strings.Join(errs, "; "))
		}
	}
	return nil
}

// JobNameFor derives the deterministic Job name for a run (e.g. the Argo
// workflow name): "<run>-train", shortened with a hash suffix to fit 63 chars.
func JobNameFor(run string) string { return dnsName(run, "-train") }

// RunLabel is the run name as a label value.
func RunLabel(run string) string { return dnsName(run, "") }

func dnsName(run, suffix string) string {
	name := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(run), "-"), "-")
	if name == "" {
		return ""
	}
	name += suffix
	if len(name) <= validation.DNS1123LabelMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(run))
	return strings.TrimRight(name[:validation.DNS1123LabelMaxLength-11], "-") + "-" + hex.EncodeToString(sum[:])[:10]
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)
