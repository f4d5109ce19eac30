package api

import "github.com/danielgtaylor/huma/v2"

// registerEvents adds GET P/events (Server-Sent Events of history events) and returns its path.
func registerEvents(api huma.API, r *records) []string { return nil }
