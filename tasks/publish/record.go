package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// RunRecord is <registry>/<model>/runs/<run>.json: how a pipeline run ended.
type RunRecord struct {
	Run          string          `json:"run"`
	Status       string          `json:"status"` // Argo {{workflow.status}}: Succeeded, Failed, Error
	Promoted     bool            `json:"promoted"`
	ModelVersion string          `json:"modelVersion,omitempty"`
	Failures     json.RawMessage `json:"failures,omitempty"` // Argo {{workflow.failures}}: which step failed and why
	Finished     time.Time       `json:"finished"`
}

// RunRecordURI is where Record writes a run's record: <registry>/<model>/runs/<run>.json.
func RunRecordURI(registry, model, run string) string {
	return modelDir(registry, model).Join("runs", run+".json").String()
}

// RecordOptions describe how a run ended.
type RecordOptions struct {
	RegistryURI  string
	ModelName    string
	Run          string
	Status       string // Argo {{workflow.status}}
	Failures     string // Argo {{workflow.failures}}: JSON, or "" / "null" when none
	ModelVersion string // the version the run published, if any
	// OCIDigest is the version's OCI artifact (REPO@sha256:…, publish's oci-digest), if pushed:
	// the version's attestations — whatever the run's steps signed — go there too.
	OCIDigest string
}

// Record writes the run's outcome next to the model's versions and returns its URI.
func (p *Publisher) Record(ctx context.Context, o RecordOptions) (string, error) {
	if o.Run == "" || o.Status == "" {
		return "", exitcode.Invalidf("--run-name and --status are required")
	}
	if !nameRE.MatchString(o.ModelName) {
		return "", exitcode.Invalidf("--model-name %q: want a DNS label", o.ModelName)
	}
	if _, err := objstore.Parse(o.RegistryURI); err != nil {
		return "", fmt.Errorf("--registry-uri: %w", err)
	}
	r := RunRecord{Run: o.Run, Status: o.Status, ModelVersion: o.ModelVersion, Failures: json.RawMessage(o.Failures), Finished: p.now().UTC()}
	if len(r.Failures) > 0 && !json.Valid(r.Failures) {
		// Argo renders an empty list as "" or "null"; anything else must be JSON.
		r.Failures, _ = json.Marshal(o.Failures)
	}
	r.Promoted = r.Status == "Succeeded"
	uri := RunRecordURI(o.RegistryURI, o.ModelName, r.Run)
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := objstore.PutBytes(ctx, p.store, uri, b); err != nil {
		return "", fmt.Errorf("recording run: %w", err)
	}
	if o.OCIDigest != "" && o.ModelVersion != "" {
		if err := p.attachToOCI(ctx, o); err != nil {
			return uri, err
		}
	}
	return uri, nil
}

// attachToOCI pushes every attestation kept beside the version as a referrer of its OCI artifact
// (and into cosign's attestation image): the canary and the approval sign without registry
// credentials, so the run's last step carries their links to where the model goes. Idempotent.
func (p *Publisher) attachToOCI(ctx context.Context, o RecordOptions) error {
	rp, ok := p.oci.(RemotePusher)
	if !ok {
		return nil
	}
	envs, err := attest.ReadAttestations(ctx, p.store, o.RegistryURI, o.ModelName, o.ModelVersion)
	if err != nil {
		return err
	}
	for _, role := range attest.Roles {
		for _, env := range envs[role] {
			ref, err := rp.PushAttestation(ctx, o.OCIDigest, role, env)
			if err != nil {
				return err
			}
			p.log.Info("attestation attached to the OCI artifact", "role", role, "ref", ref)
		}
	}
	return nil
}
