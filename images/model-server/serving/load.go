package serving

import (
	"context"
	"fmt"

	"github.com/gantry-ml/gantry/images/mlp"
	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/manifest"
	"github.com/gantry-ml/gantry/internal/objstore"
)

// LoadVerified reads every file of the model under uri, computes the model
// digest, refuses a model whose digest differs from want (when given), and
// decodes it.
func LoadVerified(ctx context.Context, s objstore.Store, uri, want string) (*mlp.Model, string, error) {
	blobs := map[string][]byte{}
	files, err := manifest.Scan(ctx, s, uri, func(path string, b []byte) {
		if path == mlp.ConfigFile || path == mlp.WeightsFile {
			blobs[path] = b
		}
	})
	if err != nil {
		return nil, "", fmt.Errorf("reading model %s: %w", uri, err)
	}
	if len(files) == 0 {
		return nil, "", fmt.Errorf("no model files under %s", uri)
	}
	got := manifest.Digest(files)
	if want != "" && got != want {
		return nil, got, exitcode.Invalidf("model at %s has digest %s, but --model-digest is %s: refusing to serve it", uri, got, want)
	}
	m, err := mlp.Unmarshal(blobs[mlp.ConfigFile], blobs[mlp.WeightsFile])
	if err != nil {
		return nil, got, fmt.Errorf("decoding model %s: %w", uri, err)
	}
	return m, got, nil
}
