package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// Annotations and labels on served models.
const (
	AnnModelURI       = "gantry.dev/model-uri"
	AnnModelDigest    = "gantry.dev/model-digest"
	AnnModelVersion   = "gantry.dev/model-version"
	AnnPreviousURI    = "gantry.dev/previous-model-uri"
	AnnPreviousDigest = "gantry.dev/previous-model-digest"
	AnnRun            = "gantry.dev/run"
	LabelEnvironment  = "gantry.dev/environment"
	LabelModel        = "gantry.dev/model"
	fieldManager      = "gantry-model-publisher"
	serverPort        = 8501
)

// DeployOptions describe one deployment of a model version to an environment.
type DeployOptions struct {
	Namespace      string
	Environment    string // staging | production
	ModelName      string
	ModelURI       string // a published version prefix
	ModelDigest    string // from the manifest; the server verifies it
	ModelVersion   string
	RegistryURI    string // for the environment history
	ServerImage    string
	Replicas       int
	S3Endpoint     string
	S3Secret       string // Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, referenced, never copied
	ServiceAccount string
	Run            string // the workflow that deployed it
	RolloutTimeout time.Duration
	// ExpectLive makes Deploy a compare-and-swap: it replaces only the model with this digest
	// ("none": only when the environment serves nothing), or one already serving the candidate
	// (a retried promote). Empty: not checked.
	ExpectLive string
	// UndoRun makes Rollback undo only this run's deploy (see Rollback). Empty: whatever is live.
	UndoRun string
	// serverTrust is set when the namespace has a trust policy (attest.TrustPolicyConfigMap):
	// the production server mounts it and refuses a model whose chain does not verify.
	serverTrust bool
}

// Validate checks the options (bad input).
func (o *DeployOptions) Validate() error {
	if err := o.ValidateTeardown(); err != nil {
		return err
	}
	if len(o.ModelName) > 50 {
		return exitcode.Invalidf("--model-name %q: want a DNS label of at most 50 characters", o.ModelName)
	}
	if o.ServerImage == "" {
		return exitcode.Invalidf("--server-image is required")
	}
	if o.Replicas < 1 {
		return exitcode.Invalidf("--replicas must be at least 1")
	}
	if o.RolloutTimeout <= 0 {
		return exitcode.Invalidf("--rollout-timeout must be positive")
	}
	if o.RegistryURI == "" {
		return exitcode.Invalidf("--registry-uri is required (the environment history lives there)")
	}
	if _, err := objstore.Parse(o.RegistryURI); err != nil {
		return fmt.Errorf("--registry-uri: %w", err)
	}
	if o.ModelURI != "" {
		if _, err := objstore.Parse(o.ModelURI); err != nil {
			return fmt.Errorf("--model-uri: %w", err)
		}
	}
	switch {
	case o.ExpectLive == "", o.ExpectLive == "none", digestRE.MatchString(o.ExpectLive):
	case o.ExpectLive == UnknownLive:
		return exitcode.Invalidf("--expect-live-digest %s: the canary could not tell which model %s served when it compared (the server did not answer or did not say); not replacing it without a compare-and-swap: run the pipeline again", UnknownLive, o.Environment)
	default:
		return exitcode.Invalidf("--expect-live-digest %q: want sha256:<64 hex> or \"none\"", o.ExpectLive)
	}
	return nil
}

// UnknownLive is the canary's baseline-digest when production's model could not be told: deploy
// refuses it (fail closed) instead of skipping the compare-and-swap.
const UnknownLive = "unknown"

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Name of the Deployment and Service serving a model in an environment. Production is one per
// model. Staging is one per run when the run is known ("<model>-stg-<8 hex of the run's
// SHA-256>", at most 63 characters for a 50-character model name): overlapping runs of a model
// never replace, score or tear down each other's candidate.
func Name(model, env, run string) string {
	if env == "staging" && run != "" {
		h := sha256.Sum256([]byte(run))
		return model + "-stg-" + hex.EncodeToString(h[:4])
	}
	return model + "-" + env
}

func (o *DeployOptions) name() string { return Name(o.ModelName, o.Environment, o.Run) }

// Deployed is the outcome of a deploy or rollback.
type Deployed struct {
	Endpoint         string
	ModelURI         string
	PreviousModelURI string
	Unchanged        bool
	// ProductionEndpoint is production's endpoint when a production server exists for the model
	// (after the deploy), empty when there is none: the canary compares with it, and "no
	// production yet" is a fact read from the API server, not guessed from a failed request.
	ProductionEndpoint string
	// Outcome says what a rollback did (rolled back to, removed, nothing to roll back).
	Outcome string
}

// Values renders the results.
func (d *Deployed) Values() map[string]string {
	return map[string]string{"endpoint": d.Endpoint, "previous-model-uri": d.PreviousModelURI, "model-uri": d.ModelURI,
		"production-endpoint": d.ProductionEndpoint, "outcome": d.Outcome}
}

func endpoint(name, ns string) string {
	return fmt.Sprintf("http://%s.%s.svc:%d", name, ns, serverPort)
}

// productionEndpoint is the model's production endpoint, or "" when it has no production server.
func (d *Deployer) productionEndpoint(ctx context.Context, o DeployOptions) (string, error) {
	name := Name(o.ModelName, "production", "")
	_, err := d.client.AppsV1().Deployments(o.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", kube.Classify("looking for production "+name, err)
	}
	return endpoint(name, o.Namespace), nil
}

// Deployer manages served models.
type Deployer struct {
	client kubernetes.Interface
	store  objstore.Store
	config
}

// ReleaseGate decides whether a production deploy may go ahead: approve.Approver's
// AllowRelease (the run's approvals, bound to its UID and to this digest; the policy in force).
type ReleaseGate interface {
	AllowRelease(ctx context.Context, r approve.Release) error
}

// WithReleaseGate sets the gate production deploys must pass (without one, production is refused).
func WithReleaseGate(g ReleaseGate) Option { return func(c *config) { c.gate = g } }

// WithTrustPolicy makes production deploys require the model's attestation chain (training,
// evaluation, approval), each link about the digest being deployed and signed by a key the
// policy names for its role.
func WithTrustPolicy(p *attest.Policy) Option { return func(c *config) { c.trust = p } }

// NewDeployer returns a Deployer applying to client and keeping history in store.
func NewDeployer(client kubernetes.Interface, store objstore.Store, opts ...Option) *Deployer {
	return &Deployer{client: client, store: store, config: newConfig(opts)}
}

// Deploy verifies the version, applies the Deployment and Service, waits for
// the rollout and appends to the environment history.
func (d *Deployer) Deploy(ctx context.Context, o DeployOptions) (*Deployed, error) {
	if o.ModelURI == "" {
		return nil, exitcode.Invalidf("--model-uri is required")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	m, err := ReadManifest(ctx, d.store, o.ModelURI)
	if err != nil {
		if objstore.IsNotExist(err) {
			return nil, exitcode.Invalidf("%s is not a published model version (no manifest.json)", o.ModelURI)
		}
		return nil, err
	}
	if o.ModelDigest != "" && o.ModelDigest != m.Digest {
		return nil, exitcode.Invalidf("--model-digest %s does not match the manifest of %s (%s)", o.ModelDigest, o.ModelURI, m.Digest)
	}
	o.ModelDigest, o.ModelVersion = m.Digest, m.Version
	if o.Environment == "production" {
		// Approval is checked where it takes effect: here, whatever led to this call.
		if d.gate == nil {
			return nil, exitcode.Invalidf("no release gate: production is deployed only after the run's approvals are checked")
		}
		if err := d.gate.AllowRelease(ctx, approve.Release{Namespace: o.Namespace, Run: o.Run, Digest: m.Digest,
			PublishedBy: m.Workflow, PublishedAt: m.Created}); err != nil {
			return nil, err
		}
		cluster, err := d.clusterTrust(ctx, &o)
		if err != nil {
			return nil, err
		}
		if err := d.verifyChain(ctx, o, cluster, d.trust); err != nil {
			return nil, err
		}
	}
	mode := recordLive
	if o.Environment == "production" {
		mode = recordIntent
	}
	var res *Deployed
	err = d.locked(ctx, o, func(ctx context.Context) error {
		if mode == recordIntent {
			if _, _, err := d.settleInterrupted(ctx, o, true); err != nil {
				return err
			}
		}
		var err error
		res, err = d.apply(ctx, o, mode)
		return err
	})
	return res, err
}

// How apply records what it did in the environment's history.
type recordMode int

const (
	recordLive     recordMode = iota // staging: appended as live after the rollout
	recordIntent                     // production: the intent before the Deployment changes, made live after the rollout
	recordRollback                   // a rollback (its caller wrote it first): appended after the rollout if missing
	recordNothing                    // returning production to the history's head: the history says so already
)

// settleInterrupted finishes what an interrupted release left behind, before a release step
// changes production (the caller holds the release lock, so the interrupted step is not running:
// its process died, or its run was terminated, or it lost the lock). An intent that was never
// made live is marked aborted, and production, if that release had changed it, returns to the
// history's head (or, with no head, goes). The caller's own intent (promoting: a retry of the
// same promote) is left for it to finish. It says what it did (nil when nothing was interrupted)
// and which run's release it was.
func (d *Deployer) settleInterrupted(ctx context.Context, o DeployOptions, promoting bool) (*Deployed, string, error) {
	h, err := readHistory(ctx, d.store, o.RegistryURI, o.ModelName, o.Namespace, o.Environment)
	if err != nil {
		return nil, "", err
	}
	p, pending := h.pending()
	if pending && promoting && p.Run == o.Run && p.ModelURI == o.ModelURI {
		return nil, "", nil
	}
	dep, err := d.deployment(ctx, o)
	if err != nil {
		return nil, "", err
	}
	head, hasHead := h.current()
	serves := func(e HistoryEntry) bool {
		return dep != nil && dep.Annotations[AnnModelURI] == e.ModelURI && dep.Annotations[AnnRun] == e.Run &&
			(!hasHead || head.ModelURI != e.ModelURI)
	}
	var interrupted HistoryEntry
	switch {
	case pending:
		interrupted = p
	default: // an intent aborted by a step that died before production was returned
		for i := len(h.Entries) - 1; i >= 0; i-- {
			if e := h.Entries[i]; e.Aborted && serves(e) {
				interrupted = e
				break
			}
		}
		if interrupted.ModelURI == "" {
			return nil, "", nil
		}
	}
	d.log.Info("settling an interrupted release", "environment", o.Environment, "model", interrupted.ModelURI, "run", orNone(interrupted.Run))
	// Intent first here too: the history says the release was aborted before production changes.
	if pending {
		if _, err := abortIntent(ctx, d.store, o, p, o.Run); err != nil {
			return nil, "", err
		}
	}
	if !serves(interrupted) {
		return &Deployed{Unchanged: true, ModelURI: head.ModelURI, Outcome: fmt.Sprintf("the release of %s by %s was interrupted before it changed %s; recorded as aborted",
			interrupted.Version, orNone(interrupted.Run), o.Environment)}, interrupted.Run, nil
	}
	if !hasHead {
		if err := d.Teardown(ctx, o); err != nil {
			return nil, "", err
		}
		return &Deployed{PreviousModelURI: interrupted.ModelURI, Outcome: fmt.Sprintf("removed the %s server: the release of %s by %s did not complete and nothing served before it",
			o.Environment, interrupted.Version, orNone(interrupted.Run))}, interrupted.Run, nil
	}
	back := o
	back.returnTo(head)
	back.Run, back.ExpectLive = head.Run, ""
	res, err := d.apply(ctx, back, recordNothing)
	if err != nil {
		return nil, "", err
	}
	res.PreviousModelURI = interrupted.ModelURI
	res.Outcome = fmt.Sprintf("rolled back to %s (%s): the release of %s by %s did not complete",
		head.Version, head.Digest, interrupted.Version, orNone(interrupted.Run))
	return res, interrupted.Run, nil
}

// deployment is o's environment's Deployment as read now, nil when there is none.
func (d *Deployer) deployment(ctx context.Context, o DeployOptions) (*appsv1.Deployment, error) {
	name := o.name()
	dep, err := d.client.AppsV1().Deployments(o.Namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, kube.Classify("getting deployment "+name, err)
	}
	return dep, nil
}

// minProgressDeadline is the shortest progressDeadlineSeconds gantry gives a Deployment.
const minProgressDeadline = 30 * time.Second

// returnTo makes o deploy what e recorded as live: the model, and the server image it was served
// with (a rollback returns to the known-good pair, not to the old model on a new server that
// was only ever tested with the model being rolled back). Entries written before the image was
// recorded keep o's image.
func (o *DeployOptions) returnTo(e HistoryEntry) {
	o.ModelURI, o.ModelDigest, o.ModelVersion = e.ModelURI, e.Digest, e.Version
	if e.ServerImage != "" {
		o.ServerImage = e.ServerImage
	}
}

// checkLive refuses to replace anything but the model the canary compared against (cur: the
// Deployment as read, nil when there is none).
func checkLive(o DeployOptions, cur *appsv1.Deployment) error {
	live := "none"
	if cur != nil {
		live = cur.Annotations[AnnModelDigest]
	}
	if live == o.ExpectLive || live == o.ModelDigest {
		return nil
	}
	return exitcode.With(exitcode.Failed, fmt.Errorf("%s changed since the canary (now %s, the canary compared against %s): not replacing it with %s",
		o.Environment, live, o.ExpectLive, o.ModelDigest))
}

func (d *Deployer) apply(ctx context.Context, o DeployOptions, mode recordMode) (*Deployed, error) {
	name := o.name()
	deps := d.client.AppsV1().Deployments(o.Namespace)
	prevURI, prevDigest := "", ""
	cur, err := deps.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cur = nil
	case err != nil:
		return nil, kube.Classify("getting deployment "+name, err)
	case cur.Annotations[AnnModelURI] == o.ModelURI: // re-apply of the same model keeps the recorded previous one
		prevURI, prevDigest = cur.Annotations[AnnPreviousURI], cur.Annotations[AnnPreviousDigest]
	default:
		prevURI, prevDigest = cur.Annotations[AnnModelURI], cur.Annotations[AnnModelDigest]
	}
	// The compare-and-swap: the model the canary compared against is checked on the object read
	// here, and the apply carries that read's resourceVersion, so a release that changed the
	// Deployment in between makes this apply conflict instead of being overwritten.
	cfg := deploymentConfig(o, name, prevURI, prevDigest)
	if o.ExpectLive != "" {
		if err := checkLive(o, cur); err != nil {
			return nil, err
		}
	}
	if cur != nil {
		cfg.WithResourceVersion(cur.ResourceVersion)
	}
	if mode == recordIntent {
		if _, err := intend(ctx, d.store, o, d.now().UTC()); err != nil {
			return nil, err
		}
	}
	appliedAt := time.Now()
	applied, err := deps.Apply(ctx, cfg, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	// The compare-and-swap guards against another release, not against the deployment controller:
	// a conflict whose fresh read shows the same spec (generation) and the same model is a status
	// write in between (the controller reporting a rollout), so the apply is made again on it.
	for tries := 0; apierrors.IsConflict(err) && cur != nil && tries < 5; tries++ {
		fresh, gerr := deps.Get(ctx, name, metav1.GetOptions{})
		if gerr != nil || !sameRelease(cur, fresh) {
			break
		}
		cur = fresh
		cfg.WithResourceVersion(cur.ResourceVersion)
		applied, err = deps.Apply(ctx, cfg, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	}
	switch {
	case apierrors.IsConflict(err):
		return nil, exitcode.Retryable(fmt.Errorf("deployment %s changed while this step applied %s (another release?); the retry decides again: %w", name, o.ModelDigest, err))
	case err != nil:
		return nil, kube.Classify("applying deployment "+name, err)
	}
	if _, err := d.client.CoreV1().Services(o.Namespace).Apply(ctx, serviceConfig(o, name), metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return nil, kube.Classify("applying service "+name, err)
	}
	d.log.Info("applied", "deployment", name, "model", o.ModelURI, "previous", prevURI)
	if err := d.waitRollout(ctx, o.Namespace, name, o.RolloutTimeout, applied.Generation, o.ModelDigest, appliedAt); err != nil {
		return nil, err
	}
	var changed bool
	switch mode {
	case recordLive, recordRollback:
		changed, err = appendHistory(ctx, d.store, o, d.now().UTC(), mode == recordRollback)
	case recordIntent:
		changed, err = commitIntent(ctx, d.store, o, d.now().UTC())
	}
	if err != nil {
		return nil, err
	}
	prod, err := d.productionEndpoint(ctx, o)
	if err != nil {
		return nil, err
	}
	return &Deployed{Endpoint: endpoint(name, o.Namespace), ModelURI: o.ModelURI,
		PreviousModelURI: prevURI, Unchanged: !changed, ProductionEndpoint: prod}, nil
}

func deploymentConfig(o DeployOptions, name, prevURI, prevDigest string) *appsac.DeploymentApplyConfiguration {
	lbl := map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "gantry", LabelModel: o.ModelName, LabelEnvironment: o.Environment}
	sel := map[string]string{"app.kubernetes.io/name": name}
	ann := map[string]string{AnnModelURI: o.ModelURI, AnnModelDigest: o.ModelDigest, AnnModelVersion: o.ModelVersion}
	if prevURI != "" {
		ann[AnnPreviousURI], ann[AnnPreviousDigest] = prevURI, prevDigest
	}
	if o.Run != "" {
		ann[AnnRun] = o.Run
	}
	args := []string{"--model-uri=" + o.ModelURI, "--model-digest=" + o.ModelDigest, "--model-name=" + o.ModelName,
		"--model-version=" + o.ModelVersion, fmt.Sprintf("--listen=:%d", serverPort)}
	c := coreac.Container().WithName("model-server").WithImage(o.ServerImage).WithArgs(args...).
		WithPorts(coreac.ContainerPort().WithName("http").WithContainerPort(serverPort)).
		WithReadinessProbe(coreac.Probe().WithHTTPGet(coreac.HTTPGetAction().WithPath("/v2/health/ready").WithPort(intstr.FromString("http"))).
			WithPeriodSeconds(2).WithFailureThreshold(3)).
		WithLivenessProbe(coreac.Probe().WithHTTPGet(coreac.HTTPGetAction().WithPath("/v2/health/live").WithPort(intstr.FromString("http"))).
			WithPeriodSeconds(10).WithFailureThreshold(3)).
		WithSecurityContext(coreac.SecurityContext().WithRunAsNonRoot(true).WithReadOnlyRootFilesystem(true).WithAllowPrivilegeEscalation(false))
	if o.S3Endpoint != "" {
		c.WithEnv(coreac.EnvVar().WithName("GANTRY_S3_ENDPOINT").WithValue(o.S3Endpoint))
	}
	if o.S3Secret != "" {
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			c.WithEnv(coreac.EnvVar().WithName(k).WithValueFrom(coreac.EnvVarSource().WithSecretKeyRef(
				coreac.SecretKeySelector().WithName(o.S3Secret).WithKey(k))))
		}
	}
	// A model server never needs the Kubernetes API: no token.
	pod := coreac.PodSpec().WithAutomountServiceAccountToken(false)
	if o.serverTrust && o.Environment == "production" {
		c.WithArgs("--trust-policy=" + attest.TrustPolicyDir + "/" + attest.TrustPolicyKey).
			WithVolumeMounts(coreac.VolumeMount().WithName("trust-policy").WithMountPath(attest.TrustPolicyDir).WithReadOnly(true))
		pod.WithVolumes(coreac.Volume().WithName("trust-policy").WithConfigMap(coreac.ConfigMapVolumeSource().WithName(attest.TrustPolicyConfigMap)))
	}
	pod.WithContainers(c)
	if o.ServiceAccount != "" {
		pod.WithServiceAccountName(o.ServiceAccount)
	}
	return appsac.Deployment(name, o.Namespace).WithLabels(lbl).WithAnnotations(ann).
		WithSpec(appsac.DeploymentSpec().WithReplicas(int32(o.Replicas)).WithSelector(metaac.LabelSelector().WithMatchLabels(sel)).
			WithProgressDeadlineSeconds(int32(max(o.RolloutTimeout.Seconds(), minProgressDeadline.Seconds()))).
			WithTemplate(coreac.PodTemplateSpec().WithLabels(lbl).WithAnnotations(map[string]string{AnnModelDigest: o.ModelDigest}).WithSpec(pod)))
}

func serviceConfig(o DeployOptions, name string) *coreac.ServiceApplyConfiguration {
	return coreac.Service(name, o.Namespace).
		WithLabels(map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "gantry", LabelModel: o.ModelName, LabelEnvironment: o.Environment}).
		WithSpec(coreac.ServiceSpec().WithSelector(map[string]string{"app.kubernetes.io/name": name}).
			WithPorts(coreac.ServicePort().WithName("http").WithPort(serverPort).WithTargetPort(intstr.FromString("http"))))
}

// rolledOut reports whether the rollout this step applied — generation gen serving digest — is
// fully available. A status the deployment controller wrote for an older generation says nothing
// about this rollout (its ProgressDeadlineExceeded belongs to the rollout before: a rollback right
// after a timed-out promote must not fail on it). A Deployment whose pods no longer serve digest
// was changed by another writer: this rollout will never finish, and another's must not count.
//
// A ProgressDeadlineExceeded recorded before this rollout could have reached its own deadline
// (applied at `applied`; our Deployments' progress deadline is at least 30 s) is the previous
// rollout's, even once our generation is observed: the deployment controller keeps a timed-out
// condition until the rollout that follows makes progress, so a rollback right after a timed-out
// promote would otherwise fail on the promote's deadline (seen on a real API server).
func rolledOut(dep *appsv1.Deployment, gen int64, digest string, applied time.Time) (bool, error) {
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	// A view of the Deployment from before this step's apply (an older generation: the watch's
	// first list may be served from the API server's watch cache, which can lag behind the apply
	// that returned gen) says nothing about this rollout: wait for a newer one.
	if dep.Generation < gen {
		return false, nil
	}
	if now := dep.Spec.Template.Annotations[AnnModelDigest]; digest != "" && now != digest {
		return false, exitcode.With(exitcode.Failed, fmt.Errorf("deployment %s was changed by another release during this rollout: it now serves %s, this step applied %s",
			dep.Name, orNone(now), digest))
	}
	if dep.Status.ObservedGeneration < max(gen, dep.Generation) {
		return false, nil
	}
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" &&
			!c.LastUpdateTime.Time.Before(applied.Add(minProgressDeadline/2)) {
			return false, fmt.Errorf("deployment %s exceeded its progress deadline: %s", dep.Name, c.Message)
		}
	}
	return dep.Status.UpdatedReplicas == want && dep.Status.AvailableReplicas == want && dep.Status.Replicas == want, nil
}

// waitRollout watches the Deployment until its rollout completes, and fails
// fast with an explanation when its pods cannot start.
func (d *Deployer) waitRollout(ctx context.Context, ns, name string, timeout time.Duration, gen int64, digest string, applied time.Time) error {
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	defer cancelTimeout()
	// A pod that cannot start changes nothing in the Deployment's status, so no watch event
	// would show it: pods are also looked at every few seconds, and a hopeless one ends the wait.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var latest atomic.Pointer[appsv1.Deployment]
	var lastErr atomic.Value // string: the last pod problem seen
	check := func(dep *appsv1.Deployment) error {
		why := d.podProblem(ctx, ns, dep)
		if why == "" {
			return nil
		}
		lastErr.Store(why)
		for _, hopeless := range []string{"ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError", "InvalidImageName"} {
			if strings.Contains(why, hopeless) {
				return fmt.Errorf("deployment %s cannot roll out: %s", name, why)
			}
		}
		return nil
	}
	go func() {
		tick := time.NewTicker(d.podCheckEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if dep := latest.Load(); dep != nil {
				if err := check(dep); err != nil {
					stop(err)
					return
				}
			}
		}
	}()
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			return d.client.AppsV1().Deployments(ns).List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			return d.client.AppsV1().Deployments(ns).Watch(ctx, o)
		},
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &appsv1.Deployment{}, nil, func(ev watch.Event) (bool, error) {
		dep, ok := ev.Object.(*appsv1.Deployment)
		if !ok || dep.Name != name {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			return false, fmt.Errorf("deployment %s was deleted during the rollout", name)
		}
		latest.Store(dep)
		done, err := rolledOut(dep, gen, digest, applied)
		if err != nil {
			return false, d.explain(ctx, ns, dep, err)
		}
		if done {
			d.log.Info("rollout complete", "deployment", name, "replicas", dep.Status.AvailableReplicas)
			return true, nil
		}
		if err := check(dep); err != nil {
			return false, err
		}
		d.log.Info("rolling out", "deployment", name, "updated", dep.Status.UpdatedReplicas, "available", dep.Status.AvailableReplicas,
			"want", deref32(dep.Spec.Replicas))
		return false, nil
	})
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		return cause // a hopeless pod, found by the periodic look
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, watchtools.ErrWatchClosed) || ctx.Err() != nil {
		msg := fmt.Sprintf("deployment %s not rolled out within %s", name, timeout)
		if why, _ := lastErr.Load().(string); why != "" {
			msg += ": " + why
		}
		return errors.New(msg)
	}
	return err
}

func deref32(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func (d *Deployer) explain(ctx context.Context, ns string, dep *appsv1.Deployment, err error) error {
	if why := d.podProblem(ctx, ns, dep); why != "" {
		return fmt.Errorf("%w; %s", err, why)
	}
	return err
}

// podProblem describes the first unhealthy pod of the Deployment, with the
// last log lines of a crashing container.
func (d *Deployer) podProblem(ctx context.Context, ns string, dep *appsv1.Deployment) string {
	sel := labels.SelectorFromSet(dep.Spec.Selector.MatchLabels)
	pods, err := d.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		if p.Annotations[AnnModelDigest] != dep.Spec.Template.Annotations[AnnModelDigest] {
			continue // a pod of another model (the one being replaced, or rolled back from)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return fmt.Sprintf("pod %s unschedulable: %s", p.Name, c.Message)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			w := cs.State.Waiting
			if w == nil || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing" {
				continue
			}
			why := fmt.Sprintf("pod %s container %s: %s: %s", p.Name, cs.Name, w.Reason, w.Message)
			if w.Reason == "CrashLoopBackOff" {
				if t := cs.LastTerminationState.Terminated; t != nil {
					why += fmt.Sprintf(" (exit code %d)", t.ExitCode)
				}
				if logs := d.lastLogs(ctx, ns, p.Name, cs.Name); logs != "" {
					why += "; last log lines:\n" + logs
				}
			}
			return why
		}
	}
	return ""
}

func (d *Deployer) lastLogs(ctx context.Context, ns, pod, container string) string {
	tail := int64(10)
	rc, err := d.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: true, TailLines: &tail}).Stream(ctx)
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 4096))
	return strings.TrimSpace(string(b))
}

// Rollback returns the environment to the model that was live before the current one, and
// says what it did in Deployed.Outcome. It is idempotent: a retry or a second rollback applies
// the first one's outcome again and never returns to the model rolled back from. With
// o.UndoRun it undoes only that run's deploy: when the environment serves a model another run
// put there (a promote refused by its compare-and-swap, or one that never started), it changes
// nothing. A deploy that changed the Deployment but failed before recording it in the history
// (a crashing server, a rollout timeout) is undone by returning to the history's current model.
func (d *Deployer) Rollback(ctx context.Context, o DeployOptions) (*Deployed, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Environment != "production" {
		return nil, exitcode.Invalidf("--environment %s: only production rolls back (staging is one server per run: deploy again or tear it down)", o.Environment)
	}
	// The server a rollback starts is production's: under the namespace's trust policy it loads
	// only a model whose chain verifies (a model promoted before the policy existed is refused).
	if _, err := d.clusterTrust(ctx, &o); err != nil {
		return nil, err
	}
	var res *Deployed
	err := d.locked(ctx, o, func(ctx context.Context) error {
		var err error
		res, err = d.rollback(ctx, o)
		return err
	})
	return res, err
}

// rollback is Rollback under the release lock.
func (d *Deployer) rollback(ctx context.Context, o DeployOptions) (*Deployed, error) {
	// A release interrupted before it was recorded live (this run's, or one whose run was
	// terminated) is undone first; when it is the one to roll back, that is the rollback.
	settled, by, err := d.settleInterrupted(ctx, o, false)
	if err != nil {
		return nil, err
	}
	if settled != nil && (o.UndoRun == "" || o.UndoRun == by) {
		return settled, nil
	}
	dep, err := d.deployment(ctx, o)
	if err != nil {
		return nil, err
	}
	if o.UndoRun != "" {
		if dep == nil {
			return &Deployed{Unchanged: true, Outcome: fmt.Sprintf("nothing to roll back: no %s server", o.Environment)}, nil
		}
		if by := dep.Annotations[AnnRun]; by != o.UndoRun {
			return &Deployed{Unchanged: true, ModelURI: dep.Annotations[AnnModelURI], Outcome: fmt.Sprintf("nothing to roll back: %s serves %s, deployed by %s, not by %s",
				o.Environment, dep.Annotations[AnnModelDigest], orNone(by), o.UndoRun)}, nil
		}
	}
	h, err := readHistory(ctx, d.store, o.RegistryURI, o.ModelName, o.Namespace, o.Environment)
	if err != nil {
		return nil, err
	}
	cur, hasCur := h.current()
	if dep != nil && (!hasCur || dep.Annotations[AnnModelURI] != cur.ModelURI) {
		// The Deployment serves a model the history never recorded as live: a deploy failed
		// after applying it. Undo that deploy; the history is already right.
		bad := dep.Annotations[AnnModelURI]
		if !hasCur {
			d.log.Info("unrecorded first model: removing the environment's server", "environment", o.Environment, "from", bad)
			if err := d.Teardown(ctx, o); err != nil {
				return nil, err
			}
			return &Deployed{PreviousModelURI: bad, Outcome: fmt.Sprintf("removed the %s server: %s never completed its deploy and nothing served before it", o.Environment, bad)}, nil
		}
		d.log.Info("undoing an incomplete deploy", "environment", o.Environment, "from", bad, "to", cur.ModelURI)
		o.returnTo(cur)
		res, err := d.apply(ctx, o, recordRollback)
		if res != nil {
			res.PreviousModelURI = bad
			res.Outcome = fmt.Sprintf("rolled back to %s (%s): %s never completed its deploy", cur.Version, cur.Digest, bad)
		}
		return res, err
	}
	// A rollback undoes the last promotion. When the last entry is already a rollback (a retry
	// after the history write, or a second rollback), there is nothing more to undo: its outcome
	// is applied again, and the model it rolled back from is never returned to.
	if eff := h.effective(); len(eff) > 0 && eff[len(eff)-1].Rollback {
		last := eff[len(eff)-1]
		from := ""
		if cur, ok := (&History{Entries: eff[:len(eff)-1]}).current(); ok {
			from = cur.ModelURI
		}
		d.log.Info("already rolled back; applying the same outcome again", "environment", o.Environment, "to", last.ModelURI, "by", last.Run)
		if last.ModelURI == "" {
			if err := d.Teardown(ctx, o); err != nil {
				return nil, err
			}
			return &Deployed{PreviousModelURI: from, Unchanged: true, Outcome: fmt.Sprintf("already rolled back by %s: no %s server", orNone(last.Run), o.Environment)}, nil
		}
		o.returnTo(last)
		res, err := d.apply(ctx, o, recordRollback)
		if res != nil {
			res.PreviousModelURI, res.Unchanged = from, true
			res.Outcome = fmt.Sprintf("already rolled back by %s to %s (%s)", orNone(last.Run), last.Version, last.Digest)
		}
		return res, err
	}
	prev, ok := h.previous()
	if !ok {
		if !hasCur {
			d.log.Info("nothing is live: nothing to roll back", "environment", o.Environment)
			return &Deployed{Unchanged: true, Outcome: fmt.Sprintf("nothing to roll back: nothing is live in %s", o.Environment)}, nil
		}
		// The first model of the environment failed: there is nothing to return to, so nothing
		// stays live rather than the model that failed. Intent first: the history says so before
		// the server goes, so a retry after any crash finishes the removal and never finds the
		// failed model recorded as live.
		d.log.Info("no earlier model: removing the environment's server", "environment", o.Environment, "from", cur.ModelURI)
		gone := o
		gone.ModelURI, gone.ModelDigest, gone.ModelVersion = "", "", ""
		if _, err := appendHistoryIf(ctx, d.store, gone, d.now().UTC(), true, stillCurrent(o.Environment, cur)); err != nil {
			return nil, err
		}
		if err := d.Teardown(ctx, o); err != nil {
			return nil, err
		}
		return &Deployed{PreviousModelURI: cur.ModelURI, Outcome: fmt.Sprintf("removed the %s server: %s was its first model, nothing earlier to return to", o.Environment, cur.Version)}, nil
	}
	d.log.Info("rolling back", "environment", o.Environment, "to", prev.ModelURI, "version", prev.Version)
	o.returnTo(prev)
	// Intent first: the rollback is in the history before the Deployment changes. A retry after
	// any crash (the history written, the apply not; the apply done, the step killed) reads a
	// history whose last entry is this rollback and applies its outcome again; it can never see
	// its own rollback as an unfinished deploy and put the failed model back.
	if _, err := appendHistoryIf(ctx, d.store, o, d.now().UTC(), true, stillCurrent(o.Environment, cur)); err != nil {
		return nil, err
	}
	res, err := d.apply(ctx, o, recordRollback)
	if res != nil {
		res.Outcome = fmt.Sprintf("rolled back to %s (%s) from %s", prev.Version, prev.Digest, cur.Version)
	}
	return res, err
}

// stillCurrent guards a rollback's history entry: the model it rolls back from must still be the
// environment's current one (another release recorded since would otherwise be rolled back
// without anyone deciding so).
func stillCurrent(env string, from HistoryEntry) func(*History) error {
	return func(h *History) error {
		if cur, ok := h.current(); !ok || cur.ModelURI != from.ModelURI {
			return exitcode.With(exitcode.Failed, fmt.Errorf("%s changed while rolling back from %s (now %s): not rolling back a release nobody decided to undo",
				env, from.Version, orNone(cur.Version)))
		}
		return nil
	}
}

func orNone(s string) string {
	if s == "" {
		return "nobody recorded"
	}
	return s
}

// ValidateTeardown checks what Teardown uses: the environment and the model name (bad input).
func (o *DeployOptions) ValidateTeardown() error {
	if o.Environment != "staging" && o.Environment != "production" {
		return exitcode.Invalidf("--environment %q: want staging or production", o.Environment)
	}
	if !nameRE.MatchString(o.ModelName) {
		return exitcode.Invalidf("--model-name %q: want a DNS label", o.ModelName)
	}
	return nil
}

// Teardown deletes the environment's Deployment and Service (o.Namespace, o.ModelName, o.Environment).
func (d *Deployer) Teardown(ctx context.Context, o DeployOptions) error {
	if err := o.ValidateTeardown(); err != nil {
		return err
	}
	ns, name := o.Namespace, o.name()
	bg := metav1.DeletePropagationBackground
	if err := d.client.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return kube.Classify("deleting deployment "+name, err)
	}
	if err := d.client.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return kube.Classify("deleting service "+name, err)
	}
	d.log.Info("torn down", "deployment", name)
	return nil
}

// clusterTrust is the namespace's trust policy (the ConfigMap attest.TrustPolicyConfigMap), nil
// when it has none. Read by promote itself, whatever called it: no parameter of a run can turn it
// off, and only whoever may write that ConfigMap (an admin) decides what production requires. A
// policy that does not parse refuses every production deploy (exit 2): fail closed. With one, the
// production server o describes mounts it (o.serverTrust).
func (d *Deployer) clusterTrust(ctx context.Context, o *DeployOptions) (*attest.Policy, error) {
	ns := o.Namespace
	cm, err := d.client.CoreV1().ConfigMaps(ns).Get(ctx, attest.TrustPolicyConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, kube.Classify("reading the trust policy "+attest.TrustPolicyConfigMap, err)
	}
	p, err := attest.ParsePolicy([]byte(cm.Data[attest.TrustPolicyKey]))
	if err != nil {
		return nil, exitcode.Invalidf("ConfigMap %s/%s (key %s): %v: production is refused until it is fixed", ns, attest.TrustPolicyConfigMap, attest.TrustPolicyKey, err)
	}
	o.serverTrust = true
	return p, nil
}

// verifyChain refuses (exit 2) a model whose attestation chain does not verify under each trust
// policy given (nil ones are skipped): missing, unsigned, signed by a key the policy does not name
// for the role, or about another model. The chain is read once.
func (d *Deployer) verifyChain(ctx context.Context, o DeployOptions, policies ...*attest.Policy) error {
	policies = slices.DeleteFunc(policies, func(p *attest.Policy) bool { return p == nil })
	if len(policies) == 0 {
		return nil
	}
	subject, err := attest.AttestationSubject(ctx, d.store, o.RegistryURI, o.ModelName, o.ModelVersion)
	if err != nil {
		return err
	}
	envs, err := attest.ReadAttestations(ctx, d.store, o.RegistryURI, o.ModelName, o.ModelVersion)
	if err != nil {
		return err
	}
	for _, trust := range policies {
		if _, err := trust.VerifyChain(ctx, envs, subject); err != nil {
			return exitcode.Invalidf("not promoted: %v", err)
		}
	}
	return nil
}

// sameRelease: b is a with at most its status changed — the same spec generation and model.
func sameRelease(a, b *appsv1.Deployment) bool {
	return a.Generation == b.Generation && a.Annotations[AnnModelURI] == b.Annotations[AnnModelURI] &&
		a.Annotations[AnnModelDigest] == b.Annotations[AnnModelDigest]
}
