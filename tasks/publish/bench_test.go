package publish

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gantry-ml/gantry/internal/attest"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

// BenchmarkPublish1GiB publishes a 1 GiB model (GANTRY_BENCH_PUBLISH_BYTES overrides the size)
// from a trainer's output prefix into the registry, side by side with `mc cp --recursive` of the
// same bytes between the same buckets on the same MinIO (mc built from its Go module:
// hack/install-tools.sh --bench):
//
//   - mc-cp: what a user would otherwise run (one server-side copy, no digest, no manifest).
//   - publish: the source as gantry writes it (each object carries its SHA-256): one
//     server-side copy per file, checksums compared, manifest written.
//   - publish-staged: the source as another S3 client writes it (no SHA-256 kept): staging copy
//     with the server computing SHA-256, then the copy into the version.
//   - republish: the unchanged source again (recognised from the ETags: nothing copied).
//
// client-B/op is what passed between the client (publisher or mc) and MinIO (a counting proxy).
func BenchmarkPublish1GiB(b *testing.B) {
	size := int64(1 << 30)
	if s := os.Getenv("GANTRY_BENCH_PUBLISH_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	mc := testenv.Binary(b, "mc", "GANTRY_MC_BIN")
	m := testenv.StartMinIO(b)
	m.MakeBucket("runs")
	m.MakeBucket("models")
	ctx := context.Background()
	proxy, store := m.Proxied(b, 3)

	// A model: random weights (incompressible) plus a config, as a trainer leaves them.
	local := filepath.Join(b.TempDir(), "model.safetensors")
	f, err := os.Create(local)
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 8<<20)
	for written := int64(0); written < size; written += int64(len(buf)) {
		for i := 0; i < len(buf); i += 8 {
			v := rnd.Uint64()
			for j := 0; j < 8 && i+j < len(buf); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.Write(buf[:min(int64(len(buf)), size-written)]); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	put := func(key string, withSHA256 bool) {
		r, err := os.Open(local)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		if withSHA256 {
			err = store.Put(ctx, "s3://runs/"+key+"/model.safetensors", r, size)
		} else {
			_, err = m.Client().PutObject(ctx, "runs", key+"/model.safetensors", r, size, minio.PutObjectOptions{})
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := objstore.PutBytes(ctx, store, "s3://runs/"+key+"/config.json", []byte(`{"layers":[784,10]}`)); err != nil {
			b.Fatal(err)
		}
	}
	put("gantry", true)
	put("plain", false)
	os.Remove(local)

	removeModel := func(prefix string) {
		b.Helper()
		objs, err := store.List(ctx, prefix)
		if err != nil {
			b.Fatal(err)
		}
		for _, o := range objs {
			if err := store.Delete(ctx, o.URI); err != nil {
				b.Fatal(err)
			}
		}
	}
	run := func(name string, fn func(i int) string) {
		b.Run(name, func(b *testing.B) {
			b.StopTimer()
			var through int64
			for i := range b.N {
				before := proxy.Bytes()
				b.StartTimer()
				prefix := fn(i)
				b.StopTimer()
				through += proxy.Bytes() - before
				if prefix != "" {
					removeModel(prefix)
				}
			}
			b.ReportMetric(float64(through)/float64(b.N), "client-B/op")
			b.SetBytes(size)
		})
	}
	run("mc-cp", func(i int) string {
		cmd := exec.Command(mc, "cp", "--recursive", "--quiet", "local/runs/gantry/", fmt.Sprintf("local/models/mc-%d/", i))
		cmd.Env = append(os.Environ(), "MC_HOST_local="+strings.Replace(proxy.URL(), "http://", "http://"+accessKeys(b, m)+"@", 1),
			"MC_CONFIG_DIR="+b.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("mc cp: %v\n%s", err, out)
		}
		return fmt.Sprintf("s3://models/mc-%d/", i)
	})
	publish := func(src, model string) *Published {
		p, err := NewPublisher(store).Publish(ctx, PublishOptions{SourceURI: src, RegistryURI: "s3://models", ModelName: model})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	run("publish", func(i int) string {
		publish("s3://runs/gantry/", fmt.Sprintf("p-%d", i))
		return fmt.Sprintf("s3://models/p-%d/", i)
	})
	run("publish-staged", func(i int) string {
		publish("s3://runs/plain/", fmt.Sprintf("s-%d", i))
		return fmt.Sprintf("s3://models/s-%d/", i)
	})
	first := publish("s3://runs/gantry/", "again")
	run("republish", func(int) string {
		if p := publish("s3://runs/gantry/", "again"); !p.Reused || p.URI != first.URI {
			b.Fatalf("re-publish copied: %+v", p)
		}
		return ""
	})
	if len(first.Manifest.Files) != 2 || first.Manifest.Files[1].Size != size {
		b.Fatalf("manifest: %+v", first.Manifest.Files)
	}
}

// accessKeys returns "user:password" of the test server, for mc's MC_HOST_ form.
func accessKeys(b *testing.B, m *testenv.MinIO) string {
	v, err := m.Creds().GetWithContext(nil)
	if err != nil {
		b.Fatal(err)
	}
	return v.AccessKeyID + ":" + v.SecretAccessKey
}

// BenchmarkReleaseLock is what the release lock adds to a promote or rollback, side by side with
// the same work without it: the critical section here does nothing, so the difference is the
// lock's own protocol (a Get, the Lease's create or update to acquire, its update to release)
// against an in-memory API server. On a real API server each of those is one round trip.
func BenchmarkReleaseLock(b *testing.B) {
	ctx := context.Background()
	c := fake.NewClientset()
	d := NewDeployer(c, nil)
	d.lockTiming = lockTiming{LeaseDuration: time.Second, RenewDeadline: 800 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
	prod := DeployOptions{Namespace: "ml", Environment: "production", ModelName: "fashion-mnist", Run: "run-1"}
	noop := func(context.Context) error { return nil }
	b.Run("without", func(b *testing.B) {
		for b.Loop() {
			_ = noop(ctx)
		}
	})
	b.Run("with-lock", func(b *testing.B) {
		before := len(c.Actions())
		for b.Loop() {
			if err := d.locked(ctx, prod, noop); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(c.Actions())-before)/float64(b.N), "api-calls/op")
	})
}

// BenchmarkPublishSigned is what the training link adds to a publish: each iteration publishes a
// new version of a model the size of the Fashion-MNIST example's (100 KiB of weights) on a real
// MinIO (one model each, so listings stay the same size), without and with the training key (read the manifest back, sign the provenance, write
// the envelope create-only beside the version).
func BenchmarkPublishSigned(b *testing.B) {
	m := testenv.StartMinIO(b)
	m.MakeBucket("runs")
	m.MakeBucket("models")
	ctx := context.Background()
	store, err := objstore.New(&objstore.S3Config{Endpoint: m.Endpoint, Creds: m.Creds(), MaxRetries: 1})
	if err != nil {
		b.Fatal(err)
	}
	key, _ := attest.GenerateKey()
	signer, err := attest.ParseSigner(key)
	if err != nil {
		b.Fatal(err)
	}
	weights := strings.Repeat("w", 100<<10)
	n := 0
	for _, c := range []struct {
		name string
		opts []Option
	}{{"unsigned", nil}, {"signed", []Option{WithSigner(signer)}}} {
		b.Run(c.name, func(b *testing.B) {
			p := NewPublisher(store, c.opts...)
			for b.Loop() {
				n++
				src := fmt.Sprintf("s3://runs/r%d/", n)
				for name, body := range map[string]string{"model.safetensors": weights + strconv.Itoa(n), "metrics.json": `{"test_accuracy":0.88}`} {
					if err := objstore.PutBytes(ctx, store, src+name, []byte(body)); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := p.Publish(ctx, PublishOptions{SourceURI: src, RegistryURI: "s3://models", ModelName: fmt.Sprintf("m%d", n), Run: "r"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
