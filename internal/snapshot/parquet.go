package snapshot

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
)

// Row groups end at whichever limit comes first. 64k rows is a row group readers handle
// well; the byte limit bounds the memory of a group of wide records.
const (
	DefaultRowGroupRows  = 64 << 10
	DefaultRowGroupBytes = 16 << 20
)

// ParquetConfig tunes the Parquet encoder; zero values take the defaults.
type ParquetConfig struct {
	// RowGroupRows and RowGroupBytes (of value text) end a row group, which is then written
	// out: the encoder holds at most one row group in memory.
	RowGroupRows  int
	RowGroupBytes int
	// Metadata is written as key-value metadata of the file.
	Metadata map[string]string
	// Allocator holds the Arrow buffers; nil means Go's heap.
	Allocator memory.Allocator
}

type parquetEncoder struct {
	w     io.Writer
	sink  *sink
	err   error // the first failure; the encoder is done
	cfg   ParquetConfig
	cols  []Column
	rb    *array.RecordBuilder
	fw    *pqarrow.FileWriter
	rows  int
	bytes int
}

// NewParquet returns an encoder that writes a Parquet file of the given columns to w, with
// Arrow Go's pqarrow: values are gathered into an Arrow record per row group, and each row
// group is written to w (and w flushed, when it can be) as soon as it is full. The file is
// begun at once: create the encoder when the first record is at hand.
func NewParquet(w io.Writer, cols []Column, cfg ParquetConfig) (Encoder, error) {
	if cfg.RowGroupRows <= 0 {
		cfg.RowGroupRows = DefaultRowGroupRows
	}
	if cfg.RowGroupBytes <= 0 {
		cfg.RowGroupBytes = DefaultRowGroupBytes
	}
	if cfg.Allocator == nil {
		cfg.Allocator = memory.NewGoAllocator()
	}
	schema, err := ArrowSchema(cols, cfg.Metadata)
	if err != nil {
		return nil, err
	}
	props := parquet.NewWriterProperties(
		parquet.WithAllocator(cfg.Allocator),
		parquet.WithCompression(compress.Codecs.Snappy),
		parquet.WithMaxRowGroupLength(int64(cfg.RowGroupRows)),
		parquet.WithRootRepetition(parquet.Repetitions.Required),
		parquet.WithCreatedBy("velocity"),
	)
	sink := &sink{w: w}
	fw, err := startFile(schema, sink, props, cfg.Allocator)
	if err != nil {
		return nil, fmt.Errorf("parquet: start file: %w", err)
	}
	return &parquetEncoder{w: w, sink: sink, cfg: cfg, cols: cols, rb: array.NewRecordBuilder(cfg.Allocator, schema), fw: fw}, nil
}

// startFile begins the file: the magic number is written at once, and Arrow panics when that
// write fails.
func startFile(schema *arrow.Schema, w io.Writer, props *parquet.WriterProperties, mem memory.Allocator) (fw *pqarrow.FileWriter, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	// The stored Arrow schema gives Arrow readers the exact types back (the UTC zone of
	// timestamps); other readers use the Parquet logical types.
	return pqarrow.NewFileWriter(schema, w, props, pqarrow.NewArrowWriterProperties(
		pqarrow.WithAllocator(mem), pqarrow.WithStoreSchema()))
}

// sink passes writes on and keeps the first error: Arrow drops some (closing the last column
// of a row group when the next one starts), and a snapshot cut short must not go on as if whole.
type sink struct {
	w   io.Writer
	err error
}

func (s *sink) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

// ArrowSchema is the Arrow schema of a snapshot's columns.
func ArrowSchema(cols []Column, metadata map[string]string) (*arrow.Schema, error) {
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		t, err := arrowType(c.Kind)
		if err != nil {
			return nil, fmt.Errorf("parquet: column %s: %w", c.Name, err)
		}
		fields[i] = arrow.Field{Name: c.Name, Type: t, Nullable: c.Nullable}
	}
	var md *arrow.Metadata
	if len(metadata) > 0 {
		m := arrow.MetadataFrom(metadata)
		md = &m
	}
	return arrow.NewSchema(fields, md), nil
}

func arrowType(k Kind) (arrow.DataType, error) {
	switch k {
	case KindString:
		return arrow.BinaryTypes.String, nil
	case KindInt32:
		return arrow.PrimitiveTypes.Int32, nil
	case KindInt64:
		return arrow.PrimitiveTypes.Int64, nil
	case KindFloat64:
		return arrow.PrimitiveTypes.Float64, nil
	case KindBool:
		return arrow.FixedWidthTypes.Boolean, nil
	case KindTimestamp:
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, nil
	case KindDate:
		return arrow.FixedWidthTypes.Date32, nil
	}
	return nil, fmt.Errorf("unknown kind %d", k)
}

func (e *parquetEncoder) Write(values [][]byte) error {
	if e.err != nil {
		return e.err
	}
	if len(values) != len(e.cols) {
		return fmt.Errorf("parquet: a record has %d values, want %d", len(values), len(e.cols))
	}
	for i, v := range values {
		if err := e.appendValue(i, v); err != nil {
			// The columns before i hold a value of this record already: the encoder is done.
			e.err = fmt.Errorf("parquet: column %s: %w", e.cols[i].Name, err)
			return e.err
		}
		e.bytes += len(v) + 8
	}
	e.rows++
	if e.rows >= e.cfg.RowGroupRows || e.bytes >= e.cfg.RowGroupBytes {
		return e.writeRowGroup()
	}
	return nil
}

// writeRowGroup writes the gathered records as one row group and starts the next.
func (e *parquetEncoder) writeRowGroup() error {
	rec := e.rb.NewRecord()
	defer rec.Release()
	e.rows, e.bytes = 0, 0
	if err := e.guard("write row group", func() error { return e.fw.Write(rec) }); err != nil {
		return err
	}
	return flush(e.w)
}

func (e *parquetEncoder) Close() error {
	defer e.rb.Release()
	if e.err != nil {
		return e.err
	}
	if e.rows > 0 {
		if err := e.writeRowGroup(); err != nil {
			return err
		}
	}
	if err := e.guard("finish file", e.fw.Close); err != nil {
		return err
	}
	return flush(e.w)
}

// guard runs a step of Arrow's writer and keeps its first failure, which ends the encoder:
// the error it returns, one the sink saw (Arrow drops some), or a panic (Arrow panics on some
// of its own error paths, such as closing a file after a failed write).
func (e *parquetEncoder) guard(what string, step func() error) (err error) {
	if e.err != nil {
		return e.err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
		if err == nil {
			err = e.sink.err
		}
		if err != nil {
			e.err = fmt.Errorf("parquet: %s: %w", what, err)
			err = e.err
		}
	}()
	return step()
}

// appendValue appends the text of one value to column i. A value that does not read as the
// column's kind is null in a nullable column: an image written before a field's type changed
// may hold a value of the old type, and HistoryImage shows a field it cannot give as null too.
func (e *parquetEncoder) appendValue(i int, v []byte) error {
	b := e.rb.Field(i)
	ok := v != nil
	if ok {
		switch b := b.(type) {
		case *array.StringBuilder:
			// Append copies v, which the caller may reuse for the next record.
			b.BinaryBuilder.Append(v)
		case *array.Int32Builder:
			n, err := strconv.ParseInt(string(v), 10, 32)
			if ok = err == nil; ok {
				b.Append(int32(n))
			}
		case *array.Int64Builder:
			var n int64
			if n, ok = parseInt64(v); ok {
				b.Append(n)
			}
		case *array.Float64Builder:
			f, err := strconv.ParseFloat(string(v), 64)
			if ok = err == nil; ok {
				b.Append(f)
			}
		case *array.BooleanBuilder:
			s := string(v)
			if ok = s == "true" || s == "false"; ok {
				b.Append(s == "true")
			}
		case *array.TimestampBuilder:
			var t time.Time
			if t, ok = parseTimestamp(v); ok {
				b.Append(arrow.Timestamp(t.UnixMicro()))
			}
		case *array.Date32Builder:
			t, err := time.Parse(time.DateOnly, string(v))
			if ok = err == nil; ok {
				b.Append(arrow.Date32FromTime(t))
			}
		default:
			return fmt.Errorf("no builder for %T", b)
		}
	}
	switch {
	case ok:
		return nil
	case !e.cols[i].Nullable && v == nil:
		return errors.New("null in a column without nulls")
	case !e.cols[i].Nullable:
		return fmt.Errorf("%q does not fit the column type", v)
	}
	b.AppendNull()
	return nil
}

// parseInt64 reads an integer, also one written as a whole number with a fraction or an
// exponent (3.0, 1e3), as a number field's image may hold after a change to integer.
func parseInt64(v []byte) (int64, bool) {
	if v == nil {
		return 0, false
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// timestampLayouts are the forms of a timestamptz in to_jsonb: RFC 3339, or, for zones of
// the past, an offset with seconds. Infinity and years BC do not parse.
var timestampLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999-07:00:00"}

func parseTimestamp(v []byte) (time.Time, bool) {
	if v == nil {
		return time.Time{}, false
	}
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, string(v)); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
