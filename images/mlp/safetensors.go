package mlp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
)

// MaxModelBytes bounds a safetensors file this package will parse.
const MaxModelBytes = 1 << 30

// ErrModel is wrapped by every error about model bytes.
var ErrModel = errors.New("invalid model")

type tensorInfo struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

func tensorName(l int, kind string) string { return fmt.Sprintf("layers.%d.%s", l, kind) }

// MarshalSafetensors encodes the weights in the safetensors format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header, then the raw little-endian float32 data.
func (m *Model) MarshalSafetensors() []byte {
	header := map[string]any{"__metadata__": map[string]string{"format": "pt", "producer": FormatV1}}
	var data bytes.Buffer
	add := func(name string, shape []int, v []float32) {
		start := int64(data.Len())
		for _, f := range v {
			binary.Write(&data, binary.LittleEndian, math.Float32bits(f))
		}
		header[name] = tensorInfo{DType: "F32", Shape: shape, Offsets: [2]int64{start, int64(data.Len())}}
	}
	for l := range m.W {
		in, out := m.Config.Layers[l], m.Config.Layers[l+1]
		add(tensorName(l, "weight"), []int{in, out}, m.W[l])
		add(tensorName(l, "bias"), []int{out}, m.B[l])
	}
	h, _ := json.Marshal(header)
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+len(h)+data.Len())
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	return append(out, data.Bytes()...)
}

// Unmarshal decodes a model from its config.json and safetensors bytes,
// checking every tensor's dtype, shape and bounds against the config.
func Unmarshal(configJSON, st []byte) (*Model, error) {
	var cfg Config
	if err := json.Unmarshal(configJSON, &cfg); err != nil {
		return nil, fmt.Errorf("%w: config.json: %v", ErrModel, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: config.json: %v", ErrModel, err)
	}
	if len(st) < 8 || len(st) > MaxModelBytes {
		return nil, fmt.Errorf("%w: safetensors of %d bytes", ErrModel, len(st))
	}
	hlen := binary.LittleEndian.Uint64(st[:8])
	if hlen > uint64(len(st)-8) || hlen > 100<<20 {
		return nil, fmt.Errorf("%w: header length %d beyond the file", ErrModel, hlen)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(st[8:8+hlen], &raw); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrModel, err)
	}
	data := st[8+hlen:]
	m := &Model{Config: cfg}
	type span struct{ s, e int64 }
	var spans []span
	read := func(name string, shape []int) ([]float32, error) {
		r, ok := raw[name]
		if !ok {
			return nil, fmt.Errorf("%w: tensor %s missing", ErrModel, name)
		}
		var ti tensorInfo
		if err := json.Unmarshal(r, &ti); err != nil {
			return nil, fmt.Errorf("%w: tensor %s: %v", ErrModel, name, err)
		}
		if ti.DType != "F32" {
			return nil, fmt.Errorf("%w: tensor %s dtype %s, want F32", ErrModel, name, ti.DType)
		}
		if fmt.Sprint(ti.Shape) != fmt.Sprint(shape) {
			return nil, fmt.Errorf("%w: tensor %s shape %v, config says %v", ErrModel, name, ti.Shape, shape)
		}
		n := int64(1)
		for _, d := range shape {
			n *= int64(d)
		}
		s, e := ti.Offsets[0], ti.Offsets[1]
		if s < 0 || e < s || e > int64(len(data)) || e-s != 4*n {
			return nil, fmt.Errorf("%w: tensor %s offsets %v out of bounds or size", ErrModel, name, ti.Offsets)
		}
		spans = append(spans, span{s, e})
		v := make([]float32, n)
		for i := range v {
			f := math.Float32frombits(binary.LittleEndian.Uint32(data[s+4*int64(i):]))
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return nil, fmt.Errorf("%w: tensor %s holds NaN or Inf", ErrModel, name)
			}
			v[i] = f
		}
		return v, nil
	}
	for l := 0; l+1 < len(cfg.Layers); l++ {
		in, out := cfg.Layers[l], cfg.Layers[l+1]
		w, err := read(tensorName(l, "weight"), []int{in, out})
		if err != nil {
			return nil, err
		}
		b, err := read(tensorName(l, "bias"), []int{out})
		if err != nil {
			return nil, err
		}
		m.W, m.B = append(m.W, w), append(m.B, b)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].s < spans[j].s })
	for i := 1; i < len(spans); i++ {
		if spans[i].s < spans[i-1].e {
			return nil, fmt.Errorf("%w: tensors overlap", ErrModel)
		}
	}
	return m, nil
}
