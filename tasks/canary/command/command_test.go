package command

import (
	"bytes"
	"context"
	"testing"

	"github.com/gantry-ml/gantry/internal/exitcode"
	"github.com/gantry-ml/gantry/internal/taskcli"
)

func TestBadFlagsExit2(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"no endpoint":  {"--dataset-uri=file:///d/"},
		"bad protocol": {"--endpoint=http://x:1", "--dataset-uri=file:///d/", "--protocol=v3"},
		"bad float":    {"--endpoint=http://x:1", "--dataset-uri=file:///d/", "--min-accuracy=high"},
		"unknown flag": {"--endpoint=http://x:1", "--dataset-uri=file:///d/", "--min-acc=0.8"},
		"bad report":   {"--endpoint=http://x:1", "--dataset-uri=file:///d/", "--report-uri=reports/"},
		"bad max drop": {"--endpoint=http://x:1", "--dataset-uri=file:///d/", "--max-accuracy-drop=-1"},
	} {
		var out, errb bytes.Buffer
		code := taskcli.Run(context.Background(), New(), append([]string{"canary-evaluator"}, args...), &out, &errb)
		if code != exitcode.BadInput {
			t.Errorf("%s: exit %d (%s), want 2", name, code, errb.String())
		}
	}
}
