package mlp

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gantry-ml/gantry/internal/objstore"
)

// File names of a saved model.
const (
	WeightsFile = "model.safetensors"
	ConfigFile  = "config.json"
	MetricsFile = "metrics.json"
)

// Save writes the weights then config.json under dir.
func (m *Model) Save(ctx context.Context, s objstore.Store, dir string) error {
	u, err := objstore.Parse(dir)
	if err != nil {
		return err
	}
	if err := objstore.PutBytes(ctx, s, u.Join(WeightsFile).String(), m.MarshalSafetensors()); err != nil {
		return err
	}
	cfg, _ := json.MarshalIndent(m.Config, "", "  ")
	return objstore.PutBytes(ctx, s, u.Join(ConfigFile).String(), cfg)
}

// Load reads a model saved by Save.
func Load(ctx context.Context, s objstore.Store, dir string) (*Model, error) {
	u, err := objstore.Parse(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := objstore.ReadAll(ctx, s, u.Join(ConfigFile).String(), 1<<20)
	if err != nil {
		return nil, fmt.Errorf("loading model config: %w", err)
	}
	st, err := objstore.ReadAll(ctx, s, u.Join(WeightsFile).String(), MaxModelBytes)
	if err != nil {
		return nil, fmt.Errorf("loading model weights: %w", err)
	}
	return Unmarshal(cfg, st)
}
