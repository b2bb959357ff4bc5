package command

import (
	"context"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/gantry-ml/gantry/internal/taskcli"
)

func taskcliRun(app *cli.App, args []string, stdout, stderr io.Writer) int {
	return taskcli.Run(context.Background(), app, append([]string{app.Name}, args...), stdout, stderr)
}
