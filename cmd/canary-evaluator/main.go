// Command canary-evaluator scores a served model on real predictions. See tasks/canary/README.md.
package main

import (
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/canary/command"
)

func main() { taskcli.Main(command.New()) }
