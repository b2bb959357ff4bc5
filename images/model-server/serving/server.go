// Package serving is the example model server: TF Serving REST (v1) and the
// KServe Open Inference Protocol (v2) over an MLP, with Prometheus metrics and
// readiness that turns true only once the model is loaded and verified.
package serving

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gantry-ml/gantry/images/mlp"
)

// Limits of one request.
const (
	DefaultMaxBatch = 1024
	DefaultMaxBody  = 64 << 20
)

// Server serves one model by name.
type Server struct {
	name     string
	maxBatch int
	maxBody  int64
	log      *slog.Logger
	model    atomic.Pointer[loaded]

	labels map[string]string // TF Serving version labels → version ("" version: the loaded one)

	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	batch    prometheus.Histogram
	ready    prometheus.Gauge
}

type loaded struct {
	m       *mlp.Model
	version string
	digest  string
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithMaxBatch bounds the instances of one request.
func WithMaxBatch(n int) Option { return func(s *Server) { s.maxBatch = n } }

// WithMaxBody bounds a request body in bytes.
func WithMaxBody(n int64) Option { return func(s *Server) { s.maxBody = n } }

// WithVersionLabels makes /v1/models/NAME/labels/LABEL reach the loaded version under each
// label (TF Serving's version labels, e.g. stable). Other labels are not found.
func WithVersionLabels(labels ...string) Option {
	return func(s *Server) {
		for _, l := range labels {
			s.labels[l] = ""
		}
	}
}

// New returns a server for model name; it is not ready until SetModel.
func New(name string, opts ...Option) *Server {
	s := &Server{name: name, maxBatch: DefaultMaxBatch, maxBody: DefaultMaxBody, log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry(),
		labels: map[string]string{}}
	for _, o := range opts {
		o(s)
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gantry_model_requests_total", Help: "Predict requests by protocol and HTTP code."}, []string{"protocol", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gantry_model_request_duration_seconds", Help: "Predict request latency.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"protocol"})
	s.batch = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gantry_model_batch_size", Help: "Instances per predict request.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12)})
	s.ready = prometheus.NewGauge(prometheus.GaugeOpts{Name: "gantry_model_ready", Help: "1 once the model is loaded."})
	s.reg.MustRegister(s.requests, s.latency, s.batch, s.ready, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return s
}

// SetModel installs a loaded model and makes the server ready.
func (s *Server) SetModel(m *mlp.Model, version, digest string) {
	s.model.Store(&loaded{m: m, version: version, digest: digest})
	s.ready.Set(1)
}

// Ready reports whether a model is loaded.
func (s *Server) Ready() bool { return s.model.Load() != nil }

// The model's tensors, as both protocols name them.
const (
	InputName  = "input"
	OutputName = "probabilities"
	// SignatureName is the TF Serving signature the model answers (the only one).
	SignatureName = "serving_default"
	// BinaryExtension is the Open Inference Protocol's binary tensor data extension, as servers
	// list it in their metadata (KServe, Triton).
	BinaryExtension = "binary_tensor_data"
	// HeaderLength is the HTTP header giving the length of the JSON header of a binary body.
	HeaderLength = "Inference-Header-Content-Length"
)

// Handler routes both protocols, health and metrics:
//
//	TF Serving REST (api_rest.md): GET /v1/models/M[/versions/V|/labels/L][/metadata],
//	POST /v1/models/M[/versions/V|/labels/L]:(predict|classify|regress)
//	Open Inference Protocol v2: GET /v2, /v2/health/{live,ready},
//	GET /v2/models/M[/versions/V][/ready], POST /v2/models/M[/versions/V]/infer (JSON or binary tensors)
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, sel := range []string{"", "/versions/{version}", "/labels/{label}"} {
		mux.HandleFunc("GET /v1/models/{name}"+sel, s.v1Status)
		mux.HandleFunc("GET /v1/models/{name}"+sel+"/metadata", s.v1Metadata)
	}
	mux.HandleFunc("POST /v1/models/{nameverb}", s.v1Method)
	mux.HandleFunc("POST /v1/models/{name}/versions/{versionverb}", s.v1Method)
	mux.HandleFunc("POST /v1/models/{name}/labels/{labelverb}", s.v1Method)
	mux.HandleFunc("GET /v2", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"name": "gantry-model-server", "version": "1", "extensions": []string{BinaryExtension}})
	})
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"live": true})
	})
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, _ *http.Request) {
		code := http.StatusOK
		if !s.Ready() {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]bool{"ready": s.Ready()})
	})
	for _, sel := range []string{"", "/versions/{version}"} {
		mux.HandleFunc("GET /v2/models/{name}"+sel, s.v2Metadata)
		mux.HandleFunc("GET /v2/models/{name}"+sel+"/ready", s.v2ModelReady)
		mux.HandleFunc("POST /v2/models/{name}"+sel+"/infer", s.v2Infer)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return mux
}

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// servable finds the loaded model by name and, when the path names one, version or label.
func (s *Server) servable(name, version, label string) (*loaded, error) {
	if name != s.name {
		return nil, errorf(http.StatusNotFound, "model %q not found (this server serves %q)", name, s.name)
	}
	if label != "" {
		if _, ok := s.labels[label]; !ok {
			return nil, errorf(http.StatusNotFound, "unrecognized servable version label: %s", label)
		}
	}
	l := s.model.Load()
	if l == nil {
		return nil, errorf(http.StatusServiceUnavailable, "model %q is loading", name)
	}
	if version != "" && version != l.version {
		return nil, errorf(http.StatusNotFound, "servable not found for request: version %s of %q (serving version %s)", version, name, l.version)
	}
	return l, nil
}

func (s *Server) v1Status(w http.ResponseWriter, r *http.Request) {
	name, version, label := r.PathValue("name"), r.PathValue("version"), r.PathValue("label")
	l, err := s.servable(name, version, label)
	var he *httpError
	if errors.As(err, &he) && he.code == http.StatusServiceUnavailable {
		// Loading: the version's state, with 503 so that a probe on this path waits.
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"model_version_status": []map[string]any{{
			"version": "0", "state": "LOADING", "status": map[string]string{"error_code": "OK", "error_message": ""}}}})
		return
	}
	if err != nil {
		s.fail(w, "v1", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_version_status": []map[string]any{{
		"version": l.version, "state": "AVAILABLE", "status": map[string]string{"error_code": "OK", "error_message": ""}}}})
}

// tfTensor describes a float tensor of shape [-1, width] as TF Serving's metadata does.
func tfTensor(name string, width int) map[string]any {
	return map[string]any{"dtype": "DT_FLOAT", "name": name + ":0", "tensor_shape": map[string]any{
		"dim": []map[string]string{{"size": "-1", "name": ""}, {"size": strconv.Itoa(width), "name": ""}}, "unknown_rank": false}}
}

func (s *Server) v1Metadata(w http.ResponseWriter, r *http.Request) {
	l, err := s.servable(r.PathValue("name"), r.PathValue("version"), r.PathValue("label"))
	if err != nil {
		s.fail(w, "v1", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"model_spec": map[string]string{"name": s.name, "signature_name": "", "version": l.version},
		"metadata": map[string]any{"signature_def": map[string]any{"signature_def": map[string]any{SignatureName: map[string]any{
			"inputs":      map[string]any{InputName: tfTensor(InputName, l.m.Config.Inputs())},
			"outputs":     map[string]any{OutputName: tfTensor(OutputName, l.m.Config.Outputs())},
			"method_name": "tensorflow/serving/predict",
		}}}},
	})
}

func (s *Server) v2ModelReady(w http.ResponseWriter, r *http.Request) {
	_, err := s.servable(r.PathValue("name"), r.PathValue("version"), "")
	var he *httpError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]any{"name": s.name, "ready": true})
	case errors.As(err, &he) && he.code == http.StatusServiceUnavailable:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"name": s.name, "ready": false})
	default:
		s.fail(w, "v2", err)
	}
}

func (s *Server) v2Metadata(w http.ResponseWriter, r *http.Request) {
	l, err := s.servable(r.PathValue("name"), r.PathValue("version"), "")
	if err != nil {
		s.fail(w, "v2", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name": s.name, "versions": []string{l.version}, "platform": "gantry-mlp",
		"inputs":     []map[string]any{{"name": InputName, "datatype": "FP32", "shape": []int{-1, l.m.Config.Inputs()}}},
		"outputs":    []map[string]any{{"name": OutputName, "datatype": "FP32", "shape": []int{-1, l.m.Config.Outputs()}}},
		"parameters": map[string]any{"digest": l.digest, "class_names": l.m.Config.ClassNames, "normalization": l.m.Config.Normalization},
	})
}

func (s *Server) fail(w http.ResponseWriter, protocol string, err error) {
	code := http.StatusInternalServerError
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.As(err, &mbe):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrTensor):
		code = http.StatusBadRequest
	}
	s.requests.WithLabelValues(protocol, strconv.Itoa(code)).Inc()
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= s.maxBody {
		// The size is known: one allocation, no growing and copying (a binary batch is MBs).
		b := make([]byte, n)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, errorf(http.StatusBadRequest, "reading request: %v", err)
		}
		return b, nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", s.maxBody)
		}
		return nil, errorf(http.StatusBadRequest, "reading request: %v", err)
	}
	return b, nil
}

// instances turns parsed values into n×Inputs rows, accepting per-instance
// shapes [784] or [28,28] (any shape whose product is the input width).
func (s *Server) instances(l *loaded, vals []float32, shape []int) (int, error) {
	if len(shape) < 2 {
		return 0, errorf(http.StatusBadRequest, "want a batch of instances, got shape %v", shape)
	}
	per := 1
	for _, d := range shape[1:] {
		per *= d
	}
	if per != l.m.Config.Inputs() {
		return 0, errorf(http.StatusBadRequest, "each instance must have %d values (e.g. shape [%d] or %v), got shape %v",
			l.m.Config.Inputs(), l.m.Config.Inputs(), l.m.Config.InputShape, shape[1:])
	}
	if shape[0] > s.maxBatch {
		return 0, errorf(http.StatusBadRequest, "batch of %d instances is over the limit of %d", shape[0], s.maxBatch)
	}
	return shape[0], nil
}

// v1Method serves POST …:predict, and answers :classify and :regress with an error: the model
// has only a predict signature.
func (s *Server) v1Method(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name, version, label := r.PathValue("name"), "", ""
	var verb string
	switch {
	case r.PathValue("nameverb") != "":
		name, verb, _ = strings.Cut(r.PathValue("nameverb"), ":")
	case r.PathValue("versionverb") != "":
		version, verb, _ = strings.Cut(r.PathValue("versionverb"), ":")
	default:
		label, verb, _ = strings.Cut(r.PathValue("labelverb"), ":")
	}
	l, err := s.servable(name, version, label)
	if err != nil {
		s.fail(w, "v1", err)
		return
	}
	switch verb {
	case "predict":
	case "classify", "regress":
		s.fail(w, "v1", errorf(http.StatusBadRequest, "model %q has no %s signature: its only signature, %s, is a predict signature (use :predict)", name, verb, SignatureName))
		return
	default:
		s.fail(w, "v1", errorf(http.StatusNotFound, "unknown method %q (want :predict, :classify or :regress)", verb))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, "v1", err)
		return
	}
	fields, err := topLevelFields(body)
	if err != nil {
		s.fail(w, "v1", errorf(http.StatusBadRequest, "%v", err))
		return
	}
	if raw, ok := fields["signature_name"]; ok {
		var sig string
		if err := json.Unmarshal(raw, &sig); err != nil {
			s.fail(w, "v1", errorf(http.StatusBadRequest, "signature_name must be a string"))
			return
		}
		if sig != "" && sig != SignatureName {
			s.fail(w, "v1", errorf(http.StatusBadRequest, "serving signature name %q not found in signature def (the model has %q)", sig, SignatureName))
			return
		}
	}
	rows, hasRows := fields["instances"]
	cols, hasCols := fields["inputs"]
	var vals []float32
	var shape []int
	limit := s.maxBatch * l.m.Config.Inputs()
	switch {
	case hasRows && hasCols:
		s.fail(w, "v1", errorf(http.StatusBadRequest, `request has both "instances" (row format) and "inputs" (columnar format): give one`))
		return
	case hasRows:
		vals, shape, err = rowFormat(rows, limit)
	case hasCols:
		vals, shape, err = columnarFormat(cols, limit)
	default:
		err = errorf(http.StatusBadRequest, `request needs "instances" (row format) or "inputs" (columnar format)`)
	}
	if err != nil {
		s.fail(w, "v1", err)
		return
	}
	n, err := s.instances(l, vals, shape)
	if err != nil {
		s.fail(w, "v1", err)
		return
	}
	probs := l.m.Predict(vals, n)
	buf := make([]byte, 0, 16+n*l.m.Config.Outputs()*12)
	if hasRows {
		buf = append(buf, `{"predictions":`...)
	} else {
		buf = append(buf, `{"outputs":`...) // one output: its tensor, not a map
	}
	buf = appendFloats(buf, probs, l.m.Config.Outputs(), true)
	buf = append(buf, "}\n"...)
	s.ok(w, "v1", "application/json", buf, n, start)
}

// rowFormat parses "instances": a list of instances, each the input's value, or an object
// naming it ({"input": [...]}).
func rowFormat(raw []byte, limit int) ([]float32, []int, error) {
	if j := firstAfterOpen(raw); j < 0 || raw[j] != '{' {
		return parseTensor(raw, limit)
	}
	var objs []json.RawMessage
	if err := json.Unmarshal(raw, &objs); err != nil {
		return nil, nil, errorf(http.StatusBadRequest, "instances: %v", err)
	}
	var vals []float32
	var per []int
	for k, o := range objs {
		v, shape, err := namedInput(o, limit-len(vals), fmt.Sprintf("instance %d", k))
		if err != nil {
			return nil, nil, err
		}
		if per == nil {
			per = shape
		} else if fmt.Sprint(per) != fmt.Sprint(shape) {
			return nil, nil, errorf(http.StatusBadRequest, "instance %d has shape %v, instance 0 has %v", k, shape, per)
		}
		vals = append(vals, v...)
	}
	return vals, append([]int{len(objs)}, per...), nil
}

// columnarFormat parses "inputs": the input's batched value, or an object naming it.
func columnarFormat(raw []byte, limit int) ([]float32, []int, error) {
	j := 0
	for j < len(raw) && (raw[j] == ' ' || raw[j] == '\n' || raw[j] == '\t' || raw[j] == '\r') {
		j++
	}
	if j < len(raw) && raw[j] == '{' {
		return namedInput(raw, limit, "inputs")
	}
	return parseTensor(raw, limit)
}

// namedInput reads {"input": value}; any other name is an error.
func namedInput(obj []byte, limit int, where string) ([]float32, []int, error) {
	fields, err := topLevelFields(obj)
	if err != nil {
		return nil, nil, errorf(http.StatusBadRequest, "%s: %v", where, err)
	}
	for k := range fields {
		if k != InputName {
			return nil, nil, errorf(http.StatusBadRequest, "%s: unknown input %q (the model's input is %q)", where, k, InputName)
		}
	}
	v, ok := fields[InputName]
	if !ok {
		return nil, nil, errorf(http.StatusBadRequest, "%s: missing input %q", where, InputName)
	}
	return parseTensor(v, limit)
}

// firstAfterOpen is the index of the first non-space byte after raw's opening '[', or -1.
func firstAfterOpen(raw []byte) int {
	i := 0
	for i < len(raw) && raw[i] != '[' {
		i++
	}
	for i++; i < len(raw); i++ {
		switch raw[i] {
		case ' ', '\n', '\t', '\r':
		default:
			return i
		}
	}
	return -1
}

func (s *Server) ok(w http.ResponseWriter, protocol, contentType string, body []byte, n int, start time.Time) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
	s.requests.WithLabelValues(protocol, "200").Inc()
	s.latency.WithLabelValues(protocol).Observe(time.Since(start).Seconds())
	s.batch.Observe(float64(n))
}

// v2Request is an Open Inference Protocol inference request; Data stays raw for the fast parser.
type v2Request struct {
	ID         string                     `json:"id,omitempty"`
	Parameters map[string]json.RawMessage `json:"parameters,omitempty"`
	Inputs     []struct {
		Name       string                     `json:"name"`
		Shape      []int                      `json:"shape"`
		Datatype   string                     `json:"datatype"`
		Parameters map[string]json.RawMessage `json:"parameters,omitempty"`
		Data       json.RawMessage            `json:"data,omitempty"`
	} `json:"inputs"`
	Outputs []struct {
		Name       string                     `json:"name"`
		Parameters map[string]json.RawMessage `json:"parameters,omitempty"`
	} `json:"outputs,omitempty"`
}

func boolParam(p map[string]json.RawMessage, name string) (bool, error) {
	raw, ok := p[name]
	if !ok {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, errorf(http.StatusBadRequest, "parameter %s must be a boolean", name)
	}
	return b, nil
}

func (s *Server) v2Infer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	l, err := s.servable(r.PathValue("name"), r.PathValue("version"), "")
	if err != nil {
		s.fail(w, "v2", err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, "v2", err)
		return
	}
	vals, n, req, binaryOut, err := s.v2Decode(l, r.Header.Get(HeaderLength), body)
	if err != nil {
		s.fail(w, "v2", err)
		return
	}
	probs := l.m.Predict(vals, n)
	classes := l.m.Config.Outputs()
	head := struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		ID           string `json:"id,omitempty"`
		Outputs      []any  `json:"outputs"`
	}{ModelName: s.name, ModelVersion: l.version, ID: req.ID}
	if binaryOut {
		size := 4 * len(probs)
		head.Outputs = []any{map[string]any{"name": OutputName, "datatype": "FP32", "shape": []int{n, classes},
			"parameters": map[string]int{"binary_data_size": size}}}
		hb, _ := json.Marshal(head)
		buf := make([]byte, len(hb), len(hb)+size)
		copy(buf, hb)
		for _, f := range probs {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(f))
		}
		w.Header().Set(HeaderLength, strconv.Itoa(len(hb)))
		s.ok(w, "v2", "application/octet-stream", buf, n, start)
		return
	}
	head.Outputs = []any{map[string]any{"name": OutputName, "datatype": "FP32", "shape": []int{n, classes}, "data": json.RawMessage("null")}}
	hb, _ := json.Marshal(head)
	// Splice the numbers in where "null" stands: no float goes through encoding/json.
	at := bytes.LastIndex(hb, []byte("null"))
	buf := make([]byte, 0, len(hb)+n*classes*12)
	buf = append(buf, hb[:at]...)
	buf = append(buf, '[')
	buf = appendFloats(buf, probs, classes, false)
	buf = append(buf, ']')
	buf = append(buf, hb[at+4:]...)
	buf = append(buf, '\n')
	s.ok(w, "v2", "application/json", buf, n, start)
}

// v2Decode reads an inference request, JSON or with binary tensors (a JSON header of
// hdrLen bytes, then each binary input's bytes in order), and returns the instances and
// whether the output is wanted as binary.
func (s *Server) v2Decode(l *loaded, hdrLen string, body []byte) ([]float32, int, *v2Request, bool, error) {
	header, bin := body, []byte(nil)
	if hdrLen != "" {
		n, err := strconv.Atoi(hdrLen)
		if err != nil || n < 0 || n > len(body) {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "%s %q: want the JSON header's length, at most the body's %d bytes", HeaderLength, hdrLen, len(body))
		}
		header, bin = body[:n], body[n:]
	}
	var req v2Request
	if err := json.Unmarshal(header, &req); err != nil {
		return nil, 0, nil, false, errorf(http.StatusBadRequest, "malformed JSON: %v", err)
	}
	if len(req.Inputs) != 1 {
		return nil, 0, nil, false, errorf(http.StatusBadRequest, "want exactly one input tensor (%q), got %d", InputName, len(req.Inputs))
	}
	in := req.Inputs[0]
	if in.Name != InputName {
		return nil, 0, nil, false, errorf(http.StatusBadRequest, "unexpected inference input %q (the model's input is %q)", in.Name, InputName)
	}
	width := 0
	switch in.Datatype {
	case "FP32":
		width = 4
	case "FP64":
		width = 8
	default:
		return nil, 0, nil, false, errorf(http.StatusBadRequest, "input datatype %q: want FP32 (or FP64)", in.Datatype)
	}
	total := 1
	for _, d := range in.Shape {
		if d <= 0 {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "shape %v has a non-positive dimension", in.Shape)
		}
		total *= d
		if total > s.maxBatch*l.m.Config.Inputs() {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "shape %v is over the limit of %d instances", in.Shape, s.maxBatch)
		}
	}
	var vals []float32
	if raw, ok := in.Parameters["binary_data_size"]; ok {
		var size int
		if err := json.Unmarshal(raw, &size); err != nil || size < 0 {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "binary_data_size must be a non-negative integer")
		}
		if hdrLen == "" {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "input %q is binary (binary_data_size) but the request has no %s header", in.Name, HeaderLength)
		}
		if len(in.Data) > 0 && string(in.Data) != "null" {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "input %q has both binary_data_size and data", in.Name)
		}
		if size != total*width {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "input %q: binary_data_size %d, but shape %v of %s needs %d bytes", in.Name, size, in.Shape, in.Datatype, total*width)
		}
		if size != len(bin) {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "the body holds %d bytes after the JSON header, binary_data_size says %d", len(bin), size)
		}
		vals = make([]float32, total)
		for i := range vals {
			var f float64
			if width == 4 {
				f = float64(math.Float32frombits(binary.LittleEndian.Uint32(bin[4*i:])))
			} else {
				f = math.Float64frombits(binary.LittleEndian.Uint64(bin[8*i:]))
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, 0, nil, false, fmt.Errorf("%w: value %d is not finite", ErrTensor, i)
			}
			vals[i] = float32(f)
		}
	} else {
		if len(bin) > 0 {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "%d bytes after the JSON header, but no input is binary", len(bin))
		}
		v, _, err := parseTensor(in.Data, s.maxBatch*l.m.Config.Inputs())
		if err != nil {
			return nil, 0, nil, false, err
		}
		if total != len(v) {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "shape %v needs %d values, data has %d", in.Shape, total, len(v))
		}
		vals = v
	}
	n, err := s.instances(l, vals, in.Shape)
	if err != nil {
		return nil, 0, nil, false, err
	}
	binaryOut, err := boolParam(req.Parameters, "binary_data_output")
	if err != nil {
		return nil, 0, nil, false, err
	}
	for _, o := range req.Outputs {
		if o.Name != OutputName {
			return nil, 0, nil, false, errorf(http.StatusBadRequest, "unexpected inference output %q (the model's output is %q)", o.Name, OutputName)
		}
		if _, ok := o.Parameters["binary_data"]; ok {
			if binaryOut, err = boolParam(o.Parameters, "binary_data"); err != nil {
				return nil, 0, nil, false, err
			}
		}
	}
	return vals, n, &req, binaryOut, nil
}
