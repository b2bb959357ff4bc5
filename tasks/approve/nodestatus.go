package approve

import (
	"encoding/json"
	"fmt"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/util/file"
	"github.com/argoproj/argo-workflows/v3/workflow/packer"

	"github.com/gantry-ml/gantry/internal/exitcode"
)

// Argo keeps a Workflow's node status in one of three places: status.nodes; past its
// MAX_WORKFLOW_SIZE (1 MiB by default) gzipped and base64-encoded in status.compressedNodes; or,
// with persistence.nodeStatusOffLoad, in its database (status.offloadNodeStatusVersion names the
// row). The approver reads and resumes the approval node, so it reads the first two and refuses
// the third clearly: the database is the controller's and the Argo Server's, not a step's.

// hydrate puts the run's nodes into status.nodes and reports whether they came compressed, so that
// an update writes them back the way the controller keeps them (dehydrate).
func hydrate(wf *wfv1.Workflow) (compressed bool, err error) {
	if wf.Status.IsOffloadNodeStatus() {
		return false, exitcode.Invalidf("run %s keeps its node status in Argo's database (persistence.nodeStatusOffLoad, version %s): "+
			"the approver reads node status only from the Workflow — decide through the Argo Server, or run gantry without node-status offloading",
			wf.Name, wf.Status.OffloadNodeStatusVersion)
	}
	compressed = len(wf.Status.Nodes) == 0 && wf.Status.CompressedNodes != ""
	if err := packer.DecompressWorkflow(wf); err != nil {
		return false, exitcode.Invalidf("run %s: its compressed node status (status.compressedNodes) cannot be read: %v", wf.Name, err)
	}
	return compressed, nil
}

// dehydrate compresses the nodes again when they came compressed: the run is past the
// controller's size limit, and writing them out in full could push it past etcd's.
func dehydrate(wf *wfv1.Workflow, compressed bool) error {
	if !compressed {
		return nil
	}
	b, err := json.Marshal(wf.Status.Nodes)
	if err != nil {
		return fmt.Errorf("compressing the node status of %s: %w", wf.Name, err)
	}
	wf.Status.CompressedNodes = file.CompressEncodeString(string(b))
	wf.Status.Nodes = nil
	return nil
}
