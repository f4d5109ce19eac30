package rules

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/velocitydev/velocity/internal/schemadef"
)

// Limits of one rule (ARCHITECTURE.md, "Read path"), checked when a schema is applied and,
// for time and cost, again on every evaluation.
const (
	MaxRuleBytes = schemadef.MaxRuleLength // 10 KB
	MaxDepth     = 10
	EvalTimeout  = 10 * time.Millisecond
	// CostLimit bounds the work of one evaluation in CEL cost units: about one unit per
	// variable read, field select or comparison, one per 10 characters of a string
	// operation, and some 7 per step of a comprehension (all, exists, map, filter). A rule is
	// refused at apply when its static estimate, with the size hints below, can exceed it, and
	// an evaluation stops when its actual cost does. Comprehension steps are the slowest units:
	// on the 2-core benchmark machine one takes 1 to 2 µs, so a rule at the limit runs in 2
	// to 4 ms, well inside EvalTimeout (TestCheckAtTheCostLimit). The timeout is the backstop
	// for inputs larger than the hints, such as an actor with thousands of roles.
	CostLimit = 15_000
)

// Size hints for the static cost estimate: the sizes it assumes for values a rule cannot see
// the size of. An input larger than these is still stopped at run time by CostLimit and
// EvalTimeout.
const (
	maxListSize   = 100  // actor.roles, a list attribute
	maxMapSize    = 100  // actor.attributes
	maxStringSize = 4096 // bytes of any string; also used for dyn values, which may be strings
)

// interruptEvery is how many comprehension steps run between checks of the evaluation's
// deadline.
const interruptEvery = 100

// The object types of the variables; the record type is built per schema.
const (
	actorTypeName   = "velocity.Actor"
	requestTypeName = "velocity.Request"
	recordTypeName  = "velocity.Record"
)

// The variables a rule can read.
const (
	varActor    = "actor"
	varRequest  = "request"
	varRecord   = "record"
	varProposed = "proposed"
)

// celType is the CEL type a record field of type t has. User fields may be null, so their
// primitive types are nullable (CEL's wrapper types); timestamps are nullable already.
func celType(t schemadef.FieldType) *types.Type {
	switch t {
	case schemadef.TypeInteger:
		return types.NewNullableType(types.IntType)
	case schemadef.TypeNumber, schemadef.TypeDecimal:
		return types.NewNullableType(types.DoubleType)
	case schemadef.TypeBoolean:
		return types.NewNullableType(types.BoolType)
	case schemadef.TypeTimestamp:
		return types.TimestampType
	case schemadef.TypeJSON:
		return types.DynType
	}
	// string, text, enum, uuid, date
	return types.NewNullableType(types.StringType)
}

// systemFieldTypes are the schemadef types of the system fields.
var systemFieldTypes = map[string]schemadef.FieldType{
	"id":         schemadef.TypeUUID,
	"version":    schemadef.TypeInteger,
	"created_at": schemadef.TypeTimestamp,
	"updated_at": schemadef.TypeTimestamp,
	"created_by": schemadef.TypeString,
	"updated_by": schemadef.TypeString,
}

// recordFields returns every field of the record type with its schemadef type, system fields
// first.
func recordFields(spec schemadef.Spec) ([]string, map[string]schemadef.FieldType) {
	names := append([]string{}, schemadef.SystemFields...)
	typ := map[string]schemadef.FieldType{}
	for _, n := range schemadef.SystemFields {
		typ[n] = systemFieldTypes[n]
	}
	for _, f := range spec.Fields {
		if _, ok := typ[f.Name]; ok {
			continue // validation refuses it; the system field wins
		}
		names = append(names, f.Name)
		typ[f.Name] = f.Type
	}
	return names, typ
}

// provider declares the three object types over the standard registry, so a select of a
// field that is not declared (record.nope) fails type-checking.
type provider struct {
	types.Provider
	fields map[string]map[string]*types.Type
	order  map[string][]string
}

func newProvider(spec schemadef.Spec) (*provider, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	p := &provider{Provider: reg, fields: map[string]map[string]*types.Type{}, order: map[string][]string{}}
	p.declare(actorTypeName, []string{"id", "kind", "roles", "attributes"}, map[string]*types.Type{
		"id":         types.StringType,
		"kind":       types.StringType,
		"roles":      types.NewListType(types.StringType),
		"attributes": types.NewMapType(types.StringType, types.DynType),
	})
	p.declare(requestTypeName, []string{"verb", "time", "ip", "reason"}, map[string]*types.Type{
		"verb":   types.StringType,
		"time":   types.TimestampType,
		"ip":     types.StringType,
		"reason": types.StringType,
	})
	names, typ := recordFields(spec)
	rec := map[string]*types.Type{}
	for _, n := range names {
		rec[n] = celType(typ[n])
	}
	// System fields are never null on a stored record.
	rec["id"], rec["created_by"], rec["updated_by"] = types.StringType, types.StringType, types.StringType
	rec["version"] = types.IntType
	p.declare(recordTypeName, names, rec)
	return p, nil
}

func (p *provider) declare(name string, order []string, fields map[string]*types.Type) {
	p.fields[name] = fields
	p.order[name] = order
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if _, ok := p.fields[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Provider.FindStructType(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if order, ok := p.order[name]; ok {
		return append([]string{}, order...), true
	}
	return p.Provider.FindStructFieldNames(name)
}

// FindStructFieldType leaves IsSet and GetFrom unset: the values are maps at run time, read
// by the standard map qualifier.
func (p *provider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if fields, ok := p.fields[name]; ok {
		t, ok := fields[field]
		if !ok {
			return nil, false
		}
		return &types.FieldType{Type: t}, true
	}
	return p.Provider.FindStructFieldType(name, field)
}

// NewValue refuses to build the platform's types in an expression: they are inputs only.
func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.fields[name]; ok {
		return types.NewErr("%s values cannot be constructed", name)
	}
	return p.Provider.NewValue(name, fields)
}

// newEnv is the CEL environment of one schema version.
func newEnv(spec schemadef.Spec) (*cel.Env, error) {
	p, err := newProvider(spec)
	if err != nil {
		return nil, err
	}
	env, err := cel.NewEnv(
		cel.CustomTypeProvider(p),
		cel.Variable(varActor, types.NewObjectType(actorTypeName)),
		cel.Variable(varRequest, types.NewObjectType(requestTypeName)),
		cel.Variable(varRecord, types.NewObjectType(recordTypeName)),
		cel.Variable(varProposed, types.NewObjectType(recordTypeName)),
		cel.CrossTypeNumericComparisons(true),
		cel.EnableMacroCallTracking(), // so a row filter's error can name the macro it refuses
		cel.ParserExpressionSizeLimit(MaxRuleBytes),
	)
	if err != nil {
		return nil, fmt.Errorf("rules: build the CEL environment: %w", err)
	}
	return env, nil
}

// compileExpr parses and type-checks one expression and applies the static limits. It
// returns the checked AST, or a message that names what is wrong.
func compileExpr(env *cel.Env, text string) (*cel.Ast, string) {
	// The messages of the checks schemadef.Validate also makes are its own, word for word, so
	// a caller that runs both can drop the duplicates.
	switch {
	case strings.TrimSpace(text) == "":
		return nil, "required"
	case len(text) > MaxRuleBytes:
		return nil, fmt.Sprintf("is %d bytes, over the limit of %d", len(text), MaxRuleBytes)
	}
	checked, iss := env.Compile(text)
	if iss != nil && iss.Err() != nil {
		return nil, issueMessage(iss)
	}
	if d := depth(checked.NativeRep().Expr()); d > MaxDepth {
		return nil, fmt.Sprintf("nests %d levels deep, over the limit of %d", d, MaxDepth)
	}
	if !checked.OutputType().IsExactType(types.BoolType) {
		return nil, fmt.Sprintf("must be a boolean expression, not %s", checked.OutputType())
	}
	est, err := env.EstimateCost(checked, sizeHints{})
	if err != nil {
		return nil, fmt.Sprintf("cost cannot be estimated: %v", err)
	}
	if est.Max > CostLimit {
		return nil, fmt.Sprintf("may cost up to %d units to evaluate, over the limit of %d (iterate over fewer or smaller lists)", est.Max, CostLimit)
	}
	return checked, ""
}

// issueMessage renders CEL's errors on one line each, with their position.
func issueMessage(iss *cel.Issues) string {
	var msgs []string
	for _, e := range iss.Errors() {
		msg := e.Message
		if e.Location != nil && e.Location.Line() > 0 {
			msg = fmt.Sprintf("%d:%d: %s", e.Location.Line(), e.Location.Column()+1, msg)
		}
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		return iss.String()
	}
	return strings.Join(msgs, "; ")
}

// depth is the nesting depth of an expression: each call, select, list or map literal,
// object literal and comprehension is one level; identifiers and literals are none. A macro
// counts as what it expands to (all(x, p) is a comprehension whose step is a call around p).
func depth(e ast.Expr) int {
	children := func() []ast.Expr {
		switch e.Kind() {
		case ast.CallKind:
			c := e.AsCall()
			out := append([]ast.Expr{}, c.Args()...)
			if c.IsMemberFunction() {
				out = append(out, c.Target())
			}
			return out
		case ast.SelectKind:
			return []ast.Expr{e.AsSelect().Operand()}
		case ast.ListKind:
			return e.AsList().Elements()
		case ast.MapKind:
			var out []ast.Expr
			for _, en := range e.AsMap().Entries() {
				out = append(out, en.AsMapEntry().Key(), en.AsMapEntry().Value())
			}
			return out
		case ast.StructKind:
			var out []ast.Expr
			for _, f := range e.AsStruct().Fields() {
				out = append(out, f.AsStructField().Value())
			}
			return out
		case ast.ComprehensionKind:
			c := e.AsComprehension()
			return []ast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()}
		}
		return nil
	}
	switch e.Kind() {
	case ast.CallKind, ast.SelectKind, ast.ListKind, ast.MapKind, ast.StructKind, ast.ComprehensionKind:
	default:
		return 0
	}
	deepest := 0
	for _, c := range children() {
		if d := depth(c); d > deepest {
			deepest = d
		}
	}
	return 1 + deepest
}

// sizeHints bounds the sizes the static cost estimate cannot see.
type sizeHints struct{}

func (sizeHints) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	var max uint64
	switch n.Type().Kind() {
	case types.StringKind, types.BytesKind, types.DynKind:
		max = maxStringSize
	case types.ListKind:
		max = maxListSize
	case types.MapKind:
		max = maxMapSize
	default:
		return nil
	}
	return &checker.SizeEstimate{Min: 0, Max: max}
}

func (sizeHints) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}

// references reports whether the checked expression reads any of the named variables.
func references(a *cel.Ast, names ...string) bool {
	native := a.NativeRep()
	found := false
	ast.PostOrderVisit(native.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() != ast.IdentKind {
			return
		}
		for _, n := range names {
			if e.AsIdent() == n {
				found = true
			}
		}
	}))
	return found
}
