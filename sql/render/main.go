// Command render prints the platform migrations with their templates expanded: sqlc's schema
// input, gen/schema.sql (make generate).
package main

import (
	"fmt"
	"os"

	velocitysql "github.com/velocitydev/velocity/sql"
)

func main() {
	s, err := velocitysql.Render()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Print(s)
}
