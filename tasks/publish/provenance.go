package publish

import (
	"context"
	"strings"
	"time"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/manifest"
)

// BuildType is the SLSA buildType of a model gantry trained and published.
const BuildType = "https://gantry.dev/attestations/training/v1"

// TrainingProvenance is the SLSA v1 provenance predicate of a published version, from what its
// manifest records: the training image (by digest) and the dataset (by digest) it was built
// from, the run that built it, the trainer's own report of its hyperparameters and scores
// (metrics.json: learning_rate, batch_size, seed, layers, …) and when it was published.
func TrainingProvenance(m manifest.Manifest) map[string]any {
	var deps []any
	if name, d, ok := strings.Cut(m.TrainingImageDigest, "@sha256:"); ok {
		deps = append(deps, map[string]any{"uri": "oci://" + name, "digest": map[string]any{"sha256": d}})
	}
	if d, ok := strings.CutPrefix(m.DatasetDigest, "sha256:"); ok {
		deps = append(deps, map[string]any{"name": "dataset", "digest": map[string]any{"sha256": d}})
	}
	external := map[string]any{"trainingImage": m.TrainingImageDigest, "source": m.SourceURI, "modelName": m.ModelName}
	if len(m.Metrics) > 0 {
		external["trainerReport"] = m.Metrics
	}
	build := map[string]any{"buildType": BuildType, "externalParameters": external}
	if len(deps) > 0 {
		build["resolvedDependencies"] = deps
	}
	metadata := map[string]any{"finishedOn": m.Created.UTC().Format(time.RFC3339)}
	if m.Workflow != "" {
		metadata["invocationId"] = m.Workflow
	}
	return map[string]any{
		"buildDefinition": build,
		"runDetails": map[string]any{
			"builder":  map[string]any{"id": "https://gantry.dev/model-publisher"},
			"metadata": metadata,
		},
	}
}

// WithSigner makes Publish sign the version's training provenance with the training role's key
// and keep it beside the version (and push it as a referrer of the OCI artifact when pushed).
func WithSigner(s *attest.Signer) Option { return func(c *config) { c.signer = s } }

// attestTraining signs what publish established (a retry or a re-publish of the same content
// signs the same statement again; Attach is create-only and content-named).
func (p *Publisher) attestTraining(ctx context.Context, o PublishOptions, out *Published) error {
	env, uri, err := p.signer.SignVersion(ctx, p.store, attest.Version{Registry: o.RegistryURI, Model: o.ModelName, Version: out.Manifest.Version, Artifact: out.OCIDigest},
		attest.Training, TrainingProvenance(out.Manifest))
	if err != nil {
		return err
	}
	p.log.Info("signed the training provenance", "attestation", uri, "keyid", p.signer.KeyID())
	if out.OCIDigest != "" {
		if rp, ok := p.oci.(RemotePusher); ok {
			ref, err := rp.PushAttestation(ctx, out.OCIDigest, attest.Training, env)
			if err != nil {
				return err
			}
			p.log.Info("pushed the training provenance as a referrer", "ref", ref)
		}
	}
	return nil
}
