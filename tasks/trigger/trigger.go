// Package trigger starts exactly one pipeline run per pushed training-image digest: from a
// registry's push notification (through Argo's events API and the train-image-pushed binding)
// and, level-triggered, from a periodic catch-up that lists the repository's tags, so that a
// notification lost (Argo Server down, registry restarted) or delivered twice still gives each
// digest one run.
package trigger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/transient"
)

// Labels and annotations on what the trigger creates.
const (
	// LabelTriggered marks the ledger ConfigMaps (one per digest) and the runs the trigger created.
	LabelTriggered = "gantry.dev/triggered-by"
	// AnnotationImage is the full image reference a run or ledger entry is for.
	AnnotationImage = "gantry.dev/train-image"
)

// Options says what to trigger.
type Options struct {
	// Repository is the training image's repository as the cluster pulls it (host/path).
	Repository string
	// Digests are pushed digests (a notification's); each gets one run.
	Digests []string
	// CatchUp lists Repository's tags and gives every digest they point to that has no run one.
	CatchUp bool
	// CatchUpRepository is where the catch-up lists the tags when the trigger reaches the
	// registry by another name than the cluster's nodes (default: Repository).
	CatchUpRepository string
	// Template is the WorkflowTemplate each run is submitted from; Parameter its parameter that
	// receives <Repository>@<digest>; Params are more parameters for every run.
	Template  string
	Parameter string
	Params    [][2]string
	Namespace string
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Validate refuses bad input before anything is created.
func (o *Options) Validate() error {
	if o.Repository == "" {
		return exitcode.Invalidf("--repository is required")
	}
	if _, err := name.NewRepository(o.Repository); err != nil {
		return exitcode.Invalidf("--repository %q: want host/path, without tag or digest", o.Repository)
	}
	for _, d := range o.Digests {
		if !digestRE.MatchString(d) {
			return exitcode.Invalidf("--digests: %q is not a sha256 digest", d)
		}
	}
	if o.CatchUpRepository != "" {
		if _, err := name.NewRepository(o.CatchUpRepository); err != nil {
			return exitcode.Invalidf("--catch-up-repository %q: want host/path, without tag or digest", o.CatchUpRepository)
		}
	}
	if len(o.Digests) == 0 && !o.CatchUp {
		return exitcode.Invalidf("nothing to do: give --digests (a notification's) or --catch-up")
	}
	if o.Template == "" || o.Parameter == "" {
		return exitcode.Invalidf("--template and --parameter are required")
	}
	for _, kv := range o.Params {
		if kv[0] == o.Parameter {
			return exitcode.Invalidf("--param %s: that parameter is the pushed image's", o.Parameter)
		}
	}
	return nil
}

// ParseDigests reads a notification's digests: a JSON list (what Argo's event binding passes)
// or a comma- or space-separated list.
func ParseDigests(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "[") {
		var out []string
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			return nil, exitcode.Invalidf("--digests: not a JSON list of strings: %v", err)
		}
		return out, nil
	}
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }), nil
}

// Result is what one trigger did.
type Result struct {
	Submitted []string // runs created now
	Existing  []string // digests that already had a run (or were adopted)
	Adopted   int      // digests recorded without a run by the first catch-up
}

// Values renders the results: submitted (run names, comma-separated), existing, adopted.
func (r Result) Values() map[string]string {
	return map[string]string{"submitted": strings.Join(r.Submitted, ","), "existing": fmt.Sprint(len(r.Existing)), "adopted": fmt.Sprint(r.Adopted)}
}

// Trigger creates runs and their ledger entries.
type Trigger struct {
	wf     versioned.Interface
	kube   kubernetes.Interface
	remote []remote.Option
	log    *slog.Logger
}

// Option configures a Trigger.
type Option func(*Trigger)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(t *Trigger) { t.log = l } }

// WithRemote adds go-containerregistry options (tests: a transport).
func WithRemote(o ...remote.Option) Option {
	return func(t *Trigger) { t.remote = append(t.remote, o...) }
}

// New returns a Trigger.
func New(wf versioned.Interface, kc kubernetes.Interface, opts ...Option) *Trigger {
	t := &Trigger{wf: wf, kube: kc, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(t)
	}
	return t
}

// RunName is the run of a digest: <template>-<first 12 hex of the digest>. The name is the
// dedupe: a second submission of the same digest is refused by the API server (AlreadyExists).
func RunName(template, digest string) string {
	return template + "-" + strings.TrimPrefix(digest, "sha256:")[:12]
}

// ledgerName is the ConfigMap that remembers a digest was triggered, after its run is deleted.
func ledgerName(template, digest string) string {
	return "gantry-triggered-" + RunName(template, digest)
}

// adoptedName marks that the first catch-up for this repository ran (and adopted what was there).
func adoptedName(template, repository string) string {
	h := sha256.Sum256([]byte(repository))
	return "gantry-trigger-" + template + "-" + hex.EncodeToString(h[:])[:12]
}

// Run ensures a run for each digest of the notification and, with CatchUp, for each digest the
// repository's tags point to. The first catch-up for a repository adopts the digests already
// there (records them, starts nothing): installing the trigger must not retrain every image
// ever pushed. Pushes from then on get a run by notification or by the next catch-up.
func (t *Trigger) Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	res := &Result{}
	for _, d := range o.Digests {
		if err := t.ensure(ctx, o, d, "push", res); err != nil {
			return res, err
		}
	}
	if !o.CatchUp {
		return res, nil
	}
	list := o.Repository
	if o.CatchUpRepository != "" {
		list = o.CatchUpRepository
	}
	digests, err := t.listDigests(ctx, list)
	if err != nil {
		return res, err
	}
	marker := adoptedName(o.Template, o.Repository)
	_, err = t.kube.CoreV1().ConfigMaps(o.Namespace).Get(ctx, marker, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		for _, d := range digests {
			created, err := t.record(ctx, o, d, "", "adopted")
			if err != nil {
				return res, err
			}
			if created {
				res.Adopted++
			}
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: marker, Labels: map[string]string{LabelTriggered: "catch-up"},
			Annotations: map[string]string{AnnotationImage: o.Repository}},
			Data: map[string]string{"repository": o.Repository, "adopted": fmt.Sprint(res.Adopted)}}
		if _, err := t.kube.CoreV1().ConfigMaps(o.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return res, kube.Classify("recording the first catch-up", err)
		}
		t.log.Info("first catch-up: adopted the digests already in the repository (no runs)", "repository", o.Repository, "adopted", res.Adopted)
		return res, nil
	case err != nil:
		return res, kube.Classify("reading the catch-up marker", err)
	}
	for _, d := range digests {
		if err := t.ensure(ctx, o, d, "catch-up", res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// ensure gives digest one run: ledger entry present → done; else create the run (AlreadyExists
// → it exists) and then the ledger entry. A crash between the two is mended by the next call.
func (t *Trigger) ensure(ctx context.Context, o Options, digest, by string, res *Result) error {
	ledger := ledgerName(o.Template, digest)
	if cm, err := t.kube.CoreV1().ConfigMaps(o.Namespace).Get(ctx, ledger, metav1.GetOptions{}); err == nil {
		if got := cm.Data["digest"]; got != "" && got != digest {
			// Two digests sharing 48 bits: never take one's run for the other's.
			return fmt.Errorf("the ledger entry %s is for %s, not %s: a run-name collision, start this one by hand", ledger, got, digest)
		}
		res.Existing = append(res.Existing, digest)
		return nil
	} else if !apierrors.IsNotFound(err) {
		return kube.Classify("reading the trigger ledger", err)
	}
	image := o.Repository + "@" + digest
	run := RunName(o.Template, digest)
	params := []wfv1.Parameter{{Name: o.Parameter, Value: wfv1.AnyStringPtr(image)}}
	for _, kv := range o.Params {
		params = append(params, wfv1.Parameter{Name: kv[0], Value: wfv1.AnyStringPtr(kv[1])})
	}
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: run, Labels: map[string]string{LabelTriggered: by}, Annotations: map[string]string{AnnotationImage: image}},
		Spec:       wfv1.WorkflowSpec{WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: o.Template}, Arguments: wfv1.Arguments{Parameters: params}},
	}
	_, err := t.wf.ArgoprojV1alpha1().Workflows(o.Namespace).Create(ctx, wf, metav1.CreateOptions{})
	switch {
	case err == nil:
		res.Submitted = append(res.Submitted, run)
		t.log.Info("submitted a run for the pushed image", "run", run, "image", image, "by", by)
	case apierrors.IsAlreadyExists(err):
		res.Existing = append(res.Existing, digest)
		t.log.Info("the pushed image already has its run", "run", run, "image", image)
	default:
		return kube.Classify("submitting "+run, err)
	}
	_, err = t.record(ctx, o, digest, run, by)
	return err
}

// record writes the ledger entry of digest (created false: it was there already).
func (t *Trigger) record(ctx context.Context, o Options, digest, run, by string) (bool, error) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ledgerName(o.Template, digest), Labels: map[string]string{LabelTriggered: by},
			Annotations: map[string]string{AnnotationImage: o.Repository + "@" + digest}},
		Data: map[string]string{"digest": digest, "run": run, "by": by},
	}
	_, err := t.kube.CoreV1().ConfigMaps(o.Namespace).Create(ctx, cm, metav1.CreateOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsAlreadyExists(err):
		return false, nil
	}
	return false, kube.Classify("recording "+digest+" in the trigger ledger", err)
}

// listDigests returns the distinct digests the repository's tags point to (sorted). A
// repository that does not exist yet has none.
func (t *Trigger) listDigests(ctx context.Context, repository string) ([]string, error) {
	repo, err := name.NewRepository(repository)
	if err != nil {
		return nil, exitcode.Invalidf("--repository %q: %v", repository, err)
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, t.remote...)
	tags, err := remote.List(repo, opts...)
	if err != nil {
		if isStatus(err, http.StatusNotFound) {
			return nil, nil
		}
		return nil, registryError("listing the tags of "+repository, err)
	}
	seen := map[string]bool{}
	for _, tag := range tags {
		desc, err := remote.Head(repo.Tag(tag), opts...)
		if err != nil {
			if isStatus(err, http.StatusNotFound) { // deleted between the listing and now
				continue
			}
			return nil, registryError("reading "+repository+":"+tag, err)
		}
		seen[desc.Digest.String()] = true
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

func isStatus(err error, code int) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == code
}

// registryError: refused credentials are bad input, the rest is retried.
func registryError(what string, err error) error {
	if isStatus(err, http.StatusUnauthorized) || isStatus(err, http.StatusForbidden) {
		return exitcode.Invalidf("%s: %v (credentials come from DOCKER_CONFIG: the template's registry-secret)", what, err)
	}
	var te *transport.Error
	if errors.As(err, &te) && !transient.IsStatus(te.StatusCode) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return exitcode.Retryable(fmt.Errorf("%s: %w", what, err))
}
