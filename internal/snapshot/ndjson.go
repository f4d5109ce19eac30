package snapshot

import (
	"bufio"
	"errors"
	"io"
)

// ndjsonBuffer is how much NDJSON is gathered before it goes to the writer: large enough
// that a record rarely costs a write of its own, small enough to stream.
const ndjsonBuffer = 64 << 10

type ndjsonEncoder struct {
	w   io.Writer
	buf *bufio.Writer
}

// NewNDJSON returns an encoder that writes each record's JSON, as given, on a line of its
// own. Postgres's JSON text never holds a raw newline, so one line is one record.
func NewNDJSON(w io.Writer) Encoder {
	return &ndjsonEncoder{w: w, buf: bufio.NewWriterSize(w, ndjsonBuffer)}
}

func (e *ndjsonEncoder) Write(values [][]byte) error {
	if len(values) != 1 || values[0] == nil {
		return errors.New("ndjson: a record is one JSON value")
	}
	if _, err := e.buf.Write(values[0]); err != nil {
		return err
	}
	return e.buf.WriteByte('\n')
}

func (e *ndjsonEncoder) Close() error {
	if err := e.buf.Flush(); err != nil {
		return err
	}
	return flush(e.w)
}

// flush pushes out what w itself buffers (an HTTP response), when it can.
func flush(w io.Writer) error {
	if f, ok := w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}
