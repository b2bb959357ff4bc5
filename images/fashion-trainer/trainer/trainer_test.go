package trainer

import (
	"context"
	"log/slog"
	"testing"

	"github.com/gantry-ml/gantry/internal/objstore"
)

// The attempt that goes on keeps the markers until its model is written: a pod of that attempt
// that is evicted and replaced finds them and goes on too, instead of failing "on purpose" again.
func TestFailOnPurposeSurvivesAReplacedPod(t *testing.T) {
	s, _ := objstore.New(nil)
	o := Options{OutputURI: "file://" + t.TempDir() + "/", FailAttempts: 1}
	ctx, log := context.Background(), slog.New(slog.DiscardHandler)
	if _, err := failOnPurpose(ctx, s, o, log); err == nil {
		t.Fatal("the first attempt went on")
	}
	for pod := 1; pod <= 2; pod++ { // the second attempt's pod, evicted before its end; its replacement
		cleanup, err := failOnPurpose(ctx, s, o, log)
		if err != nil {
			t.Fatalf("pod %d of the second attempt: %v", pod, err)
		}
		if pod == 2 {
			if err := cleanup(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if l, _ := s.List(ctx, o.OutputURI); len(l) != 0 {
		t.Errorf("markers left in the output: %v", l)
	}
}
