package canary

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
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

// Wire formats a predictor speaks.
const (
	WireV1       = "v1 json"   // TF Serving REST, row format
	WireV2JSON   = "v2 json"   // Open Inference Protocol, JSON tensors
	WireV2Binary = "v2 binary" // Open Inference Protocol, binary tensor data extension
)

// binaryExtension and headerLength are the OIP binary tensor data extension's names.
const (
	binaryExtension = "binary_tensor_data"
	headerLength    = "Inference-Header-Content-Length"
)

// pixelBits[p] is p/255 as little-endian FP32 bytes: the binary body is built from it.
var pixelBits = func() [256][4]byte {
	var t [256][4]byte
	for p := range t {
		binary.LittleEndian.PutUint32(t[p][:], math.Float32bits(float32(p)/255))
	}
	return t
}()

// predictor sends one batch of images and returns one probability row per image.
type predictor struct {
	client        *http.Client // retries transient failures (internal/transient)
	url           string
	wire          string
	input, output string // v2 tensor names, from the model's metadata
}

func newPredictor(c *http.Client, base, model string, w wire) *predictor {
	u := base + "/v1/models/" + model + ":predict"
	if w.format != WireV1 {
		u = base + "/v2/models/" + model + "/infer"
	}
	return &predictor{client: c, url: u, wire: w.format, input: w.input, output: w.output}
}

// wire is what negotiate settled on for one endpoint.
type wire struct {
	format        string
	input, output string
	note          string // what the server lacks, if anything
}

// negotiate picks the wire format for protocol at base: v1 is TF Serving's row format; v2 uses
// the binary tensor data extension when the server lists it in its metadata (GET /v2), JSON
// otherwise, and the model's own input and output names (GET /v2/models/M); v2-json forces JSON.
func negotiate(ctx context.Context, c *http.Client, base, model, protocol string) wire {
	w := wire{format: WireV1, input: "input", output: "probabilities"}
	if protocol == "v1" {
		return w
	}
	w.format = WireV2JSON
	var server struct {
		Extensions []string `json:"extensions"`
	}
	if err := getJSON(ctx, c, base+"/v2", &server); err != nil {
		w.note = "server metadata (GET /v2) unavailable: " + err.Error() + "; JSON tensors"
	} else if protocol == "v2" && slices.Contains(server.Extensions, binaryExtension) {
		w.format = WireV2Binary
	} else if protocol == "v2" {
		w.note = "the server does not list the " + binaryExtension + " extension: JSON tensors"
	}
	var md struct {
		Inputs  []struct{ Name string } `json:"inputs"`
		Outputs []struct{ Name string } `json:"outputs"`
	}
	if err := getJSON(ctx, c, base+"/v2/models/"+model, &md); err == nil && len(md.Inputs) == 1 && len(md.Outputs) >= 1 {
		w.input, w.output = md.Inputs[0].Name, md.Outputs[0].Name
	}
	return w
}

func getJSON(ctx context.Context, c *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return json.Unmarshal(b, out)
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

// body is the request for images, and its Inference-Header-Content-Length ("" for JSON).
func (p *predictor) body(images [][]byte) ([]byte, string) {
	var b bytes.Buffer
	switch p.wire {
	case WireV2Binary:
		n := len(images) * len(images[0])
		fmt.Fprintf(&b, `{"inputs":[{"name":%q,"datatype":"FP32","shape":[%d,%d],"parameters":{"binary_data_size":%d}}],`+
			`"outputs":[{"name":%q,"parameters":{"binary_data":true}}]}`, p.input, len(images), len(images[0]), 4*n, p.output)
		header := b.Len()
		b.Grow(4 * n)
		for _, img := range images {
			for _, px := range img {
				b.Write(pixelBits[px][:])
			}
		}
		return b.Bytes(), strconv.Itoa(header)
	case WireV2JSON:
		b.Grow(len(images) * 784 * 11)
		fmt.Fprintf(&b, `{"inputs":[{"name":%q,"datatype":"FP32","shape":[%d,%d],"data":[`, p.input, len(images), len(images[0]))
	default:
		b.Grow(len(images) * 784 * 11)
		b.WriteString(`{"instances":[`)
	}
	for i, img := range images {
		if i > 0 {
			b.WriteByte(',')
		}
		if p.wire == WireV1 {
			b.WriteByte('[')
		}
		for j, px := range img {
			if j > 0 {
				b.WriteByte(',')
			}
			b.Write(pixelText[px])
		}
		if p.wire == WireV1 {
			b.WriteByte(']')
		}
	}
	if p.wire == WireV2JSON {
		b.WriteString("]}]}")
	} else {
		b.WriteString("]}")
	}
	return b.Bytes(), ""
}

// noAnswer is a request the server did not answer: the connection failed, timed out or was cut
// short, or the server said it could not answer now (408, 429, 502, 503, 504). The evaluator
// sends such a batch again; an error answer (any other status, a body that does not decode) is
// the model server's answer, and final.
type noAnswer struct{ err error }

func (n *noAnswer) Error() string { return n.err.Error() }
func (n *noAnswer) Unwrap() error { return n.err }

// unavailable: statuses that say the server could not answer now, not that the request failed.
func unavailable(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// predict returns the probability rows, the latency of the attempt that answered and how many
// times the transport sent the request again.
func (p *predictor) predict(ctx context.Context, images [][]byte, classes int) ([][]float32, time.Duration, int, error) {
	var start time.Time
	again := 0
	ctx = transient.OnAttempt(ctx, func(n int) { start, again = time.Now(), n })
	body, hdrLen := p.body(images)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if hdrLen != "" {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(headerLength, hdrLen)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, 0, again, &noAnswer{fmt.Errorf("POST %s: %w", p.url, err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, 0, again, &noAnswer{fmt.Errorf("reading response: %w", err)}
	}
	latency := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("HTTP %d: %s", resp.StatusCode, snippet(b))
		if unavailable(resp.StatusCode) {
			return nil, 0, again, &noAnswer{err}
		}
		return nil, 0, again, err
	}
	rows, err := decodeResponse(p.wire, resp.Header.Get(headerLength), b, len(images), classes)
	return rows, latency, again, err
}

func snippet(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(bytes.TrimSpace(b))
}

// decodeResponse checks and returns n rows of classes probabilities. hdrLen is the response's
// Inference-Header-Content-Length: set, the output's data follows the JSON header in binary.
func decodeResponse(wire, hdrLen string, b []byte, n, classes int) ([][]float32, error) {
	var rows [][]float32
	if wire == WireV1 {
		var r struct {
			Predictions [][]float32 `json:"predictions"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decoding v1 response: %v: %s", err, snippet(b))
		}
		rows = r.Predictions
	} else {
		js, bin := b, []byte(nil)
		if hdrLen != "" {
			l, err := strconv.Atoi(hdrLen)
			if err != nil || l < 0 || l > len(b) {
				return nil, fmt.Errorf("v2 response: %s %q beyond its %d bytes", headerLength, hdrLen, len(b))
			}
			js, bin = b[:l], b[l:]
		}
		var r struct {
			Outputs []struct {
				Datatype   string `json:"datatype"`
				Shape      []int  `json:"shape"`
				Parameters struct {
					BinaryDataSize *int `json:"binary_data_size"`
				} `json:"parameters"`
				Data []float32 `json:"data"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(js, &r); err != nil {
			return nil, fmt.Errorf("decoding v2 response: %v: %s", err, snippet(js))
		}
		if len(r.Outputs) == 0 {
			return nil, fmt.Errorf("v2 response: no outputs")
		}
		out := r.Outputs[0]
		data := out.Data
		if size := out.Parameters.BinaryDataSize; size != nil {
			if out.Datatype != "FP32" || *size != len(bin) || *size != 4*n*classes {
				return nil, fmt.Errorf("v2 response: binary output of %d bytes (%s, %d after the header), want %d×%d FP32", *size, out.Datatype, len(bin), n, classes)
			}
			data = make([]float32, n*classes)
			for i := range data {
				data[i] = math.Float32frombits(binary.LittleEndian.Uint32(bin[4*i:]))
			}
		}
		if len(data) != n*classes {
			return nil, fmt.Errorf("v2 response: want one output of %d×%d values, got %d", n, classes, len(data))
		}
		for i := 0; i < n; i++ {
			rows = append(rows, data[i*classes:(i+1)*classes])
		}
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
