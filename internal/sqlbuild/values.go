package sqlbuild

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/velocitydev/velocity/internal/schemadef"
)

// FieldError is one problem with one input, located the way problem+json reports it
// ("body.total", "body.where.and[1].status.gte", "query.limit").
type FieldError struct {
	Location string `json:"location"`
	Message  string `json:"message"`
}

// Errors is a list of input problems; it is an error when not empty.
type Errors []FieldError

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Location + ": " + fe.Message
	}
	return strings.Join(parts, "; ")
}

// MaxErrors bounds the problems reported for one input, so a small body cannot produce a
// huge error response.
const MaxErrors = 20

func (e *Errors) add(location, format string, args ...any) {
	switch {
	case len(*e) < MaxErrors:
		*e = append(*e, FieldError{Location: location, Message: fmt.Sprintf(format, args...)})
	case len(*e) == MaxErrors:
		*e = append(*e, FieldError{Location: location, Message: "more problems follow; fix these first"})
	}
}

// maxNumberLength bounds the text of a JSON number: parsing cost grows with it (quadratically
// for big integers), and no column type needs more (numeric keeps 1000 digits here).
const maxNumberLength = 1000

var decimalPattern = regexp.MustCompile(`^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$`)

// systemType is the field type of each system field, for filters and cursors.
var systemType = map[string]schemadef.FieldType{
	"id": schemadef.TypeUUID, "version": schemadef.TypeInteger,
	"created_at": schemadef.TypeTimestamp, "updated_at": schemadef.TypeTimestamp,
	"created_by": schemadef.TypeString, "updated_by": schemadef.TypeString,
}

// Value is textValue for callers outside the builder (the planner's defaults).
func Value(f schemadef.Field, raw json.RawMessage) (*string, string) { return textValue(f, raw) }

// textValue checks one JSON value against a field and returns the text Postgres casts to
// the column type; nil means SQL NULL. The message names what was expected, never SQL.
func textValue(f schemadef.Field, raw json.RawMessage) (*string, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, ""
	}
	var s string
	switch f.Type {
	case schemadef.TypeString, schemadef.TypeText, schemadef.TypeEnum:
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, "expected a string"
		}
		if strings.ContainsRune(s, 0) {
			return nil, "must not contain the NUL character"
		}
		if f.Type == schemadef.TypeEnum {
			for _, v := range f.Values {
				if v == s {
					return &s, ""
				}
			}
			return nil, fmt.Sprintf("%q is not one of %s", s, strings.Join(f.Values, ", "))
		}
		if f.MaxLength != nil && utf8.RuneCountInString(s) > *f.MaxLength {
			return nil, fmt.Sprintf("is %d characters, longer than maxLength %d", utf8.RuneCountInString(s), *f.MaxLength)
		}
		return &s, ""
	case schemadef.TypeInteger:
		var n json.Number
		if err := unmarshalNumber(raw, &n); err != nil {
			return nil, "expected an integer"
		}
		if len(n) > 40 {
			// An int64 has 19 digits; "12.000...0" or "1e3" forms stay short too.
			return nil, "integer out of range (64-bit)"
		}
		i, ok := new(big.Int).SetString(n.String(), 10)
		if !ok && hugeExponent(n.String()) {
			// big.Rat would write out 1e999999 digit by digit: tens of milliseconds a value.
			return nil, "integer out of range (64-bit)"
		}
		if !ok {
			// 3.0 or 1e3 are integers too when they have no fraction.
			r, ok := new(big.Rat).SetString(n.String())
			if !ok || !r.IsInt() {
				return nil, "expected an integer"
			}
			i = r.Num()
		}
		if !i.IsInt64() {
			return nil, "integer out of range (64-bit)"
		}
		s = i.String()
		return &s, ""
	case schemadef.TypeNumber:
		var n json.Number
		if err := unmarshalNumber(raw, &n); err != nil {
			return nil, "expected a number"
		}
		if _, err := n.Float64(); err != nil {
			return nil, "number out of range"
		}
		s = n.String()
		return &s, ""
	case schemadef.TypeDecimal:
		var n json.Number
		if err := unmarshalNumber(raw, &n); err == nil {
			s = n.String()
			return &s, ""
		}
		if err := json.Unmarshal(raw, &s); err != nil || !decimalPattern.MatchString(s) || len(s) > 1000 {
			return nil, "expected a decimal number or a string of one"
		}
		return &s, ""
	case schemadef.TypeBoolean:
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, "expected true or false"
		}
		s = fmt.Sprint(b)
		return &s, ""
	case schemadef.TypeTimestamp:
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, "expected an RFC 3339 timestamp string"
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return nil, fmt.Sprintf("%q is not an RFC 3339 timestamp", s)
		}
		return &s, ""
	case schemadef.TypeDate:
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, "expected a date string (YYYY-MM-DD)"
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return nil, fmt.Sprintf("%q is not a date (YYYY-MM-DD)", s)
		}
		return &s, ""
	case schemadef.TypeUUID:
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, "expected a UUID string"
		}
		u, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return nil, fmt.Sprintf("%q is not a UUID", s)
		}
		s = u.String()
		return &s, ""
	case schemadef.TypeJSON:
		if !json.Valid(raw) {
			return nil, "expected JSON"
		}
		if bytes.Contains(raw, []byte(`\u0000`)) && containsNUL(raw) {
			return nil, "must not contain the NUL character"
		}
		s = string(raw)
		return &s, ""
	}
	return nil, "unsupported type"
}

// hugeExponent reports whether a JSON number's exponent is beyond any int64 written with a
// mantissa of reasonable length.
func hugeExponent(n string) bool {
	i := strings.IndexAny(n, "eE")
	if i < 0 {
		return false
	}
	exp, err := strconv.Atoi(n[i+1:])
	return err != nil || exp > 1000 || exp < -1000
}

// containsNUL reports whether a JSON value holds U+0000 in a string or a key, which jsonb
// cannot store; an escaped backslash followed by "u0000" is ordinary text.
func containsNUL(raw json.RawMessage) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if s, ok := tok.(string); ok && strings.ContainsRune(s, 0) {
			return true
		}
	}
}

func unmarshalNumber(raw json.RawMessage, n *json.Number) error {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return fmt.Errorf("not a number")
	}
	if len(raw) > maxNumberLength {
		return fmt.Errorf("number longer than %d characters", maxNumberLength)
	}
	return json.Unmarshal(raw, n)
}

// cast is the SQL that turns a text parameter into the column type of t.
func cast(param string, t schemadef.FieldType) string {
	switch t {
	case schemadef.TypeString, schemadef.TypeText, schemadef.TypeEnum:
		return param + "::text"
	}
	return param + "::text::" + ColumnType(t)
}

// ColumnType is the Postgres column type of a field type.
func ColumnType(t schemadef.FieldType) string {
	switch t {
	case schemadef.TypeInteger:
		return "bigint"
	case schemadef.TypeNumber:
		return "double precision"
	case schemadef.TypeDecimal:
		return "numeric"
	case schemadef.TypeBoolean:
		return "boolean"
	case schemadef.TypeTimestamp:
		return "timestamptz"
	case schemadef.TypeDate:
		return "date"
	case schemadef.TypeUUID:
		return "uuid"
	case schemadef.TypeJSON:
		return "jsonb"
	}
	return "text"
}
