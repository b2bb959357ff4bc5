// Package attest signs and verifies the evidence that travels with a model: in-toto statements
// (the attestation framework's own Go types) in DSSE envelopes (go-securesystemslib), one
// signing identity per role — training, evaluation, approval — and a trust policy that names the
// public keys each role may sign with. The subject of every statement is the model: its content
// digest (publish's model digest) and the digest of its manifest.json, so an attestation never
// vouches for another model, and a copy of the model carries its evidence along.
package attest

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	ita1 "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// PayloadType is the DSSE payload type of an in-toto statement.
const PayloadType = "application/vnd.in-toto+json"

// Role is who vouches for a link of the chain.
type Role string

// The roles, in the order the chain is built.
const (
	Training   Role = "training"
	Evaluation Role = "evaluation"
	Approval   Role = "approval"
)

// Roles are the links every model in production needs.
var Roles = []Role{Training, Evaluation, Approval}

// Predicate types, one per role: SLSA v1 provenance for the training, gantry's own for the
// evaluation and the approval (documented in docs/contracts.md).
var PredicateTypes = map[Role]string{
	Training:   "https://slsa.dev/provenance/v1",
	Evaluation: "https://gantry.dev/attestations/evaluation/v1",
	Approval:   "https://gantry.dev/attestations/approval/v1",
}

// Subject is the model an attestation is about.
type Subject struct {
	// Name is the model's name; Version its version (informational: the digests bind).
	Name, Version string
	// ModelDigest is publish's model digest (sha256:…); ManifestDigest the sha256 of manifest.json.
	ModelDigest, ManifestDigest string
	// Artifact, when the model was pushed to an OCI registry, is its artifact (REPO@sha256:… of
	// its manifest): a subject too, the one `cosign verify-attestation` matches.
	Artifact string
}

func hexOf(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("digest %q: want sha256:<64 lower-case hex>", digest)
	}
	return h, nil
}

func (s Subject) descriptors() ([]*ita1.ResourceDescriptor, error) {
	model, err := hexOf(s.ModelDigest)
	if err != nil {
		return nil, fmt.Errorf("model %w", err)
	}
	manifest, err := hexOf(s.ManifestDigest)
	if err != nil {
		return nil, fmt.Errorf("manifest %w", err)
	}
	out := []*ita1.ResourceDescriptor{
		{Name: s.Name + "@" + s.Version, Digest: map[string]string{"sha256": model}},
		{Name: s.Name + "@" + s.Version + "/manifest.json", Digest: map[string]string{"sha256": manifest}},
	}
	if s.Artifact != "" {
		repo, digest, ok := strings.Cut(s.Artifact, "@")
		h, err := hexOf(digest)
		if !ok || err != nil {
			return nil, fmt.Errorf("OCI artifact %q: want REPO@sha256:<64 hex>", s.Artifact)
		}
		out = append(out, &ita1.ResourceDescriptor{Name: repo, Digest: map[string]string{"sha256": h}})
	}
	return out, nil
}

// Statement is an in-toto v1 statement about the subject with role's predicate type.
func Statement(s Subject, role Role, predicate any) (*ita1.Statement, error) {
	pt, ok := PredicateTypes[role]
	if !ok {
		return nil, fmt.Errorf("no role %q", role)
	}
	subject, err := s.descriptors()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(predicate)
	if err != nil {
		return nil, err
	}
	var p structpb.Struct
	if err := protojson.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("predicate is not a JSON object: %w", err)
	}
	st := &ita1.Statement{Type: ita1.StatementTypeUri, Subject: subject, PredicateType: pt, Predicate: &p}
	return st, st.Validate()
}

// Signer signs statements as one role with an Ed25519 key.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
}

// ParseSigner reads a PKCS #8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519`).
func ParseSigner(pemBytes []byte) (*Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("signing key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key: %T, want an Ed25519 key", k)
	}
	id, err := KeyID(priv.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{key: priv, keyID: id}, nil
}

// KeyID names a public key: the SHA-256 of its PKIX form, as DSSE's verifiers name keys.
func KeyID(pub crypto.PublicKey) (string, error) { return dsse.SHA256KeyID(pub) }

// KeyID is the signer's key ID.
func (s *Signer) KeyID() string { return s.keyID }

// PublicPEM is the signer's public key, as a trust policy lists it.
func (s *Signer) PublicPEM() (string, error) { return publicPEM(s.key.Public()) }

func publicPEM(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// dsse signer/verifier over one Ed25519 key.
type ed25519Key struct {
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
	keyID string
}

func (k ed25519Key) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(k.priv, data), nil
}

func (k ed25519Key) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(k.pub, data, sig) {
		return errors.New("signature does not verify")
	}
	return nil
}

func (k ed25519Key) KeyID() (string, error)   { return k.keyID, nil }
func (k ed25519Key) Public() crypto.PublicKey { return k.pub }

// Sign puts the statement in a DSSE envelope signed with the signer's key.
func (s *Signer) Sign(ctx context.Context, st *ita1.Statement) (*dsse.Envelope, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	payload, err := protojson.Marshal(st)
	if err != nil {
		return nil, err
	}
	es, err := dsse.NewEnvelopeSigner(ed25519Key{priv: s.key, pub: s.key.Public().(ed25519.PublicKey), keyID: s.keyID})
	if err != nil {
		return nil, err
	}
	return es.SignPayload(ctx, PayloadType, payload)
}

// Key is one public key of a trust policy.
type Key struct {
	// KeyID is KeyID of the key (checked against it when the policy is parsed).
	KeyID string `json:"keyid"`
	// PublicKey is the PKIX PEM public key.
	PublicKey string `json:"publicKey"`
}

// Policy is the trust policy: the keys each role may sign with. Rotating a role's key is adding
// the new key, signing with it, and removing the old one once nothing it signed must verify.
type Policy struct {
	Roles map[Role][]Key `json:"roles"`
	keys  map[Role][]ed25519Key
}

// ParsePolicy reads a trust policy (JSON) and checks every key.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("trust policy: %w", err)
	}
	p.keys = map[Role][]ed25519Key{}
	for role, keys := range p.Roles {
		if _, ok := PredicateTypes[role]; !ok {
			return nil, fmt.Errorf("trust policy: unknown role %q (want %v)", role, Roles)
		}
		for _, k := range keys {
			block, _ := pem.Decode([]byte(k.PublicKey))
			if block == nil {
				return nil, fmt.Errorf("trust policy: %s key %s: no PEM block", role, k.KeyID)
			}
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trust policy: %s key %s: %w", role, k.KeyID, err)
			}
			ed, ok := pub.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("trust policy: %s key %s: %T, want Ed25519", role, k.KeyID, pub)
			}
			id, err := KeyID(ed)
			if err != nil || id != k.KeyID {
				return nil, fmt.Errorf("trust policy: %s key: keyid %s does not name its public key (%s)", role, k.KeyID, id)
			}
			p.keys[role] = append(p.keys[role], ed25519Key{pub: ed, keyID: id})
		}
	}
	return &p, nil
}

// Verified is a statement whose envelope verified, and who signed it.
type Verified struct {
	Role      Role            `json:"role"`
	KeyID     string          `json:"keyid"`
	Statement *ita1.Statement `json:"-"`
	Predicate map[string]any  `json:"predicate"`
}

// Verify checks that env is a statement about want, of role's predicate type, signed by one of
// role's keys; the error says which of those failed.
func (p *Policy) Verify(ctx context.Context, env *dsse.Envelope, role Role, want Subject) (*Verified, error) {
	if env == nil {
		return nil, fmt.Errorf("%s: no attestation", role)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("%s: payload type %q, want %q", role, env.PayloadType, PayloadType)
	}
	if len(env.Signatures) == 0 {
		return nil, fmt.Errorf("%s: unsigned", role)
	}
	keys := p.keys[role]
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: the trust policy names no key for this role", role)
	}
	var verifiers []dsse.Verifier
	for _, k := range keys {
		verifiers = append(verifiers, k)
	}
	ev, err := dsse.NewEnvelopeVerifier(verifiers...)
	if err != nil {
		return nil, err
	}
	accepted, payload, err := ev.VerifyAndDecode(ctx, env)
	if err != nil {
		var ids []string
		for _, s := range env.Signatures {
			ids = append(ids, s.KeyID)
		}
		return nil, fmt.Errorf("%s: no signature by a %s key of the trust policy verifies (signed by %s): %v", role, role, strings.Join(ids, ", "), err)
	}
	var st ita1.Statement
	if err := protojson.Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("%s: payload is not an in-toto statement: %w", role, err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	if st.GetPredicateType() != PredicateTypes[role] {
		return nil, fmt.Errorf("%s: predicate type %q, want %q", role, st.GetPredicateType(), PredicateTypes[role])
	}
	// The model digest always binds; the manifest's when known (a registry holds the model, not
	// its manifest.json).
	modelHex, err := hexOf(want.ModelDigest)
	if err != nil {
		return nil, fmt.Errorf("model %w", err)
	}
	wantDescs := []*ita1.ResourceDescriptor{{Name: want.Name + "@" + want.Version, Digest: map[string]string{"sha256": modelHex}}}
	if want.ManifestDigest != "" {
		manifestHex, err := hexOf(want.ManifestDigest)
		if err != nil {
			return nil, fmt.Errorf("manifest %w", err)
		}
		wantDescs = append(wantDescs, &ita1.ResourceDescriptor{Name: want.Name + "@" + want.Version + "/manifest.json", Digest: map[string]string{"sha256": manifestHex}})
	}
	for _, w := range wantDescs {
		if !slices.ContainsFunc(st.GetSubject(), func(d *ita1.ResourceDescriptor) bool { return d.GetDigest()["sha256"] == w.GetDigest()["sha256"] }) {
			return nil, fmt.Errorf("%s: the attestation is about another model (subject %s), not sha256:%s (%s)", role, subjects(&st), w.GetDigest()["sha256"], w.GetName())
		}
	}
	predicate := st.GetPredicate().AsMap()
	// A signed "no" is evidence too, but not for production: the evaluation must have passed and
	// the approval approved.
	if field, want, ok := outcome(role); ok && predicate[field] != want {
		return nil, fmt.Errorf("%s: %s %v, not %s", role, field, predicate[field], want)
	}
	return &Verified{Role: role, KeyID: accepted[0].KeyID, Statement: &st, Predicate: predicate}, nil
}

// outcome is the predicate field that must say yes for a role's link to count, and that yes.
func outcome(role Role) (field, want string, ok bool) {
	switch role {
	case Evaluation:
		return "verdict", "pass", true
	case Approval:
		return "decision", "approved", true
	}
	return "", "", false
}

func subjects(st *ita1.Statement) string {
	var out []string
	for _, d := range st.GetSubject() {
		out = append(out, "sha256:"+d.GetDigest()["sha256"])
	}
	return strings.Join(out, ", ")
}

// Chain is a model's verified attestations, one per role.
type Chain []*Verified

// VerifyChain verifies, for each role of Roles, the envelopes found for it about want: the
// first that verifies is the link. A role with none that verifies is an error naming it and why
// each candidate failed.
func (p *Policy) VerifyChain(ctx context.Context, envs map[Role][]*dsse.Envelope, want Subject) (Chain, error) {
	var chain Chain
	var errs []string
	for _, role := range Roles {
		candidates := envs[role]
		if len(candidates) == 0 {
			candidates = []*dsse.Envelope{nil}
		}
		var why []string
		for _, env := range candidates {
			v, err := p.Verify(ctx, env, role, want)
			if err != nil {
				why = append(why, err.Error())
				continue
			}
			chain = append(chain, v)
			why = nil
			break
		}
		errs = append(errs, why...)
	}
	if len(errs) > 0 {
		return chain, errors.New("attestation chain of " + want.ModelDigest + " incomplete: " + strings.Join(errs, "; "))
	}
	return chain, nil
}

// GenerateKey returns a new Ed25519 private key as PKCS #8 PEM (what ParseSigner reads, what
// `openssl genpkey -algorithm ed25519` writes).
func GenerateKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PolicyJSON is the trust policy naming each role's signers' public keys.
func PolicyJSON(roles map[Role][]*Signer) ([]byte, error) {
	keys := map[Role][][]byte{}
	for role, signers := range roles {
		for _, s := range signers {
			pub, err := s.PublicPEM()
			if err != nil {
				return nil, err
			}
			keys[role] = append(keys[role], []byte(pub))
		}
	}
	return PolicyFromPEM(keys)
}

// PolicyFromPEM is the trust policy naming, per role, the public keys in PEM files: a public key
// (PKIX, `openssl pkey -pubout`) or a private one (PKCS #8), of which only the public half is
// kept. Rotation: list the old and the new key of a role, then drop the old one.
func PolicyFromPEM(roles map[Role][][]byte) ([]byte, error) {
	keys := map[Role][]Key{}
	for role, pems := range roles {
		if _, ok := PredicateTypes[role]; !ok {
			return nil, fmt.Errorf("no role %q (want %v)", role, Roles)
		}
		for _, b := range pems {
			block, _ := pem.Decode(b)
			if block == nil {
				return nil, fmt.Errorf("%s key: no PEM block", role)
			}
			var pub crypto.PublicKey
			switch block.Type {
			case "PRIVATE KEY":
				s, err := ParseSigner(b)
				if err != nil {
					return nil, fmt.Errorf("%s key: %w", role, err)
				}
				pub = s.key.Public()
			case "PUBLIC KEY":
				k, err := x509.ParsePKIXPublicKey(block.Bytes)
				if err != nil {
					return nil, fmt.Errorf("%s key: %w", role, err)
				}
				pub = k
			default:
				return nil, fmt.Errorf("%s key: PEM block %q, want PUBLIC KEY or PRIVATE KEY", role, block.Type)
			}
			ed, ok := pub.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("%s key: %T, want Ed25519", role, pub)
			}
			id, err := KeyID(ed)
			if err != nil {
				return nil, err
			}
			pemPub, err := publicPEM(ed)
			if err != nil {
				return nil, err
			}
			keys[role] = append(keys[role], Key{KeyID: id, PublicKey: pemPub})
		}
	}
	return json.MarshalIndent(Policy{Roles: keys}, "", "  ")
}
