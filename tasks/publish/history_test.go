package publish

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gantry-ml/gantry/internal/objstore"
)

// Concurrent deploys of one model append to one history object: with compare-and-swap writes
// against the real MinIO (and on the file system) none of them loses its entry.
func TestConcurrentHistoryAppendsLoseNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fileStore, _ := objstore.New(nil)
	for name, c := range map[string]struct {
		store    objstore.Store
		registry string
	}{"minio": {e.store, "s3://models/registry"}, "file": {fileStore, "file://" + t.TempDir() + "/registry"}} {
		const n = 12
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := DeployOptions{RegistryURI: c.registry, ModelName: "fashion-mnist", Namespace: "ml", Environment: "production",
					ModelVersion: fmt.Sprintf("v%02d", i), ModelURI: fmt.Sprintf("%s/fashion-mnist/versions/v%02d/", c.registry, i), Run: fmt.Sprintf("run-%d", i)}
				if _, err := appendHistory(e.ctx, c.store, o, time.Now(), false); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("%s: append: %v", name, err)
		}
		h, err := readHistory(e.ctx, c.store, c.registry, "fashion-mnist", "ml", "production")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, en := range h.Entries {
			got = append(got, en.Version)
		}
		sort.Strings(got)
		if len(got) != n {
			t.Errorf("%s: %d of %d concurrent appends survived: %v", name, len(got), n, got)
		}
	}
}

// The conditional write itself: a stale version, or "must not exist" over an existing object,
// is a conflict; the current version writes.
func TestPutIfRefusesAStaleVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fileStore, _ := objstore.New(nil)
	for name, uri := range map[string]string{"minio": "s3://models/cas.json", "file": "file://" + t.TempDir() + "/cas.json"} {
		s := e.store
		if name == "file" {
			s = fileStore
		}
		if err := s.PutIf(e.ctx, uri, []byte("one"), ""); err != nil {
			t.Fatalf("%s: create: %v", name, err)
		}
		if err := s.PutIf(e.ctx, uri, []byte("again"), ""); !objstore.IsConflict(err) {
			t.Errorf("%s: create over an existing object: %v, want a conflict", name, err)
		}
		_, v1, err := s.ReadVersion(e.ctx, uri, 1<<10)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PutIf(e.ctx, uri, []byte("two"), v1); err != nil {
			t.Errorf("%s: write at the current version: %v", name, err)
		}
		if err := s.PutIf(e.ctx, uri, []byte("three"), v1); !objstore.IsConflict(err) {
			t.Errorf("%s: write at a stale version: %v, want a conflict", name, err)
		}
		if b, _, _ := s.ReadVersion(e.ctx, uri, 1<<10); string(b) != "two" {
			t.Errorf("%s: content %q, want two", name, b)
		}
	}
}
