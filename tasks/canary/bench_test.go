package canary

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gantry-ml/gantry/images/mlp"
	"github.com/gantry-ml/gantry/images/model-server/serving"
	"github.com/gantry-ml/gantry/internal/idx"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

// BenchmarkEvaluate10k scores all 10k test images against the real model
// server on loopback: gantry's evaluator (batched, concurrent) side by side
// with a plain sequential one-request-per-image client.
func BenchmarkEvaluate10k(b *testing.B) {
	data := testenv.FashionMNIST(b)
	s := serving.New("fashion-mnist")
	s.SetModel(mlp.New(mlp.NewConfig(256, 128), 1), "1", "")
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	store, _ := objstore.New(nil)
	b.Run("gantry", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			o := Options{Endpoint: ts.URL, ModelName: "fashion-mnist", Protocol: "v1", DatasetURI: data, BatchSize: 64, Concurrency: 4,
				RequestTimeout: 30 * time.Second, Retries: 1, MaxErrorRate: 0.01}
			r, err := NewEvaluator(store).Evaluate(context.Background(), o)
			if err != nil || r.Candidate.Answered != 10000 {
				b.Fatalf("%v %+v", err, r)
			}
		}
	})
	b.Run("sequential", func(b *testing.B) {
		split, err := idx.Load(context.Background(), store, data, "t10k", 10)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			right := 0
			for k := 0; k < split.Images.N; k++ {
				var body bytes.Buffer
				body.WriteString(`{"instances":[[`)
				for j, px := range split.Images.Image(k) {
					if j > 0 {
						body.WriteByte(',')
					}
					body.WriteString(strconv.FormatFloat(float64(px)/255, 'g', -1, 32))
				}
				body.WriteString("]]}")
				resp, err := http.Post(ts.URL+"/v1/models/fashion-mnist:predict", "application/json", &body)
				if err != nil {
					b.Fatal(err)
				}
				var out struct{ Predictions [][]float32 }
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				json.Unmarshal(raw, &out)
				if argmax(out.Predictions[0]) == int(split.Labels[k]) {
					right++
				}
			}
		}
	})
}
