package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/urfave/cli/v2"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/manifest"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/internal/testenv"
	"github.com/gantry-ml/gantry/tasks/approve"
)

// With the approval key, an approval is signed as the model's approval attestation — the
// approvers as the API server named them, the run it was bound to — and kept beside the version;
// a rejection signs nothing; a bad key is bad input before any wait.
func TestApprovalIsSignedAsTheApprovalAttestation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, _ := objstore.New(nil)
	registry := "file://" + dir + "/registry"
	digest := "sha256:" + strings.Repeat("a1", 32)
	m, _ := json.Marshal(manifest.Manifest{SchemaVersion: 1, ModelName: "fashion-mnist", Version: "v1", Digest: digest})
	if err := objstore.PutBytes(ctx, store, registry+"/fashion-mnist/v1/"+manifest.FileName, m); err != nil {
		t.Fatal(err)
	}
	priv, signer := testenv.Key(t)
	policyJSON, _ := attest.PolicyJSON(map[attest.Role][]*attest.Signer{attest.Approval: {signer}})
	policy, _ := attest.ParsePolicy(policyJSON)
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(key, priv, 0o600); err != nil {
		t.Fatal(err)
	}

	kc := fake.NewClientset()
	kc.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.CreateAction).GetObject().(metav1.Object).GetName()
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, name,
			fmt.Errorf("ValidatingAdmissionPolicy '%s' denied request: gantry's approval policy is in force", approve.TektonPolicy))
	})
	kc.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authnv1.SelfSubjectReview{Status: authnv1.SelfSubjectReviewStatus{UserInfo: authnv1.UserInfo{Username: "alice"}}}, nil
	})
	app := func(runs ...string) *cli.App {
		var objs []runtime.Object
		for _, r := range runs {
			objs = append(objs, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
				"metadata": map[string]any{"name": r, "namespace": "ml", "uid": "uid-" + r}}})
		}
		dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{approve.PipelineRunsResource: "PipelineRunList"}, objs...)
		return New(kube.Clients{Argo: func(string, string) (versioned.Interface, kubernetes.Interface, string, error) {
			return argofake.NewSimpleClientset(), kc, "ml", nil
		}, Dynamic: func(string, string) (dynamic.Interface, error) { return dyn, nil }})
	}
	run := func(a *cli.App, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := taskcli.Run(ctx, a, append([]string{"approver"}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	wait := func(r string, extra ...string) (int, string) {
		return run(app(), append([]string{"wait", "--run-name=" + r, "--run-uid=uid-" + r, "--timeout=20s", "--registry-uri=" + registry,
			"--model-name=fashion-mnist", "--model-version=v1", "--model-digest=" + digest}, extra...)...)
	}
	approvals := func() []*checked { return approvalsIn(t, store, registry, policy) }

	if code, out := run(app("pr-1"), "approve", "pr-1", "--tekton"); code != 0 {
		t.Fatalf("approve: exit %d: %s", code, out)
	}
	if code, out := wait("pr-1", "--signing-key="+key); code != 0 || !strings.Contains(out, `"decision":"approved"`) {
		t.Fatalf("wait: exit %d: %s", code, out)
	}
	got := approvals()
	if len(got) != 1 || got[0].err != nil {
		t.Fatalf("approval attestations: %+v, want one that verifies", got)
	}
	p := got[0].v.Predicate
	run0 := p["run"].(map[string]any)
	if p["decision"] != "approved" || fmt.Sprint(p["approvers"]) != "[alice]" || run0["name"] != "pr-1" || run0["uid"] != "uid-pr-1" ||
		p["candidate"].(map[string]any)["modelDigest"] != digest {
		t.Errorf("approval predicate %v", p)
	}

	if code, out := run(app("pr-2"), "reject", "pr-2", "--tekton", "--reason", "drift"); code != 0 {
		t.Fatalf("reject: exit %d: %s", code, out)
	}
	if code, out := wait("pr-2", "--signing-key="+key); code != 0 || len(approvals()) != 1 {
		t.Errorf("a rejection: exit %d, %d approval attestations (%s), want none added", code, len(approvals()), out)
	}
	if err := os.WriteFile(key, []byte("no key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := wait("pr-3", "--signing-key="+key); code != exitcode.BadInput || !strings.Contains(out, "--signing-key") {
		t.Errorf("a file that is no key: exit %d (%s), want 2 before waiting", code, out)
	}
}

type checked struct {
	v   *attest.Verified
	err error
}

func approvalsIn(t *testing.T, store objstore.Store, registry string, policy *attest.Policy) []*checked {
	t.Helper()
	envs, err := attest.ReadAttestations(context.Background(), store, registry, "fashion-mnist", "v1")
	if err != nil {
		t.Fatal(err)
	}
	subject, err := attest.AttestationSubject(context.Background(), store, registry, "fashion-mnist", "v1")
	if err != nil {
		t.Fatal(err)
	}
	var out []*checked
	for _, env := range envs[attest.Approval] {
		v, err := policy.Verify(context.Background(), env, attest.Approval, subject)
		out = append(out, &checked{v, err})
	}
	return out
}
