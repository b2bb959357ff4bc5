package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// RunRecord is <registry>/<model>/runs/<run>.json: how a pipeline run ended.
type RunRecord struct {
	Run          string          `json:"run"`
	Status       string          `json:"status"` // Argo {{workflow.status}}: Succeeded, Failed, Error
	Promoted     bool            `json:"promoted"`
	ModelVersion string          `json:"modelVersion,omitempty"`
	Failures     json.RawMessage `json:"failures,omitempty"` // Argo {{workflow.failures}}: which step failed and why
	Finished     time.Time       `json:"finished"`
}

// RunRecordURI is where RecordRun writes a run's record: <registry>/<model>/runs/<run>.json.
func RunRecordURI(registry, model, run string) string {
	return modelDir(registry, model).Join("runs", run+".json").String()
}

// RecordRun writes the run's outcome next to the model's versions.
func RecordRun(ctx context.Context, s objstore.Store, registry, model string, r RunRecord) (string, error) {
	if r.Run == "" || r.Status == "" {
		return "", exitcode.Invalidf("--run-name and --status are required")
	}
	if !nameRE.MatchString(model) {
		return "", exitcode.Invalidf("--model-name %q: want a DNS label", model)
	}
	if _, err := objstore.Parse(registry); err != nil {
		return "", fmt.Errorf("--registry-uri: %w", err)
	}
	if len(r.Failures) > 0 && !json.Valid(r.Failures) {
		// Argo renders an empty list as "" or "null"; anything else must be JSON.
		r.Failures, _ = json.Marshal(string(r.Failures))
	}
	r.Promoted = r.Status == "Succeeded"
	uri := RunRecordURI(registry, model, r.Run)
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := objstore.PutBytes(ctx, s, uri, b); err != nil {
		return "", fmt.Errorf("recording run: %w", err)
	}
	return uri, nil
}
