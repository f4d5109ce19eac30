// Command velocity is the Velocity CLI, API server and all-in-one dev server.
package main

import (
	"os"

	"github.com/velocitydev/velocity/internal/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:], os.Stdout, os.Stderr))
}
