package publish

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/testenv"
)

func testSigner(t *testing.T) *attest.Signer {
	t.Helper()
	key, err := attest.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := attest.ParseSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// With a trust policy, promote deploys only a model whose chain verifies: training, evaluation
// and approval, each about the digest being deployed and signed by its role's key. Refused is
// exit 2 with the failing link, and production is untouched.
func TestPromoteRequiresTheAttestationChain(t *testing.T) {
	e := newEnv(t)
	c, _ := e.cluster(t, true)
	signers, policy := testenv.Signers(t)
	d := NewDeployer(c, e.store, WithReleaseGate(allowAll{}), WithTrustPolicy(policy))
	publish := func(dir, weights string) *Published {
		v, err := e.publisher().Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput(dir, weights), RegistryURI: "s3://models", ModelName: "fashion-mnist"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	attestAs := func(v *Published, r attest.Role, s *attest.Signer) {
		subject, err := attest.AttestationSubject(e.ctx, e.store, "s3://models", "fashion-mnist", v.Manifest.Version)
		if err != nil {
			t.Fatal(err)
		}
		st, err := attest.Statement(subject, r, map[string]any{"role": string(r)})
		if err != nil {
			t.Fatal(err)
		}
		env, err := s.Sign(e.ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := attest.Attach(e.ctx, e.store, "s3://models", "fashion-mnist", v.Manifest.Version, r, env); err != nil {
			t.Fatal(err)
		}
	}
	promote := func(v *Published) error {
		o := e.deployOpts("production")
		o.ModelURI, o.ExpectLive = v.URI, "none"
		_, err := d.Deploy(e.ctx, o)
		return err
	}
	production := func() bool {
		_, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
		return err == nil
	}

	unattested := publish("u", "w-unattested")
	attestAs(unattested, attest.Training, signers[attest.Training])
	attestAs(unattested, attest.Approval, signers[attest.Approval])
	attestAs(unattested, attest.Evaluation, testSigner(t)) // a key the policy does not name
	err := promote(unattested)
	if exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "not promoted: attestation chain") || !strings.Contains(err.Error(), "evaluation: no signature by a evaluation key") {
		t.Errorf("an evaluation signed by a foreign key: %v, want exit 2 naming the link", err)
	}
	// Another model's good chain does not vouch for this one.
	other := publish("o", "w-other")
	for _, r := range attest.Roles {
		attestAs(other, r, signers[r])
	}
	if production() {
		t.Fatal("production exists after a refused promote")
	}
	if err := promote(unattested); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("unattested model promoted: %v", err)
	}
	if err := promote(other); err != nil {
		t.Fatalf("a model with its full chain: %v", err)
	}
	if !production() {
		t.Error("no production after the attested promote")
	}
}
