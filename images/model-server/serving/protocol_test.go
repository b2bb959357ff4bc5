package serving

// Protocol tests written from the published documents: TF Serving's RESTful API
// (tensorflow/serving, g3doc/api_rest.md) and the Open Inference Protocol's REST API with its
// binary tensor data extension (KServe; Triton's protocol/extension_binary_data.md).

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ml/gantry/images/mlp"
)

type protoServer struct {
	t   *testing.T
	url string
	m   *mlp.Model
	x   []float32 // 3 instances
}

func newProtoServer(t *testing.T) *protoServer {
	t.Helper()
	m := mlp.New(mlp.NewConfig(16), 1)
	s := New("fashion-mnist", WithMaxBatch(8), WithMaxBody(1<<20), WithVersionLabels("stable"))
	s.SetModel(m, "7", "sha256:abc")
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &protoServer{t: t, url: ts.URL, m: m, x: inputs(3)}
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (p *protoServer) do(method, path string, header map[string]string, body []byte, out any) (int, http.Header, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.url+path, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b.Bytes(), out); err != nil {
			p.t.Fatalf("%s %s: %v: %s", method, path, err, b.String())
		}
	}
	return resp.StatusCode, resp.Header, b.Bytes()
}

// anError checks an error answer: the status, and a body that is {"error": "<message>"} only.
func (p *protoServer) anError(what string, code int, b []byte, wantCode int, mentions string) {
	p.t.Helper()
	var e map[string]any
	if code != wantCode || json.Unmarshal(b, &e) != nil || len(e) != 1 || !strings.Contains(strings.ToLower(e["error"].(string)), mentions) {
		p.t.Errorf("%s: %d %s, want %d and {\"error\": \"…%s…\"}", what, code, b, wantCode, mentions)
	}
}

func jsonRows(x []float32) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < len(x); i += 784 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonArray(x[i : i+784]))
	}
	b.WriteByte(']')
	return b.String()
}

func jsonArray(x []float32) string {
	parts := make([]string, len(x))
	for i, f := range x {
		parts[i] = strconv.FormatFloat(float64(f), 'g', -1, 32)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func TestTFServingREST(t *testing.T) {
	t.Parallel()
	p := newProtoServer(t)
	want := rows(p.m.Predict(p.x, 3), 10)

	// Model status, by name, version and label.
	for _, path := range []string{"/v1/models/fashion-mnist", "/v1/models/fashion-mnist/versions/7", "/v1/models/fashion-mnist/labels/stable"} {
		var st struct {
			ModelVersionStatus []struct {
				Version, State string
				Status         struct {
					ErrorCode string `json:"error_code"`
				}
			} `json:"model_version_status"`
		}
		if code, _, b := p.do("GET", path, nil, nil, &st); code != 200 || len(st.ModelVersionStatus) != 1 ||
			st.ModelVersionStatus[0].Version != "7" || st.ModelVersionStatus[0].State != "AVAILABLE" || st.ModelVersionStatus[0].Status.ErrorCode != "OK" {
			t.Errorf("GET %s: %d %s", path, code, b)
		}
	}
	code, _, b := p.do("GET", "/v1/models/fashion-mnist/versions/8", nil, nil, nil)
	p.anError("status of a version not served", code, b, 404, "not found")
	code, _, b = p.do("GET", "/v1/models/fashion-mnist/labels/canary", nil, nil, nil)
	p.anError("status of an unknown label", code, b, 404, "label")

	// Model metadata: the predict signature with its input and output.
	for _, path := range []string{"/v1/models/fashion-mnist/metadata", "/v1/models/fashion-mnist/versions/7/metadata"} {
		var md struct {
			ModelSpec struct{ Name, Version string } `json:"model_spec"`
			Metadata  struct {
				SignatureDef struct {
					SignatureDef map[string]struct {
						Inputs, Outputs map[string]struct {
							Dtype       string
							TensorShape struct{ Dim []struct{ Size string } } `json:"tensor_shape"`
						}
						MethodName string `json:"method_name"`
					} `json:"signature_def"`
				} `json:"signature_def"`
			}
		}
		code, _, b := p.do("GET", path, nil, nil, &md)
		sig, ok := md.Metadata.SignatureDef.SignatureDef["serving_default"]
		if code != 200 || md.ModelSpec.Name != "fashion-mnist" || md.ModelSpec.Version != "7" || !ok || sig.MethodName != "tensorflow/serving/predict" ||
			sig.Inputs["input"].Dtype != "DT_FLOAT" || len(sig.Inputs["input"].TensorShape.Dim) != 2 || sig.Inputs["input"].TensorShape.Dim[1].Size != "784" ||
			sig.Outputs["probabilities"].TensorShape.Dim[1].Size != "10" {
			t.Errorf("GET %s: %d %s", path, code, b)
		}
	}

	// Predict: row format (plain and named), columnar format (plain and named), on every path.
	named := make([]string, 3)
	for i := range named {
		named[i] = `{"input":` + jsonArray(p.x[i*784:(i+1)*784]) + `}`
	}
	for _, tc := range []struct{ name, path, body, key string }{
		{"row", "/v1/models/fashion-mnist:predict", `{"instances":` + jsonRows(p.x) + `}`, "predictions"},
		{"row, named input", "/v1/models/fashion-mnist:predict", `{"instances":[` + strings.Join(named, ",") + `]}`, "predictions"},
		{"row, signature named", "/v1/models/fashion-mnist:predict", `{"signature_name":"serving_default","instances":` + jsonRows(p.x) + `}`, "predictions"},
		{"columnar", "/v1/models/fashion-mnist:predict", `{"inputs":` + jsonRows(p.x) + `}`, "outputs"},
		{"columnar, named input", "/v1/models/fashion-mnist:predict", `{"inputs":{"input":` + jsonRows(p.x) + `}}`, "outputs"},
		{"version", "/v1/models/fashion-mnist/versions/7:predict", `{"instances":` + jsonRows(p.x) + `}`, "predictions"},
		{"label", "/v1/models/fashion-mnist/labels/stable:predict", `{"instances":` + jsonRows(p.x) + `}`, "predictions"},
	} {
		var out map[string][][]float32
		code, _, b := p.do("POST", tc.path, nil, []byte(tc.body), &out)
		if code != 200 || len(out) != 1 {
			t.Errorf("%s: %d %.200s", tc.name, code, b)
			continue
		}
		if diff := cmp.Diff(want, out[tc.key]); diff != "" {
			t.Errorf("%s: %q differs from the model (-want +got):\n%s", tc.name, tc.key, diff)
		}
	}

	// Errors: each {"error": "…"} with TF Serving's status mapping (invalid argument 400, not found 404).
	one := jsonRows(p.x[:784])
	for _, tc := range []struct {
		name, path, body string
		code             int
		mentions         string
	}{
		{"both formats", "/v1/models/fashion-mnist:predict", `{"instances":` + one + `,"inputs":` + one + `}`, 400, "both"},
		{"neither format", "/v1/models/fashion-mnist:predict", `{"signature_name":"serving_default"}`, 400, "instances"},
		{"unknown signature", "/v1/models/fashion-mnist:predict", `{"signature_name":"classify_x","instances":` + one + `}`, 400, "signature"},
		{"signature not a string", "/v1/models/fashion-mnist:predict", `{"signature_name":1,"instances":` + one + `}`, 400, "signature"},
		{"unknown named input", "/v1/models/fashion-mnist:predict", `{"instances":[{"pixels":` + jsonArray(p.x[:784]) + `}]}`, 400, "unknown input"},
		{"unknown columnar input", "/v1/models/fashion-mnist:predict", `{"inputs":{"pixels":` + one + `}}`, 400, "unknown input"},
		{"classify", "/v1/models/fashion-mnist:classify", `{"examples":[{"x":1}]}`, 400, "classify"},
		{"regress", "/v1/models/fashion-mnist:regress", `{"examples":[{"x":1}]}`, 400, "regress"},
		{"version not served", "/v1/models/fashion-mnist/versions/8:predict", `{"instances":` + one + `}`, 404, "not found"},
		{"unknown label", "/v1/models/fashion-mnist/labels/canary:predict", `{"instances":` + one + `}`, 404, "label"},
		{"unknown model", "/v1/models/mnist:predict", `{"instances":` + one + `}`, 404, "not found"},
	} {
		code, _, b := p.do("POST", tc.path, nil, []byte(tc.body), nil)
		p.anError(tc.name, code, b, tc.code, tc.mentions)
	}
}

// le encodes x as little-endian FP32, the binary extension's layout.
func le(x []float32) []byte {
	b := make([]byte, 0, 4*len(x))
	for _, f := range x {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

func TestOpenInferenceProtocol(t *testing.T) {
	t.Parallel()
	p := newProtoServer(t)
	want := p.m.Predict(p.x, 3)

	var server struct {
		Name, Version string
		Extensions    []string
	}
	if code, _, b := p.do("GET", "/v2", nil, nil, &server); code != 200 || server.Name == "" || server.Version == "" || !strings.Contains(strings.Join(server.Extensions, ","), BinaryExtension) {
		t.Errorf("server metadata: %d %s", code, b)
	}
	for path, body := range map[string]string{"/v2/health/live": `{"live":true}`, "/v2/health/ready": `{"ready":true}`,
		"/v2/models/fashion-mnist/ready": `{"name":"fashion-mnist","ready":true}`, "/v2/models/fashion-mnist/versions/7/ready": `{"name":"fashion-mnist","ready":true}`} {
		if code, _, b := p.do("GET", path, nil, nil, nil); code != 200 || strings.TrimSpace(string(b)) != body {
			t.Errorf("GET %s: %d %s, want %s", path, code, b, body)
		}
	}
	for _, path := range []string{"/v2/models/fashion-mnist", "/v2/models/fashion-mnist/versions/7"} {
		var md struct {
			Name     string
			Versions []string
			Platform string
			Inputs   []struct {
				Name, Datatype string
				Shape          []int
			}
			Outputs []struct{ Name string }
		}
		if code, _, b := p.do("GET", path, nil, nil, &md); code != 200 || md.Name != "fashion-mnist" || !cmp.Equal(md.Versions, []string{"7"}) || md.Platform == "" ||
			len(md.Inputs) != 1 || md.Inputs[0].Name != InputName || md.Inputs[0].Datatype != "FP32" || !cmp.Equal(md.Inputs[0].Shape, []int{-1, 784}) ||
			len(md.Outputs) != 1 || md.Outputs[0].Name != OutputName {
			t.Errorf("GET %s: %d %s", path, code, b)
		}
	}
	code, _, b := p.do("GET", "/v2/models/fashion-mnist/versions/8", nil, nil, nil)
	p.anError("metadata of a version not served", code, b, 404, "not found")

	type output struct {
		Name, Datatype string
		Shape          []int
		Parameters     map[string]int
		Data           []float32
	}
	type response struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		ID           *string
		Outputs      []output
	}
	jsonInput := `{"name":"input","datatype":"FP32","shape":[3,784],"data":` + jsonRows(p.x) + `}`
	binInput := `{"name":"input","datatype":"FP32","shape":[3,784],"parameters":{"binary_data_size":` + strconv.Itoa(4*len(p.x)) + `}}`
	// binaryBody is a JSON header followed by the binary input, with the header's length.
	binaryBody := func(header string) ([]byte, map[string]string) {
		return append([]byte(header), le(p.x)...), map[string]string{HeaderLength: strconv.Itoa(len(header))}
	}
	for _, tc := range []struct {
		name, path, header string
		binIn, binOut      bool
		id                 bool
	}{
		{"json", "/v2/models/fashion-mnist/infer", `{"id":"r1","inputs":[` + jsonInput + `]}`, false, false, true},
		{"json, no id", "/v2/models/fashion-mnist/infer", `{"inputs":[` + jsonInput + `]}`, false, false, false},
		{"json, version, output named", "/v2/models/fashion-mnist/versions/7/infer", `{"id":"r1","inputs":[` + jsonInput + `],"outputs":[{"name":"probabilities"}]}`, false, false, true},
		{"binary in, json out", "/v2/models/fashion-mnist/infer", `{"id":"r1","inputs":[` + binInput + `]}`, true, false, true},
		{"binary in, binary out", "/v2/models/fashion-mnist/infer", `{"id":"r1","inputs":[` + binInput + `],"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}`, true, true, true},
		{"json in, binary_data_output", "/v2/models/fashion-mnist/infer", `{"id":"r1","parameters":{"binary_data_output":true},"inputs":[` + jsonInput + `]}`, false, true, true},
	} {
		body, hdr := []byte(tc.header), map[string]string{"Content-Type": "application/json"}
		if tc.binIn {
			body, hdr = binaryBody(tc.header)
			hdr["Content-Type"] = "application/octet-stream"
		}
		code, rh, b := p.do("POST", tc.path, hdr, body, nil)
		if code != 200 {
			t.Errorf("%s: %d %.300s", tc.name, code, b)
			continue
		}
		js, raw := b, []byte(nil)
		if n := rh.Get(HeaderLength); tc.binOut {
			l, err := strconv.Atoi(n)
			if err != nil || l > len(b) {
				t.Errorf("%s: binary output without a valid %s (%q)", tc.name, HeaderLength, n)
				continue
			}
			js, raw = b[:l], b[l:]
		} else if n != "" {
			t.Errorf("%s: a JSON answer with %s %s", tc.name, HeaderLength, n)
		}
		var r response
		if err := json.Unmarshal(js, &r); err != nil || r.ModelName != "fashion-mnist" || r.ModelVersion != "7" || len(r.Outputs) != 1 ||
			r.Outputs[0].Name != OutputName || r.Outputs[0].Datatype != "FP32" || !cmp.Equal(r.Outputs[0].Shape, []int{3, 10}) {
			t.Errorf("%s: envelope %v %.300s", tc.name, err, js)
			continue
		}
		if tc.id != (r.ID != nil) || tc.id && *r.ID != "r1" {
			t.Errorf("%s: id %v, want it echoed only when given", tc.name, r.ID)
		}
		got := r.Outputs[0].Data
		if tc.binOut {
			if r.Outputs[0].Parameters["binary_data_size"] != len(raw) || len(raw) != 4*len(want) || got != nil {
				t.Errorf("%s: binary_data_size %d for %d bytes (want %d), data %v", tc.name, r.Outputs[0].Parameters["binary_data_size"], len(raw), 4*len(want), got)
				continue
			}
			got = make([]float32, len(raw)/4)
			for i := range got {
				got[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: predictions differ from the model (-want +got):\n%s", tc.name, diff)
		}
	}

	for _, tc := range []struct {
		name   string
		header string
		hdrLen string // "" : the header's own length; "-": no header at all
		tail   []byte
		code   int
		says   string
	}{
		{"unknown output", `{"inputs":[` + jsonInput + `],"outputs":[{"name":"logits"}]}`, "-", nil, 400, "output"},
		{"unknown input", `{"inputs":[{"name":"pixels","datatype":"FP32","shape":[1,784],"data":` + jsonRows(p.x[:784]) + `}]}`, "-", nil, 400, "input"},
		{"binary size wrong", `{"inputs":[` + strings.Replace(binInput, strconv.Itoa(4*len(p.x)), "12", 1) + `]}`, "", le(p.x), 400, "binary_data_size"},
		{"binary body short", `{"inputs":[` + binInput + `]}`, "", le(p.x[:100]), 400, "bytes"},
		{"binary without header", `{"inputs":[` + binInput + `]}`, "-", nil, 400, HeaderLength},
		{"header length beyond body", `{"inputs":[` + binInput + `]}`, "999999", le(p.x), 400, HeaderLength},
		{"bytes after a json request", `{"inputs":[` + jsonInput + `]}`, "", []byte{1, 2, 3, 4}, 400, "no input is binary"},
		{"binary NaN", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,784],"parameters":{"binary_data_size":3136}}]}`, "", le(append([]float32{float32(math.NaN())}, p.x[1:784]...)), 400, "finite"},
		{"binary_data not a bool", `{"inputs":[` + jsonInput + `],"outputs":[{"name":"probabilities","parameters":{"binary_data":"yes"}}]}`, "-", nil, 400, "boolean"},
	} {
		body, hdr := append([]byte(tc.header), tc.tail...), map[string]string{}
		switch tc.hdrLen {
		case "":
			hdr[HeaderLength] = strconv.Itoa(len(tc.header))
		case "-":
		default:
			hdr[HeaderLength] = tc.hdrLen
		}
		code, _, b := p.do("POST", "/v2/models/fashion-mnist/infer", hdr, body, nil)
		p.anError(tc.name, code, b, tc.code, strings.ToLower(tc.says))
	}
}
