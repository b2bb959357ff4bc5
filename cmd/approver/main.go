// Command approver is gantry's manual approval gate. See tasks/approve/README.md.
package main

import "github.com/gantry-ml/gantry/internal/taskcli"

func main() { taskcli.Main(newApp(nil)) }
