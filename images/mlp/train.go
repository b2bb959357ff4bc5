package mlp

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"
)

// TrainOptions are the hyperparameters.
type TrainOptions struct {
	Epochs       int
	BatchSize    int
	LearningRate float64
	Optimizer    string // "adam" or "sgd" (with momentum 0.9)
	// Schedule of the learning rate: "cosine" (default: decays to 0 over the
	// run) or "constant".
	Schedule string
	Seed     uint64
	// Workers computing gradients in parallel (default GOMAXPROCS). Results
	// do not depend on it: a batch is always split into the same shards.
	Workers int
}

// Validate checks the hyperparameters.
func (o TrainOptions) Validate() error {
	switch {
	case o.Epochs <= 0 || o.Epochs > 10000:
		return fmt.Errorf("epochs %d out of range", o.Epochs)
	case o.BatchSize <= 0 || o.BatchSize > 1<<16:
		return fmt.Errorf("batch size %d out of range", o.BatchSize)
	case !(o.LearningRate > 0 && o.LearningRate < 10):
		return fmt.Errorf("learning rate %g out of range", o.LearningRate)
	case o.Optimizer != "adam" && o.Optimizer != "sgd":
		return fmt.Errorf("optimizer %q: want adam or sgd", o.Optimizer)
	case o.Schedule != "" && o.Schedule != "cosine" && o.Schedule != "constant":
		return fmt.Errorf("schedule %q: want cosine or constant", o.Schedule)
	}
	return nil
}

// EpochStats report one finished epoch.
type EpochStats struct {
	Epoch         int     `json:"epoch"`
	Loss          float64 `json:"loss"`
	TrainAccuracy float64 `json:"train_accuracy"`
	Seconds       float64 `json:"seconds"`
}

const shards = 8 // fixed split of a batch: same sums whatever the worker count

type shard struct {
	acts   [][]float32
	deltas [][]float32
	gW, gB [][]float32
	loss   float64
	right  int
}

// Train fits m to x (n×Inputs, scaled inputs) and labels y, calling onEpoch after each epoch.
func Train(ctx context.Context, m *Model, x []float32, y []byte, o TrainOptions, onEpoch func(EpochStats) error) error {
	if err := o.Validate(); err != nil {
		return err
	}
	n := len(y)
	in := m.Config.Inputs()
	if len(x) != n*in || n == 0 {
		return fmt.Errorf("training data: %d values for %d labels of %d inputs", len(x), n, in)
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	maxRows := (o.BatchSize + shards - 1) / shards
	sh := make([]*shard, shards)
	for i := range sh {
		s := &shard{acts: m.newActs(maxRows), deltas: m.newActs(maxRows)}
		for l := range m.W {
			s.gW = append(s.gW, make([]float32, len(m.W[l])))
			s.gB = append(s.gB, make([]float32, len(m.B[l])))
		}
		sh[i] = s
	}
	opt := newOptimizer(m, o)
	opt.total = o.Epochs * ((n + o.BatchSize - 1) / o.BatchSize)
	r := rand.New(rand.NewPCG(o.Seed, 0xda3e39cb94b95bdb))
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	batchX := make([]float32, o.BatchSize*in)
	batchY := make([]byte, o.BatchSize)
	for epoch := 1; epoch <= o.Epochs; epoch++ {
		start := time.Now()
		r.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		var loss float64
		right := 0
		for bs := 0; bs < n; bs += o.BatchSize {
			if err := ctx.Err(); err != nil {
				return err
			}
			rows := min(o.BatchSize, n-bs)
			for i := 0; i < rows; i++ {
				p := perm[bs+i]
				copy(batchX[i*in:(i+1)*in], x[p*in:(p+1)*in])
				batchY[i] = y[p]
			}
			m.gradients(sh, batchX[:rows*in], batchY[:rows], workers)
			for _, s := range sh {
				loss += s.loss
				right += s.right
			}
			opt.step(m, sh, rows)
		}
		st := EpochStats{Epoch: epoch, Loss: loss / float64(n), TrainAccuracy: float64(right) / float64(n), Seconds: time.Since(start).Seconds()}
		if onEpoch != nil {
			if err := onEpoch(st); err != nil {
				return err
			}
		}
	}
	return nil
}

// gradients fills each shard's gradient sums for its slice of the batch.
func (m *Model) gradients(sh []*shard, x []float32, y []byte, workers int) {
	rows := len(y)
	per := (rows + shards - 1) / shards
	jobs := make(chan int, shards)
	for i := range sh {
		jobs <- i
	}
	close(jobs)
	var wg sync.WaitGroup
	for w := 0; w < min(workers, shards); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				s, e := min(rows, i*per), min(rows, (i+1)*per)
				m.shardGradients(sh[i], x, y, s, e)
			}
		}()
	}
	wg.Wait()
}

func (m *Model) shardGradients(s *shard, x []float32, y []byte, from, to int) {
	for l := range s.gW {
		clear(s.gW[l])
		clear(s.gB[l])
	}
	s.loss, s.right = 0, 0
	rows := to - from
	if rows == 0 {
		return
	}
	in := m.Config.Inputs()
	xs := x[from*in : to*in]
	m.forwardRows(xs, rows, s.acts)
	L := len(m.W)
	outW := m.Config.Outputs()
	// Output delta: p - onehot(y).
	probs, d := s.acts[L-1], s.deltas[L-1]
	for b := 0; b < rows; b++ {
		p := probs[b*outW : (b+1)*outW]
		label := int(y[from+b])
		s.loss -= math.Log(math.Max(float64(p[label]), 1e-12))
		best := 0
		for j, v := range p {
			if v > p[best] {
				best = j
			}
		}
		if best == label {
			s.right++
		}
		copy(d[b*outW:(b+1)*outW], p)
		d[b*outW+label]--
	}
	for l := L - 1; l >= 0; l-- {
		inW, oW := m.Config.Layers[l], m.Config.Layers[l+1]
		var a []float32
		if l == 0 {
			a = xs
		} else {
			a = s.acts[l-1]
		}
		delta := s.deltas[l]
		gw, gb := s.gW[l], s.gB[l]
		for b := 0; b < rows; b++ {
			db := delta[b*oW : (b+1)*oW]
			axpy(1, db, gb)
			ab := a[b*inW : (b+1)*inW]
			for k, v := range ab {
				if v != 0 {
					axpy(v, db, gw[k*oW:(k+1)*oW])
				}
			}
		}
		if l == 0 {
			break
		}
		prev := s.deltas[l-1]
		w := m.W[l]
		for b := 0; b < rows; b++ {
			db := delta[b*oW : (b+1)*oW]
			ab := a[b*inW : (b+1)*inW]
			pb := prev[b*inW : (b+1)*inW]
			for k, v := range ab {
				if v > 0 {
					pb[k] = dot(w[k*oW:(k+1)*oW], db)
				} else {
					pb[k] = 0
				}
			}
		}
	}
}

type optimizer struct {
	o      TrainOptions
	m1, m2 [][]float32 // per parameter tensor: W0, B0, W1, B1, ...
	t      int
	total  int // steps in the run, for the schedule
}

func newOptimizer(m *Model, o TrainOptions) *optimizer {
	opt := &optimizer{o: o}
	for l := range m.W {
		for _, n := range []int{len(m.W[l]), len(m.B[l])} {
			opt.m1 = append(opt.m1, make([]float32, n))
			opt.m2 = append(opt.m2, make([]float32, n))
		}
	}
	return opt
}

func (opt *optimizer) step(m *Model, sh []*shard, rows int) {
	opt.t++
	lr := opt.o.LearningRate
	if opt.o.Schedule != "constant" && opt.total > 0 {
		lr *= 0.5 * (1 + math.Cos(math.Pi*float64(opt.t-1)/float64(opt.total)))
	}
	const b1, b2, eps = 0.9, 0.999, 1e-8
	c1 := 1 - math.Pow(b1, float64(opt.t))
	c2 := 1 - math.Pow(b2, float64(opt.t))
	scale := float32(1 / float64(rows))
	var wg sync.WaitGroup
	for l := range m.W {
		for which, p := range [][]float32{m.W[l], m.B[l]} {
			idx := 2*l + which
			wg.Add(1)
			go func() {
				defer wg.Done()
				m1, m2 := opt.m1[idx], opt.m2[idx]
				for i := range p {
					var g float32
					for _, s := range sh {
						if which == 0 {
							g += s.gW[l][i]
						} else {
							g += s.gB[l][i]
						}
					}
					g *= scale
					if opt.o.Optimizer == "sgd" {
						m1[i] = 0.9*m1[i] + g
						p[i] -= float32(lr) * m1[i]
						continue
					}
					m1[i] = b1*m1[i] + (1-b1)*g
					m2[i] = b2*m2[i] + (1-b2)*g*g
					p[i] -= float32(lr * (float64(m1[i]) / c1) / (math.Sqrt(float64(m2[i])/c2) + eps))
				}
			}()
		}
	}
	wg.Wait()
}

// Accuracy is the share of rows whose argmax matches the label.
func (m *Model) Accuracy(x []float32, y []byte) float64 {
	pred := Argmax(m.Predict(x, len(y)), m.Config.Outputs())
	right := 0
	for i, p := range pred {
		if p == int(y[i]) {
			right++
		}
	}
	return float64(right) / float64(len(y))
}

// Scale turns raw pixels into model inputs (pixel/255).
func Scale(px []byte) []float32 {
	out := make([]float32, len(px))
	for i, p := range px {
		out[i] = float32(p) / 255
	}
	return out
}
