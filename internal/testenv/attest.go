package testenv

import (
	"testing"

	"github.com/gantry-ml/gantry/internal/attest"
)

// Signers are a new signing key for each role and the trust policy naming them.
func Signers(t testing.TB) (map[attest.Role]*attest.Signer, *attest.Policy) {
	t.Helper()
	signers, roles := map[attest.Role]*attest.Signer{}, map[attest.Role][]*attest.Signer{}
	for _, r := range attest.Roles {
		key, err := attest.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if signers[r], err = attest.ParseSigner(key); err != nil {
			t.Fatal(err)
		}
		roles[r] = []*attest.Signer{signers[r]}
	}
	raw, err := attest.PolicyJSON(roles)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := attest.ParsePolicy(raw)
	if err != nil {
		t.Fatal(err)
	}
	return signers, policy
}

// Passing is a predicate a role's link counts with: an evaluation that passed, an approval that
// approved (attest.Policy.Verify refuses a signed "no").
func Passing(r attest.Role) map[string]any {
	return map[string]any{"role": string(r), "verdict": "pass", "decision": "approved"}
}
