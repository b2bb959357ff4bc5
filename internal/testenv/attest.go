package testenv

import (
	"testing"

	"github.com/gantry-ml/gantry/internal/attest"
)

// Key is a new Ed25519 signing key: its PKCS #8 PEM (what a step's --signing-key file holds) and
// its signer.
func Key(t testing.TB) ([]byte, *attest.Signer) {
	t.Helper()
	pem, err := attest.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := attest.ParseSigner(pem)
	if err != nil {
		t.Fatal(err)
	}
	return pem, s
}

// Signers are a new signing key for each role and the trust policy naming them.
func Signers(t testing.TB) (map[attest.Role]*attest.Signer, *attest.Policy) {
	t.Helper()
	signers, roles := map[attest.Role]*attest.Signer{}, map[attest.Role][]*attest.Signer{}
	for _, r := range attest.Roles {
		_, signers[r] = Key(t)
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
