package publish

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

func TestRecordRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := objstore.New(nil)
	failures := `[{"displayName":"canary-gate","message":"canary failed: accuracy 0.41 vs min 0.85","phase":"Failed"}]`
	p := NewPublisher(s, WithClock(func() time.Time { return time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC) }))
	reg := "file://" + dir
	uri, err := p.Record(context.Background(), RecordOptions{RegistryURI: reg, ModelName: "fashion-mnist", Run: "ml-pipeline-x", Status: "Failed", Failures: failures})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "fashion-mnist", "runs", "ml-pipeline-x.json"))
	if err != nil || uri != "file://"+dir+"/fashion-mnist/runs/ml-pipeline-x.json" {
		t.Fatalf("%s: %v", uri, err)
	}
	var got RunRecord
	json.Unmarshal(b, &got)
	if got.Promoted || got.Status != "Failed" || string(got.Failures) == "" || !got.Finished.Equal(time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)) {
		t.Errorf("record %s", b)
	}
	if _, err := p.Record(context.Background(), RecordOptions{RegistryURI: reg, ModelName: "fashion-mnist", Run: "r", Status: "Succeeded", Failures: "not json"}); err != nil {
		t.Errorf("non-JSON failures must be kept as a string: %v", err)
	}
	if _, err := p.Record(context.Background(), RecordOptions{RegistryURI: reg, ModelName: "fashion-mnist", Run: "r"}); exitcode.Of(err) != exitcode.BadInput {
		t.Errorf("missing status: %v", err)
	}
}
