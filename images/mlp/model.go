// Package mlp is a small multi-layer perceptron (ReLU hidden layers, softmax
// output) with mini-batch training on all cores, stored as safetensors plus a
// config.json. It is the example workload's model: the trainer trains it and
// the model server serves it.
package mlp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// FashionClasses are the Fashion-MNIST class names in label order.
var FashionClasses = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// Config describes the network; it is saved as config.json next to the weights.
type Config struct {
	Format     string `json:"format"`     // "gantry-mlp/v1"
	Layers     []int  `json:"layers"`     // sizes, input first: [784, 256, 128, 10]
	Activation string `json:"activation"` // "relu" (hidden layers)
	Output     string `json:"output"`     // "softmax"
	InputShape []int  `json:"input_shape"`
	// Normalization says how raw inputs become model inputs: "pixel/255" means
	// instances are pixel values scaled to [0,1] by the client.
	Normalization string   `json:"normalization"`
	ClassNames    []string `json:"class_names"`
	// WeightLayout "in_out": layers.N.weight has shape [in, out].
	WeightLayout string `json:"weight_layout"`
}

// FormatV1 is the only config format this package reads.
const FormatV1 = "gantry-mlp/v1"

// NewConfig returns the config of an MLP with the given hidden sizes for 28×28 inputs and the Fashion classes.
func NewConfig(hidden ...int) Config {
	layers := append([]int{784}, hidden...)
	layers = append(layers, len(FashionClasses))
	return Config{Format: FormatV1, Layers: layers, Activation: "relu", Output: "softmax", InputShape: []int{28, 28},
		Normalization: "pixel/255", ClassNames: append([]string(nil), FashionClasses...), WeightLayout: "in_out"}
}

// Validate checks a config read from untrusted bytes.
func (c Config) Validate() error {
	if c.Format != FormatV1 {
		return fmt.Errorf("config format %q, want %q", c.Format, FormatV1)
	}
	if len(c.Layers) < 2 || len(c.Layers) > 16 {
		return fmt.Errorf("config has %d layers, want 2 to 16", len(c.Layers))
	}
	params := 0
	for i, n := range c.Layers {
		if n <= 0 || n > 1<<16 {
			return fmt.Errorf("layer %d size %d out of range", i, n)
		}
		if i > 0 {
			params += c.Layers[i-1]*n + n
		}
	}
	if params > 1<<28 {
		return fmt.Errorf("config asks for %d parameters, over the limit", params)
	}
	if c.Activation != "relu" || c.Output != "softmax" || c.WeightLayout != "in_out" {
		return fmt.Errorf("unsupported activation/output/layout %q/%q/%q", c.Activation, c.Output, c.WeightLayout)
	}
	if len(c.ClassNames) != 0 && len(c.ClassNames) != c.Outputs() {
		return fmt.Errorf("%d class names for %d outputs", len(c.ClassNames), c.Outputs())
	}
	return nil
}

// Inputs is the input width; Outputs the number of classes.
func (c Config) Inputs() int  { return c.Layers[0] }
func (c Config) Outputs() int { return c.Layers[len(c.Layers)-1] }

// Model holds the weights: W[l] is Layers[l]×Layers[l+1] row-major (in, out).
type Model struct {
	Config Config
	W, B   [][]float32
}

// New initialises a model with He-normal weights from seed.
func New(cfg Config, seed uint64) *Model {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	m := &Model{Config: cfg}
	for l := 0; l+1 < len(cfg.Layers); l++ {
		in, out := cfg.Layers[l], cfg.Layers[l+1]
		w := make([]float32, in*out)
		std := math.Sqrt(2 / float64(in))
		for i := range w {
			w[i] = float32(r.NormFloat64() * std)
		}
		m.W = append(m.W, w)
		m.B = append(m.B, make([]float32, out))
	}
	return m
}

// axpy: y += a*x.
func axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	i := 0
	for ; i+8 <= len(x); i += 8 {
		xs, ys := x[i:i+8:i+8], y[i:i+8:i+8]
		ys[0] += a * xs[0]
		ys[1] += a * xs[1]
		ys[2] += a * xs[2]
		ys[3] += a * xs[3]
		ys[4] += a * xs[4]
		ys[5] += a * xs[5]
		ys[6] += a * xs[6]
		ys[7] += a * xs[7]
	}
	for ; i < len(x); i++ {
		y[i] += a * x[i]
	}
}

func dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return s0 + s1 + s2 + s3
}

// layerForward computes out[b,:] = bias + Σ_k in[b,k]·W[k,:] for rows b, with
// ReLU unless last. Zero inputs (blank pixels, dead ReLUs) are skipped.
func layerForward(in []float32, inW int, w, bias []float32, out []float32, outW, rows int, relu bool) {
	for b := 0; b < rows; b++ {
		o := out[b*outW : (b+1)*outW]
		copy(o, bias)
		x := in[b*inW : (b+1)*inW]
		for k, v := range x {
			if v != 0 {
				axpy(v, w[k*outW:(k+1)*outW], o)
			}
		}
		if relu {
			for j, v := range o {
				if v < 0 {
					o[j] = 0
				}
			}
		}
	}
}

func softmaxRows(z []float32, width, rows int) {
	for b := 0; b < rows; b++ {
		r := z[b*width : (b+1)*width]
		mx := r[0]
		for _, v := range r[1:] {
			mx = max(mx, v)
		}
		var sum float64
		for j, v := range r {
			e := math.Exp(float64(v - mx))
			r[j] = float32(e)
			sum += e
		}
		for j := range r {
			r[j] = float32(float64(r[j]) / sum)
		}
	}
}

// forwardRows runs rows samples through the net, keeping every activation in acts.
func (m *Model) forwardRows(x []float32, rows int, acts [][]float32) {
	L := len(m.W)
	in := x
	for l := 0; l < L; l++ {
		inW, outW := m.Config.Layers[l], m.Config.Layers[l+1]
		layerForward(in, inW, m.W[l], m.B[l], acts[l], outW, rows, l < L-1)
		in = acts[l]
	}
	softmaxRows(acts[L-1], m.Config.Outputs(), rows)
}

func (m *Model) newActs(rows int) [][]float32 {
	acts := make([][]float32, len(m.W))
	for l := range m.W {
		acts[l] = make([]float32, rows*m.Config.Layers[l+1])
	}
	return acts
}

// Predict returns n×Outputs class probabilities for n×Inputs inputs, using
// all cores for large batches.
func (m *Model) Predict(x []float32, n int) []float32 {
	if len(x) != n*m.Config.Inputs() {
		panic(fmt.Sprintf("mlp: Predict got %d values for %d×%d inputs", len(x), n, m.Config.Inputs()))
	}
	out := make([]float32, n*m.Config.Outputs())
	workers := min(runtime.GOMAXPROCS(0), max(1, n/16))
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for s := 0; s < n; s += chunk {
		e := min(n, s+chunk)
		wg.Add(1)
		go func(s, e int) {
			defer wg.Done()
			acts := m.newActs(e - s)
			m.forwardRows(x[s*m.Config.Inputs():e*m.Config.Inputs()], e-s, acts)
			copy(out[s*m.Config.Outputs():e*m.Config.Outputs()], acts[len(acts)-1])
		}(s, e)
	}
	wg.Wait()
	return out
}

// Argmax returns the index of the largest value in each row of width w.
func Argmax(p []float32, w int) []int {
	out := make([]int, len(p)/w)
	for i := range out {
		r := p[i*w : (i+1)*w]
		best := 0
		for j, v := range r {
			if v > r[best] {
				best = j
			}
		}
		out[i] = best
	}
	return out
}
