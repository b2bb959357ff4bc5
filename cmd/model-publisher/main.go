// Command model-publisher publishes model versions and serves them. See tasks/publish/README.md.
package main

import "github.com/gantry-ml/gantry/internal/taskcli"

func main() { taskcli.Main(newApp(nil)) }
