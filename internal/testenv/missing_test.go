package testenv

import (
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// recorder is a testing.TB whose Fatal and Skip only record (Missing returns after each).
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recorder) Skipf(format string, a ...any)  { r.skip = fmt.Sprintf(format, a...) }
func (r *recorder) Skip(a ...any)                  { r.skip = fmt.Sprint(a...) }

// A missing server fails the package's first integration test with how to run them, skips the
// others pointing at it, and only skips under -short.
func TestMissingFailsOnceUnlessShort(t *testing.T) {
	missingOnce = sync.Once{}
	t.Cleanup(func() { missingOnce = sync.Once{} })
	first, second := &recorder{TB: t}, &recorder{TB: t}
	Missing(first, "minio not found")
	Missing(second, "minio not found")
	if !strings.Contains(first.fatal, "minio not found") || !strings.Contains(first.fatal, "make test") || first.skip != "" {
		t.Errorf("first: fatal %q skip %q; want a failure saying how to run the integration tests", first.fatal, first.skip)
	}
	if second.fatal != "" || !strings.Contains(second.skip, "first such test failed") {
		t.Errorf("second: fatal %q skip %q; want a skip pointing at the failure", second.fatal, second.skip)
	}
	short := flag.Lookup("test.short")
	old := short.Value.String()
	if err := short.Value.Set("true"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = short.Value.Set(old) }()
	missingOnce = sync.Once{}
	r := &recorder{TB: t}
	Missing(r, "minio not found")
	if r.fatal != "" || !strings.Contains(r.skip, "-short") {
		t.Errorf("-short: fatal %q skip %q; want a skip", r.fatal, r.skip)
	}
}
