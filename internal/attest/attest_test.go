package attest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

func newSigner(t *testing.T) *Signer {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func policy(t *testing.T, roles map[Role][]*Signer) *Policy {
	t.Helper()
	b, err := PolicyJSON(roles)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var model = Subject{Name: "fashion-mnist", Version: "20261206T100000Z-0123456789ab",
	ModelDigest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", ManifestDigest: "sha256:" + strings.Repeat("ab", 32)}

func sign(t *testing.T, s *Signer, subject Subject, role Role, predicate any) *dsse.Envelope {
	t.Helper()
	st, err := Statement(subject, role, predicate)
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Sign(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// A signed chain verifies; every way of breaking one link fails it with a reason naming the link
// and what is wrong.
func TestChainVerifiesAndEveryBrokenLinkFailsWithItsReason(t *testing.T) {
	ctx := context.Background()
	keys := map[Role]*Signer{Training: newSigner(t), Evaluation: newSigner(t), Approval: newSigner(t)}
	p := policy(t, map[Role][]*Signer{Training: {keys[Training]}, Evaluation: {keys[Evaluation]}, Approval: {keys[Approval]}})
	predicates := map[Role]any{
		Training:   map[string]any{"buildDefinition": map[string]any{"buildType": "https://gantry.dev/training/v1"}},
		Evaluation: map[string]any{"verdict": "pass", "accuracy": 0.88},
		Approval:   map[string]any{"decision": "approved", "decisions": []any{map[string]any{"by": "alice", "decision": "approved"}}},
	}
	chain := func() map[Role]*dsse.Envelope {
		out := map[Role]*dsse.Envelope{}
		for role, s := range keys {
			out[role] = sign(t, s, model, role, predicates[role])
		}
		return out
	}
	found := func(e map[Role]*dsse.Envelope) map[Role][]*dsse.Envelope {
		out := map[Role][]*dsse.Envelope{}
		for role, env := range e {
			out[role] = []*dsse.Envelope{env}
		}
		return out
	}
	got, err := p.VerifyChain(ctx, found(chain()), model)
	if err != nil || len(got) != 3 {
		t.Fatalf("a full chain: %v (%d links)", err, len(got))
	}
	if got[1].Predicate["verdict"] != "pass" || got[2].KeyID != keys[Approval].KeyID() {
		t.Errorf("verified chain %+v", got)
	}
	// JSON round trip: the envelope as stored verifies the same.
	b, _ := json.Marshal(chain()[Evaluation])
	var back dsse.Envelope
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verify(ctx, &back, Evaluation, model); err != nil {
		t.Errorf("round trip: %v", err)
	}

	// A foreign attestation beside a good one does not break the link.
	withForeign := found(chain())
	withForeign[Approval] = append([]*dsse.Envelope{sign(t, newSigner(t), model, Approval, predicates[Approval])}, withForeign[Approval]...)
	if _, err := p.VerifyChain(ctx, withForeign, model); err != nil {
		t.Errorf("a foreign attestation beside the approver's: %v", err)
	}

	other := model
	other.ModelDigest = "sha256:" + strings.Repeat("cd", 32)
	foreign := newSigner(t)
	for name, c := range map[string]struct {
		mut  func(map[Role]*dsse.Envelope)
		want string
	}{
		"changed byte": {func(e map[Role]*dsse.Envelope) {
			payload, _ := base64.StdEncoding.DecodeString(e[Evaluation].Payload)
			payload = []byte(strings.Replace(string(payload), `"pass"`, `"PASS"`, 1))
			e[Evaluation].Payload = base64.StdEncoding.EncodeToString(payload)
		}, "evaluation: no signature by a evaluation key"},
		"another model": {func(e map[Role]*dsse.Envelope) {
			e[Training] = sign(t, keys[Training], other, Training, predicates[Training])
		}, "training: the attestation is about another model"},
		"unknown key": {func(e map[Role]*dsse.Envelope) { e[Approval] = sign(t, foreign, model, Approval, predicates[Approval]) }, "approval: no signature by a approval key"},
		"another role": {func(e map[Role]*dsse.Envelope) {
			e[Approval] = sign(t, keys[Evaluation], model, Approval, predicates[Approval])
		}, "approval: no signature"},
		"missing link": {func(e map[Role]*dsse.Envelope) { delete(e, Evaluation) }, "evaluation: no attestation"},
		"unsigned":     {func(e map[Role]*dsse.Envelope) { e[Training].Signatures = nil }, "training: unsigned"},
		"a signed fail": {func(e map[Role]*dsse.Envelope) {
			e[Evaluation] = sign(t, keys[Evaluation], model, Evaluation, map[string]any{"verdict": "fail", "accuracy": 0.5})
		}, "evaluation: verdict fail, not pass"},
		"a signed rejection": {func(e map[Role]*dsse.Envelope) {
			e[Approval] = sign(t, keys[Approval], model, Approval, map[string]any{"decision": "rejected"})
		}, "approval: decision rejected, not approved"},
		"wrong predicate": {func(e map[Role]*dsse.Envelope) {
			e[Evaluation] = sign(t, keys[Evaluation], model, Approval, predicates[Approval])
		}, "evaluation: predicate type"},
	} {
		envs := chain()
		c.mut(envs)
		_, err := p.VerifyChain(ctx, found(envs), model)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
}

// Rotating a role's key: an attestation signed with the old key verifies while the policy lists
// it, and not once it is removed; the new key's verify all along.
func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	old, next := newSigner(t), newSigner(t)
	envOld, envNew := sign(t, old, model, Evaluation, map[string]any{"verdict": "pass"}), sign(t, next, model, Evaluation, map[string]any{"verdict": "pass"})
	both := policy(t, map[Role][]*Signer{Evaluation: {old, next}})
	for _, env := range []*dsse.Envelope{envOld, envNew} {
		if _, err := both.Verify(ctx, env, Evaluation, model); err != nil {
			t.Errorf("with both keys: %v", err)
		}
	}
	rotated := policy(t, map[Role][]*Signer{Evaluation: {next}})
	if _, err := rotated.Verify(ctx, envOld, Evaluation, model); err == nil {
		t.Error("the removed key's attestation still verifies")
	}
	if _, err := rotated.Verify(ctx, envNew, Evaluation, model); err != nil {
		t.Errorf("the new key: %v", err)
	}
}

func TestPolicyRefusesWhatItCannotTrust(t *testing.T) {
	s := newSigner(t)
	pub, _ := s.PublicPEM()
	for name, raw := range map[string]string{
		"unknown role":  `{"roles":{"deploy":[]}}`,
		"wrong keyid":   `{"roles":{"training":[{"keyid":"abc","publicKey":` + jsonString(pub) + `}]}}`,
		"no PEM":        `{"roles":{"training":[{"keyid":"abc","publicKey":"x"}]}}`,
		"unknown field": `{"roles":{},"threshold":2}`,
	} {
		if _, err := ParsePolicy([]byte(raw)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	for name, sub := range map[string]Subject{"short digest": {ModelDigest: "sha256:abc", ManifestDigest: model.ManifestDigest}, "no algorithm": {ModelDigest: strings.Repeat("ab", 32), ManifestDigest: model.ManifestDigest}} {
		if _, err := Statement(sub, Training, map[string]any{}); err == nil {
			t.Errorf("%s: a statement about it was made", name)
		}
	}
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }
