package publish

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/testenv"
)

func referrersRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// copyWithReferrers copies a manifest and every manifest referring to it to another repository,
// as `oras cp -r` does.
func copyWithReferrers(t *testing.T, src name.Digest, dst name.Repository) name.Digest {
	t.Helper()
	get := func(d name.Digest) {
		desc, err := remote.Get(d)
		if err != nil {
			t.Fatal(err)
		}
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(dst.Digest(d.DigestStr()), img); err != nil {
			t.Fatal(err)
		}
	}
	get(src)
	idx, err := remote.Referrers(src)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	for _, d := range im.Manifests {
		get(src.Context().Digest(d.Digest.String()))
	}
	return dst.Digest(src.DigestStr())
}

// The attestations of a model pushed as OCI 1.1 referrers of its artifact: the registry's
// referrers API lists the three, they verify from the registry alone, and a copy of the model
// with its referrers to a second registry still verifies.
func TestAttestationsTravelAsReferrers(t *testing.T) {
	ctx := context.Background()
	repo, err := name.NewRepository(referrersRegistry(t) + "/ml/fashion-mnist")
	if err != nil {
		t.Fatal(err)
	}
	model, _ := random.Image(256, 1)
	if err := remote.Write(repo.Tag("v1"), model); err != nil {
		t.Fatal(err)
	}
	d, _ := model.Digest()
	subjectRef := repo.Digest(d.String())
	subject := attest.Subject{Name: "fashion-mnist", Version: "v1", ModelDigest: "sha256:" + strings.Repeat("ab", 32), ManifestDigest: "sha256:" + strings.Repeat("cd", 32)}
	signers, policy := testenv.Signers(t)
	var p RemotePusher
	for _, r := range attest.Roles {
		st, _ := attest.Statement(subject, r, testenv.Passing(r))
		env, err := signers[r].Sign(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		first, err := p.PushAttestation(ctx, subjectRef.String(), r, env)
		if err != nil {
			t.Fatal(err)
		}
		again, err := p.PushAttestation(ctx, subjectRef.String(), r, env)
		if err != nil || again != first {
			t.Errorf("pushing the same attestation again: %s, %v; want %s", again, err, first)
		}
	}
	idx, err := remote.Referrers(subjectRef)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	// (go-containerregistry's registry reports the config's media type as artifactType, not the
	// manifest's artifactType as OCI 1.1 says: the roles are in the annotations either way.)
	roles := map[string]bool{}
	for _, m := range im.Manifests {
		roles[m.Annotations[RoleAnnotation]] = true
	}
	if len(im.Manifests) != 3 || len(roles) != 3 {
		t.Fatalf("referrers of the model: %+v, want the 3 attestations", im.Manifests)
	}
	verify := func(ref string) error {
		envs, err := p.PullAttestations(ctx, ref)
		if err != nil {
			return err
		}
		_, err = policy.VerifyChain(ctx, envs, attest.Subject{Name: "fashion-mnist", ModelDigest: subject.ModelDigest})
		return err
	}
	if err := verify(subjectRef.String()); err != nil {
		t.Fatalf("from the registry: %v", err)
	}
	other, _ := name.NewRepository(referrersRegistry(t) + "/mirror/fashion-mnist")
	copied := copyWithReferrers(t, subjectRef, other)
	if err := verify(copied.String()); err != nil {
		t.Errorf("from the copy: %v", err)
	}
	// Another model's referrers vouch for nothing here.
	another, _ := random.Image(256, 1)
	remote.Write(repo.Tag("v2"), another)
	ad, _ := another.Digest()
	envs, _ := p.PullAttestations(ctx, repo.Digest(ad.String()).String())
	if len(envs) != 0 {
		t.Errorf("another model has referrers: %v", envs)
	}
}

// The run's last step carries the evidence to the model's OCI artifact: publish pushes the
// artifact and signs the training link with it as a subject; the canary and the approval sign
// beside the version only (they hold no registry credentials); record --oci-digest attaches every
// link as a referrer, again without duplicates when the step is retried.
func TestRecordAttachesTheRunsEvidenceToTheArtifact(t *testing.T) {
	e := newEnv(t)
	signers, policy := testenv.Signers(t)
	repo := referrersRegistry(t) + "/ml/fashion-mnist"
	p := e.publisher(WithSigner(signers[attest.Training]))
	v, err := p.Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("oci", "w-oci"), RegistryURI: "s3://models", ModelName: "fashion-mnist", Run: "run-1", OCIRef: repo})
	if err != nil || v.OCIDigest == "" {
		t.Fatalf("publish --oci-ref: %v (%q)", err, v.OCIDigest)
	}
	where := attest.Version{Registry: "s3://models", Model: "fashion-mnist", Version: v.Manifest.Version, Artifact: v.OCIDigest}
	for _, r := range []attest.Role{attest.Evaluation, attest.Approval} {
		if _, _, err := signers[r].SignVersion(e.ctx, e.store, where, r, testenv.Passing(r)); err != nil {
			t.Fatal(err)
		}
	}
	var oci RemotePusher
	before, err := oci.PullAttestations(e.ctx, v.OCIDigest)
	if err != nil || len(before[attest.Training]) != 1 || len(before[attest.Evaluation]) != 0 {
		t.Fatalf("after publish: %d training, %d evaluation referrers (%v), want 1 and 0", len(before[attest.Training]), len(before[attest.Evaluation]), err)
	}
	for range 2 { // a retried record attaches nothing twice
		if _, err := p.Record(e.ctx, RecordOptions{RegistryURI: "s3://models", ModelName: "fashion-mnist", Run: "run-1", Status: "Succeeded",
			ModelVersion: v.Manifest.Version, OCIDigest: v.OCIDigest}); err != nil {
			t.Fatal(err)
		}
	}
	envs, err := oci.PullAttestations(e.ctx, v.OCIDigest)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range attest.Roles {
		if len(envs[r]) != 1 {
			t.Errorf("%s: %d referrers, want 1", r, len(envs[r]))
		}
	}
	subject, err := oci.ModelOf(e.ctx, v.OCIDigest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.VerifyChain(e.ctx, envs, subject); err != nil {
		t.Errorf("the chain from the registry alone: %v", err)
	}
}
