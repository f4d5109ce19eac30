package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ClaimMapping says how a verified token's claims become an actor. Each issuer has its own,
// loaded from config and checked by Compile before any token is seen.
type ClaimMapping struct {
	// ID is the rule of the actor's id. Nil means the "sub" claim, unchanged.
	ID *ClaimRule `json:"id,omitempty"`
	// Roles are rules whose values are all roles: the actor holds their union, deduplicated
	// and sorted.
	Roles []ClaimRule `json:"roles,omitempty"`
	// Attributes maps an attribute name (^[a-z][a-z0-9_]{0,62}$) to its rule.
	Attributes map[string]ClaimRule `json:"attributes,omitempty"`
}

// ClaimRule takes the values of one claim and runs them through Transforms in order.
type ClaimRule struct {
	// Claim is a claim name or a dotted path into nested objects ("realm_access.roles").
	// Required.
	Claim      string           `json:"claim"`
	Transforms []ClaimTransform `json:"transforms,omitempty"`
}

// ClaimTransform is one step of a rule. Kind selects the step; each kind takes only its own
// parameter, and Compile refuses a missing one or one that belongs to another kind.
type ClaimTransform struct {
	Kind      string            `json:"kind"`                // see the Transform* constants
	Prefix    string            `json:"prefix,omitempty"`    // prefix_strip
	Separator string            `json:"separator,omitempty"` // split
	Table     map[string]string `json:"table,omitempty"`     // lookup
	Pattern   string            `json:"pattern,omitempty"`   // regex_extract: RE2, exactly one capture group
	Values    []string          `json:"values,omitempty"`    // static_append
}

// The kinds of ClaimTransform. Every transform maps the list of values to a new list, and
// none of them turns a value into an empty one: where one would appear it is dropped.
const (
	// TransformIdentity leaves the values unchanged.
	TransformIdentity = "identity"
	// TransformPrefixStrip keeps only the values that start with Prefix, with Prefix removed:
	// prefix "velocity-" turns the group "velocity-editor" into "editor" and drops "staff".
	// A value equal to Prefix is dropped.
	TransformPrefixStrip = "prefix_strip"
	// TransformSplit splits every value on Separator and drops the empty parts, so "a,,b"
	// gives "a" and "b". Parts are not trimmed.
	TransformSplit = "split"
	// TransformUppercase upper-cases every value.
	TransformUppercase = "uppercase"
	// TransformLookup replaces every value by Table[value] and drops the values that are not
	// keys of Table; so it is also an allow-list. Table values must not be empty.
	TransformLookup = "lookup"
	// TransformRegexExtract replaces every value that Pattern matches by the text of the
	// pattern's one capture group, and drops the others, including those where the group
	// captured nothing. The pattern is not anchored: write ^ and $ to match a whole value.
	TransformRegexExtract = "regex_extract"
	// TransformStaticAppend appends Values to the list, even when the list is empty: it gives
	// every actor of the issuer a role or a default attribute.
	TransformStaticAppend = "static_append"
)

// maxPatternLength bounds a regex_extract pattern, so config cannot make RE2 compile a
// program large enough to slow every token down.
const maxPatternLength = 1000

var (
	claimRolePattern      = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)
	claimAttributePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// CompiledMapping is a ClaimMapping that Compile has checked, with its patterns compiled. It
// does not change after Compile and is safe for concurrent use.
type CompiledMapping struct {
	id         compiledRule
	roles      []compiledRule
	attributes map[string]compiledRule
	names      []string // of attributes, sorted, so Apply reports the same error every time
}

type compiledRule struct {
	claim      string
	transforms []compiledTransform
}

type compiledTransform struct {
	kind      string
	prefix    string
	separator string
	table     map[string]string
	pattern   *regexp.Regexp
	values    []string
}

// MappedActor is what a mapping makes of a token's claims.
type MappedActor struct {
	ID    string
	Roles []string // deduplicated and sorted; never nil
	// Attributes holds, per attribute, a string when its rule yields one value and a
	// []string when it yields several. An attribute whose rule yields none is absent.
	// Never nil.
	Attributes map[string]any
}

// Compile checks m and prepares it for Apply. It returns every problem found, joined with
// errors.Join, each naming its place in the mapping, for example
// `roles[1].transforms[0]: regex_extract: pattern must have exactly one capture group`.
// Attributes are checked in name order, so the message does not change between runs.
func (m ClaimMapping) Compile() (*CompiledMapping, error) {
	var errs []error
	c := &CompiledMapping{attributes: make(map[string]compiledRule, len(m.Attributes))}
	if m.ID == nil {
		c.id = compiledRule{claim: "sub"}
	} else {
		c.id = compileRule("id", *m.ID, &errs)
	}
	for i, r := range m.Roles {
		c.roles = append(c.roles, compileRule(fmt.Sprintf("roles[%d]", i), r, &errs))
	}
	c.names = slices.Sorted(maps.Keys(m.Attributes))
	for _, name := range c.names {
		place := fmt.Sprintf("attributes[%q]", name)
		if !claimAttributePattern.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s: invalid attribute name (want %s)", place, claimAttributePattern))
		}
		c.attributes[name] = compileRule(place, m.Attributes[name], &errs)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func compileRule(place string, r ClaimRule, errs *[]error) compiledRule {
	if r.Claim == "" {
		*errs = append(*errs, fmt.Errorf("%s.claim: required", place))
	}
	c := compiledRule{claim: r.Claim}
	for i, t := range r.Transforms {
		ct, err := compileTransform(t)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s.transforms[%d]: %w", place, i, err))
			continue
		}
		c.transforms = append(c.transforms, ct)
	}
	return c
}

// compileTransform checks one transform. Its errors start with the kind, as in
// "lookup: table is required"; the caller puts the place in front.
func compileTransform(t ClaimTransform) (compiledTransform, error) {
	// given lists the parameters that are set, by their config key.
	given := map[string]bool{
		"prefix":    t.Prefix != "",
		"separator": t.Separator != "",
		"table":     t.Table != nil,
		"pattern":   t.Pattern != "",
		"values":    t.Values != nil,
	}
	var want string // the one parameter the kind takes, if any
	switch t.Kind {
	case TransformIdentity, TransformUppercase:
	case TransformPrefixStrip:
		want = "prefix"
	case TransformSplit:
		want = "separator"
	case TransformLookup:
		want = "table"
	case TransformRegexExtract:
		want = "pattern"
	case TransformStaticAppend:
		want = "values"
	case "":
		return compiledTransform{}, errors.New("kind: required")
	default:
		return compiledTransform{}, fmt.Errorf("unknown kind %q (want one of %s, %s, %s, %s, %s, %s, %s)", t.Kind,
			TransformIdentity, TransformPrefixStrip, TransformSplit, TransformUppercase,
			TransformLookup, TransformRegexExtract, TransformStaticAppend)
	}
	var problems []string
	for _, p := range []string{"prefix", "separator", "table", "pattern", "values"} {
		if given[p] && p != want {
			problems = append(problems, p+" is not allowed")
		}
	}
	c := compiledTransform{kind: t.Kind, prefix: t.Prefix, separator: t.Separator}
	switch t.Kind {
	case TransformPrefixStrip:
		if t.Prefix == "" {
			problems = append(problems, "prefix is required")
		}
	case TransformSplit:
		if t.Separator == "" {
			problems = append(problems, "separator is required")
		}
	case TransformLookup:
		if len(t.Table) == 0 {
			problems = append(problems, "table is required")
		}
		for _, k := range slices.Sorted(maps.Keys(t.Table)) {
			if t.Table[k] == "" {
				problems = append(problems, fmt.Sprintf("table[%q] is empty", k))
			}
		}
		c.table = maps.Clone(t.Table)
	case TransformRegexExtract:
		if t.Pattern == "" {
			problems = append(problems, "pattern is required")
			break
		}
		if len(t.Pattern) > maxPatternLength {
			problems = append(problems, fmt.Sprintf("pattern is longer than %d characters", maxPatternLength))
			break
		}
		re, err := regexp.Compile(t.Pattern)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("invalid pattern: %v", err))
		case re.NumSubexp() != 1:
			problems = append(problems, fmt.Sprintf("pattern must have exactly one capture group, has %d", re.NumSubexp()))
		default:
			c.pattern = re
		}
	case TransformStaticAppend:
		if len(t.Values) == 0 {
			problems = append(problems, "values is required")
		}
		if slices.Contains(t.Values, "") {
			problems = append(problems, "values must not contain an empty string")
		}
		c.values = slices.Clone(t.Values)
	}
	if len(problems) > 0 {
		return compiledTransform{}, fmt.Errorf("%s: %s", t.Kind, strings.Join(problems, "; "))
	}
	return c, nil
}

// Apply maps the claims of a verified token to an actor.
//
// A rule reads its claim as a list of values: a string gives one value, an array gives its
// elements, a number or boolean gives its JSON text ("42", "true"), and a missing or null
// claim, or a null array element, gives nothing. Claim is first looked up as a name, so
// namespaced claims such as "https://example.com/roles" work; otherwise it is a dotted path
// that walks nested objects, and a path that ends early or runs into a non-object gives
// nothing. An object, or an array holding an object or array, is an error that names the
// claim, because flattening it would guess at the issuer's meaning.
//
// The id rule must yield exactly one non-empty value: an actor without an id must not
// authenticate, and of several there is no right one to pick. Role values that are not role
// names (^[a-z][a-z0-9_]{0,40}$) are dropped, not reported, so one odd group in a token does
// not lock its holder out; map them with the transforms to keep them.
func (c *CompiledMapping) Apply(claims map[string]any) (MappedActor, error) {
	ids, err := c.id.apply(claims)
	if err != nil {
		return MappedActor{}, fmt.Errorf("id: %w", err)
	}
	switch {
	case len(ids) == 0:
		return MappedActor{}, fmt.Errorf("id: claim %q gives no value", c.id.claim)
	case len(ids) > 1:
		return MappedActor{}, fmt.Errorf("id: claim %q gives %d values, want one", c.id.claim, len(ids))
	case ids[0] == "":
		return MappedActor{}, fmt.Errorf("id: claim %q is empty", c.id.claim)
	}
	a := MappedActor{ID: ids[0], Roles: []string{}, Attributes: make(map[string]any, len(c.attributes))}
	for i, r := range c.roles {
		values, err := r.apply(claims)
		if err != nil {
			return MappedActor{}, fmt.Errorf("roles[%d]: %w", i, err)
		}
		for _, v := range values {
			if claimRolePattern.MatchString(v) {
				a.Roles = append(a.Roles, v)
			}
		}
	}
	slices.Sort(a.Roles)
	a.Roles = slices.Compact(a.Roles)
	for _, name := range c.names {
		values, err := c.attributes[name].apply(claims)
		if err != nil {
			return MappedActor{}, fmt.Errorf("attributes[%q]: %w", name, err)
		}
		switch len(values) {
		case 0:
		case 1:
			a.Attributes[name] = values[0]
		default:
			a.Attributes[name] = values
		}
	}
	return a, nil
}

func (r compiledRule) apply(claims map[string]any) ([]string, error) {
	values, err := claimValues(r.claim, lookupClaim(claims, r.claim))
	if err != nil {
		return nil, err
	}
	for _, t := range r.transforms {
		values = t.apply(values)
	}
	return values, nil
}

// lookupClaim finds path in obj: as a key first, then as key.rest for every dot in path,
// left to right, where key holds an object. It returns nil when nothing is found.
func lookupClaim(obj map[string]any, path string) any {
	if v, ok := obj[path]; ok {
		return v
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		if inner, ok := obj[path[:i]].(map[string]any); ok {
			if v := lookupClaim(inner, path[i+1:]); v != nil {
				return v
			}
		}
	}
	return nil
}

// claimValues turns a claim's value into the list that transforms run over.
func claimValues(claim string, v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []string:
		return slices.Clone(v), nil
	case []any:
		values := make([]string, 0, len(v))
		for i, e := range v {
			if e == nil {
				continue
			}
			s, ok, err := scalarText(e)
			if err != nil {
				return nil, fmt.Errorf("claim %q[%d]: %w", claim, i, err)
			}
			if !ok {
				return nil, fmt.Errorf("claim %q[%d]: is %s, want a string, number or boolean", claim, i, jsonKind(e))
			}
			values = append(values, s)
		}
		return values, nil
	}
	s, ok, err := scalarText(v)
	if err != nil {
		return nil, fmt.Errorf("claim %q: %w", claim, err)
	}
	if !ok {
		return nil, fmt.Errorf("claim %q: is %s, want a string, number, boolean or array of them", claim, jsonKind(v))
	}
	return []string{s}, nil
}

// scalarText formats a string, number or boolean as a value; ok is false for anything else.
func scalarText(v any) (s string, ok bool, err error) {
	switch v := v.(type) {
	case string:
		return v, true, nil
	case bool:
		return strconv.FormatBool(v), true, nil
	case json.Number:
		return v.String(), true, nil
	case float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		b, err := json.Marshal(v) // the JSON text, so 1e21 reads as a token's issuer wrote it
		if err != nil {
			return "", false, fmt.Errorf("format number: %w", err)
		}
		return string(b), true, nil
	}
	return "", false, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any, []string:
		return "an array"
	}
	return fmt.Sprintf("a %T", v)
}

func (t compiledTransform) apply(values []string) []string {
	var out []string
	switch t.kind {
	case TransformIdentity:
		return values
	case TransformPrefixStrip:
		for _, v := range values {
			if rest, ok := strings.CutPrefix(v, t.prefix); ok && rest != "" {
				out = append(out, rest)
			}
		}
	case TransformSplit:
		for _, v := range values {
			for part := range strings.SplitSeq(v, t.separator) {
				if part != "" {
					out = append(out, part)
				}
			}
		}
	case TransformUppercase:
		for _, v := range values {
			out = append(out, strings.ToUpper(v))
		}
	case TransformLookup:
		for _, v := range values {
			if mapped, ok := t.table[v]; ok {
				out = append(out, mapped)
			}
		}
	case TransformRegexExtract:
		for _, v := range values {
			if m := t.pattern.FindStringSubmatchIndex(v); m != nil && m[2] >= 0 && m[3] > m[2] {
				out = append(out, v[m[2]:m[3]])
			}
		}
	case TransformStaticAppend:
		out = append(slices.Clone(values), t.values...)
	}
	return out
}
