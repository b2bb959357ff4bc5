package canary

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ml/gantry/images/mlp"
	"github.com/gantry-ml/gantry/images/model-server/serving"
	"github.com/gantry-ml/gantry/internal/idx"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

// BenchmarkEvaluate10k scores all 10k test images against the real model server on loopback,
// side by side: the server's pure compute (the same batches through the model in-process, as
// concurrent as the evaluator), gantry's evaluator over each wire (TF Serving rows, OIP JSON,
// OIP binary tensors), and a plain sequential one-request-per-image client.
func BenchmarkEvaluate10k(b *testing.B) {
	data := testenv.FashionMNIST(b)
	s := serving.New("fashion-mnist")
	model := mlp.New(mlp.NewConfig(256, 128), 1)
	s.SetModel(model, "1", "")
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	store, _ := objstore.New(nil)
	const batch, concurrency = 64, 4
	b.Run("compute", func(b *testing.B) {
		split, err := idx.Load(context.Background(), store, data, "t10k", 10)
		if err != nil {
			b.Fatal(err)
		}
		x := mlp.Scale(split.Images.Pixels)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			var wg sync.WaitGroup
			next := make(chan int)
			for range concurrency {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := range next {
						n := min(batch, split.Images.N-k)
						model.Predict(x[k*784:(k+n)*784], n)
					}
				}()
			}
			for k := 0; k < split.Images.N; k += batch {
				next <- k
			}
			close(next)
			wg.Wait()
		}
	})
	for _, proto := range []string{"v1", "v2-json", "v2"} {
		b.Run("gantry-"+proto, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				o := Options{Endpoint: ts.URL, ModelName: "fashion-mnist", Protocol: proto, DatasetURI: data, BatchSize: batch, Concurrency: concurrency,
					RequestTimeout: 30 * time.Second, Retries: 1, MaxErrorRate: 0.01}
				r, err := NewEvaluator(store).Evaluate(context.Background(), o)
				if err != nil || r.Candidate.Answered != 10000 {
					b.Fatalf("%v %+v", err, r)
				}
			}
		})
	}
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
