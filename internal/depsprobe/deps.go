// Package depsprobe pins modules that the time-machine work is adding; removed once they are used.
package depsprobe

import (
	_ "github.com/apache/arrow/go/v17/parquet/pqarrow"
	_ "github.com/parquet-go/parquet-go"
	_ "github.com/riverqueue/river"
	_ "github.com/riverqueue/river/riverdriver/riverpgxv5"
	_ "github.com/riverqueue/river/rivermigrate"
)
