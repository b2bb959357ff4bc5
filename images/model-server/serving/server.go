// Package serving is the example model server: TF Serving REST (v1) and the
// KServe Open Inference Protocol (v2) over an MLP, with Prometheus metrics and
// readiness that turns true only once the model is loaded and verified.
package serving

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// New returns a server for model name; it is not ready until SetModel.
func New(name string, opts ...Option) *Server {
	s := &Server{name: name, maxBatch: DefaultMaxBatch, maxBody: DefaultMaxBody, log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry()}
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

// Handler routes both protocols, health and metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models/{name}", s.v1Status)
	mux.HandleFunc("POST /v1/models/{nameverb}", s.v1Predict)
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"live": true})
	})
	mux.HandleFunc("GET /v2/health/ready", s.v2Ready)
	mux.HandleFunc("GET /v2/models/{name}/ready", s.v2Ready)
	mux.HandleFunc("GET /v2/models/{name}", s.v2Metadata)
	mux.HandleFunc("GET /v2", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"name": "gantry-model-server", "version": "1", "extensions": []string{}})
	})
	mux.HandleFunc("POST /v2/models/{name}/infer", s.v2Infer)
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

func (s *Server) current(name string) (*loaded, error) {
	if name != s.name {
		return nil, errorf(http.StatusNotFound, "model %q not found (this server serves %q)", name, s.name)
	}
	l := s.model.Load()
	if l == nil {
		return nil, errorf(http.StatusServiceUnavailable, "model %q is loading", name)
	}
	return l, nil
}

func (s *Server) v1Status(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != s.name {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("model %q not found", r.PathValue("name"))})
		return
	}
	state, code := "AVAILABLE", http.StatusOK
	version := "0"
	if l := s.model.Load(); l == nil {
		state, code = "LOADING", http.StatusServiceUnavailable
	} else {
		version = l.version
	}
	writeJSON(w, code, map[string]any{"model_version_status": []map[string]any{{
		"version": version, "state": state, "status": map[string]string{"error_code": "OK", "error_message": ""}}}})
}

func (s *Server) v2Ready(w http.ResponseWriter, r *http.Request) {
	if n := r.PathValue("name"); n != "" && n != s.name {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("model %q not found", n)})
		return
	}
	if !s.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]bool{"ready": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
}

func (s *Server) v2Metadata(w http.ResponseWriter, r *http.Request) {
	l, err := s.current(r.PathValue("name"))
	if err != nil {
		s.fail(w, "v2", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name": s.name, "versions": []string{l.version}, "platform": "gantry-mlp",
		"inputs":     []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{-1, l.m.Config.Inputs()}}},
		"outputs":    []map[string]any{{"name": "probabilities", "datatype": "FP32", "shape": []int{-1, l.m.Config.Outputs()}}},
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

func (s *Server) v1Predict(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name, verb, _ := strings.Cut(r.PathValue("nameverb"), ":")
	if verb != "predict" {
		s.fail(w, "v1", errorf(http.StatusNotFound, "unsupported method %q (only :predict)", verb))
		return
	}
	l, err := s.current(name)
	if err != nil {
		s.fail(w, "v1", err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, "v1", err)
		return
	}
	raw, _, err := topLevelField(body, "instances", "inputs")
	if err != nil {
		s.fail(w, "v1", errorf(http.StatusBadRequest, "%v", err))
		return
	}
	if raw == nil {
		s.fail(w, "v1", errorf(http.StatusBadRequest, `request needs "instances" (row format) or "inputs"`))
		return
	}
	vals, shape, err := parseTensor(raw, s.maxBatch*l.m.Config.Inputs())
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
	buf = append(buf, `{"predictions":`...)
	buf = appendFloats(buf, probs, l.m.Config.Outputs(), true)
	buf = append(buf, "}\n"...)
	s.ok(w, "v1", buf, n, start)
}

func (s *Server) ok(w http.ResponseWriter, protocol string, body []byte, n int, start time.Time) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
	s.requests.WithLabelValues(protocol, "200").Inc()
	s.latency.WithLabelValues(protocol).Observe(time.Since(start).Seconds())
	s.batch.Observe(float64(n))
}

func (s *Server) v2Infer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	l, err := s.current(r.PathValue("name"))
	if err != nil {
		s.fail(w, "v2", err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, "v2", err)
		return
	}
	var req struct {
		ID     string `json:"id"`
		Inputs []struct {
			Name     string          `json:"name"`
			Shape    []int           `json:"shape"`
			Datatype string          `json:"datatype"`
			Data     json.RawMessage `json:"data"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, "v2", errorf(http.StatusBadRequest, "malformed JSON: %v", err))
		return
	}
	if len(req.Inputs) != 1 {
		s.fail(w, "v2", errorf(http.StatusBadRequest, "want exactly one input tensor, got %d", len(req.Inputs)))
		return
	}
	in := req.Inputs[0]
	if in.Datatype != "FP32" && in.Datatype != "FP64" {
		s.fail(w, "v2", errorf(http.StatusBadRequest, "input datatype %q: want FP32", in.Datatype))
		return
	}
	vals, _, err := parseTensor(in.Data, s.maxBatch*l.m.Config.Inputs())
	if err != nil {
		s.fail(w, "v2", err)
		return
	}
	total := 1
	for _, d := range in.Shape {
		if d <= 0 {
			s.fail(w, "v2", errorf(http.StatusBadRequest, "shape %v has a non-positive dimension", in.Shape))
			return
		}
		total *= d
	}
	if total != len(vals) {
		s.fail(w, "v2", errorf(http.StatusBadRequest, "shape %v needs %d values, data has %d", in.Shape, total, len(vals)))
		return
	}
	n, err := s.instances(l, vals, in.Shape)
	if err != nil {
		s.fail(w, "v2", err)
		return
	}
	probs := l.m.Predict(vals, n)
	var buf bytes.Buffer
	buf.Grow(128 + n*l.m.Config.Outputs()*12)
	head, _ := json.Marshal(map[string]any{"model_name": s.name, "model_version": l.version, "id": req.ID})
	buf.Write(head[:len(head)-1])
	fmt.Fprintf(&buf, `,"outputs":[{"name":"probabilities","datatype":"FP32","shape":[%d,%d],"data":`, n, l.m.Config.Outputs())
	buf.WriteByte('[')
	buf.Write(appendFloats(nil, probs, l.m.Config.Outputs(), false))
	buf.WriteString("]}]}\n")
	s.ok(w, "v2", buf.Bytes(), n, start)
}
