// Command train-launcher runs one training Job to completion. See tasks/train/README.md.
package main

import "github.com/gantry-ml/gantry/internal/taskcli"

func main() { taskcli.Main(newApp(nil)) }
