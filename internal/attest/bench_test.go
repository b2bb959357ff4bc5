package attest

import (
	"context"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// What an attestation costs a step (sign) and promote or a server (verify the chain of three).
func BenchmarkAttest(b *testing.B) {
	ctx := context.Background()
	keys := map[Role]*Signer{}
	roles := map[Role][]*Signer{}
	for _, r := range Roles {
		k, _ := GenerateKey()
		keys[r], _ = ParseSigner(k)
		roles[r] = []*Signer{keys[r]}
	}
	raw, _ := PolicyJSON(roles)
	p, _ := ParsePolicy(raw)
	predicate := map[string]any{"verdict": "pass", "accuracy": 0.88, "confusion": make([]any, 100)}
	envs := map[Role][]*dsse.Envelope{}
	for _, r := range Roles {
		st, _ := Statement(model, r, predicate)
		env, _ := keys[r].Sign(ctx, st)
		envs[r] = []*dsse.Envelope{env}
	}
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			st, _ := Statement(model, Evaluation, predicate)
			if _, err := keys[Evaluation].Sign(ctx, st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-chain", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.VerifyChain(ctx, envs, model); err != nil {
				b.Fatal(err)
			}
		}
	})
}
