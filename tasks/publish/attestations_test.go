package publish

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/testenv"
)

func testSigner(t *testing.T) *attest.Signer {
	_, s := testenv.Key(t)
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
		st, err := attest.Statement(subject, r, testenv.Passing(r))
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

// The namespace's trust policy (ConfigMap gantry-trust-policy) rules production whatever called
// promote: with no --trust-policy given, a model without its chain is refused, one with it is
// served by a production server that verifies the chain itself at load; staging is not touched.
// Publish with the training key signs the provenance the chain starts with.
func TestNamespaceTrustPolicyRulesProduction(t *testing.T) {
	e := newEnv(t)
	signers, _ := testenv.Signers(t)
	roles := map[attest.Role][]*attest.Signer{}
	for r, s := range signers {
		roles[r] = []*attest.Signer{s}
	}
	policyJSON, err := attest.PolicyJSON(roles)
	if err != nil {
		t.Fatal(err)
	}
	c, d := e.cluster(t, true, func(c *fake.Clientset) {
		_, _ = c.CoreV1().ConfigMaps("ml").Create(e.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: attest.TrustPolicyConfigMap, Namespace: "ml"},
			Data: map[string]string{attest.TrustPolicyKey: string(policyJSON)}}, metav1.CreateOptions{})
	})
	image := "registry.local/trainer@sha256:" + strings.Repeat("ab", 32)
	v, err := e.publisher(WithSigner(signers[attest.Training])).Publish(e.ctx, PublishOptions{SourceURI: e.trainerOutput("t", "w-trust"),
		RegistryURI: "s3://models", ModelName: "fashion-mnist", Run: "ml-pipeline-abc", TrainingImageDigest: image})
	if err != nil {
		t.Fatal(err)
	}
	envs, err := attest.ReadAttestations(e.ctx, e.store, "s3://models", "fashion-mnist", v.Manifest.Version)
	if err != nil || len(envs[attest.Training]) != 1 {
		t.Fatalf("publish with the training key: %d training attestations (%v), want 1", len(envs[attest.Training]), err)
	}
	subject, err := attest.AttestationSubject(e.ctx, e.store, "s3://models", "fashion-mnist", v.Manifest.Version)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := attest.ParsePolicy(policyJSON)
	got, err := p.Verify(e.ctx, envs[attest.Training][0], attest.Training, subject)
	if err != nil {
		t.Fatalf("the training provenance does not verify: %v", err)
	}
	build := got.Predicate["buildDefinition"].(map[string]any)
	if build["externalParameters"].(map[string]any)["trainingImage"] != image ||
		got.Predicate["runDetails"].(map[string]any)["metadata"].(map[string]any)["invocationId"] != "ml-pipeline-abc" {
		t.Errorf("provenance: %v, want the training image and the run", got.Predicate)
	}

	promote := func() error {
		o := e.deployOpts("production")
		o.ModelURI, o.ExpectLive = v.URI, "none"
		_, err := d.Deploy(e.ctx, o)
		return err
	}
	if err := promote(); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "evaluation: no attestation") {
		t.Fatalf("promote with only the training link: %v, want exit 2 naming the missing evaluation", err)
	}
	if _, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{}); err == nil {
		t.Fatal("production exists after a refused promote")
	}
	for _, r := range []attest.Role{attest.Evaluation, attest.Approval} {
		if _, _, err := signers[r].SignVersion(e.ctx, e.store, attest.Version{Registry: "s3://models", Model: "fashion-mnist", Version: v.Manifest.Version}, r, testenv.Passing(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := promote(); err != nil {
		t.Fatalf("promote with the full chain: %v", err)
	}
	prod, err := c.AppsV1().Deployments("ml").Get(e.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := prod.Spec.Template.Spec
	if !slices.Contains(spec.Containers[0].Args, "--trust-policy="+attest.TrustPolicyDir+"/"+attest.TrustPolicyKey) ||
		len(spec.Volumes) != 1 || spec.Volumes[0].ConfigMap == nil || spec.Volumes[0].ConfigMap.Name != attest.TrustPolicyConfigMap {
		t.Errorf("the production server does not verify the chain at load: args %v, volumes %v", spec.Containers[0].Args, spec.Volumes)
	}
	o := e.deployOpts("staging")
	o.ModelURI = v.URI
	if _, err := d.Deploy(e.ctx, o); err != nil {
		t.Fatal(err)
	}
	staging, err := c.AppsV1().Deployments("ml").Get(e.ctx, Name("fashion-mnist", "staging", o.Run), metav1.GetOptions{})
	if err != nil || slices.ContainsFunc(staging.Spec.Template.Spec.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--trust-policy") }) {
		t.Errorf("staging: %v, want it served without the chain check", err)
	}

	// A policy that does not parse refuses production (fail closed), naming the ConfigMap.
	cm, _ := c.CoreV1().ConfigMaps("ml").Get(e.ctx, attest.TrustPolicyConfigMap, metav1.GetOptions{})
	cm.Data[attest.TrustPolicyKey] = "{not json"
	if _, err := c.CoreV1().ConfigMaps("ml").Update(e.ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	o = e.deployOpts("production")
	o.ModelURI, o.ExpectLive = v.URI, v.Manifest.Digest
	if _, err := d.Deploy(e.ctx, o); exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), attest.TrustPolicyConfigMap) {
		t.Errorf("a broken trust policy: %v, want exit 2 naming it", err)
	}
}
