package canary

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gantry-ml/gantry/internal/exitcode"
)

// servedDigest asks the endpoint which model it serves: the KServe Open Inference Protocol's
// model metadata (GET /v2/models/<name>), whose parameters carry the digest (gantry's model
// server; "" when the server does not say).
func servedDigest(ctx context.Context, c *http.Client, endpoint, model string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(endpoint, "/")+"/v2/models/"+model, nil)
	if err != nil {
		return "", exitcode.Invalidf("--endpoint %q: %v", endpoint, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", exitcode.Retryable(fmt.Errorf("asking %s which model it serves: %w", endpoint, err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", nil
	}
	var md struct {
		Parameters struct {
			Digest string `json:"digest"`
		} `json:"parameters"`
	}
	if json.Unmarshal(b, &md) != nil {
		return "", nil
	}
	return md.Parameters.Digest, nil
}
