// Command train-launcher runs one training Job to completion. See tasks/train/README.md.
package main

import (
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/train/command"
)

func main() { taskcli.Main(command.New(kube.Real())) }
