package train

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkReaction measures Job marked complete → launcher returns, for the
// watch-based launcher and, side by side, a launcher that polls the Job
// (the reference system polled every 10 s; here 1 s to keep the run short).
func BenchmarkReaction(b *testing.B) {
	run := func(b *testing.B, wait func(f *fixture, ch <-chan runOut)) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			t := &testing.T{}
			f := newFixture(t)
			f.t = t
			os.WriteFile(filepath.Join(f.out, "model.safetensors"), []byte("w"), 0o644)
			os.WriteFile(filepath.Join(f.out, "metrics.json"), []byte(`{"a":1}`), 0o644)
			ch := f.start(context.Background(), f.opts())
			f.watching()
			time.Sleep(300 * time.Millisecond) // past the informer's cache-sync poll: measure the steady state
			b.StartTimer()
			f.setJobCondition(batchv1.JobComplete, "", "")
			wait(f, ch)
		}
	}
	b.Run("watch", func(b *testing.B) {
		run(b, func(f *fixture, ch <-chan runOut) {
			if r := <-ch; r.err != nil {
				b.Fatal(r.err)
			}
		})
	})
	b.Run("poll-1s", func(b *testing.B) {
		// The alternative: Get the Job every second until it is complete.
		run(b, func(f *fixture, ch <-chan runOut) {
			phase := time.Duration(time.Now().UnixNano() % int64(time.Second)) // polls are not aligned with completion
			time.Sleep(time.Second - phase)
			for {
				j, err := f.client.BatchV1().Jobs(ns).Get(context.Background(), "run-1-train", metav1.GetOptions{})
				if err == nil && len(j.Status.Conditions) > 0 && j.Status.Conditions[0].Status == corev1.ConditionTrue {
					break
				}
				time.Sleep(time.Second)
			}
			<-ch
		})
	})
}
