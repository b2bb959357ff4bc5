// Command model-server serves a gantry MLP over TF Serving REST (v1) and KServe v2. See README.md.
package main

import "github.com/gantry-ml/gantry/internal/taskcli"

func main() { taskcli.Main(newApp()) }
