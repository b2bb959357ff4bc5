//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/testenv"
	"github.com/gantry-ml/gantry/tasks/publish"
)

// TestEvidenceChainRulesProduction: in a namespace with its signing keys and trust policy
// (hack/cluster/keys.sh), a run's own steps sign its training, evaluation and approval, promote
// verifies the chain and the production server verifies it again at load; an auditor's
// `model-publisher verify` shows the serving model's chain. A model whose evaluation was signed
// with a key the policy does not name is refused by promote (the run fails, production keeps its
// model); a production server whose model lost its evaluation attestation refuses to load it.
// Nobody's pod but the signing step's account may mount a key.
func TestEvidenceChainRulesProduction(t *testing.T) {
	t.Parallel()
	f := given(t)
	f.sh(nil, "hack/cluster/keys.sh", f.ns)
	f.people()

	// The keys reach only their step's account: any other pod naming one is refused at admission,
	// whoever creates it (here the cluster admin; a Workflow of mallory's runs as default too).
	for name, pod := range map[string]*corev1.Pod{
		"volume": keyPod(corev1.Volume{Name: "k", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: attest.SigningSecret(attest.Approval)}}}, nil),
		"env": keyPod(corev1.Volume{}, &corev1.EnvVar{Name: "K", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: attest.SigningSecret(attest.Evaluation)}, Key: attest.SigningKeyName}}}),
	} {
		_, err := kube.CoreV1().Pods(f.ns).Create(f.ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || !strings.Contains(fmt.Sprint(err), "gantry-signing-keys") {
			t.Errorf("a pod of the default account mounting a signing key by %s: %v, want refused by gantry-signing-keys", name, err)
		}
	}

	// The model also goes to the cluster's OCI registry (pods reach it at the node's address).
	run := f.submit("oci-ref=10.250.0.1:5000/" + f.ns + "/fashion-mnist")
	f.waitRun(run, toApproval, "approval waiting", awaitingApproval)
	if _, err := f.argoAs(alice, "resume", run); err != nil {
		t.Fatalf("alice's argo resume: %v", err)
	}
	w := f.waitRun(run, toEnd, "run succeeded", phaseIs(wfv1.WorkflowSucceeded))
	version, digest := output(w, "publish(0)", "model-version"), output(w, "publish(0)", "model-digest")

	// The auditor's question — why is this model in production? — in one command, with read-only
	// credentials and the namespace's policy.
	chain := f.verifyChain(version)
	if !chain.Complete || len(chain.Chain) != 3 || chain.ModelDigest != digest {
		t.Fatalf("verify of the serving model %s: %+v, want its complete chain", version, chain)
	}
	links := map[attest.Role]map[string]any{}
	for _, l := range chain.Chain {
		links[l.Role] = l.Predicate
	}
	if links[attest.Evaluation]["verdict"] != "pass" || links[attest.Evaluation]["servedDigest"] != digest {
		t.Errorf("evaluation link %v, want the canary's pass on %s", links[attest.Evaluation], digest)
	}
	if fmt.Sprint(links[attest.Approval]["approvers"]) != "["+f.normal(alice)+"]" || links[attest.Approval]["run"].(map[string]any)["uid"] != string(w.UID) {
		t.Errorf("approval link %v, want alice's approval of run %s", links[attest.Approval], w.UID)
	}
	if links[attest.Training]["runDetails"].(map[string]any)["metadata"].(map[string]any)["invocationId"] != run {
		t.Errorf("training link %v, want run %s", links[attest.Training], run)
	}
	// The chain travels with the OCI artifact: referrers (the run's last step attached the
	// canary's and the approval's links), and cosign verify-attestation accepts each link.
	artifact := output(w, "publish(0)", "oci-digest")
	envs, err := (publish.RemotePusher{}).PullAttestations(f.ctx, artifact)
	if err != nil {
		t.Fatalf("referrers of %s: %v", artifact, err)
	}
	subject, err := (publish.RemotePusher{}).ModelOf(f.ctx, artifact)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.policy().VerifyChain(f.ctx, envs, subject); err != nil {
		t.Errorf("the chain from the OCI registry alone (%s): %v", artifact, err)
	}
	f.cosignVerifies(artifact)

	dep, err := kube.AppsV1().Deployments(f.ns).Get(f.ctx, "fashion-mnist-production", metav1.GetOptions{})
	if err != nil || !strings.Contains(strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "), "--trust-policy=") {
		t.Fatalf("production %v: want a server that verifies the chain at load", err)
	}

	// Rotating the evaluation key: while the policy lists the old key beside the new one, what
	// the old key signed still verifies; once the old key is retired, it does not.
	f.sh(nil, "hack/cluster/keys.sh", f.ns, "--rotate", "evaluation")
	if n := len(f.policy().Roles[attest.Evaluation]); n != 2 {
		t.Errorf("after --rotate evaluation the policy lists %d evaluation keys, want the old and the new", n)
	}
	if chain := f.verifyChain(version); !chain.Complete {
		t.Errorf("the serving model's chain with the old evaluation key still listed: %s", chain.Reason)
	}
	f.sh(nil, "hack/cluster/keys.sh", f.ns, "--retire", "evaluation")
	if chain := f.verifyChain(version); chain.Complete || !strings.Contains(chain.Reason, "evaluation: no signature by a evaluation key") {
		t.Errorf("the chain once the old evaluation key is retired: %+v, want its evaluation link refused", chain)
	}

	// A second run whose canary signs with a key the policy does not name (the Secret replaced):
	// approved, and still refused by promote; production keeps the first model.
	foreign, err := attest.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sec, err := kube.CoreV1().Secrets(f.ns).Get(f.ctx, attest.SigningSecret(attest.Evaluation), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data[attest.SigningKeyName] = foreign
	if _, err := kube.CoreV1().Secrets(f.ns).Update(f.ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	run2 := f.submit("hyperparameters=epochs=1,learning-rate=0.001,batch-size=128", "min-accuracy=0.5", "max-accuracy-drop=1")
	f.waitRun(run2, toApproval, "second run waiting for approval", awaitingApproval)
	if _, err := f.argoAs(alice, "resume", run2); err != nil {
		t.Fatalf("alice's argo resume: %v", err)
	}
	w2 := f.waitRun(run2, toEnd, "second run failed", phaseIs(wfv1.WorkflowFailed))
	if n := w2.Status.Nodes.FindByDisplayName("promote(0)"); n == nil || !strings.Contains(n.Message, "evaluation: no signature by a evaluation key") {
		t.Errorf("promote of a model evaluated with a foreign key: %+v, want refused naming the evaluation link", n)
	}
	if dep, err := kube.AppsV1().Deployments(f.ns).Get(f.ctx, "fashion-mnist-production", metav1.GetOptions{}); err != nil || dep.Annotations[publish.AnnModelDigest] != digest {
		t.Errorf("production after the refused promote: %v, serves %s, want %s", err, dep.Annotations[publish.AnnModelDigest], digest)
	}

	// The serving model loses its evaluation attestation: a new production pod refuses to load it.
	admin := f.store("gantry-s3")
	infos, err := admin.List(f.ctx, "s3://models/registry/fashion-mnist/attestations/"+version+"/evaluation/")
	if err != nil || len(infos) == 0 {
		t.Fatalf("the evaluation attestations of %s: %d (%v)", version, len(infos), err)
	}
	for _, i := range infos {
		if err := admin.Delete(f.ctx, i.URI); err != nil {
			t.Fatal(err)
		}
	}
	if err := kube.CoreV1().Pods(f.ns).DeleteCollection(f.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=fashion-mnist-production"}); err != nil {
		t.Fatal(err)
	}
	f.waitPod("app.kubernetes.io/name=fashion-mnist-production", 3*time.Minute, "production server refusing its model", func(p *corev1.Pod) bool {
		for _, c := range p.Status.ContainerStatuses {
			for _, term := range []*corev1.ContainerStateTerminated{c.State.Terminated, c.LastTerminationState.Terminated} {
				if term != nil && strings.Contains(term.Message, "evaluation: no attestation") {
					return !c.Ready
				}
			}
		}
		return false
	})
	if chain := f.verifyChain(version); chain.Complete || !strings.Contains(chain.Reason, "evaluation: no attestation") {
		t.Errorf("verify after the evaluation attestation was removed: %+v, want incomplete", chain)
	}
}

// policy is the namespace's trust policy.
func (f *fixture) policy() *attest.Policy {
	f.t.Helper()
	cm, err := kube.CoreV1().ConfigMaps(f.ns).Get(f.ctx, attest.TrustPolicyConfigMap, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	p, err := attest.ParsePolicy([]byte(cm.Data[attest.TrustPolicyKey]))
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// cosignVerifies runs `cosign verify-attestation --key` on the artifact for each role, with the
// role's public key from the namespace's trust policy.
func (f *fixture) cosignVerifies(artifact string) {
	f.t.Helper()
	p := f.policy()
	for _, r := range attest.Roles {
		if out, err := testenv.CosignVerifyAttestation(f.t, artifact, attest.PredicateTypes[r], p.Roles[r][0].PublicKey); err != nil {
			f.t.Errorf("cosign verify-attestation of the %s link of %s: %v\n%s", r, artifact, err, out)
		}
	}
}

// keyPod is a pod of the default account naming a signing key through volume or env.
func keyPod(volume corev1.Volume, env *corev1.EnvVar) *corev1.Pod {
	c := corev1.Container{Name: "c", Image: "busybox", Command: []string{"true"}}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "steal-key-"}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
	if volume.Name != "" {
		p.Spec.Volumes = []corev1.Volume{volume}
	}
	if env != nil {
		p.Spec.Containers[0].Env = []corev1.EnvVar{*env}
	}
	return p
}

// chainReport is model-publisher verify --output json.
type chainReport struct {
	ModelDigest string `json:"modelDigest"`
	Complete    bool   `json:"complete"`
	Reason      string `json:"reason"`
	Chain       []struct {
		Role      attest.Role    `json:"role"`
		Predicate map[string]any `json:"predicate"`
	} `json:"chain"`
}

// verifyChain runs `model-publisher verify` on version as an auditor: the model servers'
// read-only credentials, the namespace's trust policy.
func (f *fixture) verifyChain(version string) chainReport {
	f.t.Helper()
	cm, err := kube.CoreV1().ConfigMaps(f.ns).Get(f.ctx, attest.TrustPolicyConfigMap, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	policy := filepath.Join(f.t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(cm.Data[attest.TrustPolicyKey]), 0o600); err != nil {
		f.t.Fatal(err)
	}
	sec, err := kube.CoreV1().Secrets(f.ns).Get(f.ctx, "gantry-s3-read", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	svc, err := kube.CoreV1().Services("gantry-system").Get(f.ctx, "minio", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	out, _ := f.try(map[string]string{"AWS_ACCESS_KEY_ID": string(sec.Data["AWS_ACCESS_KEY_ID"]), "AWS_SECRET_ACCESS_KEY": string(sec.Data["AWS_SECRET_ACCESS_KEY"])},
		filepath.Join(binDir, "model-publisher"), "verify", "--registry-uri=s3://models/registry", "--version="+version, "--trust-policy="+policy, "--output=json",
		fmt.Sprintf("--s3-endpoint=http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port))
	var r chainReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		f.t.Fatalf("model-publisher verify: %v: %s", err, out)
	}
	return r
}
