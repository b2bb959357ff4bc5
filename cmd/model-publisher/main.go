// Command model-publisher publishes, serves and rolls back model versions. See tasks/publish/README.md.
package main

import (
	"github.com/gantry-ml/gantry/internal/kube"
	"github.com/gantry-ml/gantry/internal/taskcli"
	"github.com/gantry-ml/gantry/tasks/publish/command"
)

func main() { taskcli.Main(command.New(kube.Real())) }
