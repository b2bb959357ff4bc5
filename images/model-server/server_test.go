package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ml/gantry/images/fashion-trainer/trainer"
	"github.com/gantry-ml/gantry/images/mlp"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/idx"
	"github.com/gantry-ml/gantry/internal/manifest"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

// trainSmall trains on a small subset of the real dataset (seconds).
func trainSmall(t testing.TB, store objstore.Store, out string) string {
	t.Helper()
	data := testenv.FashionMNIST(t)
	_, err := trainer.Run(context.Background(), store, trainer.Options{DatasetURI: data, OutputURI: out, Hidden: []int{32}, TrainLimit: 2000,
		TrainOptions: mlp.TrainOptions{Epochs: 1, BatchSize: 64, LearningRate: 2e-3, Optimizer: "adam", Seed: 1}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// copyModel copies the model files from local to remote and returns the model digest.
func copyModel(t *testing.T, store objstore.Store, local, remote string) string {
	t.Helper()
	files, err := manifest.Scan(context.Background(), store, local, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := store.Copy(context.Background(), local+f.Path, remote+f.Path); err != nil {
			t.Fatal(err)
		}
	}
	return manifest.Digest(files)
}

func startServer(t *testing.T, store objstore.Store, uri, digest string) (string, <-chan error) {
	t.Helper()
	return startServerWith(t, store, serveOptions{ModelURI: uri, ModelDigest: digest})
}

func startServerWith(t *testing.T, store objstore.Store, o serveOptions) (string, <-chan error) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	o.Listen, o.ModelName, o.ModelVersion, o.MaxBatch = addr, "fashion-mnist", "1", 256
	ctx, cancel := context.WithCancel(context.Background())
	errc, done := make(chan error, 1), make(chan struct{})
	go func() {
		errc <- run(ctx, store, o, slog.New(slog.DiscardHandler))
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("server did not shut down")
		}
	})
	return "http://" + addr, errc
}

func waitReady(t *testing.T, base string, errc <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-errc:
			t.Fatalf("server exited: %v", err)
		default:
		}
		resp, err := http.Get(base + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server never became ready")
}

func TestServesTrainedModelOverBothProtocols(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.MakeBucket("models")
	store, err := objstore.New(&objstore.S3Config{Endpoint: m.Endpoint, Creds: m.Creds()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	local := "file://" + t.TempDir() + "/"
	data := trainSmall(t, store, local)
	// Serve from S3, as in a cluster.
	remote := "s3://models/fashion/1/"
	digest := copyModel(t, store, local, remote)
	base, errc := startServer(t, store, remote, digest)
	waitReady(t, base, errc)

	model, err := mlp.Load(ctx, store, local)
	if err != nil {
		t.Fatal(err)
	}
	test, err := idx.Load(ctx, store, data, "t10k", 10)
	if err != nil {
		t.Fatal(err)
	}
	x := mlp.Scale(test.Images.Pixels[:50*784])
	want := model.Predict(x, 50)
	var inst [][]float32
	for i := 0; i < 50; i++ {
		inst = append(inst, x[i*784:(i+1)*784])
	}
	body, _ := json.Marshal(map[string]any{"instances": inst})
	var v1 struct{ Predictions [][]float32 }
	postJSON(t, base+"/v1/models/fashion-mnist:predict", body, &v1)
	var got []float32
	for _, p := range v1.Predictions {
		got = append(got, p...)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("v1 predictions differ from the in-process model (-want +got):\n%s", diff)
	}
	body, _ = json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "input", "shape": []int{50, 784}, "datatype": "FP32", "data": x}}})
	var v2 struct{ Outputs []struct{ Data []float32 } }
	postJSON(t, base+"/v2/models/fashion-mnist/infer", body, &v2)
	if diff := cmp.Diff(want, v2.Outputs[0].Data); diff != "" {
		t.Errorf("v2 predictions differ from the in-process model (-want +got):\n%s", diff)
	}
	var meta struct{ Parameters struct{ Digest string } }
	resp, err := http.Get(base + "/v2/models/fashion-mnist")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta.Parameters.Digest != digest {
		t.Errorf("served digest %q, want %q", meta.Parameters.Digest, digest)
	}
}

func TestRefusesModelWithWrongDigest(t *testing.T) {
	store, _ := objstore.New(nil)
	dir := "file://" + t.TempDir() + "/"
	trainSmall(t, store, dir)
	base, errc := startServer(t, store, dir, "sha256:0000")
	select {
	case err := <-errc:
		if exitcode.Of(err) != exitcode.BadInput {
			t.Errorf("err = %v, want bad input about the digest", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server kept running with a mismatched model")
	}
	if resp, err := http.Get(base + "/v2/health/ready"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("ready with a mismatched model")
		}
	}
}

func postJSON(t *testing.T, url string, body []byte, out any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// The object store resets every connection while the server loads its model: it keeps
// retrying, not ready and not exiting (a crash loop would fail the rollout), and serves once the
// network heals. When the outage outlasts --load-timeout it exits 3.
func TestTransientLoadErrorsAreRetriedInProcess(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.MakeBucket("models")
	proxy, store := m.Proxied(t, 1)
	local := "file://" + t.TempDir() + "/"
	trainSmall(t, store, local)
	remote := "s3://models/fashion/1/"
	digest := copyModel(t, store, local, remote)
	proxy.CutAfter(1 << 10)
	base, errc := startServerWith(t, store, serveOptions{ModelURI: remote, ModelDigest: digest, LoadTimeout: time.Minute, loadBackoff: 50 * time.Millisecond})
	for proxy.Cuts() < 3 {
		select {
		case err := <-errc:
			t.Fatalf("the server exited on a transient load error: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if resp, err := http.Get(base + "/v2/health/ready"); err != nil || resp.StatusCode == 200 {
		t.Fatalf("ready before the model loaded: %v", err)
	}
	proxy.CutAfter(0)
	waitReady(t, base, errc)

	proxy.CutAfter(1 << 10)
	_, errc = startServerWith(t, store, serveOptions{ModelURI: remote, LoadTimeout: 300 * time.Millisecond, loadBackoff: 50 * time.Millisecond})
	select {
	case err := <-errc:
		if exitcode.Of(err) != exitcode.Transient || !strings.Contains(err.Error(), "load-timeout") {
			t.Errorf("outage beyond --load-timeout: %v (code %d), want 3", err, exitcode.Of(err))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server retried past its --load-timeout")
	}
}
