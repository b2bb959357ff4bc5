package command

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/minio/minio-go/v7"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

// keyFile writes a new Ed25519 private key (PKCS #8 PEM) and returns its path and signer.
func keyFile(t *testing.T, dir, name string) (string, *attest.Signer) {
	t.Helper()
	b, s := testenv.Key(t)
	p := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, s
}

// The chain of a published version on a real S3 store: each role attests with its own key, verify
// shows and accepts the chain (by version and by digest, text and JSON), and a missing link or a
// link signed with a key the policy does not name fails it with the reason.
func TestAttestAndVerifyAChainOnS3(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.MakeBucket("models")
	m.MakeBucket("runs")
	v, err := m.Creds().GetWithContext(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", v.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", v.SecretAccessKey)
	s3 := "--s3-endpoint=" + m.Endpoint
	ctx := context.Background()
	store, err := objstore.New(&objstore.S3Config{Endpoint: m.Endpoint, Creds: m.Creds(), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"model.safetensors": "weights", "metrics.json": `{"test_accuracy":0.88}`} {
		if err := objstore.PutBytes(ctx, store, "s3://runs/r1/model/"+name, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
	defer reg.Close()
	ociRepo := strings.TrimPrefix(reg.URL, "http://") + "/ml/fashion-mnist"
	code, out, stderr := run("publish", "--source-uri=s3://runs/r1/model/", "--registry-uri=s3://models", "--oci-ref="+ociRepo, s3)
	if code != 0 {
		t.Fatalf("publish: exit %d: %s", code, stderr)
	}
	var pub map[string]string
	json.Unmarshal([]byte(out), &pub)
	version, digest, artifact := pub["model-version"], pub["model-digest"], pub["oci-digest"]

	dir := t.TempDir()
	keys, signers := map[attest.Role]string{}, map[attest.Role]*attest.Signer{}
	for _, r := range attest.Roles {
		keys[r], signers[r] = keyFile(t, dir, string(r))
	}
	predicates := map[attest.Role]string{
		attest.Training:   `{"buildDefinition":{"buildType":"https://gantry.dev/training/v1","externalParameters":{"image":"trainer@sha256:1"}},"runDetails":{"builder":{"id":"https://gantry.dev/train-launcher"}}}`,
		attest.Evaluation: `{"verdict":"pass","accuracy":0.88,"minAccuracy":0.85}`,
		attest.Approval:   `{"decision":"approved","decisions":[{"by":"alice","decision":"approved"}],"run":"ml-pipeline-abc"}`,
	}
	attestAs := func(r attest.Role, key string) (int, string) {
		p := filepath.Join(dir, string(r)+".json")
		os.WriteFile(p, []byte(predicates[r]), 0o644)
		code, out, stderr := run("attest", "--registry-uri=s3://models", "--version="+version, "--role="+string(r), "--signing-key="+key, "--predicate="+p, "--oci-ref="+artifact, s3)
		return code, out + stderr
	}
	for _, r := range attest.Roles {
		if code, out := attestAs(r, keys[r]); code != 0 || !strings.Contains(out, "attestations/"+version+"/"+string(r)+"/") {
			t.Fatalf("attest %s: exit %d: %s", r, code, out)
		}
	}
	// A retry writes the same object again, without error.
	if code, out := attestAs(attest.Training, keys[attest.Training]); code != 0 {
		t.Fatalf("attest again: exit %d: %s", code, out)
	}
	// The policy from the keys, as an admin writes it: private key files, or public ones.
	evalPub, _ := signers[attest.Evaluation].PublicPEM()
	pubFile := filepath.Join(dir, "evaluation.pub")
	os.WriteFile(pubFile, []byte(evalPub), 0o644)
	code, pb, stderr := run("trust-policy", "--training="+keys[attest.Training], "--evaluation="+pubFile, "--approval="+keys[attest.Approval])
	if code != 0 || strings.Contains(pb, "PRIVATE") {
		t.Fatalf("trust-policy: exit %d: %s%s", code, pb, stderr)
	}
	if code, _, stderr := run("trust-policy", "--training="+notAKey(dir)); code != exitcode.BadInput {
		t.Errorf("trust-policy of a file that is no key: exit %d (%s), want 2", code, stderr)
	}
	policyFile := filepath.Join(dir, "policy.json")
	os.WriteFile(policyFile, []byte(pb), 0o644)

	code, out, stderr = run("verify", "--registry-uri=s3://models", "--version="+version, "--trust-policy="+policyFile, s3)
	if code != 0 || strings.Count(out, "verified") != 3 || !strings.Contains(out, "verdict=pass") {
		t.Fatalf("verify: exit %d:\n%s%s", code, out, stderr)
	}
	code, out, _ = run("verify", "--registry-uri=s3://models", "--digest="+digest, "--trust-policy="+policyFile, "--output=json", s3)
	var js struct {
		Version  string `json:"version"`
		Complete bool   `json:"complete"`
		Chain    []struct {
			Role  string `json:"role"`
			KeyID string `json:"keyid"`
		} `json:"chain"`
	}
	if err := json.Unmarshal([]byte(out), &js); code != 0 || err != nil || js.Version != version || !js.Complete || len(js.Chain) != 3 || js.Chain[2].KeyID != signers[attest.Approval].KeyID() {
		t.Fatalf("verify --digest --output=json: exit %d, %v: %s", code, err, out)
	}

	// The same chain from the OCI registry alone: the referrers of the model's artifact.
	code, out, stderr = run("verify", "--oci-ref="+artifact, "--trust-policy="+policyFile)
	if code != 0 || strings.Count(out, "verified") != 3 {
		t.Fatalf("verify --oci-ref: exit %d:\n%s%s", code, out, stderr)
	}

	// cosign verify-attestation (v2, the released CLI) accepts each link with its role's public
	// key — and not with another role's.
	cosignVerify := func(r attest.Role, key *attest.Signer) (string, error) {
		pub, _ := key.PublicPEM()
		return testenv.CosignVerifyAttestation(t, artifact, attest.PredicateTypes[r], pub)
	}
	for _, r := range attest.Roles {
		if out, err := cosignVerify(r, signers[r]); err != nil || !strings.Contains(out, "The signatures were verified against the specified public key") {
			t.Errorf("cosign verify-attestation of the %s link: %v:\n%s", r, err, out)
		}
	}
	if out, err := cosignVerify(attest.Training, signers[attest.Approval]); err == nil {
		t.Errorf("cosign verified the training link with the approval key:\n%s", out)
	}

	// The evaluation re-signed with a key the policy does not name: refused, and it says so.
	foreign, _ := keyFile(t, dir, "foreign")
	removeRole(t, m, version, attest.Evaluation)
	if code, out := attestAs(attest.Evaluation, foreign); code != 0 {
		t.Fatalf("attest with a foreign key: exit %d: %s", code, out)
	}
	code, out, stderr = run("verify", "--registry-uri=s3://models", "--version="+version, "--trust-policy="+policyFile, s3)
	if code != exitcode.Failed || !strings.Contains(stderr, "evaluation: no signature by a evaluation key") || !strings.Contains(out, "evaluation MISSING OR INVALID") {
		t.Errorf("foreign evaluation key: exit %d:\n%s%s", code, out, stderr)
	}
	// The evaluation removed: the missing link is named.
	removeRole(t, m, version, attest.Evaluation)
	code, _, stderr = run("verify", "--registry-uri=s3://models", "--version="+version, "--trust-policy="+policyFile, s3)
	if code != exitcode.Failed || !strings.Contains(stderr, "evaluation: no attestation") {
		t.Errorf("missing evaluation: exit %d: %s", code, stderr)
	}

	for name, args := range map[string][]string{
		"unknown role":    {"attest", "--registry-uri=s3://models", "--version=" + version, "--role=deploy", "--signing-key=" + keys[attest.Training], "--predicate=" + policyFile, s3},
		"no key":          {"attest", "--registry-uri=s3://models", "--version=" + version, "--role=training", "--predicate=" + policyFile, s3},
		"not a key":       {"attest", "--registry-uri=s3://models", "--version=" + version, "--role=training", "--signing-key=" + policyFile, "--predicate=" + policyFile, s3},
		"no such version": {"attest", "--registry-uri=s3://models", "--version=20990101T000000Z-000000000000", "--role=training", "--signing-key=" + keys[attest.Training], "--predicate=" + policyFile, s3},
		"both names":      {"verify", "--registry-uri=s3://models", "--version=" + version, "--digest=" + digest, "--trust-policy=" + policyFile, s3},
		"no policy":       {"verify", "--registry-uri=s3://models", "--version=" + version, s3},
		"unknown digest":  {"verify", "--registry-uri=s3://models", "--digest=sha256:" + strings.Repeat("0", 64), "--trust-policy=" + policyFile, s3},
	} {
		if code, _, stderr := run(args...); code != exitcode.BadInput {
			t.Errorf("%s: exit %d (%s), want 2", name, code, stderr)
		}
	}
}

func removeRole(t *testing.T, m *testenv.MinIO, version string, r attest.Role) {
	t.Helper()
	c := m.Client()
	for o := range c.ListObjects(context.Background(), "models", minio.ListObjectsOptions{Prefix: "fashion-mnist/attestations/" + version + "/" + string(r) + "/", Recursive: true}) {
		if err := c.RemoveObject(context.Background(), "models", o.Key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// notAKey writes a file that is no key.
func notAKey(dir string) string {
	p := filepath.Join(dir, "not-a-key.json")
	os.WriteFile(p, []byte(`{"roles":{}}`), 0o644)
	return p
}
