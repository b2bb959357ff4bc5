// Command fashion-trainer trains the Fashion-MNIST example MLP. See README.md.
package main

import "github.com/gantry-ml/gantry/internal/taskcli"

func main() { taskcli.Main(newApp()) }
