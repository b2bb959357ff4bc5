package attest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/manifest"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// Attestations are kept beside a version, never inside it (that would change its digest):
// <registry>/<model>/attestations/<version>/<role>/<sha256 of the envelope>.json. Content-named
// and written create-only, so an attestation is never replaced, a retry writes the same object,
// and several of one role (two runs that evaluated the same model) live side by side.
func attestationsDir(registry, model, version string) (objstore.URI, error) {
	reg, err := registryURI(registry)
	return reg.Join(model, "attestations", version), err
}

// registryURI parses the registry prefix; a bad one is bad input.
func registryURI(registry string) (objstore.URI, error) {
	reg, err := objstore.Parse(strings.TrimSuffix(registry, "/") + "/")
	if err != nil {
		return objstore.URI{}, exitcode.Invalidf("registry %q: %v", registry, err)
	}
	return reg, nil
}

// AttestationSubject is what every attestation of a published version is about: its model
// digest and the digest of its manifest.json.
func AttestationSubject(ctx context.Context, s objstore.Store, registry, model, version string) (Subject, error) {
	reg, err := registryURI(registry)
	if err != nil {
		return Subject{}, err
	}
	b, err := objstore.ReadAll(ctx, s, reg.Join(model, version, manifest.FileName).String(), 16<<20)
	if objstore.IsNotExist(err) {
		return Subject{}, exitcode.Invalidf("%s has no version %s (no manifest)", model, version)
	}
	if err != nil {
		return Subject{}, err
	}
	var m manifest.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Subject{}, fmt.Errorf("manifest of %s %s is corrupt: %w", model, version, err)
	}
	sum := sha256.Sum256(b)
	return Subject{Name: model, Version: version, ModelDigest: m.Digest, ManifestDigest: "sha256:" + hex.EncodeToString(sum[:])}, nil
}

// Attach writes a signed attestation beside the version; it returns where.
func Attach(ctx context.Context, s objstore.Store, registry, model, version string, role Role, env *dsse.Envelope) (string, error) {
	dir, err := attestationsDir(registry, model, version)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(env)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	uri := dir.Join(string(role), hex.EncodeToString(sum[:])+".json").String()
	if c, ok := s.(objstore.Conditional); ok {
		err := c.PutIf(ctx, uri, b, "")
		if errors.Is(err, objstore.ErrConflict) {
			return uri, nil // the same bytes, written before (the name is their digest)
		}
		return uri, err
	}
	return uri, objstore.PutBytes(ctx, s, uri, b)
}

// ReadAttestations reads every attestation kept beside the version, by role.
func ReadAttestations(ctx context.Context, s objstore.Store, registry, model, version string) (map[Role][]*dsse.Envelope, error) {
	dir, err := attestationsDir(registry, model, version)
	if err != nil {
		return nil, err
	}
	infos, err := s.List(ctx, dir.String()+"/")
	if err != nil && !objstore.IsNotExist(err) {
		return nil, err
	}
	out := map[Role][]*dsse.Envelope{}
	for _, info := range infos {
		role := Role(path.Base(path.Dir(info.URI)))
		b, err := objstore.ReadAll(ctx, s, info.URI, 1<<20)
		if err != nil {
			return nil, err
		}
		var env dsse.Envelope
		if err := json.Unmarshal(b, &env); err != nil {
			continue // not an envelope: it verifies nothing
		}
		out[role] = append(out[role], &env)
	}
	return out, nil
}

// FindVersion returns the version of model whose model digest is digest.
func FindVersion(ctx context.Context, s objstore.Store, registry, model, digest string) (string, error) {
	reg, err := registryURI(registry)
	if err != nil {
		return "", err
	}
	infos, err := s.List(ctx, reg.Join(model).String()+"/")
	if err != nil {
		return "", err
	}
	var versions []string
	for _, info := range infos {
		if path.Base(info.URI) == manifest.FileName && strings.Count(strings.TrimPrefix(info.URI, reg.Join(model).String()+"/"), "/") == 1 {
			versions = append(versions, path.Base(path.Dir(info.URI)))
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(versions)))
	// Newest first; a version name need not carry its digest (--version), so each manifest says.
	for _, v := range versions {
		sub, err := AttestationSubject(ctx, s, registry, model, v)
		if err == nil && sub.ModelDigest == digest {
			return v, nil
		}
	}
	return "", exitcode.Invalidf("%s has no version with digest %s", model, digest)
}
