package mlp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// blobs makes a separable toy problem: class c lights up inputs [c*8, c*8+8).
func blobs(n int, seed uint64) ([]float32, []byte) {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n*784)
	y := make([]byte, n)
	for i := range y {
		c := r.IntN(10)
		y[i] = byte(c)
		for k := 0; k < 8; k++ {
			x[i*784+c*8+k] = 0.5 + 0.5*r.Float32()
		}
		for k := 0; k < 20; k++ {
			x[i*784+r.IntN(784)] = r.Float32() * 0.3
		}
	}
	return x, y
}

func trainToy(t *testing.T, workers int) *Model {
	t.Helper()
	x, y := blobs(600, 7)
	m := New(NewConfig(32), 3)
	var losses []float64
	err := Train(context.Background(), m, x, y, TrainOptions{Epochs: 3, BatchSize: 32, LearningRate: 0.01, Optimizer: "adam", Seed: 5, Workers: workers},
		func(s EpochStats) error { losses = append(losses, s.Loss); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(losses) != 3 || losses[2] >= losses[0] {
		t.Errorf("loss did not fall: %v", losses)
	}
	return m
}

func TestTrainLearnsAndIsDeterministicAcrossWorkerCounts(t *testing.T) {
	t.Parallel()
	a, b := trainToy(t, 1), trainToy(t, 4)
	if !bytes.Equal(a.MarshalSafetensors(), b.MarshalSafetensors()) {
		t.Error("same seed with 1 and 4 workers gave different weights")
	}
	xt, yt := blobs(300, 99)
	if acc := a.Accuracy(xt, yt); acc < 0.95 {
		t.Errorf("toy accuracy %.3f, want ≥ 0.95", acc)
	}
}

func TestSGDTrains(t *testing.T) {
	t.Parallel()
	x, y := blobs(400, 1)
	m := New(NewConfig(16), 1)
	if err := Train(context.Background(), m, x, y, TrainOptions{Epochs: 4, BatchSize: 16, LearningRate: 0.05, Optimizer: "sgd", Seed: 1}, nil); err != nil {
		t.Fatal(err)
	}
	if acc := m.Accuracy(x, y); acc < 0.9 {
		t.Errorf("sgd accuracy %.3f", acc)
	}
}

func TestTrainHonoursCancellation(t *testing.T) {
	t.Parallel()
	x, y := blobs(100, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Train(ctx, New(NewConfig(8), 1), x, y, TrainOptions{Epochs: 1, BatchSize: 10, LearningRate: 0.1, Optimizer: "adam"}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	t.Parallel()
	m := New(NewConfig(64, 32), 42)
	cfg, _ := json.Marshal(m.Config)
	got, err := Unmarshal(cfg, m.MarshalSafetensors())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	st := m.MarshalSafetensors()
	hlen := int(st[0]) | int(st[1])<<8
	if (8+hlen)%8 != 0 {
		t.Errorf("header not 8-byte aligned: %d", hlen)
	}
	x, _ := blobs(5, 1)
	if diff := cmp.Diff(m.Predict(x, 5), got.Predict(x, 5)); diff != "" {
		t.Error("predictions differ after round trip")
	}
}

func TestUnmarshalRejectsCorruptModels(t *testing.T) {
	t.Parallel()
	m := New(NewConfig(8), 1)
	cfg, _ := json.Marshal(m.Config)
	st := m.MarshalSafetensors()
	other, _ := json.Marshal(NewConfig(16))
	badFormat := bytes.Replace(cfg, []byte(FormatV1), []byte("keras"), 1)
	for name, tc := range map[string][2][]byte{
		"truncated weights":  {cfg, st[:len(st)-4]},
		"short file":         {cfg, st[:5]},
		"header too long":    {cfg, append([]byte{0xff, 0xff, 0xff, 0, 0, 0, 0, 0}, st[8:]...)},
		"config mismatch":    {other, st},
		"config format":      {badFormat, st},
		"config not json":    {[]byte("{"), st},
		"weights not header": {cfg, append([]byte{4, 0, 0, 0, 0, 0, 0, 0}, []byte("nope")...)},
	} {
		if _, err := Unmarshal(tc[0], tc[1]); !errors.Is(err, ErrModel) {
			t.Errorf("%s: err = %v, want ErrModel", name, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	m := New(NewConfig(4), 1)
	cfg, _ := json.Marshal(m.Config)
	f.Add(cfg, m.MarshalSafetensors())
	f.Add([]byte(`{"format":"gantry-mlp/v1","layers":[784,10],"activation":"relu","output":"softmax","weight_layout":"in_out"}`), []byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '})
	f.Fuzz(func(t *testing.T, cfg, st []byte) {
		m, err := Unmarshal(cfg, st)
		if err != nil {
			return
		}
		x := make([]float32, m.Config.Inputs())
		if p := m.Predict(x, 1); len(p) != m.Config.Outputs() {
			t.Fatalf("prediction width %d", len(p))
		}
	})
}
