package serving

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-ml/gantry/images/mlp"
)

func testServer(t *testing.T, ready bool) (*httptest.Server, *mlp.Model) {
	t.Helper()
	m := mlp.New(mlp.NewConfig(16), 1)
	s := New("fashion-mnist", WithMaxBatch(8), WithMaxBody(1<<20))
	if ready {
		s.SetModel(m, "3", "sha256:abc")
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, m
}

func inputs(n int) []float32 {
	x := make([]float32, n*784)
	for i := range x {
		x[i] = float32(i%255) / 255
	}
	return x
}

func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func rows(x []float32, w int) [][]float32 {
	var out [][]float32
	for i := 0; i < len(x); i += w {
		out = append(out, x[i:i+w])
	}
	return out
}

func TestV1AndV2PredictEqualInProcessModel(t *testing.T) {
	t.Parallel()
	ts, m := testServer(t, true)
	x := inputs(3)
	want := rows(m.Predict(x, 3), 10)

	body, _ := json.Marshal(map[string]any{"instances": rows(x, 784)})
	code, b := post(t, ts.URL+"/v1/models/fashion-mnist:predict", string(body))
	if code != 200 {
		t.Fatalf("v1: %d %s", code, b)
	}
	var v1 struct{ Predictions [][]float32 }
	if err := json.Unmarshal(b, &v1); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, v1.Predictions); diff != "" {
		t.Errorf("v1 predictions (-want +got):\n%s", diff)
	}
	// 28×28 instances are accepted too.
	var img [][][]float32
	for _, r := range rows(x, 784) {
		img = append(img, rows(r, 28))
	}
	body, _ = json.Marshal(map[string]any{"instances": img})
	if code, b = post(t, ts.URL+"/v1/models/fashion-mnist:predict", string(body)); code != 200 {
		t.Fatalf("v1 28x28: %d %s", code, b)
	}

	body, _ = json.Marshal(map[string]any{"id": "r1", "inputs": []map[string]any{{"name": "input", "shape": []int{3, 784}, "datatype": "FP32", "data": x}}})
	code, b = post(t, ts.URL+"/v2/models/fashion-mnist/infer", string(body))
	if code != 200 {
		t.Fatalf("v2: %d %s", code, b)
	}
	var v2 struct {
		ModelName string `json:"model_name"`
		ID        string
		Outputs   []struct {
			Shape []int
			Data  []float32
		}
	}
	if err := json.Unmarshal(b, &v2); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if v2.ModelName != "fashion-mnist" || v2.ID != "r1" || !cmp.Equal(v2.Outputs[0].Shape, []int{3, 10}) {
		t.Errorf("v2 envelope: %s", b)
	}
	if diff := cmp.Diff(want, rows(v2.Outputs[0].Data, 10)); diff != "" {
		t.Errorf("v2 predictions (-want +got):\n%s", diff)
	}
}

func TestBadRequestsAre4xxNeverCrashes(t *testing.T) {
	t.Parallel()
	ts, _ := testServer(t, true)
	one := fmt.Sprint(inputs(1))
	one = "[" + strings.ReplaceAll(strings.Trim(one, "[]"), " ", ",") + "]"
	v1 := ts.URL + "/v1/models/fashion-mnist:predict"
	v2 := ts.URL + "/v2/models/fashion-mnist/infer"
	for _, tc := range []struct {
		name, url, body string
		code            int
		msg             string
	}{
		{"malformed json", v1, `{"instances": [[1,2`, 400, "malformed JSON"},
		{"no instances", v1, `{"foo": 1}`, 400, "instances"},
		{"wrong width", v1, `{"instances": [[1,2,3]]}`, 400, "784 values"},
		{"ragged", v1, `{"instances": [` + one + `,[1]]}`, 400, "ragged"},
		{"nan", v1, `{"instances": [[NaN]]}`, 400, "JSON"},
		{"huge number", v1, `{"instances": [[1e99]]}`, 400, "finite"},
		{"strings", v1, `{"instances": [["a"]]}`, 400, "number"},
		{"single instance not batched", v1, `{"instances": ` + one + `}`, 400, "batch"},
		{"batch over limit", v1, `{"instances": [` + strings.Repeat(one+",", 8) + one + `]}`, 400, "values"},
		{"oversized body", v1, `{"instances": [[` + strings.Repeat("0,", 600000) + `0]]}`, 413, "over"},
		{"unknown model", ts.URL + "/v1/models/other:predict", `{"instances": [` + one + `]}`, 404, "not found"},
		{"unknown verb", ts.URL + "/v1/models/fashion-mnist:explain", `{}`, 404, "unknown method"},
		{"v2 shape mismatch", v2, `{"inputs":[{"name":"input","shape":[2,784],"datatype":"FP32","data":` + one + `}]}`, 400, "needs 1568"},
		{"v2 datatype", v2, `{"inputs":[{"name":"input","shape":[1,784],"datatype":"BYTES","data":` + one + `}]}`, 400, "datatype"},
		{"v2 two inputs", v2, `{"inputs":[]}`, 400, "exactly one"},
		{"v2 negative shape", v2, `{"inputs":[{"name":"input","shape":[-1,784],"datatype":"FP32","data":` + one + `}]}`, 400, "non-positive"},
	} {
		code, b := post(t, tc.url, tc.body)
		if code != tc.code || !strings.Contains(string(b), tc.msg) {
			t.Errorf("%s: %d %s, want %d mentioning %q", tc.name, code, b, tc.code, tc.msg)
		}
	}
	code, _ := post(t, v1, `{"instances": [`+one+`]}`)
	if code != 200 {
		t.Errorf("server unhealthy after bad requests: %d", code)
	}
}

func TestReadinessAndStatusBeforeAndAfterLoad(t *testing.T) {
	t.Parallel()
	m := mlp.New(mlp.NewConfig(4), 1)
	s := New("fashion-mnist")
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	get := func(path string) int {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for path, want := range map[string]int{"/v2/health/live": 200, "/v2/health/ready": 503, "/v1/models/fashion-mnist": 503, "/v2/models/fashion-mnist": 503} {
		if got := get(path); got != want {
			t.Errorf("before load %s = %d, want %d", path, got, want)
		}
	}
	if code, _ := post(t, ts.URL+"/v1/models/fashion-mnist:predict", `{"instances":[[0]]}`); code != 503 {
		t.Errorf("predict before load = %d, want 503", code)
	}
	s.SetModel(m, "7", "sha256:x")
	for path, want := range map[string]int{"/v2/health/ready": 200, "/v1/models/fashion-mnist": 200, "/v2/models/fashion-mnist": 200, "/v2/models/fashion-mnist/ready": 200, "/v1/models/nope": 404} {
		if got := get(path); got != want {
			t.Errorf("after load %s = %d, want %d", path, got, want)
		}
	}
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`gantry_model_requests_total{code="503",protocol="v1"} 1`, "gantry_model_ready 1", "gantry_model_batch_size_bucket"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestParseTensor(t *testing.T) {
	t.Parallel()
	vals, shape, err := parseTensor([]byte(` [[1, 2.5e-1 ,-3],[4,5,6]] `), 100)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(vals, []float32{1, 0.25, -3, 4, 5, 6}) || !cmp.Equal(shape, []int{2, 3}) {
		t.Errorf("got %v %v", vals, shape)
	}
	for _, bad := range []string{"", "[", "[]", "[[1],[1,2]]", "[1,[2]]", "[[1],2]", "[1,]", "[1 2]", "[1]x", "[--1]", `["1"]`, "[1e999]", "[[[[[[[[[[1]]]]]]]]]]"} {
		if _, _, err := parseTensor([]byte(bad), 100); err == nil {
			t.Errorf("parseTensor(%q) accepted", bad)
		}
	}
	if _, _, err := parseTensor([]byte("[1,2,3]"), 2); err == nil {
		t.Error("limit ignored")
	}
}

func FuzzParseTensor(f *testing.F) {
	for _, s := range []string{"[[1,2],[3,4]]", "[0.5]", "[[1],[2,3]]", "[1e5,-2E-3]", "[[[0]]]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, shape, err := parseTensor(b, 1<<16)
		if err != nil {
			return
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		if n != len(vals) {
			t.Fatalf("shape %v does not match %d values", shape, len(vals))
		}
	})
}

func FuzzPredictRequest(f *testing.F) {
	f.Add([]byte(`{"instances": [[0.1, 0.2]]}`))
	f.Add([]byte(`{"inputs": [[1]]}`))
	m := mlp.New(mlp.Config{Format: mlp.FormatV1, Layers: []int{2, 3}, Activation: "relu", Output: "softmax", WeightLayout: "in_out"}, 1)
	s := New("m", WithMaxBatch(4))
	s.SetModel(m, "1", "")
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/models/m:predict", bytes.NewReader(body)))
		if rec.Code != 200 && rec.Code != 400 && rec.Code != 413 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}

func TestTopLevelFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, key, want string
		ok            bool
	}{
		{`{"instances": [[1,2]]}`, "instances", `[[1,2]]`, true},
		{` {"signature_name":"serving_default","meta":{"a":[1,{"b":"c\""}]},"instances":[[0.5]]} `, "instances", `[[0.5]]`, true},
		{`{"inputs": [[1]], "instances": [[2]]}`, "inputs", `[[1]]`, true},
		{`{"x\u0041": 1}`, "xA", `1`, true},
		{`{}`, "instances", ``, true},
		{`{"a": 1, "a": 2}`, "", ``, false},
		{`{"instances": [[1,2]]`, "", ``, false},
		{`{"instances": [[1,2]]} x`, "", ``, false},
		{`{"a": tru}`, "", ``, false},
		{`{"a" 1}`, "", ``, false},
		{`[1]`, "", ``, false},
		{`{"a": "unterminated}`, "", ``, false},
	} {
		got, err := topLevelFields([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && string(got[tc.key]) != tc.want) {
			t.Errorf("topLevelFields(%s)[%q] = %q, %v; want %q ok=%t", tc.in, tc.key, got[tc.key], err, tc.want, tc.ok)
		}
		if tc.ok && !json.Valid([]byte(tc.in)) {
			t.Errorf("accepted invalid JSON %s", tc.in)
		}
	}
}
