// Command approver requests, records and verifies manual approvals. See tasks/approve/README.md.
package main

import (
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/approve/command"
)

func main() { taskcli.Main(command.New(kube.Real())) }
