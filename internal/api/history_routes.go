package api

import "github.com/danielgtaylor/huma/v2"

// registerHistory adds the time-machine routes of one object (history, diff, restore) and
// returns their paths.
func registerHistory(api huma.API, r *records, refs recordSchemas) []string { return nil }
