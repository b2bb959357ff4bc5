package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gantry-ml/gantry/internal/objstore"
)

// History is <registry>/<model>/environments/<env>.json: every model that
// was live in the environment, oldest first.
type History struct {
	Model       string         `json:"model"`
	Environment string         `json:"environment"`
	Entries     []HistoryEntry `json:"entries"`
}

// HistoryEntry is one promotion (or rollback).
type HistoryEntry struct {
	Version  string    `json:"version"`
	ModelURI string    `json:"modelURI"`
	Digest   string    `json:"digest"`
	LiveFrom time.Time `json:"liveFrom"`
	Run      string    `json:"run,omitempty"`
	Rollback bool      `json:"rollback,omitempty"`
}

func historyURI(registry, model, env string) string {
	return modelDir(registry, model).Join("environments", env+".json").String()
}

func readHistory(ctx context.Context, s objstore.Store, registry, model, env string) (*History, error) {
	b, err := objstore.ReadAll(ctx, s, historyURI(registry, model, env), 16<<20)
	if objstore.IsNotExist(err) {
		return &History{Model: model, Environment: env}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s history: %w", env, err)
	}
	var h History
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%s history is corrupt: %w", env, err)
	}
	return &h, nil
}

// live is the stack of models the environment can return to, the current one on top: a
// promotion pushes; a rollback entry pops the model rolled back from, leaving its own model on
// top (or, for an entry without a model, nothing live). A model once rolled back from is never
// returned to by a later rollback.
func (h *History) live() []HistoryEntry {
	var st []HistoryEntry
	for _, e := range h.Entries {
		if !e.Rollback {
			st = append(st, e)
			continue
		}
		if len(st) > 0 {
			st = st[:len(st)-1]
		}
		if e.ModelURI != "" && (len(st) == 0 || st[len(st)-1].ModelURI != e.ModelURI) {
			st = append(st, e)
		}
	}
	return st
}

// current is the model live now, if any.
func (h *History) current() (HistoryEntry, bool) {
	st := h.live()
	if len(st) == 0 {
		return HistoryEntry{}, false
	}
	return st[len(st)-1], true
}

// previous is the model to roll back to: the one live before the current one.
func (h *History) previous() (HistoryEntry, bool) {
	st := h.live()
	if len(st) < 2 {
		return HistoryEntry{}, false
	}
	return st[len(st)-2], true
}

// appendHistory records the model as live unless it already is (idempotent re-deploy).
func appendHistory(ctx context.Context, s objstore.Store, o DeployOptions, now time.Time, rollback bool) (bool, error) {
	h, err := readHistory(ctx, s, o.RegistryURI, o.ModelName, o.Environment)
	if err != nil {
		return false, err
	}
	if n := len(h.Entries); n > 0 && h.Entries[n-1].ModelURI == o.ModelURI {
		return false, nil
	}
	h.Entries = append(h.Entries, HistoryEntry{Version: o.ModelVersion, ModelURI: o.ModelURI, Digest: o.ModelDigest, LiveFrom: now, Run: o.Run, Rollback: rollback})
	b, _ := json.MarshalIndent(h, "", "  ")
	if err := objstore.PutBytes(ctx, s, historyURI(o.RegistryURI, o.ModelName, o.Environment), b); err != nil {
		return false, fmt.Errorf("writing %s history: %w", o.Environment, err)
	}
	return true, nil
}
