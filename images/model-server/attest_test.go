package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/manifest"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

// With --trust-policy the server loads only a published version whose attestation chain
// verifies: with the chain it becomes ready; without its approval it exits 2 and is never ready.
func TestRequiresTheAttestationChainWithATrustPolicy(t *testing.T) {
	store, _ := objstore.New(nil)
	ctx := context.Background()
	root := "file://" + t.TempDir()
	trainSmall(t, store, root+"/out/")
	registry := root + "/registry"
	signers, policy := testenv.Signers(t)
	// Two published versions of the same model: one attested by every role, one not approved.
	publish := func(version string, attested []attest.Role) string {
		uri := registry + "/fashion-mnist/" + version + "/"
		digest := copyModel(t, store, root+"/out/", uri)
		m, _ := json.Marshal(manifest.Manifest{SchemaVersion: 1, ModelName: "fashion-mnist", Version: version, Digest: digest})
		if err := objstore.PutBytes(ctx, store, uri+manifest.FileName, m); err != nil {
			t.Fatal(err)
		}
		subject, err := attest.AttestationSubject(ctx, store, registry, "fashion-mnist", version)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range attested {
			st, _ := attest.Statement(subject, r, testenv.Passing(r))
			env, err := signers[r].Sign(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := attest.Attach(ctx, store, registry, "fashion-mnist", version, r, env); err != nil {
				t.Fatal(err)
			}
		}
		return uri
	}
	good := publish("v1", attest.Roles)
	unapproved := publish("v2", []attest.Role{attest.Training, attest.Evaluation})

	base, errc := startServerWith(t, store, serveOptions{ModelURI: good, trust: policy})
	waitReady(t, base, errc)

	base, errc = startServerWith(t, store, serveOptions{ModelURI: unapproved, trust: policy})
	select {
	case err := <-errc:
		if exitcode.Of(err) != exitcode.BadInput || !strings.Contains(err.Error(), "approval: no attestation") {
			t.Errorf("unapproved model: %v, want exit 2 naming the missing approval", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server kept running with a model that has no approval attestation")
	}
	if resp, err := http.Get(base + "/v2/health/ready"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("ready with an unattested model")
		}
	}
}

// What the chain adds to loading a model from S3: the digest-checked load alone, side by side
// with the load plus the chain's manifest, listing, three envelopes and their verification.
func BenchmarkModelLoad(b *testing.B) {
	m := testenv.StartMinIO(b)
	m.MakeBucket("models")
	ctx := context.Background()
	local, _ := objstore.New(nil)
	dir := "file://" + b.TempDir() + "/"
	trainSmall(b, local, dir)
	s3, err := objstore.New(&objstore.S3Config{Endpoint: m.Endpoint, Creds: m.Creds(), MaxRetries: 1})
	if err != nil {
		b.Fatal(err)
	}
	uri := "s3://models/fashion-mnist/v1/"
	files, _ := manifest.Scan(ctx, local, dir, nil)
	for _, f := range files {
		body, _ := objstore.ReadAll(ctx, local, dir+f.Path, 1<<30)
		objstore.PutBytes(ctx, s3, uri+f.Path, body)
	}
	digest := manifest.Digest(files)
	mf, _ := json.Marshal(manifest.Manifest{SchemaVersion: 1, ModelName: "fashion-mnist", Version: "v1", Digest: digest})
	objstore.PutBytes(ctx, s3, uri+manifest.FileName, mf)
	signers, policy := testenv.Signers(b)
	subject, _ := attest.AttestationSubject(ctx, s3, "s3://models", "fashion-mnist", "v1")
	for _, r := range attest.Roles {
		st, _ := attest.Statement(subject, r, testenv.Passing(r))
		env, _ := signers[r].Sign(ctx, st)
		attest.Attach(ctx, s3, "s3://models", "fashion-mnist", "v1", r, env)
	}
	b.Run("digest-only", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := loadRetrying(ctx, s3, serveOptions{ModelURI: uri, ModelDigest: digest}, slog.New(slog.DiscardHandler)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("with-chain", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := loadRetrying(ctx, s3, serveOptions{ModelURI: uri, ModelDigest: digest, trust: policy}, slog.New(slog.DiscardHandler)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
