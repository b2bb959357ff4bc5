package publish

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// History is <registry>/<model>/environments/<namespace>/<env>.json: every model that was live
// in the environment, oldest first. The namespace is part of it: two namespaces (or clusters)
// serving the same model from one registry each have their own production to roll back.
type History struct {
	Model       string         `json:"model"`
	Namespace   string         `json:"namespace"`
	Environment string         `json:"environment"`
	Entries     []HistoryEntry `json:"entries"`
}

// HistoryEntry is one promotion (or rollback).
//
// A promotion is written twice: as an intent (Pending) before production changes, and made live
// (Pending cleared, LiveFrom set) once the rollout is done. A release that was interrupted in
// between — its process killed, its run terminated — leaves the intent behind: the next release
// step (any run's, holding the release lock, so the interrupted one is no longer running) marks
// it Aborted and returns production to the model live before it. Pending and aborted entries are
// kept (what was attempted, by which run) but never count as live.
type HistoryEntry struct {
	Version  string    `json:"version"`
	ModelURI string    `json:"modelURI"`
	Digest   string    `json:"digest"`
	LiveFrom time.Time `json:"liveFrom"`
	Run      string    `json:"run,omitempty"`
	Rollback bool      `json:"rollback,omitempty"`
	Pending  bool      `json:"pending,omitempty"`
	Aborted  bool      `json:"aborted,omitempty"`
	// AbortedBy is the run whose release step found the intent interrupted.
	AbortedBy string `json:"abortedBy,omitempty"`
	// ServerImage is the model server image it was (or is to be) served with.
	ServerImage string `json:"serverImage,omitempty"`
}

// counts: the entry took effect (not an intent, not an aborted one).
func (e HistoryEntry) counts() bool { return !e.Pending && !e.Aborted }

// effective is the entries that took effect, oldest first.
func (h *History) effective() []HistoryEntry {
	var out []HistoryEntry
	for _, e := range h.Entries {
		if e.counts() {
			out = append(out, e)
		}
	}
	return out
}

// pending is the last entry when it is an intent not yet made live.
func (h *History) pending() (HistoryEntry, bool) {
	if n := len(h.Entries); n > 0 && h.Entries[n-1].Pending {
		return h.Entries[n-1], true
	}
	return HistoryEntry{}, false
}

func historyURI(registry, model, ns, env string) string {
	return modelDir(registry, model).Join("environments", ns, env+".json").String()
}

func readHistory(ctx context.Context, s objstore.Store, registry, model, ns, env string) (*History, error) {
	h, _, err := readHistoryVersion(ctx, s, registry, model, ns, env)
	return h, err
}

// readHistoryVersion reads the history and its version ("" when there is none yet).
func readHistoryVersion(ctx context.Context, s objstore.Store, registry, model, ns, env string) (*History, string, error) {
	c, ok := s.(objstore.Conditional)
	if !ok {
		return nil, "", fmt.Errorf("reading %s history: the store has no conditional writes", env)
	}
	b, version, err := c.ReadVersion(ctx, historyURI(registry, model, ns, env), 16<<20)
	if objstore.IsNotExist(err) {
		return &History{Model: model, Namespace: ns, Environment: env}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading %s history: %w", env, err)
	}
	var h History
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, "", fmt.Errorf("%s history is corrupt: %w", env, err)
	}
	return &h, version, nil
}

// live is the stack of models the environment can return to, the current one on top: a
// promotion pushes; a rollback entry pops the model rolled back from, leaving its own model on
// top (or, for an entry without a model, nothing live). A model once rolled back from is never
// returned to by a later rollback.
func (h *History) live() []HistoryEntry {
	var st []HistoryEntry
	for _, e := range h.effective() {
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

// appendHistory records the model as live unless it already is (idempotent re-deploy). It is a
// compare-and-swap on the history object (S3 If-Match / If-None-Match), retried on conflict, so
// concurrent deploys never lose an entry.
func appendHistory(ctx context.Context, s objstore.Store, o DeployOptions, now time.Time, rollback bool) (bool, error) {
	return appendHistoryIf(ctx, s, o, now, rollback, nil)
}

// appendHistoryIf is appendHistory whose write holds only while guard accepts the history it
// would append to (checked on every read, so a write that conflicted and re-read decides again).
func appendHistoryIf(ctx context.Context, s objstore.Store, o DeployOptions, now time.Time, rollback bool, guard func(*History) error) (bool, error) {
	return editHistory(ctx, s, o, func(h *History) (bool, error) {
		// Already recorded: a deploy of the model live now, or a retried rollback to it. A
		// rollback to the model the history says is live (undoing a deploy that failed before
		// it was recorded) is still recorded, so that a second rollback knows it is one.
		if eff := h.effective(); len(eff) > 0 && eff[len(eff)-1].ModelURI == o.ModelURI && (!rollback || eff[len(eff)-1].Rollback) {
			return false, nil
		}
		if guard != nil {
			if err := guard(h); err != nil {
				return false, err
			}
		}
		h.Entries = append(h.Entries, HistoryEntry{Version: o.ModelVersion, ModelURI: o.ModelURI, Digest: o.ModelDigest, LiveFrom: now, Run: o.Run, Rollback: rollback, ServerImage: o.ServerImage})
		return true, nil
	})
}

// intend records, before production changes, that o.Run is about to make o's model live
// (intent first). Nothing is written when it is recorded already (a retry of the same step) or
// when the model is live already (a re-deploy: nothing will change). The caller holds the
// release lock and has settled any interrupted intent (settleInterrupted).
func intend(ctx context.Context, s objstore.Store, o DeployOptions, now time.Time) (bool, error) {
	return editHistory(ctx, s, o, func(h *History) (bool, error) {
		if p, ok := h.pending(); ok {
			if p.Run == o.Run && p.ModelURI == o.ModelURI {
				return false, nil
			}
			return false, exitcode.Retryable(fmt.Errorf("%s: the release of %s by %s is in progress (its intent is recorded)", o.Environment, p.Version, orNone(p.Run)))
		}
		if cur, ok := h.current(); ok && live(cur, o) {
			return false, nil
		}
		h.Entries = append(h.Entries, HistoryEntry{Version: o.ModelVersion, ModelURI: o.ModelURI, Digest: o.ModelDigest, LiveFrom: now, Run: o.Run, Pending: true, ServerImage: o.ServerImage})
		return true, nil
	})
}

// live: e is what o deploys (the model, on the same server image; entries from before the image
// was recorded match any).
func live(e HistoryEntry, o DeployOptions) bool {
	return e.ModelURI == o.ModelURI && (e.ServerImage == "" || e.ServerImage == o.ServerImage)
}

// commitIntent makes o.Run's intent live once its rollout is done. Without an intent (the model
// was live already) nothing changes. An intent found aborted means another release step decided
// this one was interrupted while it rolled out (it lost the release lock): retryable, the retry
// decides again.
func commitIntent(ctx context.Context, s objstore.Store, o DeployOptions, now time.Time) (bool, error) {
	return editHistory(ctx, s, o, func(h *History) (bool, error) {
		p, ok := h.pending()
		if ok && p.Run == o.Run && p.ModelURI == o.ModelURI {
			e := &h.Entries[len(h.Entries)-1]
			e.Pending, e.LiveFrom = false, now
			return true, nil
		}
		if cur, ok := h.current(); ok && live(cur, o) {
			return false, nil
		}
		return false, exitcode.Retryable(fmt.Errorf("%s: the release of %s by %s is no longer recorded as in progress (another release step found it interrupted); the retry decides again",
			o.Environment, o.ModelVersion, orNone(o.Run)))
	})
}

// abortIntent marks the pending intent p aborted by run (the interrupted release), if it is
// still the history's pending one.
func abortIntent(ctx context.Context, s objstore.Store, o DeployOptions, p HistoryEntry, run string) (bool, error) {
	return editHistory(ctx, s, o, func(h *History) (bool, error) {
		cur, ok := h.pending()
		if !ok || !sameIntent(cur, p) {
			return false, nil
		}
		e := &h.Entries[len(h.Entries)-1]
		e.Pending, e.Aborted, e.AbortedBy = false, true, orNone(run)
		return true, nil
	})
}

func sameIntent(a, b HistoryEntry) bool {
	return a.Run == b.Run && a.ModelURI == b.ModelURI && a.LiveFrom.Equal(b.LiveFrom)
}

// editHistory applies edit to the environment's history as a compare-and-swap on the history
// object (S3 If-Match / If-None-Match), re-reading and editing again on conflict, so concurrent
// writers never lose an entry. edit says whether it changed anything (nothing written if not).
func editHistory(ctx context.Context, s objstore.Store, o DeployOptions, edit func(*History) (bool, error)) (bool, error) {
	uri := historyURI(o.RegistryURI, o.ModelName, o.Namespace, o.Environment)
	c, ok := s.(objstore.Conditional)
	if !ok {
		return false, fmt.Errorf("writing %s history: the store has no conditional writes", o.Environment)
	}
	if err := checkConditional(ctx, s, o.RegistryURI, o.ModelName); err != nil {
		return false, err
	}
	backoff := wait.Backoff{Duration: 20 * time.Millisecond, Factor: 2, Jitter: 1, Steps: 12, Cap: 2 * time.Second}
	var changed bool
	err := retry.OnError(backoff, func(err error) bool { return errors.Is(err, objstore.ErrConflict) }, func() error {
		h, version, err := readHistoryVersion(ctx, s, o.RegistryURI, o.ModelName, o.Namespace, o.Environment)
		if err != nil {
			return err
		}
		if changed, err = edit(h); err != nil || !changed {
			return err
		}
		b, _ := json.MarshalIndent(h, "", "  ")
		return c.PutIf(ctx, uri, b, version)
	})
	if errors.Is(err, objstore.ErrConflict) {
		return false, exitcode.Retryable(fmt.Errorf("writing %s history: still changing under us after %d attempts: %w", o.Environment, backoff.Steps, err))
	}
	if err != nil {
		return false, fmt.Errorf("writing %s history: %w", o.Environment, err)
	}
	return changed, nil
}

// conditionalOK remembers the stores (and registries in them) seen to honour conditional writes.
var conditionalOK sync.Map

type probed struct {
	store    any
	registry string
}

// checkConditional refuses a store that ignores conditional writes (objstore.ProbeConditional),
// once per registry and process: the history and the version claims rely on them, and without
// them concurrent writers would lose entries silently.
func checkConditional(ctx context.Context, s objstore.Store, registry, model string) error {
	key, cacheable := probed{s, registry}, reflect.TypeOf(s).Comparable()
	if _, ok := conditionalOK.Load(key); cacheable && ok {
		return nil
	}
	var r [8]byte
	_, _ = rand.Read(r[:])
	probe := modelDir(registry, model).Join(claimsDir, ".probe-"+hex.EncodeToString(r[:])).String()
	err := objstore.ProbeConditional(ctx, s, probe)
	switch {
	case errors.Is(err, objstore.ErrNoConditionalWrites):
		return exitcode.Invalidf("the model registry %s cannot be used: %v; gantry needs S3 conditional writes (If-Match/If-None-Match: MinIO, AWS S3 since 2024) to keep histories and versions without lost updates", registry, err)
	case err != nil:
		return exitcode.Retryable(err)
	}
	if cacheable {
		conditionalOK.Store(key, true)
	}
	return nil
}
