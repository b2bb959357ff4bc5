package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
)

// Attestations in an OCI registry are OCI 1.1 referrers of the model's artifact: an artifact
// manifest of type AttestationArtifactType whose subject is the model's manifest and whose one
// layer is the DSSE envelope, annotated with its role. The registry's referrers API lists them,
// and a copy of the model with its referrers carries its evidence along.
const (
	AttestationArtifactType = "application/vnd.in-toto+json"
	DSSEMediaType           = "application/vnd.dsse.envelope.v1+json"
	// RoleAnnotation names the attestation's role on its manifest.
	RoleAnnotation = "dev.gantry.attestation.role"
)

func (r RemotePusher) options(ctx context.Context) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, r.Options...)
}

// PushAttestation pushes env as a referrer of subject (REPO@sha256:… of the model's artifact) and
// returns it as repo@digest. The same envelope always makes the same manifest: a retry pushes
// nothing new.
func (r RemotePusher) PushAttestation(ctx context.Context, subject string, role attest.Role, env *dsse.Envelope) (string, error) {
	ref, err := name.NewDigest(subject)
	if err != nil {
		return "", exitcode.Invalidf("--oci-ref %q: want REPO@sha256:… (publish's oci-digest): %v", subject, err)
	}
	opts := r.options(ctx)
	desc, err := remote.Head(ref, opts...)
	if err != nil {
		return "", pushError(fmt.Errorf("reading the model's manifest %s: %w", ref, err))
	}
	body, err := json.Marshal(env)
	if err != nil {
		return "", err
	}
	layer := static.NewLayer(body, DSSEMediaType)
	ld, _ := layer.Digest()
	cfg := static.NewLayer(emptyConfig, "application/vnd.oci.empty.v1+json")
	cfgSum := sha256.Sum256(emptyConfig)
	sub := v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}
	mf := v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: AttestationArtifactType,
		Config:      v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Size: int64(len(emptyConfig)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(cfgSum[:])}, Data: emptyConfig},
		Layers:      []v1.Descriptor{{MediaType: DSSEMediaType, Size: int64(len(body)), Digest: ld}},
		Subject:     &sub,
		Annotations: map[string]string{RoleAnnotation: string(role), "org.opencontainers.image.created": "1970-01-01T00:00:00Z"},
	}
	raw, err := json.Marshal(mf)
	if err != nil {
		return "", err
	}
	repo := ref.Context()
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return "", pushError(fmt.Errorf("pushing the attestation to %s: %w", repo, err))
		}
	}
	sum := sha256.Sum256(raw)
	at := repo.Digest("sha256:" + hex.EncodeToString(sum[:]))
	if err := remote.Put(at, rawManifest{raw, types.OCIManifestSchema1}, opts...); err != nil {
		return "", pushError(fmt.Errorf("pushing the attestation manifest to %s: %w", repo, err))
	}
	if err := r.appendCosignAttestation(ref, desc.Digest, role, layer, opts); err != nil {
		return "", err
	}
	return at.String(), nil
}

// CosignSignatureAnnotation and CosignPredicateAnnotation are what cosign reads on each layer of
// its attestation image.
const (
	CosignSignatureAnnotation = "dev.cosignproject.cosign/signature"
	CosignPredicateAnnotation = "predicateType"
)

// appendCosignAttestation also keeps the envelope where `cosign verify-attestation` looks (it
// reads no referrers): the image tagged sha256-<hex>.att in the artifact's repository, one layer
// per DSSE envelope. An envelope already there is not added again. Two pushers appending at the
// same moment can lose one layer of this tag (a registry has no compare-and-swap on tags): the
// referrer above is what gantry itself reads.
func (r RemotePusher) appendCosignAttestation(ref name.Digest, subject v1.Hash, role attest.Role, layer v1.Layer, opts []remote.Option) error {
	tag := ref.Context().Tag(subject.Algorithm + "-" + subject.Hex + ".att")
	img, err := remote.Image(tag, opts...)
	var terr *transport.Error
	switch {
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
		img = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	case err != nil:
		return pushError(fmt.Errorf("reading the cosign attestations %s: %w", tag, err))
	}
	ld, _ := layer.Digest()
	m, err := img.Manifest()
	if err != nil {
		return pushError(fmt.Errorf("reading the cosign attestations %s: %w", tag, err))
	}
	for _, l := range m.Layers {
		if l.Digest == ld {
			return nil
		}
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: DSSEMediaType,
		Annotations: map[string]string{CosignSignatureAnnotation: "", CosignPredicateAnnotation: attest.PredicateTypes[role]}})
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return pushError(fmt.Errorf("pushing the cosign attestations %s: %w", tag, err))
	}
	return nil
}

// PullAttestations reads, through the referrers API, the attestations that refer to subject
// (REPO@sha256:…), by role.
func (r RemotePusher) PullAttestations(ctx context.Context, subject string) (map[attest.Role][]*dsse.Envelope, error) {
	ref, err := name.NewDigest(subject)
	if err != nil {
		return nil, exitcode.Invalidf("--oci-ref %q: want REPO@sha256:…: %v", subject, err)
	}
	// Not filtered by the descriptors' artifactType: a registry that reports the config's media
	// type there instead of the manifest's artifactType (go-containerregistry's) would hide them.
	// Each referrer's own manifest decides.
	idx, err := remote.Referrers(ref, r.options(ctx)...)
	if err != nil {
		return nil, pushError(fmt.Errorf("listing the referrers of %s: %w", ref, err))
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := map[attest.Role][]*dsse.Envelope{}
	for _, d := range im.Manifests {
		if d.ArtifactType != AttestationArtifactType && d.Annotations[RoleAnnotation] == "" {
			continue
		}
		img, err := remote.Image(ref.Context().Digest(d.Digest.String()), r.options(ctx)...)
		if err != nil {
			return nil, pushError(fmt.Errorf("reading referrer %s: %w", d.Digest, err))
		}
		m, err := img.Manifest()
		if err != nil || m.ArtifactType != AttestationArtifactType || len(m.Layers) != 1 || m.Layers[0].MediaType != DSSEMediaType {
			continue // not one of gantry's attestations
		}
		l, err := img.LayerByDigest(m.Layers[0].Digest)
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, pushError(err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
		rc.Close()
		if err != nil {
			return nil, pushError(err)
		}
		var env dsse.Envelope
		if err := json.Unmarshal(b, &env); err != nil {
			continue
		}
		role := attest.Role(m.Annotations[RoleAnnotation])
		out[role] = append(out[role], &env)
	}
	return out, nil
}

// ModelOf reads the model an OCI artifact (REPO@sha256:…) holds, from the annotations publish
// wrote on it: name, version, model digest.
func (r RemotePusher) ModelOf(ctx context.Context, artifact string) (attest.Subject, error) {
	ref, err := name.NewDigest(artifact)
	if err != nil {
		return attest.Subject{}, exitcode.Invalidf("--oci-ref %q: want REPO@sha256:…: %v", artifact, err)
	}
	desc, err := remote.Get(ref, r.options(ctx)...)
	if err != nil {
		return attest.Subject{}, pushError(fmt.Errorf("reading %s: %w", ref, err))
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return attest.Subject{}, exitcode.Invalidf("%s is not an OCI manifest: %v", ref, err)
	}
	a := m.Annotations
	if a["dev.gantry.model.digest"] == "" {
		return attest.Subject{}, exitcode.Invalidf("%s is not a model gantry published (no dev.gantry.model.digest annotation)", ref)
	}
	return attest.Subject{Name: a["dev.gantry.model.name"], Version: a["dev.gantry.model.version"], ModelDigest: a["dev.gantry.model.digest"]}, nil
}
