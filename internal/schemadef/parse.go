package schemadef

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// Parse reads one SchemaDefinition from YAML or JSON. A syntax error (including a duplicate
// key) is returned as a plain error; a document that is well-formed but does not have the
// shape of a Definition (an unknown key, a wrong type) returns a *ValidationError naming the
// path of every problem. Parse does not Validate.
func Parse(data []byte) (Definition, error) {
	docs, err := parseDocuments(data)
	if err != nil {
		return Definition{}, err
	}
	switch len(docs) {
	case 0:
		return Definition{}, errors.New("parse schema definition: the document is empty")
	case 1:
	default:
		return Definition{}, fmt.Errorf("parse schema definition: found %d documents, want one (use ParseAll for several)", len(docs))
	}
	if _, ok := docs[0].value.([]any); ok {
		return Definition{}, errors.New("parse schema definition: the document is an array, want an object (use ParseAll for several)")
	}
	return decodeDefinition(docs[0])
}

// ParseAll reads every SchemaDefinition of a multi-document YAML stream (documents separated
// by `---`) or of a JSON array, in order. Empty documents are skipped. Errors are those of
// Parse, prefixed with the 1-based number of the document at fault.
func ParseAll(data []byte) ([]Definition, error) {
	docs, err := parseDocuments(data)
	if err != nil {
		return nil, err
	}
	// A document that is an array holds several definitions, as a JSON array does.
	var flat []document
	for _, doc := range docs {
		items, ok := doc.value.([]any)
		if !ok {
			flat = append(flat, doc)
			continue
		}
		for _, item := range items {
			if item != nil {
				flat = append(flat, document{value: item, fromYAML: doc.fromYAML, line: doc.line})
			}
		}
	}
	if len(flat) == 0 {
		return nil, errors.New("parse schema definitions: found no documents")
	}
	defs := make([]Definition, 0, len(flat))
	for i, doc := range flat {
		def, err := decodeDefinition(doc)
		if err != nil {
			if doc.line > 0 {
				return nil, fmt.Errorf("document %d (from line %d): %w", i+1, doc.line, err)
			}
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		defs = append(defs, def)
	}
	return defs, nil
}

// document is one parsed document as generic JSON values (map[string]any, []any, string,
// json.Number, bool, nil).
type document struct {
	value    any
	fromYAML bool
	line     int // the 1-based line the document starts on, for YAML
}

var utf8BOM = []byte("\xef\xbb\xbf")

// parseDocuments turns data into generic documents, skipping empty ones. JSON is read
// directly, so that numbers keep their exact text; anything else goes through YAML.
func parseDocuments(data []byte) ([]document, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		v, jsonErr := decodeJSON(trimmed)
		if jsonErr == nil {
			return []document{{value: v}}, nil
		}
		var dup *duplicateKeyError
		if errors.As(jsonErr, &dup) || errors.Is(jsonErr, errTooDeep) {
			return nil, fmt.Errorf("parse schema definition as JSON: %w", jsonErr)
		}
		// It may still be YAML: flow style, or a stream of JSON documents separated by "---".
		docs, yamlErr := parseYAMLDocuments(data)
		if yamlErr != nil {
			return nil, fmt.Errorf("%w (and as JSON: %w)", yamlErr, jsonErr)
		}
		return docs, nil
	}
	return parseYAMLDocuments(data)
}

// yamlLineNumber finds the line numbers in yaml.v2 errors, which count from the start of the
// document handed to it.
var yamlLineNumber = regexp.MustCompile(`line (\d+)`)

func parseYAMLDocuments(data []byte) ([]document, error) {
	var docs []document
	for _, chunk := range splitYAMLDocuments(data) {
		j, err := yamlChunkToJSON(chunk.text)
		if err != nil {
			msg := yamlLineNumber.ReplaceAllStringFunc(err.Error(), func(m string) string {
				n, _ := strconv.Atoi(m[len("line "):])
				return "line " + strconv.Itoa(n+chunk.line-1)
			})
			return nil, fmt.Errorf("parse schema definition as YAML: %s", msg)
		}
		v, err := decodeJSON(j)
		if err != nil {
			return nil, fmt.Errorf("parse schema definition as YAML: %w", err)
		}
		if v != nil {
			docs = append(docs, document{value: v, fromYAML: true, line: chunk.line})
		}
	}
	return docs, nil
}

// yamlChunkToJSON converts one YAML document to JSON, refusing duplicate keys. yaml.Unmarshal
// silently ignores whatever follows a top-level flow collection ("{a: 1}\nb: 2" reads as
// {"a": 1}), so a streaming decoder first checks that the document ends where it should.
func yamlChunkToJSON(chunk []byte) ([]byte, error) {
	dec := yamlv2.NewDecoder(bytes.NewReader(chunk))
	dec.SetStrict(true)
	var first any
	if err := dec.Decode(&first); err != nil && err != io.EOF {
		return nil, err
	}
	var rest any
	if err := dec.Decode(&rest); err != io.EOF {
		if err == nil {
			return nil, errors.New("yaml: unexpected content after the document")
		}
		return nil, fmt.Errorf("unexpected content after the document: %w", err)
	}
	return yaml.YAMLToJSONStrict(chunk)
}

type yamlChunk struct {
	text []byte
	line int
}

// splitYAMLDocuments splits a YAML stream at its document markers. YAML forbids "---" and
// "..." at the start of a line inside a document, so a line-based split is exact. Each chunk
// keeps its "---" line, so that content on that line ("--- {…}") is not lost.
func splitYAMLDocuments(data []byte) []yamlChunk {
	var chunks []yamlChunk
	var cur bytes.Buffer
	start := 1
	flush := func() {
		if hasYAMLContent(cur.Bytes()) {
			chunks = append(chunks, yamlChunk{text: bytes.Clone(cur.Bytes()), line: start})
		}
		cur.Reset()
	}
	for i, line := range bytes.SplitAfter(data, []byte("\n")) {
		switch {
		case isDocumentMarker(line, "---"):
			flush()
			start = i + 1
			cur.Write(line)
		case isDocumentMarker(line, "..."):
			flush()
		default:
			if cur.Len() == 0 {
				start = i + 1
			}
			cur.Write(line)
		}
	}
	flush()
	return chunks
}

func isDocumentMarker(line []byte, marker string) bool {
	if !bytes.HasPrefix(line, []byte(marker)) {
		return false
	}
	rest := line[len(marker):]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r' || rest[0] == '\n'
}

// hasYAMLContent reports whether a chunk holds more than blank lines, comments, directives
// and a bare "---".
func hasYAMLContent(chunk []byte) bool {
	for _, line := range bytes.Split(chunk, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if isDocumentMarker(line, "---") {
			line = bytes.TrimSpace(line[3:])
		}
		if len(line) > 0 && line[0] != '#' && line[0] != '%' {
			return true
		}
	}
	return false
}

// duplicateKeyError is a JSON object key given twice.
type duplicateKeyError struct {
	path, key string
}

func (e *duplicateKeyError) Error() string {
	if e.path == "" {
		return fmt.Sprintf("duplicate key %q", e.key)
	}
	return fmt.Sprintf("%s: duplicate key %q", e.path, e.key)
}

// decodeJSON decodes exactly one JSON value into generic values, with numbers as json.Number
// and an error for a duplicate key, which encoding/json would silently let win.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeJSONValue(dec, "", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the top-level value")
	}
	return v, nil
}

// maxDepth bounds the nesting of a document, so that a hostile one cannot exhaust the stack.
const maxDepth = 100

var errTooDeep = fmt.Errorf("nested more than %d deep", maxDepth)

func decodeJSONValue(dec *json.Decoder, path string, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: %w", path, errTooDeep)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		obj := map[string]any{}
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key := keyTok.(string) // the decoder only yields string keys inside an object
			if _, dup := obj[key]; dup {
				return nil, &duplicateKeyError{path: path, key: key}
			}
			if obj[key], err = decodeJSONValue(dec, joinKey(path, key), depth+1); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil { // '}'
			return nil, err
		}
		return obj, nil
	case json.Delim('['):
		arr := []any{}
		for i := 0; dec.More(); i++ {
			v, err := decodeJSONValue(dec, joinIndex(path, i), depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, err
		}
		return arr, nil
	default:
		return tok, nil
	}
}

// simpleKey is a map key that reads unambiguously after a dot in a path.
var simpleKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// joinKey appends an object key to a path: spec.fields, or spec.access.fields["a b"] when the
// key would not read as one (it is quoted, so a hostile key cannot forge a path or a line).
func joinKey(path, key string) string {
	if !simpleKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func joinIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// decodeDefinition fills a Definition from a generic document, collecting every key that is
// unknown and every value of the wrong type.
func decodeDefinition(doc document) (Definition, error) {
	d := shapeDecoder{fromYAML: doc.fromYAML}
	var def Definition
	d.decode("", doc.value, reflect.ValueOf(&def).Elem())
	if len(d.errs) > 0 {
		return Definition{}, &ValidationError{Errors: d.errs}
	}
	return def, nil
}

// shapeDecoder walks a generic value and a Go value of the Definition types side by side, so
// that the shape it accepts is always exactly the one the types declare through their json
// tags, matched case-sensitively.
type shapeDecoder struct {
	fromYAML bool
	errs     []FieldError
}

func (d *shapeDecoder) fail(path, msg string) {
	d.errs = append(d.errs, FieldError{Path: path, Message: msg})
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

func (d *shapeDecoder) decode(path string, in any, out reflect.Value) {
	if in == nil {
		return // null means absent, as an omitted key does
	}
	t := out.Type()
	if t == rawMessageType {
		raw, err := json.Marshal(in) // json.Number keeps the number's text
		if err != nil {
			d.fail(path, "cannot be encoded as JSON: "+err.Error())
			return
		}
		out.SetBytes(raw)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		v := reflect.New(t.Elem())
		d.decode(path, in, v.Elem())
		out.Set(v)
	case reflect.Struct:
		obj, ok := in.(map[string]any)
		if !ok {
			d.fail(path, "must be an object")
			return
		}
		fields := jsonFields(t)
		for _, key := range sortedKeys(obj) {
			i, known := fields[key]
			if !known {
				d.fail(joinKey(path, key), "unknown field")
				continue
			}
			d.decode(joinKey(path, key), obj[key], out.Field(i))
		}
	case reflect.Map:
		obj, ok := in.(map[string]any)
		if !ok {
			d.fail(path, "must be an object")
			return
		}
		m := reflect.MakeMapWithSize(t, len(obj))
		for _, key := range sortedKeys(obj) {
			v := reflect.New(t.Elem()).Elem()
			d.decode(joinKey(path, key), obj[key], v)
			m.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), v)
		}
		out.Set(m)
	case reflect.Slice:
		arr, ok := in.([]any)
		if !ok {
			d.fail(path, "must be an array")
			return
		}
		s := reflect.MakeSlice(t, len(arr), len(arr))
		for i, item := range arr {
			d.decode(joinIndex(path, i), item, s.Index(i))
		}
		out.Set(s)
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			if _, isBool := in.(bool); isBool && d.fromYAML {
				d.fail(path, "must be a string (YAML reads unquoted yes, no, on, off, true and false as booleans: quote them)")
			} else {
				d.fail(path, "must be a string")
			}
			return
		}
		out.SetString(s)
	case reflect.Bool:
		b, ok := in.(bool)
		if !ok {
			d.fail(path, "must be a boolean")
			return
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := in.(json.Number)
		if !ok {
			d.fail(path, "must be an integer")
			return
		}
		i, msg := parseInteger(n)
		if msg == "" && out.OverflowInt(i) {
			msg = "is out of range"
		}
		if msg != "" {
			d.fail(path, msg)
			return
		}
		out.SetInt(i)
	default:
		// Only reachable if someone adds a field of a kind this decoder does not know.
		panic(fmt.Sprintf("schemadef: cannot decode into %s at %s", t, path))
	}
}

// parseInteger reads an integral JSON number, which YAML may have written as 1.0 or 1e3.
func parseInteger(n json.Number) (int64, string) {
	if i, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		return i, ""
	}
	f, ok := new(big.Float).SetString(n.String())
	if !ok || !f.IsInt() {
		return 0, "must be an integer"
	}
	i, acc := f.Int64()
	if acc != big.Exact {
		return 0, "is out of range"
	}
	return i, ""
}

// jsonFields maps the json names of a struct's fields to their indexes.
func jsonFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = i
	}
	return fields
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
