package serving

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/gantry-ml/gantry/images/mlp"
	"github.com/gantry-ml/gantry/internal/idx"
	"github.com/gantry-ml/gantry/internal/objstore"
	"github.com/gantry-ml/gantry/internal/testenv"
)

func benchModel() *mlp.Model { return mlp.New(mlp.NewConfig(256, 128), 1) }

func benchBody(protocol string, n int) []byte {
	x := inputs(n)
	var b bytes.Buffer
	if protocol == "v2" {
		fmt.Fprintf(&b, `{"inputs":[{"name":"input","datatype":"FP32","shape":[%d,784],"data":[`, n)
	} else {
		b.WriteString(`{"instances":[`)
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		if protocol == "v1" {
			b.WriteByte('[')
		}
		for j, v := range x[i*784 : (i+1)*784] {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatFloat(float64(v), 'g', -1, 32))
		}
		if protocol == "v1" {
			b.WriteByte(']')
		}
	}
	if protocol == "v2" {
		b.WriteString("]}]}")
	} else {
		b.WriteString("]}")
	}
	return b.Bytes()
}

// BenchmarkPredictHTTP: one client on loopback, sequential requests; reports
// p50/p99 request latency and images per second.
func BenchmarkPredictHTTP(b *testing.B) {
	s := New("fashion-mnist", WithMaxBatch(1024))
	s.SetModel(benchModel(), "1", "")
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, proto := range []string{"v1", "v2"} {
		for _, n := range []int{1, 32, 256} {
			body := benchBody(proto, n)
			url := ts.URL + "/v1/models/fashion-mnist:predict"
			if proto == "v2" {
				url = ts.URL + "/v2/models/fashion-mnist/infer"
			}
			b.Run(fmt.Sprintf("%s/batch-%d", proto, n), func(b *testing.B) {
				lat := make([]float64, 0, b.N)
				for i := 0; i < b.N; i++ {
					start := time.Now()
					resp, err := http.Post(url, "application/json", bytes.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatal(resp.Status)
					}
					lat = append(lat, float64(time.Since(start).Microseconds())/1000)
				}
				sort.Float64s(lat)
				b.ReportMetric(lat[len(lat)/2], "p50-ms")
				b.ReportMetric(lat[min(len(lat)-1, len(lat)*99/100)], "p99-ms")
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "images/s")
			})
		}
	}
}

// BenchmarkCompute10k is the server's pure compute for the real 10k test
// images (no HTTP, no JSON), in the canary's batches of 64: the physical
// limit the canary evaluator is compared with.
func BenchmarkCompute10k(b *testing.B) {
	m := benchModel()
	store, _ := objstore.New(nil)
	split, err := idx.Load(context.Background(), store, testenv.FashionMNIST(b), "t10k", 10)
	if err != nil {
		b.Fatal(err)
	}
	x := mlp.Scale(split.Images.Pixels)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for s := 0; s < 10000; s += 64 { // the canary's batch size
			m.Predict(x[s*784:min(10000, s+64)*784], min(10000, s+64)-s)
		}
	}
}
