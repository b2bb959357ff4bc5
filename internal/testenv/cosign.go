package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// CosignVerifyAttestation runs the released cosign CLI's `verify-attestation` on artifact
// (REPO@sha256:…) for predicateType with the public key pubPEM: the key alone vouches (no
// transparency log), and an empty trusted root keeps cosign from reaching for Sigstore's TUF
// repository, so only the registry is talked to. It returns cosign's output and error.
func CosignVerifyAttestation(t testing.TB, artifact, predicateType, pubPEM string) (string, error) {
	t.Helper()
	cosign := Binary(t, "cosign", "GANTRY_COSIGN_BIN")
	dir := t.TempDir()
	root, key := filepath.Join(dir, "trusted_root.json"), filepath.Join(dir, "key.pub")
	if err := os.WriteFile(root, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte(pubPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cosign, "verify-attestation", "--key="+key, "--type="+predicateType, "--insecure-ignore-tlog=true",
		"--offline=true", "--trusted-root="+root, "--allow-http-registry=true", artifact)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}
