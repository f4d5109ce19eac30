package snapshot_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/snapshot"
)

func TestColumns(t *testing.T) {
	t.Parallel()
	spec := schemadef.Spec{Fields: []schemadef.Field{
		{Name: "s", Type: schemadef.TypeString}, {Name: "t", Type: schemadef.TypeText}, {Name: "e", Type: schemadef.TypeEnum},
		{Name: "i", Type: schemadef.TypeInteger}, {Name: "n", Type: schemadef.TypeNumber}, {Name: "d", Type: schemadef.TypeDecimal},
		{Name: "b", Type: schemadef.TypeBoolean}, {Name: "ts", Type: schemadef.TypeTimestamp}, {Name: "day", Type: schemadef.TypeDate},
		{Name: "u", Type: schemadef.TypeUUID}, {Name: "j", Type: schemadef.TypeJSON},
	}}
	want := []snapshot.Column{
		{Name: "id", Kind: snapshot.KindString}, {Name: "version", Kind: snapshot.KindInt32},
		{Name: "created_at", Kind: snapshot.KindTimestamp}, {Name: "updated_at", Kind: snapshot.KindTimestamp},
		{Name: "created_by", Kind: snapshot.KindString}, {Name: "updated_by", Kind: snapshot.KindString},
		{Name: "s", Kind: snapshot.KindString, Nullable: true}, {Name: "t", Kind: snapshot.KindString, Nullable: true},
		{Name: "e", Kind: snapshot.KindString, Nullable: true}, {Name: "i", Kind: snapshot.KindInt64, Nullable: true},
		{Name: "n", Kind: snapshot.KindFloat64, Nullable: true}, {Name: "d", Kind: snapshot.KindString, Nullable: true},
		{Name: "b", Kind: snapshot.KindBool, Nullable: true}, {Name: "ts", Kind: snapshot.KindTimestamp, Nullable: true},
		{Name: "day", Kind: snapshot.KindDate, Nullable: true}, {Name: "u", Kind: snapshot.KindString, Nullable: true},
		{Name: "j", Kind: snapshot.KindString, Nullable: true},
	}
	require.Equal(t, want, snapshot.Columns(spec))
	require.Len(t, schemadef.FieldTypes, 11, "a new field type needs a kind here")
}

func TestNDJSON(t *testing.T) {
	t.Parallel()
	var out flushCounter
	e := snapshot.NewNDJSON(&out)
	line := []byte(`{"id": "a", "note": "two\nlines"}`)
	require.NoError(t, e.Write([][]byte{line}))
	line[8] = 'b' // the caller reuses its buffer
	require.NoError(t, e.Write([][]byte{line}))
	require.Error(t, e.Write([][]byte{line, line}))
	require.Error(t, e.Write([][]byte{nil}))
	require.NoError(t, e.Close())
	require.Equal(t, "{\"id\": \"a\", \"note\": \"two\\nlines\"}\n{\"id\": \"b\", \"note\": \"two\\nlines\"}\n", out.String())
	require.Equal(t, 1, out.flushes)
}

// flushCounter is a response stand-in: a buffer that counts flushes.
type flushCounter struct {
	bytes.Buffer
	flushes int
}

func (f *flushCounter) Flush() error { f.flushes++; return nil }

var testColumns = []snapshot.Column{
	{Name: "id", Kind: snapshot.KindString}, {Name: "version", Kind: snapshot.KindInt32},
	{Name: "updated_at", Kind: snapshot.KindTimestamp},
	{Name: "name", Kind: snapshot.KindString, Nullable: true}, {Name: "qty", Kind: snapshot.KindInt64, Nullable: true},
	{Name: "score", Kind: snapshot.KindFloat64, Nullable: true}, {Name: "ok", Kind: snapshot.KindBool, Nullable: true},
	{Name: "at", Kind: snapshot.KindTimestamp, Nullable: true}, {Name: "day", Kind: snapshot.KindDate, Nullable: true},
}

func values(vs ...string) [][]byte {
	out := make([][]byte, len(vs))
	for i, v := range vs {
		if v != "<null>" {
			out[i] = []byte(v)
		}
	}
	return out
}

func TestParquet(t *testing.T) {
	t.Parallel()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var out flushCounter
	e, err := snapshot.NewParquet(&out, testColumns, snapshot.ParquetConfig{
		RowGroupRows: 2, Allocator: mem, Metadata: map[string]string{"velocity.object": "acme.lab.test.things"},
	})
	require.NoError(t, err)
	records := [][][]byte{
		values("a", "1", "2024-01-31T12:00:00+00:00", "Ann", "3", "1.5", "true", "2024-02-01T09:30:00.123456+02:00", "2024-02-29"),
		values("b", "2", "2024-01-31T12:00:00.5+00:00", "<null>", "<null>", "<null>", "<null>", "<null>", "<null>"),
		// Values from before a type change, or Postgres's special values, are null.
		values("c", "3", "2024-01-31T12:00:00+00:00", "", "1e3", "Infinity", "yes", "infinity", "1969-12-31"),
		values("d", "4", "2024-01-31T12:00:00+00:00", "é", "x", "NaN", "false", "1900-01-01T00:00:00+00:09:21", "0044-03-15"),
		values("e", "5", "2024-01-31T12:00:00+00:00", "x", "9223372036854775807", "1,5", "false", "2024-01-01T00:00:00+00:00 BC", "2024-13-01"),
	}
	for _, r := range records {
		// The caller reuses its buffers for the next record.
		in := make([][]byte, len(r))
		for i, v := range r {
			if v != nil {
				in[i] = append([]byte{}, v...)
			}
		}
		require.NoError(t, e.Write(in))
		for _, v := range in {
			for i := range v {
				v[i] = '#'
			}
		}
	}
	require.Equal(t, 2, out.flushes, "each full row group is flushed")
	require.NoError(t, e.Close())
	require.Equal(t, 4, out.flushes)

	f := openParquet(t, out.Bytes())
	require.EqualValues(t, 5, f.NumRows())
	require.Len(t, f.RowGroups(), 3)
	v, ok := f.Lookup("velocity.object")
	require.True(t, ok)
	require.Equal(t, "acme.lab.test.things", v)
	require.Equal(t, []string{
		"id STRING required", "version INT(32,true) required",
		"updated_at TIMESTAMP(isAdjustedToUTC=true,unit=MICROS) required",
		"name STRING optional", "qty INT(64,true) optional", "score DOUBLE optional", "ok BOOLEAN optional",
		"at TIMESTAMP(isAdjustedToUTC=true,unit=MICROS) optional", "day DATE optional",
	}, parquetColumns(f))

	ts := func(s string) any {
		tm, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		return tm.UnixMicro()
	}
	day := func(s string) any {
		tm, err := time.Parse(time.DateOnly, s)
		require.NoError(t, err)
		return int32(tm.Unix() / 86400)
	}
	want := [][]any{
		{"a", int32(1), ts("2024-01-31T12:00:00Z"), "Ann", int64(3), 1.5, true, ts("2024-02-01T07:30:00.123456Z"), day("2024-02-29")},
		{"b", int32(2), ts("2024-01-31T12:00:00.5Z"), nil, nil, nil, nil, nil, nil},
		{"c", int32(3), ts("2024-01-31T12:00:00Z"), "", int64(1000), math.Inf(1), nil, nil, int32(-1)},
		{"d", int32(4), ts("2024-01-31T12:00:00Z"), "é", nil, "NaN", false, ts("1899-12-31T23:50:39Z"), day("0044-03-15")},
		{"e", int32(5), ts("2024-01-31T12:00:00Z"), "x", int64(9223372036854775807), nil, false, nil, nil},
	}
	got := parquetRows(t, f)
	require.Len(t, got, len(want))
	require.True(t, math.IsNaN(got[3][5].(float64)))
	got[3][5] = "NaN"
	require.Equal(t, want, got)
}

func TestParquetRefusesNullSystemField(t *testing.T) {
	t.Parallel()
	for _, rec := range [][][]byte{
		values("a", "<null>", "2024-01-31T12:00:00+00:00", "x", "1", "1", "true", "<null>", "<null>"),
		values("a", "1", "yesterday", "x", "1", "1", "true", "<null>", "<null>"),
		values("a", "1"),
	} {
		var out bytes.Buffer
		e, err := snapshot.NewParquet(&out, testColumns, snapshot.ParquetConfig{})
		require.NoError(t, err)
		require.Error(t, e.Write(rec))
	}
}

func TestParquetEmpty(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	e, err := snapshot.NewParquet(&out, testColumns, snapshot.ParquetConfig{})
	require.NoError(t, err)
	require.NoError(t, e.Close())
	f := openParquet(t, out.Bytes())
	require.EqualValues(t, 0, f.NumRows())
	require.Len(t, parquetColumns(f), len(testColumns))
}

// TestParquetRowGroupBytes: wide records end a row group before the row limit.
func TestParquetRowGroupBytes(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	e, err := snapshot.NewParquet(&out, testColumns, snapshot.ParquetConfig{RowGroupBytes: 10 << 10})
	require.NoError(t, err)
	big := strings.Repeat("x", 4<<10)
	for i := 0; i < 7; i++ {
		require.NoError(t, e.Write(values("a", "1", "2024-01-31T12:00:00+00:00", big, "<null>", "<null>", "<null>", "<null>", "<null>")))
	}
	require.NoError(t, e.Close())
	f := openParquet(t, out.Bytes())
	require.EqualValues(t, 7, f.NumRows())
	require.Len(t, f.RowGroups(), 3)
}

// TestParquetWriteError: a writer that fails (a client gone) fails the encoder, whichever
// write it is, never silently.
func TestParquetWriteError(t *testing.T) {
	t.Parallel()
	rec := values("a", "1", "2024-01-31T12:00:00+00:00", "x", "1", "1", "true", "<null>", "<null>")
	for after := 0; after < 64; after++ {
		w := &failingWriter{after: after}
		e, err := snapshot.NewParquet(w, testColumns, snapshot.ParquetConfig{RowGroupRows: 1})
		if err != nil {
			continue
		}
		failed := false
		for i := 0; i < 3 && !failed; i++ {
			failed = e.Write(rec) != nil
		}
		if !failed {
			failed = e.Close() != nil
		}
		require.True(t, failed, "failure after %d writes went unnoticed", after)
	}
}

// failingWriter fails every write after the first `after`.
type failingWriter struct{ after, n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n++; w.n > w.after {
		return 0, errors.New("connection reset")
	}
	return len(p), nil
}

// openParquet opens a file with parquet-go, a reader independent of the Arrow writer.
func openParquet(t *testing.T, data []byte) *parquet.File {
	t.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	return f
}

// parquetColumns describes each column as "name TYPE required|optional".
func parquetColumns(f *parquet.File) []string {
	var out []string
	for _, c := range f.Schema().Fields() {
		rep := "required"
		if c.Optional() {
			rep = "optional"
		}
		out = append(out, c.Name()+" "+c.Type().String()+" "+rep)
	}
	return out
}

// parquetRows reads every row as Go values by physical type, nil for null.
func parquetRows(t *testing.T, f *parquet.File) [][]any {
	t.Helper()
	r := parquet.NewReader(f)
	defer r.Close()
	var out [][]any
	buf := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			vals := make([]any, len(row))
			for _, v := range row {
				vals[v.Column()] = goValue(v)
			}
			out = append(out, vals)
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
	}
}

func goValue(v parquet.Value) any {
	if v.IsNull() {
		return nil
	}
	switch v.Kind() {
	case parquet.Boolean:
		return v.Boolean()
	case parquet.Int32:
		return v.Int32()
	case parquet.Int64:
		return v.Int64()
	case parquet.Double:
		return v.Double()
	case parquet.ByteArray:
		return string(v.ByteArray())
	}
	return v.String()
}
