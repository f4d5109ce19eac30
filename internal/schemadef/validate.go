package schemadef

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// FieldError is one problem with a definition, at a path such as spec.fields[2].type.
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// ValidationError holds every problem found in a definition, in document order.
type ValidationError struct {
	Errors []FieldError
}

// Error lists the problems one per line, as "path: message".
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Limits of a definition.
const (
	MaxStringLength = 10485760 // the largest maxLength: varchar's own limit
	MaxRuleLength   = 10240    // bytes of one CEL rule or row filter
)

var (
	metadataNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	routeNamePattern    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)
	fieldNamePattern    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	enumValuePattern    = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,63}$`)
	roleNamePattern     = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)
	uuidPattern         = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	decimalPattern      = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
)

// Normalize fills in the defaults that an omitted key stands for. It keeps the order of
// fields, which is meaningful. Validate accepts a definition before and after Normalize.
func (d *Definition) Normalize() {
	if d.Spec.Search.Tier == 0 {
		d.Spec.Search.Tier = DefaultSearchTier
	}
	if d.Spec.Policy.BreakingChanges == "" {
		d.Spec.Policy.BreakingChanges = BreakingRequireApproval
	}
}

// Validate checks d against the rules of SPEC.md. It returns nil or a *ValidationError with
// every problem found, in document order (map keys in sorted order). It does not compile the
// CEL of access.abac and access.rowFilter.
func (d Definition) Validate() error {
	v := &validator{}
	v.header(d)
	v.spec(d.Spec)
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: v.errs}
}

type validator struct {
	errs []FieldError
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) header(d Definition) {
	switch d.APIVersion {
	case APIVersion:
	case "":
		v.add("apiVersion", "required")
	default:
		v.add("apiVersion", "must be %q, not %q", APIVersion, d.APIVersion)
	}
	switch d.Kind {
	case Kind:
	case "":
		v.add("kind", "required")
	default:
		v.add("kind", "must be %q, not %q", Kind, d.Kind)
	}
	switch name := d.Metadata.Name; {
	case name == "":
		v.add("metadata.name", "required")
	case len(name) > MaxIdentifierLength || !metadataNamePattern.MatchString(name):
		v.add("metadata.name", "%q is not a valid name: use at most 63 of a-z, 0-9 and -, starting and ending with a letter or digit", name)
	case slices.Contains(ReservedNames, name):
		v.add("metadata.name", "%q is reserved: /admin/schemas/%s is another route", name, name)
	}
}

func (v *validator) spec(s Spec) {
	routeOK := v.routeName("spec.org", s.Org)
	if routeOK && slices.Contains(ReservedOrgs, s.Org) {
		v.add("spec.org", "%q is reserved", s.Org)
	}
	if routeOK && strings.HasPrefix(s.Org, "pg_") {
		// The Postgres schema is named {org}__{app}, and pg_* schema names are Postgres's.
		v.add("spec.org", "%q starts with pg_, which Postgres reserves", s.Org)
	}
	routeOK = v.routeName("spec.app", s.App) && routeOK
	tableOK := v.routeName("spec.domain", s.Domain)
	tableOK = v.routeName("spec.object", s.Object) && tableOK
	if routeOK && tableOK {
		// checkNameLengths stops at the first name too long; the schema and the table names
		// are checked apart so that both problems show at once.
		n := NamesOf(s)
		for _, names := range [][]string{{n.Schema}, {n.Table, n.History, n.HistoryDefault, n.HistoryWriter, n.View}} {
			if err := checkNameLengths(names...); err != nil {
				v.add("spec", "%s", err)
			}
		}
	}
	if s.Version < 1 {
		v.add("spec.version", "must be at least 1")
	}

	v.fields(s, tableOK)
	v.search(s.Search)
	v.access(s)

	v.verbs("spec.policy.requireReason", s.Policy.RequireReason)
	switch s.Policy.BreakingChanges {
	case "", BreakingRequireApproval, BreakingAllow:
	default:
		v.add("spec.policy.breakingChanges", "must be %q or %q, not %q", BreakingRequireApproval, BreakingAllow, s.Policy.BreakingChanges)
	}
	for i, name := range s.History.Redact {
		if _, ok := s.Field(name); !ok {
			v.add(joinIndex("spec.history.redact", i), "unknown field %q", name)
		}
	}
	if s.Archive.AfterDays < 0 {
		v.add("spec.archive.afterDays", "must not be negative")
	}
}

// routeName checks org, app, domain and object, which name both the route and the Postgres
// schema and table. "__" is the separator of derived names, so it may not appear in a part,
// nor may a part end with "_", which would make "a_" + "__" + "b" read as "a" + "__" + "_b".
func (v *validator) routeName(path, name string) bool {
	switch {
	case name == "":
		v.add(path, "required")
	case !routeNamePattern.MatchString(name):
		v.add(path, "%q is not a valid name: use 1 to 31 of a-z, 0-9 and _, starting with a letter", name)
	case strings.Contains(name, "__"):
		v.add(path, "%q must not contain \"__\", the separator of derived names", name)
	case strings.HasSuffix(name, "_"):
		v.add(path, "%q must not end with \"_\"", name)
	default:
		return true
	}
	return false
}

func (v *validator) fields(s Spec, tableOK bool) {
	if len(s.Fields) == 0 {
		v.add("spec.fields", "at least one field is required")
		return
	}
	if len(s.Fields) > MaxFields {
		v.add("spec.fields", "%d fields, over the limit of %d", len(s.Fields), MaxFields)
		return
	}
	names := NamesOf(s)
	first := map[string]int{}
	for i, f := range s.Fields {
		path := joinIndex("spec.fields", i)
		if v.fieldName(path+".name", f.Name) {
			if j, dup := first[f.Name]; dup {
				v.add(path+".name", "duplicate field %q (first at %s)", f.Name, joinIndex("spec.fields", j))
			} else {
				first[f.Name] = i
			}
			if tableOK {
				v.indexNames(path+".name", names, f.Name)
			}
		}
		v.field(path, f)
	}
}

func (v *validator) fieldName(path, name string) bool {
	switch {
	case name == "":
		v.add(path, "required")
	case !fieldNamePattern.MatchString(name):
		v.add(path, "%q is not a valid field name: use 1 to 63 of a-z, 0-9 and _, starting with a letter", name)
	case slices.Contains(SystemFields, name):
		v.add(path, "%q is a system field", name)
	case strings.Contains(name, "__"):
		v.add(path, "%q must not contain \"__\", which is reserved for generated names", name)
	case strings.HasPrefix(name, "pg_"):
		v.add(path, "%q must not start with \"pg_\", which Postgres reserves", name)
	default:
		return true
	}
	return false
}

// indexNames checks the longest index or constraint name the planner may create for the field,
// whatever its flags, so that turning a flag on later cannot fail on the name.
func (v *validator) indexNames(path string, n Names, field string) {
	longest := ""
	for _, suffix := range IndexSuffixes {
		if name := IndexName(n, field, suffix); len(name) > len(longest) {
			longest = name
		}
	}
	if len(longest) > MaxIdentifierLength {
		v.add(path, "field name too long: generated name %q is %d bytes, over Postgres's %d-byte limit", longest, len(longest), MaxIdentifierLength)
	}
}

func (v *validator) field(path string, f Field) {
	known := true
	switch {
	case f.Type == "":
		v.add(path+".type", "required")
		known = false
	case !slices.Contains(FieldTypes, f.Type):
		v.add(path+".type", "unknown type %q", f.Type)
		known = false
	}
	isString := f.Type == TypeString || f.Type == TypeText

	if f.MaxLength != nil {
		switch {
		case known && !isString:
			v.add(path+".maxLength", "only allowed on string and text fields")
		case *f.MaxLength < 1 || *f.MaxLength > MaxStringLength:
			v.add(path+".maxLength", "must be between 1 and %d", MaxStringLength)
		}
	}

	switch {
	case f.Type == TypeEnum && len(f.Values) == 0:
		v.add(path+".values", "required for enum fields")
	case f.Type == TypeEnum:
		first := map[string]int{}
		for j, value := range f.Values {
			vpath := joinIndex(path+".values", j)
			if !enumValuePattern.MatchString(value) {
				v.add(vpath, "%q is not a valid enum value: use 1 to 63 of A-Z, a-z, 0-9 and _ . : -", value)
				continue
			}
			if k, dup := first[value]; dup {
				v.add(vpath, "duplicate value %q (first at %s)", value, joinIndex(path+".values", k))
				continue
			}
			first[value] = j
		}
	case known && len(f.Values) > 0:
		v.add(path+".values", "only allowed on enum fields")
	}

	if known && len(f.Default) > 0 {
		if msg := checkDefault(f); msg != "" {
			v.add(path+".default", "%s", msg)
		}
	}

	if f.Type == TypeJSON {
		if f.Sortable {
			v.add(path+".sortable", "not allowed on json fields")
		}
		if f.Filterable {
			v.add(path+".filterable", "not allowed on json fields")
		}
	}
	if known && f.Facet {
		switch f.Type {
		case TypeString, TypeEnum, TypeBoolean, TypeInteger:
		default:
			v.add(path+".facet", "only allowed on string, enum, boolean and integer fields")
		}
	}
	if known && f.Searchable != nil && *f.Searchable && !isString {
		v.add(path+".searchable", "only allowed on string and text fields")
	}
}

// checkDefault returns what is wrong with the default of f, whose type is known, or "".
func checkDefault(f Field) string {
	dec := json.NewDecoder(bytes.NewReader(f.Default))
	dec.UseNumber()
	var value any
	if err := dec.Decode(&value); err != nil || dec.More() {
		return "is not valid JSON"
	}
	if value == nil {
		return "" // null is the same as no default
	}
	str, isString := value.(string)
	num, isNumber := value.(json.Number)
	switch f.Type {
	case TypeString, TypeText:
		if !isString {
			return "must be a string"
		}
		if f.MaxLength != nil && *f.MaxLength >= 1 {
			if n := utf8.RuneCountInString(str); n > *f.MaxLength {
				return fmt.Sprintf("is %d characters, over maxLength %d", n, *f.MaxLength)
			}
		}
	case TypeInteger:
		if !isNumber {
			return "must be an integer"
		}
		if _, msg := parseInteger(num); msg != "" {
			return msg
		}
	case TypeNumber:
		if !isNumber {
			return "must be a number"
		}
		if _, err := strconv.ParseFloat(num.String(), 64); err != nil {
			return "is out of range"
		}
	case TypeDecimal:
		if !isNumber && !(isString && decimalPattern.MatchString(str)) {
			return "must be a number or a numeric string"
		}
	case TypeBoolean:
		if _, ok := value.(bool); !ok {
			return "must be a boolean"
		}
	case TypeTimestamp:
		if _, err := time.Parse(time.RFC3339Nano, str); !isString || err != nil {
			return "must be an RFC 3339 timestamp, such as \"2024-01-31T12:00:00Z\""
		}
	case TypeDate:
		if _, err := time.Parse(time.DateOnly, str); !isString || err != nil {
			return "must be a date as YYYY-MM-DD"
		}
	case TypeUUID:
		if !isString || !uuidPattern.MatchString(str) {
			return "must be a UUID, such as \"123e4567-e89b-12d3-a456-426614174000\""
		}
	case TypeJSON:
	case TypeEnum:
		if !isString || !slices.Contains(f.Values, str) {
			shown := string(bytes.TrimSpace(f.Default))
			if isString {
				shown = strconv.Quote(str)
			}
			return fmt.Sprintf("%s is not one of the enum values %v", shown, f.Values)
		}
	}
	return ""
}

func (v *validator) search(s Search) {
	switch s.Tier {
	case 0, SearchTierTrigram, SearchTierFullText, SearchTierEngine:
	default:
		v.add("spec.search.tier", "must be 1, 2 or 3")
	}
	if s.Language != "" && !slices.Contains(SearchLanguages, s.Language) {
		v.add("spec.search.language", "unknown language %q (want one of %s)", s.Language, strings.Join(SearchLanguages, ", "))
	}
}

func (v *validator) access(s Spec) {
	a := s.Access
	for _, role := range sortedKeys(a.Roles) {
		path := joinKey("spec.access.roles", role)
		if !roleNamePattern.MatchString(role) {
			v.add(path, "%q is not a valid role name: use 1 to 41 of a-z, 0-9 and _, starting with a letter", role)
		}
		if role == PlatformAdminRole {
			v.add(path, "%q is reserved for platform administrators and cannot be a schema role", role)
		}
		v.verbs(path, a.Roles[role])
	}

	for i, rule := range a.ABAC {
		path := joinIndex("spec.access.abac", i)
		if len(rule.Verbs) == 0 {
			v.add(path+".verbs", "at least one verb is required")
		}
		v.verbs(path+".verbs", rule.Verbs)
		switch {
		case strings.TrimSpace(rule.Rule) == "":
			v.add(path+".rule", "required")
		case len(rule.Rule) > MaxRuleLength:
			v.add(path+".rule", "is %d bytes, over the limit of %d", len(rule.Rule), MaxRuleLength)
		}
	}
	if len(a.RowFilter) > MaxRuleLength {
		v.add("spec.access.rowFilter", "is %d bytes, over the limit of %d", len(a.RowFilter), MaxRuleLength)
	}

	for _, name := range sortedKeys(a.Fields) {
		path := joinKey("spec.access.fields", name)
		f, ok := s.Field(name)
		if !ok {
			v.add(path, "unknown field %q", name)
		}
		fa := a.Fields[name]
		v.roleRefs(path+".read", fa.Read, a.Roles)
		v.roleRefs(path+".write", fa.Write, a.Roles)
		switch fa.Mask {
		case "", MaskRedact:
		case MaskPartial, MaskFull:
			// A masked value is a string of '*' and kept characters: it only fits a string.
			if ok && f.Type != TypeString && f.Type != TypeText {
				v.add(path+".mask", "mask %q needs a string or text field; %s is %s (use %q to hide its value)", fa.Mask, name, f.Type, MaskRedact)
			}
		default:
			v.add(path+".mask", "unknown mask %q (want %s, %s or %s)", fa.Mask, MaskPartial, MaskFull, MaskRedact)
		}
		if fa.Mask != "" && len(fa.Read) == 0 {
			v.add(path+".mask", "a mask applies to the roles not in read; give read the roles that see the value")
		}
	}
}

// verbs checks a list of verbs, each known and given once.
func (v *validator) verbs(path string, verbs []string) {
	seen := map[string]bool{}
	for i, verb := range verbs {
		if !v.verb(joinIndex(path, i), verb) {
			continue
		}
		if seen[verb] {
			v.add(joinIndex(path, i), "duplicate verb %q", verb)
		}
		seen[verb] = true
	}
}

func (v *validator) verb(path, verb string) bool {
	if !slices.Contains(Verbs, verb) {
		v.add(path, "unknown verb %q", verb)
		return false
	}
	return true
}

func (v *validator) roleRefs(path string, refs []string, roles map[string][]string) {
	for i, role := range refs {
		if _, ok := roles[role]; !ok {
			v.add(joinIndex(path, i), "unknown role %q (roles are defined in spec.access.roles)", role)
		}
	}
}
