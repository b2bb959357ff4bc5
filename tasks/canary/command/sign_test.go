package command

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-ml/gantry/images/fashion-trainer/trainer"
	"github.com/gantry-ml/gantry/images/mlp"
	"github.com/gantry-ml/gantry/images/model-server/serving"
	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/manifest"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/internal/testenv"
)

// With the evaluation key, the canary signs what it measured as the model's evaluation
// attestation, beside the version: a pass verifies under the trust policy, a fail is signed too
// (the evidence of a "no") and refused as a link; without the key file nothing is signed; a
// key that is not one is bad input before anything is scored.
func TestCanarySignsItsEvaluation(t *testing.T) {
	data := testenv.FashionMNIST(t)
	ctx := context.Background()
	store, _ := objstore.New(nil)
	dir := t.TempDir()
	if _, err := trainer.Run(ctx, store, trainer.Options{DatasetURI: data, OutputURI: "file://" + dir + "/model/", Hidden: []int{16}, TrainLimit: 2000,
		TrainOptions: mlp.TrainOptions{Epochs: 1, BatchSize: 64, LearningRate: 2e-3, Optimizer: "adam", Seed: 1}}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	model, err := mlp.Load(ctx, store, "file://"+dir+"/model/")
	if err != nil {
		t.Fatal(err)
	}
	// A published version: the attestation's subject is its manifest and digest.
	registry := "file://" + dir + "/registry"
	digest := "sha256:" + strings.Repeat("5e", 32)
	m, _ := json.Marshal(manifest.Manifest{SchemaVersion: 1, ModelName: "fashion-mnist", Version: "v1", Digest: digest})
	if err := objstore.PutBytes(ctx, store, registry+"/fashion-mnist/v1/"+manifest.FileName, m); err != nil {
		t.Fatal(err)
	}
	srv := serving.New("fashion-mnist")
	srv.SetModel(model, "v1", digest)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	priv, signer := testenv.Key(t)
	policyJSON, _ := attest.PolicyJSON(map[attest.Role][]*attest.Signer{attest.Evaluation: {signer}})
	policy, err := attest.ParsePolicy(policyJSON)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key.pem")
	writeKey := func(b []byte) {
		if err := os.WriteFile(key, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey(priv)
	run := func(extra ...string) (int, string) {
		args := append([]string{"canary-evaluator", "--endpoint=" + ts.URL, "--dataset-uri=" + data, "--limit=300", "--protocol=v1",
			"--model-digest=" + digest, "--registry-uri=" + registry, "--model-version=v1", "--max-error-rate=0.5"}, extra...)
		var out, errb bytes.Buffer
		code := taskcli.Run(ctx, New(), args, &out, &errb)
		return code, out.String() + errb.String()
	}
	evaluations := func() []*attest.Verified {
		envs, err := attest.ReadAttestations(ctx, store, registry, "fashion-mnist", "v1")
		if err != nil {
			t.Fatal(err)
		}
		subject, _ := attest.AttestationSubject(ctx, store, registry, "fashion-mnist", "v1")
		var out []*attest.Verified
		for _, env := range envs[attest.Evaluation] {
			v, err := policy.Verify(ctx, env, attest.Evaluation, subject)
			if err != nil && !strings.Contains(err.Error(), "verdict fail, not pass") {
				t.Errorf("evaluation attestation: %v", err)
			}
			out = append(out, v)
		}
		return out
	}

	if code, out := run("--signing-key="+filepath.Join(dir, "absent.pem"), "--min-accuracy=0.1"); code != 0 || len(evaluations()) != 0 {
		t.Fatalf("no key file: exit %d, %d attestations (%s), want 0 and none", code, len(evaluations()), out)
	}
	code, out := run("--signing-key="+key, "--min-accuracy=0.1")
	got := evaluations()
	if code != 0 || len(got) != 1 || got[0] == nil {
		t.Fatalf("a pass: exit %d, %d verified evaluations (%s)", code, len(got), out)
	}
	p := got[0].Predicate
	if p["verdict"] != "pass" || p["servedDigest"] != digest || p["dataset"].(map[string]any)["digest"] == "" || p["metrics"].(map[string]any)["accuracy"].(float64) <= 0.1 {
		t.Errorf("the evaluation predicate: %v", p)
	}
	if code, out := run("--signing-key="+key, "--min-accuracy=0.999"); code != 0 || len(evaluations()) != 2 {
		t.Errorf("a fail: exit %d, %d evaluations (%s), want it signed too", code, len(evaluations()), out)
	}
	writeKey([]byte("not a key"))
	if code, out := run("--signing-key=" + key); code != exitcode.BadInput || !strings.Contains(out, "--signing-key") {
		t.Errorf("a file that is no key: exit %d (%s), want 2", code, out)
	}
	if code, out := run("--signing-key="+filepath.Join(dir, "absent.pem"), "--registry-uri="); code != 0 {
		t.Errorf("no key and no registry: exit %d (%s), want 0 (nothing to sign)", code, out)
	}
}
