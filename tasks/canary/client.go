package canary

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gantry-ml/gantry/internal/transient"
)

// pixelText[p] is p/255 as JSON text: the request body is built from it
// without formatting a float per pixel.
var pixelText = func() [256][]byte {
	var t [256][]byte
	for p := range t {
		t[p] = strconv.AppendFloat(nil, float64(float32(p)/255), 'g', -1, 32)
	}
	return t
}()

// predictor sends one batch of images and returns one probability row per image.
type predictor struct {
	client   *http.Client // retries transient failures (internal/transient)
	url      string
	protocol string
}

func newPredictor(c *http.Client, base, model, protocol string) *predictor {
	u := base + "/v1/models/" + model + ":predict"
	if protocol == "v2" {
		u = base + "/v2/models/" + model + "/infer"
	}
	return &predictor{client: c, url: u, protocol: protocol}
}

// newClient is the evaluator's HTTP client: base's connections, o.Retries retries of transient
// failures (connection errors, 408, 429, 5xx, a body cut short), o.RequestTimeout per request.
func newClient(base http.RoundTripper, o Options) *http.Client {
	tr := transient.NewTransport(base, transient.WithRetries(o.Retries), transient.WithBackoff(100*time.Millisecond, 5*time.Second),
		transient.WithReadBody(maxResponse), transient.WithAttemptTimeout(o.RequestTimeout))
	return &http.Client{Transport: tr}
}

// maxResponse bounds one predict response.
const maxResponse = 64 << 20

func (p *predictor) body(images [][]byte) []byte {
	var b bytes.Buffer
	b.Grow(len(images) * 784 * 11)
	if p.protocol == "v2" {
		fmt.Fprintf(&b, `{"inputs":[{"name":"input","datatype":"FP32","shape":[%d,%d],"data":[`, len(images), len(images[0]))
	} else {
		b.WriteString(`{"instances":[`)
	}
	for i, img := range images {
		if i > 0 {
			b.WriteByte(',')
		}
		if p.protocol == "v1" {
			b.WriteByte('[')
		}
		for j, px := range img {
			if j > 0 {
				b.WriteByte(',')
			}
			b.Write(pixelText[px])
		}
		if p.protocol == "v1" {
			b.WriteByte(']')
		}
	}
	if p.protocol == "v2" {
		b.WriteString("]}]}")
	} else {
		b.WriteString("]}")
	}
	return b.Bytes()
}

// predict returns the probability rows and the latency of the attempt that answered.
func (p *predictor) predict(ctx context.Context, images [][]byte, classes int) ([][]float32, time.Duration, error) {
	var start time.Time
	ctx = transient.OnAttempt(ctx, func(int) { start = time.Now() })
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(p.body(images)))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("POST %s: %w", p.url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, 0, fmt.Errorf("reading response: %w", err)
	}
	latency := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, snippet(b))
	}
	rows, err := decodeResponse(p.protocol, b, len(images), classes)
	return rows, latency, err
}

func snippet(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(bytes.TrimSpace(b))
}

// decodeResponse checks and returns n rows of classes probabilities.
func decodeResponse(protocol string, b []byte, n, classes int) ([][]float32, error) {
	var rows [][]float32
	if protocol == "v2" {
		var r struct {
			Outputs []struct {
				Shape []int     `json:"shape"`
				Data  []float32 `json:"data"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decoding v2 response: %v: %s", err, snippet(b))
		}
		if len(r.Outputs) == 0 || len(r.Outputs[0].Data) != n*classes {
			return nil, fmt.Errorf("v2 response: want one output of %d×%d values", n, classes)
		}
		for i := 0; i < n; i++ {
			rows = append(rows, r.Outputs[0].Data[i*classes:(i+1)*classes])
		}
	} else {
		var r struct {
			Predictions [][]float32 `json:"predictions"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decoding v1 response: %v: %s", err, snippet(b))
		}
		rows = r.Predictions
	}
	if len(rows) != n {
		return nil, fmt.Errorf("response has %d predictions for %d instances", len(rows), n)
	}
	for _, r := range rows {
		if len(r) != classes {
			return nil, fmt.Errorf("prediction has %d values, want %d classes", len(r), classes)
		}
	}
	return rows, nil
}
