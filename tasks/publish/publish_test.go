package publish

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"oras.land/oras-go/v2"
	orasfile "oras.land/oras-go/v2/content/file"
	orasremote "oras.land/oras-go/v2/registry/remote"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/minio/minio-go/v7"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/manifest"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

type env struct {
	t     *testing.T
	minio *testenv.MinIO
	store *objstore.Router
	ctx   context.Context
	clock time.Time
}

func newEnv(t *testing.T) *env {
	m := testenv.StartMinIO(t)
	m.MakeBucket("models")
	m.MakeBucket("runs")
	s, err := objstore.New(&objstore.S3Config{Endpoint: m.Endpoint, Creds: m.Creds(), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, minio: m, store: s, ctx: context.Background(), clock: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
}

// trainerOutput writes what a trainer leaves behind.
func (e *env) trainerOutput(dir, weights string) string {
	e.t.Helper()
	src := "s3://runs/" + dir + "/"
	for name, body := range map[string]string{
		"model.safetensors": weights, "config.json": `{"layers":[784,10]}`,
		"metrics.json": `{"test_accuracy":0.8861,"dataset_digest":"sha256:d5","epochs":[{"loss":1}]}`,
	} {
		if err := objstore.PutBytes(e.ctx, e.store, src+name, []byte(body)); err != nil {
			e.t.Fatal(err)
		}
	}
	return src
}

func (e *env) publisher(opts ...Option) *Publisher {
	return NewPublisher(e.store, append([]Option{WithClock(func() time.Time { e.clock = e.clock.Add(time.Second); return e.clock })}, opts...)...)
}

func TestPublishIsImmutableAndIdempotent(t *testing.T) {
	e := newEnv(t)
	src := e.trainerOutput("run-1", "weights-1")
	o := PublishOptions{SourceURI: src, RegistryURI: "s3://models", ModelName: "fashion-mnist", Run: "ml-pipeline-abc", TrainingImageDigest: "reg/trainer@sha256:11"}
	first, err := e.publisher().Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	v := first.Manifest.Version
	if !strings.HasPrefix(v, "20261125T090001Z-") || first.URI != "s3://models/fashion-mnist/"+v+"/" {
		t.Errorf("version %q uri %q", v, first.URI)
	}
	m, err := Verify(e.ctx, e.store, first.URI)
	if err != nil {
		t.Fatal(err)
	}
	if m.Metrics["test_accuracy"] != 0.8861 || m.DatasetDigest != "sha256:d5" || len(m.Files) != 3 || m.Workflow != "ml-pipeline-abc" {
		t.Errorf("manifest = %+v", m)
	}
	// Server-side copies leave the source alone and match it.
	srcFiles, _ := manifest.Scan(e.ctx, e.store, src, nil)
	if manifest.Digest(srcFiles) != first.Manifest.Digest {
		t.Error("digest differs from the source's")
	}

	again, err := e.publisher().Publish(e.ctx, o)
	if err != nil || !again.Reused || again.Manifest.Version != v {
		t.Errorf("re-publish: %+v, %v; want a no-op returning %s", again, err, v)
	}
	// New content gets a new version that sorts after the first.
	second, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("run-2", "weights-2"), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
	if err != nil || second.Manifest.Version <= v {
		t.Errorf("second version %q after %q: %v", second.Manifest.Version, v, err)
	}
	// An explicit version holding other content is refused.
	o2 := PublishOptions{SourceURI: e.trainerOutput("run-3", "weights-3"), RegistryURI: "s3://models", ModelName: "fashion-mnist", Version: v}
	if _, err := e.publisher().Publish(e.ctx, o2); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("conflicting re-publish: %v (code %d), want exit 2", err, exitcode.Of(err))
	}
}

// failingManifest simulates a publisher killed after the copies: the manifest write fails.
type failingManifest struct{ *objstore.Router }

func (f failingManifest) Put(ctx context.Context, uri string, r io.Reader, n int64) error {
	if strings.HasSuffix(uri, "/manifest.json") {
		return errors.New("killed")
	}
	return f.Router.Put(ctx, uri, r, n)
}

// PutIf: the manifest is committed create-only.
func (f failingManifest) PutIf(ctx context.Context, uri string, b []byte, version string) error {
	if strings.HasSuffix(uri, "/manifest.json") {
		return errors.New("killed")
	}
	return f.Router.PutIf(ctx, uri, b, version)
}

func TestInterruptedPublishIsInvisibleAndARerunCompletesIt(t *testing.T) {
	e := newEnv(t)
	o := PublishOptions{SourceURI: e.trainerOutput("run-1", "w"), RegistryURI: "s3://models", ModelName: "fashion-mnist"}
	_, err := NewPublisher(failingManifest{e.store}).Publish(e.ctx, o)
	if err == nil {
		t.Fatal("publish without a manifest succeeded")
	}
	all, _ := e.store.List(e.ctx, "s3://models/fashion-mnist/")
	var files []objstore.Info
	for _, f := range all {
		if !strings.Contains(f.URI, "/"+claimsDir+"/") { // the version's claim (claim) stays with it
			files = append(files, f)
		}
	}
	if len(files) != 3 || len(all) != 4 {
		t.Fatalf("want the 3 copied files and the version's claim, without a manifest, got %d objects", len(all))
	}
	partial := strings.Split(strings.TrimPrefix(files[0].URI, "s3://models/fashion-mnist/"), "/")[0]
	if _, err := ReadManifest(e.ctx, e.store, "s3://models/fashion-mnist/"+partial+"/"); !objstore.IsNotExist(err) {
		t.Errorf("a version without manifest must not exist to readers: %v", err)
	}
	done, err := e.publisher().Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if done.Manifest.Version != partial {
		t.Errorf("rerun wrote version %s, want it to complete %s", done.Manifest.Version, partial)
	}
}

// stopsServer stops MinIO when the publish starts copying.
type stopsServer struct {
	*objstore.Router
	m *testenv.MinIO
}

func (s stopsServer) CopySHA256(ctx context.Context, src, dst string) (string, error) {
	s.m.Stop()
	return s.Router.CopySHA256(ctx, src, dst)
}

func TestMinIOStoppedMidPublishExits3AndARerunSucceeds(t *testing.T) {
	e := newEnv(t)
	o := PublishOptions{SourceURI: e.trainerOutput("run-1", "w"), RegistryURI: "s3://models", ModelName: "fashion-mnist"}
	_, err := NewPublisher(stopsServer{e.store, e.minio}).Publish(e.ctx, o)
	if exitcode.Of(err) != exitcode.Transient {
		t.Fatalf("err = %v (code %d), want 3", err, exitcode.Of(err))
	}
	e.minio.Start()
	p, err := e.publisher().Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(e.ctx, e.store, p.URI); err != nil {
		t.Error(err)
	}
}

// changesSource rewrites the source's weights while the publisher copies them, as a trainer that
// is still writing (or a second run reusing the output prefix) would.
type changesSource struct {
	*objstore.Router
	src string
}

func (s changesSource) CopySHA256(ctx context.Context, src, dst string) (string, error) {
	if src == s.src+"model.safetensors" {
		if err := objstore.PutBytes(ctx, s.Router, s.src+"model.safetensors", []byte("rewritten mid-publish")); err != nil {
			return "", err
		}
	}
	return s.Router.CopySHA256(ctx, src, dst)
}

// A source that changes while it is published (a trainer still writing, a second run reusing
// the prefix) is never committed: its objects' ETags are checked again before the manifest.
func TestCopyThatDiffersFromTheSourceDigestIsNeverCommitted(t *testing.T) {
	e := newEnv(t)
	src := e.trainerOutput("run-1", "w")
	o := PublishOptions{SourceURI: src, RegistryURI: "s3://models", ModelName: "fashion-mnist"}
	_, err := NewPublisher(changesSource{e.store, src}).Publish(e.ctx, o)
	if err == nil || !strings.Contains(err.Error(), "changed during publish") {
		t.Fatalf("publish of a changing source: %v", err)
	}
	if code := exitcode.Of(err); code == exitcode.OK || code == exitcode.BadInput {
		t.Errorf("exit code %d: a corrupt copy is neither success nor bad input", code)
	}
	files, _ := e.store.List(e.ctx, "s3://models/fashion-mnist/")
	for _, f := range files {
		if strings.HasSuffix(f.URI, "/"+manifest.FileName) {
			t.Errorf("%s was committed for a copy that does not match its digest", f.URI)
		}
	}
	// A rerun publishes what the source holds now, under the digest of that content.
	p, err := e.publisher().Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(e.ctx, e.store, p.URI); err != nil {
		t.Error(err)
	}
}

func TestVerifyDetectsCorruption(t *testing.T) {
	e := newEnv(t)
	p, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("run-1", "w"), RegistryURI: "s3://models", ModelName: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := objstore.PutBytes(e.ctx, e.store, p.URI+"model.safetensors", []byte("tampered")); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(e.ctx, e.store, p.URI); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Verify = %v, want corruption detected", err)
	}
}

// ociRegistry starts go-containerregistry's in-memory registry for the test and returns its host.
func ociRegistry(t *testing.T) string {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	return strings.TrimPrefix(reg.URL, "http://")
}

// The OCI push authenticates with the docker config the templates mount from the
// registry-secret (DOCKER_CONFIG=<dir>, <dir>/config.json from the Secret's .dockerconfigjson):
// against a registry that requires basic auth, the push fails without it and succeeds with it.
func TestOCIPushUsesTheMountedDockerConfig(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "pusher" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="models"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	e := newEnv(t)
	o := PublishOptions{SourceURI: e.trainerOutput("run-1", "weights"), RegistryURI: "s3://models", ModelName: "fashion-mnist", OCIRef: host + "/models/fashion-mnist"}
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := e.publisher().Publish(e.ctx, o); err == nil || exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "registry-secret") {
		t.Fatalf("push without credentials: %v (exit %d), want bad input naming the registry-secret: no retry fixes it", err, exitcode.Of(err))
	}
	// Refused before anything was written: no version (not even a claim) is left behind.
	if l, _ := e.store.List(e.ctx, "s3://models/fashion-mnist/"); len(l) != 0 {
		t.Errorf("the publish refused by the registry left %d objects, e.g. %s", len(l), l[0].URI)
	}
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("pusher:s3cret"))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	p, err := e.publisher().Publish(e.ctx, o)
	if err != nil || p.OCIDigest == "" {
		t.Fatalf("push with the mounted docker config: %+v %v", p, err)
	}
}

// The default OCI format is an OCI v1.1 artifact as `oras pull` reads it: OCI manifest media
// type, an artifactType, the empty config, one raw layer per file titled with its path, each blob
// the file's exact bytes; the same model always gives the same digest.
func TestOCIArtifactPullsBackTheFilesByteForByte(t *testing.T) {
	e := newEnv(t)
	repo := ociRegistry(t) + "/models/fashion-mnist"
	o := PublishOptions{SourceURI: e.trainerOutput("run-1", "weights"), RegistryURI: "s3://models", ModelName: "fashion-mnist", OCIRef: repo}
	first, err := e.publisher().Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.publisher().Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if first.OCIDigest == "" || first.OCIDigest != again.OCIDigest {
		t.Errorf("OCI digests %q and %q: the same model must give the same digest", first.OCIDigest, again.OCIDigest)
	}
	ref, err := name.NewDigest(first.OCIDigest)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	var mf v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &mf); err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != types.OCIManifestSchema1 || mf.ArtifactType != ArtifactType || mf.Config.MediaType != "application/vnd.oci.empty.v1+json" ||
		mf.Config.Size != 2 || mf.Annotations["dev.gantry.model.digest"] != first.Manifest.Digest {
		t.Errorf("manifest: media type %s, %s", desc.MediaType, desc.Manifest)
	}
	got := map[string]string{}
	for _, l := range mf.Layers {
		if l.MediaType != LayerMediaType {
			t.Errorf("layer %v: media type %s", l.Annotations, l.MediaType)
		}
		layer, err := remote.Layer(ref.Context().Digest(l.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		got[l.Annotations["org.opencontainers.image.title"]] = string(b)
	}
	want := map[string]string{"model.safetensors": "weights", "config.json": `{"layers":[784,10]}`,
		"metrics.json": `{"test_accuracy":0.8861,"dataset_digest":"sha256:d5","epochs":[{"loss":1}]}`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files pulled from the artifact (-want +got):\n%s", diff)
	}
}

// --oci-format modelcar: an image with OCI media types whose filesystem has the files under
// /models, reproducible.
func TestOCIModelcarHasTheFilesUnderModels(t *testing.T) {
	e := newEnv(t)
	repo := ociRegistry(t) + "/models/fashion-mnist"
	o := PublishOptions{SourceURI: e.trainerOutput("run-1", "weights"), RegistryURI: "s3://models", ModelName: "fashion-mnist", OCIRef: repo, OCIFormat: OCIModelcar}
	first, err := e.publisher().Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.publisher().Publish(e.ctx, o)
	if err != nil || first.OCIDigest != again.OCIDigest {
		t.Fatalf("re-push: %v, digests %s vs %s", err, first.OCIDigest, again.OCIDigest)
	}
	ref, _ := name.NewDigest(first.OCIDigest)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("media type %s, want OCI", mt)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		if mt, _ := l.MediaType(); mt != types.OCILayer {
			t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
		}
	}
	got := map[string]string{}
	rc := mutate.Extract(img)
	defer rc.Close()
	for name, body := range untar(t, rc) {
		got[name] = body
	}
	want := map[string]string{"models/model.safetensors": "weights", "models/config.json": `{"layers":[784,10]}`,
		"models/metrics.json": `{"test_accuracy":0.8861,"dataset_digest":"sha256:d5","epochs":[{"loss":1}]}`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files in the modelcar (-want +got):\n%s", diff)
	}
	if _, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: o.SourceURI, RegistryURI: "s3://models", ModelName: "fashion-mnist", OCIRef: repo, OCIFormat: "tarball"}); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("--oci-format tarball: %v, want bad input", err)
	}
}

// A bad --oci-ref is bad input before anything is copied: no version appears in the registry.
func TestBadOCIRefWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := e.trainerOutput("run-oci", "weights")
	_, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: src, RegistryURI: "s3://models", ModelName: "fashion-mnist", OCIRef: "Not A Repo!"})
	if exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "--oci-ref") {
		t.Fatalf("bad --oci-ref: %v, want exit 2 naming the flag", err)
	}
	if files, _ := e.store.List(e.ctx, "s3://models/fashion-mnist/"); len(files) != 0 {
		t.Errorf("a bad --oci-ref left %d objects in the registry", len(files))
	}
}

// The network resets the connection mid-publish (on every retry): exit 3, so the step is
// retried, and no version is visible; once it heals, the same publish succeeds and verifies.
func TestConnectionResetMidPublishIsTransientAndLeavesNoVersion(t *testing.T) {
	e := newEnv(t)
	o := PublishOptions{SourceURI: e.trainerOutput("run-cut", "w"), RegistryURI: "s3://models", ModelName: "fashion-mnist"}
	// No client retry: the first connection is reset a few requests in, mid-publish. (With
	// retries, every request is small enough to get through on a fresh connection since a publish
	// copies on the server: the cut would only sometimes stop it.)
	proxy, s := e.minio.Proxied(t, 1)
	proxy.CutAfter(6 << 10)
	if _, err := NewPublisher(s).Publish(e.ctx, o); exitcode.Of(err) != exitcode.Transient || proxy.Cuts() == 0 {
		t.Fatalf("publish cut mid-way: %v (code %d, %d cuts), want 3", err, exitcode.Of(err), proxy.Cuts())
	}
	all, err := e.store.List(e.ctx, "s3://models/fashion-mnist/")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		if strings.HasSuffix(f.URI, "/manifest.json") {
			t.Errorf("a cut publish left a visible version: %s", f.URI)
		}
	}
	proxy.CutAfter(0)
	p, err := NewPublisher(s).Publish(e.ctx, o)
	if err != nil {
		t.Fatalf("publish after the network healed: %v", err)
	}
	if _, err := Verify(e.ctx, e.store, p.URI); err != nil {
		t.Error(err)
	}
}

// Publishing to S3 moves no model byte through the publisher: the copies and their SHA-256s
// happen on the server. Counted by a proxy in front of the real MinIO: an 8 MiB model, a few KiB
// of requests. A re-publish of the unchanged source copies nothing.
func TestPublishMovesNoModelBytesThroughThePublisher(t *testing.T) {
	e := newEnv(t)
	rnd := rand.New(rand.NewPCG(5, 6))
	w := make([]byte, 8<<20)
	for i := range w {
		w[i] = byte(rnd.Uint32())
	}
	o := PublishOptions{SourceURI: e.trainerOutput("run-big", string(w)), RegistryURI: "s3://models", ModelName: "fashion-mnist"}
	proxy, s := e.minio.Proxied(t, 1)
	p, err := NewPublisher(s).Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if n := proxy.Bytes(); n > 256<<10 {
		t.Errorf("%d bytes went through the publisher for an 8 MiB model", n)
	}
	if _, err := Verify(e.ctx, e.store, p.URI); err != nil {
		t.Error(err)
	}
	before := proxy.Bytes()
	again, err := NewPublisher(s).Publish(e.ctx, o)
	if err != nil || !again.Reused || again.URI != p.URI {
		t.Fatalf("re-publish: %+v %v", again, err)
	}
	staged, _ := e.store.List(e.ctx, "s3://models/fashion-mnist/.staging/")
	if len(staged) != 0 {
		t.Errorf("staging copies left behind: %v", staged)
	}
	t.Logf("publish: %d bytes through the publisher; re-publish: %d", before, proxy.Bytes()-before)
}

// recordsCopies records every server-side copy the publisher asks for.
type recordsCopies struct {
	*objstore.Router
	copies *[]string
}

func (s recordsCopies) CopySHA256(ctx context.Context, src, dst string) (string, error) {
	*s.copies = append(*s.copies, strings.TrimPrefix(src, "s3://")+" -> "+strings.TrimPrefix(dst, "s3://"))
	return s.Router.CopySHA256(ctx, src, dst)
}

// gantry's own uploads carry their SHA-256 (a trailing checksum the server verifies and keeps),
// so the publisher knows the digest from HEADs and copies each file once, straight into the
// version. An object written without one (any other S3 client) goes through staging: two
// server-side copies. Both publish the same digest.
func TestSourceWithStoredSHA256IsCopiedOnce(t *testing.T) {
	e := newEnv(t)
	withSum := e.trainerOutput("run-1", "weights")
	var copies []string
	p, err := NewPublisher(recordsCopies{e.store, &copies}).Publish(e.ctx, PublishOptions{SourceURI: withSum, RegistryURI: "s3://models", ModelName: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != 3 {
		t.Errorf("copies = %q, want one per file", copies)
	}
	for _, c := range copies {
		if !strings.HasPrefix(c, "runs/run-1/") || !strings.Contains(c, "-> models/a/"+p.Manifest.Version+"/") {
			t.Errorf("copy %s: want source -> version", c)
		}
	}
	// The same files written without a SHA-256 checksum, as another S3 client would.
	for _, f := range p.Manifest.Files {
		rc, err := e.store.Open(e.ctx, withSum+f.Path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if _, err := e.minio.Client().PutObject(e.ctx, "runs", "plain/"+f.Path, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if sum, err := e.store.StoredSHA256(e.ctx, "s3://runs/plain/"+f.Path); err != nil || sum != "" {
			t.Fatalf("an object written without a SHA-256 has stored SHA-256 %q (%v)", sum, err)
		}
	}
	copies = nil
	q, err := NewPublisher(recordsCopies{e.store, &copies}).Publish(e.ctx, PublishOptions{SourceURI: "s3://runs/plain/", RegistryURI: "s3://models", ModelName: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != 6 || !strings.Contains(copies[0], "-> models/b/.staging/") {
		t.Errorf("copies = %q, want 3 into staging then 3 into the version", copies)
	}
	if q.Manifest.Digest != p.Manifest.Digest {
		t.Errorf("digests differ: %s (stored SHA-256) vs %s (staged)", p.Manifest.Digest, q.Manifest.Digest)
	}
}

// The artifact as ORAS sees it: oras.Copy from the registry into a file store writes each
// layer to the file its title names — the model's files, byte for byte.
func TestORASPullsTheArtifact(t *testing.T) {
	e := newEnv(t)
	host := ociRegistry(t)
	o := PublishOptions{SourceURI: e.trainerOutput("run-1", "weights"), RegistryURI: "s3://models", ModelName: "fashion-mnist", OCIRef: host + "/models/fashion-mnist"}
	p, err := e.publisher().Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := orasremote.NewRepository(host + "/models/fashion-mnist")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	dir := t.TempDir()
	fs, err := orasfile.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	desc, err := oras.Copy(e.ctx, repo, p.Manifest.Version, fs, p.Manifest.Version, oras.DefaultCopyOptions)
	if err != nil {
		t.Fatalf("oras pull: %v", err)
	}
	if "sha256:"+desc.Digest.Encoded() != strings.SplitN(p.OCIDigest, "@", 2)[1] {
		t.Errorf("oras pulled %s, publish pushed %s", desc.Digest, p.OCIDigest)
	}
	for _, f := range p.Manifest.Files {
		got, err := os.ReadFile(filepath.Join(dir, f.Path))
		want, _ := objstore.ReadAll(e.ctx, e.store, p.URI+f.Path, 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: oras wrote %q (%v), the version holds %q", f.Path, got, err, want)
		}
	}
}

// Two publishes of different content under one explicit --version: the second is refused before
// it copies a byte (it would otherwise overwrite the first's files under its manifest), and the
// first version still verifies.
func TestExplicitVersionIsClaimedBeforeAnyCopy(t *testing.T) {
	e := newEnv(t)
	a := PublishOptions{SourceURI: e.trainerOutput("run-a", "weights-a"), RegistryURI: "s3://models", ModelName: "fashion-mnist", Version: "v1", Run: "run-a"}
	b := a
	b.SourceURI, b.Run = e.trainerOutput("run-b", "weights-b"), "run-b"
	// A claims v1 and dies before its manifest (simulated: the claim alone, as Publish writes it).
	pa := e.publisher()
	files, _, err := pa.hashSource(e.ctx, e.store, a, mustParse(t, a.SourceURI), mustList(t, e, a.SourceURI))
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.claim(e.ctx, a, "v1", manifest.Digest(files)); err != nil {
		t.Fatal(err)
	}
	_, err = e.publisher().Publish(e.ctx, b)
	if exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "taken by other content") || !strings.Contains(err.Error(), "run-a") {
		t.Fatalf("publish of other content under a claimed version: %v, want bad input naming the claim", err)
	}
	if l, _ := e.store.List(e.ctx, "s3://models/fashion-mnist/v1/"); len(l) != 0 {
		t.Errorf("the refused publish wrote %d objects into v1", len(l))
	}
	// A completes (its retry finds its own claim), and v1 is A's content.
	p, err := e.publisher().Publish(e.ctx, a)
	if err != nil {
		t.Fatalf("the claim holder's retry: %v", err)
	}
	if m, err := Verify(e.ctx, e.store, p.URI); err != nil || m.Workflow != "run-a" {
		t.Errorf("v1 after both: %+v %v", m, err)
	}
}

// ignoringStore accepts every conditional write: a store that ignores If-None-Match.
type ignoringStore struct{ *objstore.Router }

func (s ignoringStore) PutIf(ctx context.Context, uri string, b []byte, _ string) error {
	return objstore.PutBytes(ctx, s.Router, uri, b)
}

// A store that ignores conditional writes is refused (bad input: no retry makes it honour them)
// before anything is published or recorded.
func TestStoreIgnoringConditionalWritesIsRefused(t *testing.T) {
	e := newEnv(t)
	s := ignoringStore{e.store}
	_, err := NewPublisher(s).Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("run-a", "w"), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
	if exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "conditional writes") {
		t.Fatalf("publish on a store ignoring If-None-Match: %v, want bad input", err)
	}
	if l, _ := e.store.List(e.ctx, "s3://models/fashion-mnist/"); len(l) != 0 {
		var names []string
		for _, i := range l {
			names = append(names, i.URI)
		}
		t.Errorf("the refused publish left objects: %v", names)
	}
}

func mustParse(t *testing.T, uri string) objstore.URI {
	t.Helper()
	u, err := objstore.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func mustList(t *testing.T, e *env, uri string) []manifest.File {
	t.Helper()
	files, _, err := e.publisher().listSource(e.ctx, mustParse(t, uri))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// racingStore commits another manifest for a version right before the publisher commits its own
// (a publish that got there first, past the claim).
type racingStore struct {
	objstore.Store
	other []byte
}

func (s *racingStore) ReadVersion(ctx context.Context, uri string, limit int64) ([]byte, string, error) {
	return s.Store.(objstore.Conditional).ReadVersion(ctx, uri, limit)
}

func (s *racingStore) PutIf(ctx context.Context, uri string, b []byte, version string) error {
	c := s.Store.(objstore.Conditional)
	if strings.HasSuffix(uri, "/"+manifest.FileName) && s.other != nil {
		if err := c.PutIf(ctx, uri, s.other, ""); err != nil {
			return err
		}
		s.other = nil
	}
	return c.PutIf(ctx, uri, b, version)
}

func (s *racingStore) CopySHA256(ctx context.Context, src, dst string) (string, error) {
	return s.Store.(objstore.HashCopier).CopySHA256(ctx, src, dst)
}

func (s *racingStore) StoredSHA256(ctx context.Context, uri string) (string, error) {
	return s.Store.(objstore.HashCopier).StoredSHA256(ctx, uri)
}

// The manifest — the commit of a version — is written create-only: a manifest committed in the
// meantime is never replaced. The same content committed first is the result; other content is
// refused as bad input (versions are immutable), the committed manifest left as it was.
func TestTheManifestIsCommittedCreateOnly(t *testing.T) {
	e := newEnv(t)
	o := PublishOptions{SourceURI: e.trainerOutput("run-1", "weights-1"), RegistryURI: "s3://models", ModelName: "fashion-mnist", Version: "v1"}
	first, err := e.publisher().Publish(e.ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	sameM := first.Manifest
	sameM.Version = "v2"
	same, _ := json.Marshal(sameM)
	other := first.Manifest
	other.Version = "v3"
	other.Digest = "sha256:" + strings.Repeat("0", 64)
	otherJSON, _ := json.Marshal(other)
	for _, tc := range []struct {
		name    string
		version string
		commit  []byte
		wantErr bool
	}{
		{"the same content committed first", "v2", same, false},
		{"other content committed first", "v3", otherJSON, true},
	} {
		o := o
		o.Version = tc.version
		p := NewPublisher(&racingStore{Store: e.store, other: tc.commit}, WithClock(func() time.Time { return e.clock }))
		got, err := p.Publish(e.ctx, o)
		switch {
		case tc.wantErr && (err == nil || exitcode.Of(err) != exitcode.BadInput):
			t.Errorf("%s: %+v, %v; want refused as bad input", tc.name, got, err)
		case !tc.wantErr && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		}
		b, err := objstore.ReadAll(e.ctx, e.store, "s3://models/fashion-mnist/"+tc.version+"/"+manifest.FileName, 1<<20)
		if err != nil || string(b) != string(tc.commit) {
			t.Errorf("%s: the committed manifest was replaced: %s (%v)", tc.name, b, err)
		}
	}
}
