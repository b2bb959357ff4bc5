package attest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// How a pipeline step gets its role's key, and promote and the production server their policy.
const (
	// SigningKeyDir is where a step mounts its role's signing Secret (optional: absent, the step
	// signs nothing); SigningKeyName is the Secret's key holding the PKCS #8 PEM private key.
	SigningKeyDir  = "/var/run/gantry/signing"
	SigningKeyName = "key.pem"
	// TrustPolicyConfigMap is the namespace's trust policy (key TrustPolicyKey). Where it exists,
	// every production deploy verifies the model's chain under it, and the production server is
	// started with it: whoever may create it decides what production requires (an admin).
	TrustPolicyConfigMap = "gantry-trust-policy"
	TrustPolicyKey       = "policy.json"
	// TrustPolicyDir is where the production server mounts that ConfigMap.
	TrustPolicyDir = "/var/run/gantry/trust"
)

// SigningKeyFile is the key file inside SigningKeyDir.
const SigningKeyFile = SigningKeyDir + "/" + SigningKeyName

// SigningSecret is the Secret holding role's signing key: mounted into that role's step only
// (templates), and admitted only into pods running as that step's account (the admission policy
// gantry-signing-keys).
func SigningSecret(role Role) string { return "gantry-signing-" + string(role) }

// LoadSigner reads a step's signing key. No file ("" or absent: the optional Secret does not
// exist) is no signer and no error — the step signs nothing, and where a trust policy is in
// force, promote refuses the model for want of that link. A file that is not a key is bad input.
func LoadSigner(path string) (*Signer, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, exitcode.Invalidf("--signing-key: %v", err)
	}
	s, err := ParseSigner(b)
	if err != nil {
		return nil, exitcode.Invalidf("--signing-key %s: %v", path, err)
	}
	return s, nil
}

// Version names a published version: its registry prefix, model and version, and — when it was
// pushed to an OCI registry — its artifact (REPO@sha256:…, publish's oci-digest; optional).
type Version struct{ Registry, Model, Version, Artifact string }

// SignVersion signs a statement about the published version (its model and manifest.json
// digests, and its OCI artifact when named) as role and keeps it beside the version; it returns
// the envelope and where it is. model-publisher attest, and the steps that establish a link
// (publish, the canary, the approval), all sign through it.
func (s *Signer) SignVersion(ctx context.Context, store objstore.Store, v Version, role Role, predicate any) (*dsse.Envelope, string, error) {
	subject, err := AttestationSubject(ctx, store, v.Registry, v.Model, v.Version)
	if err != nil {
		return nil, "", err
	}
	subject.Artifact = v.Artifact
	st, err := Statement(subject, role, predicate)
	if err != nil {
		return nil, "", exitcode.Invalidf("%s attestation: %v", role, err)
	}
	env, err := s.Sign(ctx, st)
	if err != nil {
		return nil, "", fmt.Errorf("signing the %s attestation: %w", role, err)
	}
	uri, err := Attach(ctx, store, v.Registry, v.Model, v.Version, role, env)
	return env, uri, err
}
