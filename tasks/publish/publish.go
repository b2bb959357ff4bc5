// Package publish makes a trained model an immutable, addressable version in
// a model registry (an object-store prefix), optionally an OCI artifact, and
// serves versions in staging and production with a promotion history.
package publish

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/manifest"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// PublishOptions describe one publish.
type PublishOptions struct {
	SourceURI   string // trainer output
	RegistryURI string // e.g. s3://models
	ModelName   string
	// Version is optional: the default is "<UTC yyyymmddThhmmssZ>-<digest[:12]>",
	// sortable by time and tied to the content.
	Version             string
	TrainingImageDigest string
	Run                 string // the run publishing it, recorded in the manifest
	OCIRef              string // optional repository to push the OCI artifact to
	OCIBase             string // optional base image of a modelcar (KServe needs a shell)
	OCIFormat           string // artifact (default) or modelcar
}

// Published is the outcome of a publish.
type Published struct {
	Manifest  manifest.Manifest
	URI       string // version prefix, with trailing slash
	OCIDigest string // repo@sha256:… when pushed
	Reused    bool   // the same content was already published
}

// Values renders the results.
func (p *Published) Values() map[string]string {
	return map[string]string{"model-version": p.Manifest.Version, "model-uri": p.URI, "model-digest": p.Manifest.Digest, "oci-digest": p.OCIDigest}
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// Validate checks the options (bad input).
func (o *PublishOptions) Validate() error {
	if !nameRE.MatchString(o.ModelName) {
		return exitcode.Invalidf("--model-name %q: want a DNS label (lowercase letters, digits, -)", o.ModelName)
	}
	if o.Version != "" && !versionRE.MatchString(o.Version) {
		return exitcode.Invalidf("--version %q: want letters, digits, . _ -", o.Version)
	}
	for flag, u := range map[string]string{"source-uri": o.SourceURI, "registry-uri": o.RegistryURI} {
		if u == "" {
			return exitcode.Invalidf("--%s is required", flag)
		}
		if _, err := objstore.Parse(u); err != nil {
			return fmt.Errorf("--%s: %w", flag, err)
		}
	}
	// Before anything is copied: a bad reference found after the version is committed would
	// leave a published version whose artifact never got pushed.
	if o.OCIRef != "" {
		if _, err := name.NewRepository(o.OCIRef); err != nil {
			return exitcode.Invalidf("--oci-ref %q: %v", o.OCIRef, err)
		}
	}
	switch o.OCIFormat {
	case "", OCIArtifact, OCIModelcar:
	default:
		return exitcode.Invalidf("--oci-format %q: want %s or %s", o.OCIFormat, OCIArtifact, OCIModelcar)
	}
	if o.OCIBase != "" && o.OCIFormat != OCIModelcar {
		return exitcode.Invalidf("--oci-base is for --oci-format %s (an artifact has no base)", OCIModelcar)
	}
	if o.OCIBase != "" {
		if _, err := name.ParseReference(o.OCIBase); err != nil {
			return exitcode.Invalidf("--oci-base %q: %v", o.OCIBase, err)
		}
	}
	return nil
}

// Publisher publishes models and records runs.
type Publisher struct {
	store objstore.Store
	config
	// manifests are the committed manifests this publisher has read, by model directory: they
	// never change, so a long-lived publisher reads each once.
	mu        sync.Mutex
	manifests map[string]manifestCache
}

// cached returns a copy of the manifests known for the model directory dir.
func (p *Publisher) cached(dir string) manifestCache {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := manifestCache{}
	for k, v := range p.manifests[dir] {
		out[k] = v
	}
	return out
}

// remember adds what a publish read to the manifests known for dir.
func (p *Publisher) remember(dir string, read manifestCache) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.manifests == nil {
		p.manifests = map[string]manifestCache{}
	}
	if p.manifests[dir] == nil {
		p.manifests[dir] = manifestCache{}
	}
	for k, v := range read {
		p.manifests[dir][k] = v
	}
}

// config holds what the Options of this package set, for Publisher and Deployer alike.
type config struct {
	log *slog.Logger
	now func() time.Time
	oci OCIPusher
	// podCheckEvery is how often a rollout looks at its pods between Deployment events.
	podCheckEvery time.Duration
	// lockTiming is the release lock's lease timing (lock.go).
	lockTiming lockTiming
	// gate decides whether a production deploy may go ahead (nil: production is refused).
	gate ReleaseGate
	// trust, when set, makes production deploys require the model's attestation chain.
	trust *attest.Policy
	// signer, when set, signs the training provenance of what Publish publishes.
	signer *attest.Signer
}

func newConfig(opts []Option) config {
	c := config{log: slog.New(slog.DiscardHandler), now: time.Now, oci: RemotePusher{}, podCheckEvery: 3 * time.Second, lockTiming: DefaultLockTiming}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// OCIPusher pushes a model to an OCI registry in a format (OCIArtifact, OCIModelcar) and returns
// repo@digest.
type OCIPusher interface {
	Push(ctx context.Context, ref, format, base string, m manifest.Manifest, files []OCIFile) (string, error)
}

// Option configures a Publisher or a Deployer.
type Option func(*config)

// WithLogger sets the logger (default: silent).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithOCI sets the OCI pusher (default: go-containerregistry remote).
func WithOCI(o OCIPusher) Option { return func(c *config) { c.oci = o } }

// NewPublisher returns a Publisher over store.
func NewPublisher(store objstore.Store, opts ...Option) *Publisher {
	return &Publisher{store: store, config: newConfig(opts)}
}

// modelDir is <registry>/<model>/.
func modelDir(registry, model string) objstore.URI {
	u, _ := objstore.Parse(registry)
	return u.Join(model).Dir()
}

// Publish copies the source into a new (or the matching existing) version and writes
// manifest.json last. Identical content is a no-op; different content under an existing version
// is bad input.
//
// No model byte passes through the publisher when the store can copy and checksum on its own
// side (S3: CopyObject with a SHA-256 checksum). Source objects that carry their SHA-256 are
// copied once, straight into the version; others are first copied into a staging prefix with
// their SHA-256 computed by the server (see hashSource). Every copy into the version has its
// checksum compared before the manifest is written. A file system, or an object over the
// single-copy limit, costs one streamed read per copy. A re-publish of a source whose
// objects are unchanged (same ETags as recorded in a manifest) is recognised from a listing and
// that manifest: nothing is copied.
func (p *Publisher) Publish(ctx context.Context, o PublishOptions) (*Published, error) {
	out, err := p.publish(ctx, o)
	if err != nil || p.signer == nil {
		return out, err
	}
	return out, p.attestTraining(ctx, o, out)
}

func (p *Publisher) publish(ctx context.Context, o PublishOptions) (*Published, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	// The registry's credentials are checked before anything is written: a push that can never
	// succeed must not leave a committed version behind it (and a retry that fails the same way).
	if o.OCIRef != "" {
		if pc, ok := p.oci.(PushChecker); ok {
			if err := pc.CheckPush(ctx, o.OCIRef); err != nil {
				return nil, err
			}
		}
	}
	hc, ok := p.store.(objstore.HashCopier)
	if !ok {
		return nil, fmt.Errorf("publishing: the store cannot copy with checksums")
	}
	if err := checkConditional(ctx, p.store, o.RegistryURI, o.ModelName); err != nil {
		return nil, err
	}
	srcDir, _ := objstore.Parse(o.SourceURI)
	src, etags, err := p.listSource(ctx, srcDir)
	if err != nil {
		return nil, err
	}
	// manifests are immutable: each is read once per publish, and once per publisher
	cacheKey := modelDir(o.RegistryURI, o.ModelName).String()
	read := p.cached(cacheKey)
	defer p.remember(cacheKey, read)
	if m, version, ok, err := p.unchangedSource(ctx, o, etags, read); err != nil || ok {
		if err != nil {
			return nil, err
		}
		p.log.Info("source unchanged since it was published", "version", version, "digest", m.Digest)
		out := &Published{Manifest: *m, URI: modelDir(o.RegistryURI, o.ModelName).Join(version).Dir().String(), Reused: true}
		return out, p.pushOCI(ctx, o, out)
	}
	files, from, err := p.hashSource(ctx, hc, o, srcDir, src)
	if from != srcDir.Dir() {
		defer p.cleanStaging(context.WithoutCancel(ctx), from, src)
	}
	if err != nil {
		return nil, err
	}
	digest := manifest.Digest(files)
	version, existing, err := p.pickVersion(ctx, o, digest, read)
	if err != nil {
		return nil, err
	}
	dir := modelDir(o.RegistryURI, o.ModelName).Join(version).Dir()
	if existing != nil {
		p.log.Info("model already published with the same content", "version", version, "digest", digest)
		out := &Published{Manifest: *existing, URI: dir.String(), Reused: true}
		return out, p.pushOCI(ctx, o, out)
	}
	if err := p.claim(ctx, o, version, digest); err != nil {
		return nil, err
	}
	for _, f := range files {
		// Verify what landed before committing to it: the copy's checksum is the one the digest
		// was computed from (the store's own for the source, or the staged copy's).
		sum, err := hc.CopySHA256(ctx, from.Join(f.Path).String(), dir.Join(f.Path).String())
		if err != nil {
			return nil, fmt.Errorf("copying %s: %w", f.Path, err)
		}
		if sum != f.SHA256 {
			return nil, fmt.Errorf("copied %s has SHA-256 %s, expected %s: the source changed during publish or the copy is corrupt; not committing", f.Path, sum, f.SHA256)
		}
	}
	if err := p.sourceUnchanged(ctx, srcDir, etags); err != nil {
		return nil, err
	}
	m := manifest.Manifest{SchemaVersion: 1, ModelName: o.ModelName, Version: version, Digest: digest, Files: files,
		SourceURI: o.SourceURI, SourceETags: etags, TrainingImageDigest: o.TrainingImageDigest, Workflow: o.Run, Created: p.now().UTC()}
	p.readMetrics(ctx, srcDir, &m)
	b, _ := json.MarshalIndent(m, "", "  ")
	// The commit: create-only (If-None-Match), so a committed manifest is never replaced. A
	// publish of the same content that committed first (a retry racing its predecessor) is the
	// result; other content under this version is refused (the claim stops that earlier).
	if err := p.store.(objstore.Conditional).PutIf(ctx, dir.Join(manifest.FileName).String(), b, ""); err != nil {
		if !errors.Is(err, objstore.ErrConflict) {
			return nil, fmt.Errorf("writing manifest: %w", err)
		}
		cur, rerr := ReadManifest(ctx, p.store, dir.String())
		if rerr != nil {
			return nil, fmt.Errorf("version %s was committed meanwhile, and reading it: %w", version, rerr)
		}
		if cur.Digest != digest {
			return nil, exitcode.Invalidf("version %s of %s was committed meanwhile with other content (%s); this content is %s: versions are immutable",
				version, o.ModelName, cur.Digest, digest)
		}
		p.log.Info("the same content was committed meanwhile", "version", version, "digest", digest)
		m = *cur
	}
	p.log.Info("published model", "model", o.ModelName, "version", version, "uri", dir.String(), "digest", digest, "files", len(files))
	out := &Published{Manifest: m, URI: dir.String()}
	return out, p.pushOCI(ctx, o, out)
}

// hashSource returns the source files with their SHA-256s and where to copy the version from.
// When the store keeps a full-object SHA-256 for every source object (S3 objects written with a
// SHA-256 checksum, as gantry's own uploads are), the digest is known from HEADs alone and the
// version is copied straight from the source: one server-side copy per file, its checksum
// compared with the stored one. Otherwise each file is copied into a staging prefix with the
// store computing its SHA-256 (no byte through the publisher on S3; one streamed read on a file
// system), and the version is copied from there.
func (p *Publisher) hashSource(ctx context.Context, hc objstore.HashCopier, o PublishOptions, srcDir objstore.URI, src []manifest.File) ([]manifest.File, objstore.URI, error) {
	files := make([]manifest.File, len(src))
	stored := true
	for i, f := range src {
		files[i] = f
		if !stored {
			continue
		}
		sum, err := hc.StoredSHA256(ctx, srcDir.Join(f.Path).String())
		if err != nil {
			return nil, srcDir.Dir(), fmt.Errorf("reading the checksum of %s: %w", f.Path, err)
		}
		files[i].SHA256, stored = sum, sum != ""
	}
	if stored {
		p.log.Info("source objects carry their SHA-256: copying once", "files", len(files))
		return files, srcDir.Dir(), nil
	}
	staging := modelDir(o.RegistryURI, o.ModelName).Join(".staging", rand.Text()).Dir()
	for i, f := range files {
		sum, err := hc.CopySHA256(ctx, srcDir.Join(f.Path).String(), staging.Join(f.Path).String())
		if err != nil {
			return nil, staging, fmt.Errorf("copying %s: %w", f.Path, err)
		}
		files[i].SHA256 = sum
	}
	return files, staging, nil
}

// listSource lists the trainer output (every file but a manifest) with its ETags (nil when
// the store has none).
func (p *Publisher) listSource(ctx context.Context, srcDir objstore.URI) ([]manifest.File, map[string]string, error) {
	prefix := srcDir.Dir().String()
	list, err := p.store.List(ctx, prefix)
	if err != nil {
		return nil, nil, fmt.Errorf("reading source %s: %w", prefix, err)
	}
	var files []manifest.File
	etags := map[string]string{}
	for _, info := range list {
		rel := strings.TrimPrefix(info.URI, prefix)
		if rel == manifest.FileName || rel == "" {
			continue
		}
		files = append(files, manifest.File{Path: rel, Size: info.Size})
		if etags != nil && info.ETag != "" {
			etags[rel] = info.ETag
		} else {
			etags = nil
		}
	}
	if len(files) == 0 {
		return nil, nil, exitcode.Invalidf("--source-uri %s holds no files", prefix)
	}
	return files, etags, nil
}

// unchangedSource finds a version published from this very source whose objects have not
// changed since (same paths and ETags).
func (p *Publisher) unchangedSource(ctx context.Context, o PublishOptions, etags map[string]string, read manifestCache) (*manifest.Manifest, string, bool, error) {
	if etags == nil {
		return nil, "", false, nil
	}
	versions, err := p.versions(ctx, o.RegistryURI, o.ModelName, read)
	if err != nil {
		return nil, "", false, err
	}
	for name, v := range versions {
		if m := v.manifest; m != nil && m.SourceURI == o.SourceURI && maps.Equal(m.SourceETags, etags) && (o.Version == "" || o.Version == name) {
			return m, name, true, nil
		}
	}
	return nil, "", false, nil
}

// sourceUnchanged refuses to commit a version whose source changed while it was copied (a
// trainer still writing, a second run reusing the output prefix): its ETags must be the ones
// listed before the copy.
func (p *Publisher) sourceUnchanged(ctx context.Context, srcDir objstore.URI, etags map[string]string) error {
	if etags == nil {
		return nil
	}
	_, now, err := p.listSource(ctx, srcDir)
	if err != nil {
		return err
	}
	if !maps.Equal(now, etags) {
		return fmt.Errorf("the source %s changed during publish: not committing a version of it", srcDir.Dir())
	}
	return nil
}

// cleanStaging removes the staging copies (best effort: a leftover is only garbage).
func (p *Publisher) cleanStaging(ctx context.Context, staging objstore.URI, files []manifest.File) {
	for _, f := range files {
		if err := p.store.Delete(ctx, staging.Join(f.Path).String()); err != nil {
			p.log.Warn("could not remove a staging copy", "uri", staging.Join(f.Path).String(), "err", err.Error())
		}
	}
}

func (p *Publisher) readMetrics(ctx context.Context, srcDir objstore.URI, m *manifest.Manifest) {
	b, err := objstore.ReadAll(ctx, p.store, srcDir.Join("metrics.json").String(), 4<<20)
	if err != nil {
		return
	}
	var all map[string]any
	if json.Unmarshal(b, &all) != nil {
		return
	}
	m.Metrics = map[string]any{}
	for k, v := range all {
		switch v.(type) {
		case float64, string, bool:
			m.Metrics[k] = v
		}
	}
	if d, ok := all["dataset_digest"].(string); ok {
		m.DatasetDigest = d
	}
}

func (p *Publisher) pushOCI(ctx context.Context, o PublishOptions, out *Published) error {
	if o.OCIRef == "" {
		return nil
	}
	var files []OCIFile
	for _, f := range out.Manifest.Files {
		uri := out.URI + f.Path
		files = append(files, OCIFile{File: f, Open: func() (io.ReadCloser, error) { return p.store.Open(ctx, uri) }})
	}
	format := o.OCIFormat
	if format == "" {
		format = OCIArtifact
	}
	ref, err := p.oci.Push(ctx, o.OCIRef, format, o.OCIBase, out.Manifest, files)
	if err != nil {
		return err
	}
	out.OCIDigest = ref
	p.log.Info("pushed to the OCI registry", "ref", ref, "format", format)
	return nil
}

// claimsDir holds one create-only claim per version being published (<model>/.claims/<version>.json).
const claimsDir = ".claims"

// claim reserves version for this content before any file is copied into it: a create-only
// write (If-None-Match) of the claim, holding the digest. A second publish of the same content
// (a retry, an interrupted publish completed) finds its own claim and goes on; one of other
// content under the same explicit --version is refused before it could overwrite a file of the
// first — the manifest, written last, could otherwise commit a mix of the two.
func (p *Publisher) claim(ctx context.Context, o PublishOptions, version, digest string) error {
	c, ok := p.store.(objstore.Conditional)
	if !ok {
		return fmt.Errorf("publishing: the store has no conditional writes")
	}
	// Publish checked, before anything was written, that the store honours create-only writes.
	uri := modelDir(o.RegistryURI, o.ModelName).Join(claimsDir, version+".json").String()
	type claimed struct {
		Digest string    `json:"digest"`
		Run    string    `json:"run,omitempty"`
		Time   time.Time `json:"time"`
	}
	b, _ := json.Marshal(claimed{Digest: digest, Run: o.Run, Time: p.now().UTC()})
	err := c.PutIf(ctx, uri, b, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, objstore.ErrConflict) {
		return fmt.Errorf("claiming version %s: %w", version, err)
	}
	cur, _, err := c.ReadVersion(ctx, uri, 1<<20)
	if err != nil {
		return fmt.Errorf("reading the claim of version %s: %w", version, err)
	}
	var other claimed
	if err := json.Unmarshal(cur, &other); err != nil {
		return fmt.Errorf("the claim of version %s is corrupt: %w", version, err)
	}
	if other.Digest == digest {
		return nil
	}
	return exitcode.Invalidf("version %s of %s is taken by other content (%s, claimed by %s at %s); this content is %s: versions are immutable, choose another --version",
		version, o.ModelName, other.Digest, orNone(other.Run), other.Time.Format(time.RFC3339), digest)
}

// pickVersion returns the version to write, or the existing manifest when
// the same content is already published.
func (p *Publisher) pickVersion(ctx context.Context, o PublishOptions, digest string, read manifestCache) (string, *manifest.Manifest, error) {
	versions, err := p.versions(ctx, o.RegistryURI, o.ModelName, read)
	if err != nil {
		return "", nil, err
	}
	if o.Version != "" {
		v, ok := versions[o.Version]
		switch {
		case !ok || v.manifest == nil:
			return o.Version, nil, nil
		case v.manifest.Digest == digest:
			return o.Version, v.manifest, nil
		default:
			return "", nil, exitcode.Invalidf("version %s of %s already exists with digest %s; this content is %s: versions are immutable, choose another --version",
				o.Version, o.ModelName, v.manifest.Digest, digest)
		}
	}
	suffix := "-" + strings.TrimPrefix(digest, "sha256:")[:12]
	var partial []string
	for name, v := range versions {
		if v.manifest != nil && v.manifest.Digest == digest {
			return name, v.manifest, nil
		}
		if v.manifest == nil && strings.HasSuffix(name, suffix) {
			partial = append(partial, name)
		}
	}
	if len(partial) > 0 { // an interrupted publish of this content: complete it
		sort.Strings(partial)
		p.log.Info("completing an interrupted publish", "version", partial[0])
		return partial[0], nil, nil
	}
	return p.now().UTC().Format("20060102T150405Z") + suffix, nil, nil
}

type versionInfo struct{ manifest *manifest.Manifest }

// versions lists the model's version directories and reads their manifests.
// manifestCache holds the manifests a publish has read, by version: a committed manifest never
// changes, so a second listing need not read it again.
type manifestCache map[string]*manifest.Manifest

func (p *Publisher) versions(ctx context.Context, registry, model string, read manifestCache) (map[string]versionInfo, error) {
	dir := modelDir(registry, model)
	list, err := p.store.List(ctx, dir.String())
	if err != nil {
		return nil, fmt.Errorf("listing versions of %s: %w", model, err)
	}
	out := map[string]versionInfo{}
	for _, i := range list {
		rel := strings.TrimPrefix(i.URI, dir.String())
		v, rest, ok := strings.Cut(rel, "/")
		if !ok || v == "environments" || v == ".staging" || v == claimsDir {
			continue
		}
		vi := out[v]
		if rest == manifest.FileName {
			m, ok := read[v]
			if !ok {
				var err error
				if m, err = ReadManifest(ctx, p.store, dir.Join(v).Dir().String()); err != nil {
					return nil, err
				}
				read[v] = m
			}
			vi.manifest = m
		}
		out[v] = vi
	}
	return out, nil
}

// ReadManifest reads a version's manifest; a version without one does not exist.
func ReadManifest(ctx context.Context, s objstore.Store, versionURI string) (*manifest.Manifest, error) {
	u, err := objstore.Parse(versionURI)
	if err != nil {
		return nil, err
	}
	b, err := objstore.ReadAll(ctx, s, u.Join(manifest.FileName).String(), 16<<20)
	if err != nil {
		return nil, fmt.Errorf("reading manifest of %s: %w", versionURI, err)
	}
	var m manifest.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest of %s is corrupt: %w", versionURI, err)
	}
	return &m, nil
}

// Verify re-hashes a published version and compares it with its manifest.
func Verify(ctx context.Context, s objstore.Store, versionURI string) (*manifest.Manifest, error) {
	m, err := ReadManifest(ctx, s, versionURI)
	if err != nil {
		return nil, err
	}
	files, err := manifest.Scan(ctx, s, versionURI, nil)
	if err != nil {
		return nil, err
	}
	if got := manifest.Digest(files); got != m.Digest {
		return m, fmt.Errorf("version %s is corrupt: files have digest %s, manifest says %s", versionURI, got, m.Digest)
	}
	return m, nil
}
