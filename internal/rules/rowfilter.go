package rules

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
)

// Target is the table a row filter's SQL reads a record from.
type Target int

const (
	// MainTable reads record.f from the column "f" of the schema's table.
	MainTable Target = iota
	// HistoryImage reads record.f from the jsonb column image of a history row.
	HistoryImage
)

const rowFilterPath = "spec.access.rowFilter"

// supported is appended to every message about something a row filter cannot use.
const supported = "(supported: comparisons, in, &&, ||, !, record fields, actor.id/kind/roles/attributes)"

// RowFilterSQL translates spec.access.rowFilter into a SQL boolean expression over target,
// for an RLS policy. It returns "" when the spec has no row filter, and errors (with the
// path spec.access.rowFilter) when the filter is not valid CEL or uses anything outside the
// supported subset.
func RowFilterSQL(spec schemadef.Spec, target Target) (string, []schemadef.FieldError) {
	if spec.Access.RowFilter == "" {
		return "", nil
	}
	checked, errs := compileRowFilter(spec)
	if errs != nil {
		return "", errs
	}
	return translate(spec, checked, target)
}

// ValidateRowFilter reports every reason spec.access.rowFilter cannot become the policies of
// both the table and its history.
func ValidateRowFilter(spec schemadef.Spec) []schemadef.FieldError {
	if spec.Access.RowFilter == "" {
		return nil
	}
	checked, errs := compileRowFilter(spec)
	if errs != nil {
		return errs
	}
	if _, errs := translate(spec, checked, MainTable); errs != nil {
		return errs
	}
	_, errs = translate(spec, checked, HistoryImage)
	return errs
}

// Validate returns everything about spec's access rules that the apply path must refuse:
// ABAC rules that do not compile or break a limit, and a row filter that cannot become SQL.
func Validate(spec schemadef.Spec) []schemadef.FieldError {
	_, errs := Compile(spec)
	return append(errs, ValidateRowFilter(spec)...)
}

func compileRowFilter(spec schemadef.Spec) (*cel.Ast, []schemadef.FieldError) {
	env, err := newEnv(spec)
	if err != nil {
		return nil, []schemadef.FieldError{{Path: rowFilterPath, Message: err.Error()}}
	}
	checked, msg := compileExpr(env, spec.Access.RowFilter)
	if msg != "" {
		return nil, []schemadef.FieldError{{Path: rowFilterPath, Message: msg}}
	}
	return checked, nil
}

func translate(spec schemadef.Spec, checked *cel.Ast, target Target) (string, []schemadef.FieldError) {
	_, fields := recordFields(spec)
	t := &translator{spec: spec, fields: fields, target: target, ast: checked.NativeRep()}
	sql, err := t.boolean(t.ast.Expr())
	if err != nil {
		return "", []schemadef.FieldError{{Path: rowFilterPath, Message: err.Error()}}
	}
	return sql, nil
}

// sqlType is the SQL type of an operand, as far as comparisons care.
type sqlType int

const (
	typeAny     sqlType = iota // an actor attribute: typed by what it is compared with
	typeText                   // text
	typeInt                    // bigint
	typeFloat                  // double precision
	typeNumeric                // numeric
	typeBool                   // boolean
)

func (t sqlType) numeric() bool { return t == typeInt || t == typeFloat || t == typeNumeric }

func (t sqlType) String() string {
	return [...]string{"an attribute", "text", "an integer", "a number", "a number", "a boolean"}[t]
}

// arrayType is the SQL array type of a list compared with a value of type t.
func (t sqlType) arrayType() string {
	return [...]string{"text[]", "text[]", "bigint[]", "double precision[]", "numeric[]", "boolean[]"}[t]
}

type operandKind int

const (
	valueOperand operandKind = iota // a scalar SQL expression of a known type
	attrOperand                     // actor.attributes.<name>
	nullOperand                     // the literal null
	rolesOperand                    // actor.roles
	listOperand                     // a list literal
)

type operand struct {
	kind operandKind
	sql  string
	typ  sqlType
	attr string // attrOperand: the attribute's name
	// fixed is set for a value that is the same for every row of a statement: a literal,
	// actor.id, actor.kind, an attribute.
	fixed bool
	elems []operand // listOperand: literals
	desc  string    // how the CEL source names it, for messages
}

// attributeHelpers are the SQL functions (sql/functions/rules.sql) that read an actor
// attribute as the type it is compared with; NULL when it is missing or of another type.
var attributeHelpers = map[sqlType]string{
	typeAny:     "velocity.attribute_text",
	typeText:    "velocity.attribute_text",
	typeInt:     "velocity.attribute_numeric",
	typeFloat:   "velocity.attribute_numeric",
	typeNumeric: "velocity.attribute_numeric",
	typeBool:    "velocity.attribute_bool",
}

// attributeSQL is helper(attributes, name) as a scalar subquery, which Postgres runs once per
// statement. The attributes come from a subquery that OFFSET 0 keeps apart, so the helper sees
// a plain column and is inlined: the actor is parsed once, though the helper reads the
// attribute twice (sql/functions/rules.sql). Passed as an expression or a sublink instead,
// the helper is not inlined and costs a SQL function call.
func attributeSQL(helper, name string) string {
	return fmt.Sprintf("(SELECT %s(a.v, %s) FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)", helper, sqlbuild.Literal(name))
}

// as is the SQL of a value or attribute operand used as type t. Actor values are scalar
// subqueries so Postgres evaluates them once per statement (an InitPlan), not once per row.
func (o operand) as(t sqlType) string {
	if o.kind == attrOperand {
		return attributeSQL(attributeHelpers[t], o.attr)
	}
	return o.sql
}

type translator struct {
	spec   schemadef.Spec
	fields map[string]schemadef.FieldType
	target Target
	ast    *ast.AST
}

func unsupported(what string) error {
	return fmt.Errorf("%s is not supported in row filters %s", what, supported)
}

// boolean translates an expression used as a condition.
func (t *translator) boolean(e ast.Expr) (string, error) {
	switch e.Kind() {
	case ast.CallKind:
		c := e.AsCall()
		args := c.Args()
		switch c.FunctionName() {
		case operators.LogicalAnd, operators.LogicalOr:
			op := " AND "
			if c.FunctionName() == operators.LogicalOr {
				op = " OR "
			}
			parts := make([]string, len(args))
			for i, a := range args {
				var err error
				if parts[i], err = t.boolean(a); err != nil {
					return "", err
				}
			}
			return "(" + strings.Join(parts, op) + ")", nil
		case operators.LogicalNot:
			// A comparison with a null is NULL in SQL, false here: without coalesce, NOT would
			// keep it NULL and "not equal to x" would hide the rows where the value is null.
			x, err := t.boolean(args[0])
			if err != nil {
				return "", err
			}
			return "(NOT coalesce(" + x + ", false))", nil
		case operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
			return t.comparison(c.FunctionName(), args[0], args[1])
		case operators.In:
			return t.in(args[0], args[1])
		}
	}
	o, err := t.operand(e)
	if err != nil {
		return "", err
	}
	switch {
	case o.kind == attrOperand:
		return o.as(typeBool), nil
	case o.kind == valueOperand && o.typ == typeBool:
		return o.sql, nil
	}
	return "", fmt.Errorf("%s is not a condition: use a comparison", o.desc)
}

var comparisonSQL = map[string]string{
	operators.Equals:        "=",
	operators.NotEquals:     "<>",
	operators.Less:          "<",
	operators.LessEquals:    "<=",
	operators.Greater:       ">",
	operators.GreaterEquals: ">=",
}

var comparisonCEL = map[string]string{
	operators.Equals:        "==",
	operators.NotEquals:     "!=",
	operators.Less:          "<",
	operators.LessEquals:    "<=",
	operators.Greater:       ">",
	operators.GreaterEquals: ">=",
}

func (t *translator) comparison(fn string, le, re ast.Expr) (string, error) {
	l, err := t.operand(le)
	if err != nil {
		return "", err
	}
	r, err := t.operand(re)
	if err != nil {
		return "", err
	}
	for _, o := range []operand{l, r} {
		switch o.kind {
		case rolesOperand, listOperand:
			return "", fmt.Errorf("%s cannot be compared with %s: use it on the right of in", o.desc, comparisonCEL[fn])
		}
	}
	if l.kind == nullOperand || r.kind == nullOperand {
		if fn != operators.Equals && fn != operators.NotEquals {
			return "", fmt.Errorf("null can only be compared with == and !=")
		}
		x := l
		if l.kind == nullOperand {
			x = r
		}
		if x.kind == nullOperand {
			return map[bool]string{true: "TRUE", false: "FALSE"}[fn == operators.Equals], nil
		}
		sql := x.sql
		if x.kind == attrOperand {
			sql = attributeSQL("velocity.attribute", x.attr)
		}
		if fn == operators.Equals {
			return "(" + sql + " IS NULL)", nil
		}
		return "(" + sql + " IS NOT NULL)", nil
	}
	typ, err := common(l, r, comparisonCEL[fn])
	if err != nil {
		return "", err
	}
	left := l.as(typ)
	if typ == typeText && fn != operators.Equals && fn != operators.NotEquals {
		// CEL orders strings by code point, which is the C collation's order in UTF-8.
		left += ` COLLATE "C"`
	}
	return "(" + left + " " + comparisonSQL[fn] + " " + r.as(typ) + ")", nil
}

// common is the type two operands are compared as: an attribute takes the type of the other
// side, and two attributes compare as text.
func common(l, r operand, op string) (sqlType, error) {
	switch {
	case l.typ == typeAny:
		if r.typ == typeAny {
			return typeText, nil
		}
		return r.typ, nil
	case r.typ == typeAny, l.typ == r.typ:
		return l.typ, nil
	case l.typ.numeric() && r.typ.numeric():
		return l.typ, nil // two numbers: Postgres compares them as the wider type
	}
	return 0, fmt.Errorf("%s (%s) cannot be compared with %s (%s) using %s", l.desc, l.typ, r.desc, r.typ, op)
}

func (t *translator) in(xe, le ast.Expr) (string, error) {
	x, err := t.operand(xe)
	if err != nil {
		return "", err
	}
	l, err := t.operand(le)
	if err != nil {
		return "", err
	}
	switch x.kind {
	case valueOperand, attrOperand:
	default:
		return "", fmt.Errorf("%s cannot be the left side of in", x.desc)
	}
	switch l.kind {
	case listOperand:
		if len(l.elems) == 0 {
			return "FALSE", nil
		}
		elemType := typeAny
		for _, e := range l.elems {
			typ, err := common(operand{typ: elemType, desc: "the list's elements"}, e, "in")
			if err != nil {
				return "", err
			}
			if e.typ == typeNumeric || elemType == typeNumeric {
				typ = typeNumeric // a mix of int and double literals
			}
			elemType = typ
		}
		typ, err := common(x, operand{typ: elemType, desc: "the list's elements"}, "in")
		if err != nil {
			return "", err
		}
		switch {
		case x.kind == attrOperand && elemType.numeric():
			typ = typeNumeric // the attribute helper's type
		case x.kind == attrOperand:
			typ = elemType
		case typ == typeInt && elemType != typeInt:
			typ = typeNumeric // an integer among numbers that are not all integers
		}
		items := make([]string, len(l.elems))
		for i, e := range l.elems {
			items[i] = e.sql
		}
		return fmt.Sprintf("(%s = ANY (ARRAY[%s]::%s))", x.as(typ), strings.Join(items, ", "), typ.arrayType()), nil
	case rolesOperand, attrOperand:
		if x.typ != typeText && x.typ != typeAny {
			return "", fmt.Errorf("%s (%s) cannot be looked up in %s, which holds text", x.desc, x.typ, l.desc)
		}
		// The cast makes the subquery an array expression: ANY ((SELECT ...)) alone would
		// compare x with each row of the subquery, a text[].
		list := "(SELECT velocity.current_actor_roles())::text[]"
		if l.kind == rolesOperand && x.fixed {
			// 'admin' in actor.roles is the same for every row: one boolean per statement.
			return fmt.Sprintf("(SELECT %s = ANY (velocity.current_actor_roles()))", x.as(typeText)), nil
		}
		if l.kind == attrOperand {
			list = attributeSQL("velocity.attribute_texts", l.attr) + "::text[]"
		}
		return fmt.Sprintf("(%s = ANY (%s))", x.as(typeText), list), nil
	}
	return "", fmt.Errorf("in needs a list literal, actor.roles or an actor attribute on its right, not %s", l.desc)
}

// operand translates a value: a literal, a record field, an actor value or a condition.
func (t *translator) operand(e ast.Expr) (operand, error) {
	switch e.Kind() {
	case ast.LiteralKind:
		return literal(e.AsLiteral())
	case ast.ListKind:
		l := operand{kind: listOperand, desc: "a list"}
		for _, el := range e.AsList().Elements() {
			o, err := t.operand(el)
			if err != nil {
				return operand{}, err
			}
			if el.Kind() != ast.LiteralKind && !isNegativeLiteral(el) || o.kind != valueOperand {
				return operand{}, fmt.Errorf("a list in a row filter may hold only string, number and boolean literals")
			}
			l.elems = append(l.elems, o)
		}
		return l, nil
	case ast.IdentKind:
		return operand{}, t.identError(e.AsIdent())
	case ast.SelectKind:
		return t.selectOperand(e)
	case ast.ComprehensionKind:
		return operand{}, unsupported(t.macroName(e))
	case ast.CallKind:
		c := e.AsCall()
		switch c.FunctionName() {
		case operators.Negate:
			if isNegativeLiteral(e) {
				o, err := literal(c.Args()[0].AsLiteral())
				o.sql = "-" + o.sql
				return o, err
			}
		case operators.Index:
			return t.indexOperand(c)
		case operators.LogicalAnd, operators.LogicalOr, operators.LogicalNot, operators.In,
			operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
			sql, err := t.boolean(e)
			return operand{kind: valueOperand, sql: sql, typ: typeBool, desc: "a condition"}, err
		}
		return operand{}, unsupported(callName(c))
	}
	return operand{}, unsupported("this expression")
}

func isNegativeLiteral(e ast.Expr) bool {
	if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != operators.Negate {
		return false
	}
	arg := e.AsCall().Args()[0]
	if arg.Kind() != ast.LiteralKind {
		return false
	}
	switch arg.AsLiteral().(type) {
	case types.Int, types.Double:
		return true
	}
	return false
}

func literal(v any) (operand, error) {
	switch x := v.(type) {
	case types.String:
		return operand{sql: sqlbuild.Literal(string(x)), typ: typeText, desc: "a string", fixed: true}, nil
	case types.Int:
		return operand{sql: strconv.FormatInt(int64(x), 10), typ: typeInt, desc: "an integer", fixed: true}, nil
	case types.Uint:
		return operand{sql: strconv.FormatUint(uint64(x), 10), typ: typeNumeric, desc: "an integer", fixed: true}, nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return operand{}, fmt.Errorf("the number %v is not supported in row filters", f)
		}
		s := strconv.FormatFloat(f, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0" // numeric, like the CEL double it is
		}
		return operand{sql: s, typ: typeNumeric, desc: "a number", fixed: true}, nil
	case types.Bool:
		if x {
			return operand{sql: "TRUE", typ: typeBool, desc: "true"}, nil
		}
		return operand{sql: "FALSE", typ: typeBool, desc: "false"}, nil
	case types.Null:
		return operand{kind: nullOperand, desc: "null"}, nil
	}
	return operand{}, unsupported(fmt.Sprintf("a %T literal", v))
}

func (t *translator) identError(name string) error {
	switch name {
	case varRecord:
		return fmt.Errorf("record can only be used to name a field, as record.<field>")
	case varActor:
		return fmt.Errorf("actor can only be used as actor.id, actor.kind, actor.roles or actor.attributes.<name>")
	case varRequest, varProposed:
		return unsupported(name)
	}
	// Only a macro's iteration variable can be another name, and the macro is refused first.
	return unsupported(fmt.Sprintf("the variable %q", name))
}

func (t *translator) selectOperand(e ast.Expr) (operand, error) {
	sel := e.AsSelect()
	if sel.IsTestOnly() {
		return operand{}, unsupported(`"has"`)
	}
	x := sel.Operand()
	switch {
	case x.Kind() == ast.IdentKind && x.AsIdent() == varRecord:
		return t.field(sel.FieldName())
	case x.Kind() == ast.IdentKind && x.AsIdent() == varActor:
		switch sel.FieldName() {
		case "id":
			return operand{sql: "(SELECT velocity.current_actor_id())", typ: typeText, desc: "actor.id", fixed: true}, nil
		case "kind":
			return operand{sql: "(SELECT velocity.current_actor_kind())", typ: typeText, desc: "actor.kind", fixed: true}, nil
		case "roles":
			return operand{kind: rolesOperand, desc: "actor.roles"}, nil
		}
		return operand{}, fmt.Errorf("actor.attributes must name an attribute, as actor.attributes.<name>")
	case isAttributes(x):
		return operand{kind: attrOperand, attr: sel.FieldName(), typ: typeAny, desc: "actor.attributes." + sel.FieldName(), fixed: true}, nil
	case x.Kind() == ast.IdentKind:
		return operand{}, t.identError(x.AsIdent())
	}
	if _, err := t.operand(x); err != nil {
		return operand{}, err // what is wrong with the operand itself, e.g. a json field
	}
	return operand{}, unsupported("selecting a field of " + t.describe(x))
}

func (t *translator) indexOperand(c ast.CallExpr) (operand, error) {
	x, key := c.Args()[0], c.Args()[1]
	if isAttributes(x) && key.Kind() == ast.LiteralKind {
		if name, ok := key.AsLiteral().(types.String); ok {
			return operand{kind: attrOperand, attr: string(name), typ: typeAny, desc: fmt.Sprintf("actor.attributes[%q]", string(name)), fixed: true}, nil
		}
	}
	return operand{}, unsupported(`indexing other than actor.attributes['name']`)
}

// isAttributes reports whether e is actor.attributes.
func isAttributes(e ast.Expr) bool {
	if e.Kind() != ast.SelectKind || e.AsSelect().IsTestOnly() || e.AsSelect().FieldName() != "attributes" {
		return false
	}
	x := e.AsSelect().Operand()
	return x.Kind() == ast.IdentKind && x.AsIdent() == varActor
}

func (t *translator) describe(e ast.Expr) string {
	switch e.Kind() {
	case ast.IdentKind:
		return e.AsIdent()
	case ast.SelectKind:
		return t.describe(e.AsSelect().Operand()) + "." + e.AsSelect().FieldName()
	case ast.CallKind:
		return "the result of " + callName(e.AsCall())
	}
	return "an expression"
}

// field is record.<name>: a column of the table, or a key of the history row's image.
func (t *translator) field(name string) (operand, error) {
	ft, ok := t.fields[name]
	if !ok {
		return operand{}, fmt.Errorf("record has no field %q", name) // the type-checker refuses it first
	}
	desc := "record." + name
	var typ sqlType
	switch ft {
	case schemadef.TypeString, schemadef.TypeText, schemadef.TypeEnum, schemadef.TypeUUID:
		typ = typeText
	case schemadef.TypeInteger:
		typ = typeInt
	case schemadef.TypeNumber:
		typ = typeFloat
	case schemadef.TypeDecimal:
		typ = typeNumeric
	case schemadef.TypeBoolean:
		typ = typeBool
	default:
		return operand{}, fmt.Errorf("%s: %s fields are not supported in row filters %s", desc, ft, supported)
	}
	if t.target == HistoryImage {
		if slices.Contains(t.spec.History.Redact, name) {
			return operand{}, fmt.Errorf("%s is redacted in history (spec.history.redact), which stores only a hash of it, so history could not be filtered by it", desc)
		}
		sql := fmt.Sprintf("(image ->> %s)", sqlbuild.Literal(name))
		switch typ {
		case typeInt:
			sql = "(" + sql + "::bigint)"
		case typeFloat, typeNumeric:
			typ = typeNumeric
			sql = "(" + sql + "::numeric)"
		case typeBool:
			sql = "(" + sql + "::boolean)"
		}
		return operand{sql: sql, typ: typ, desc: desc}, nil
	}
	sql := sqlbuild.Ident(name)
	if ft == schemadef.TypeUUID {
		sql += "::text"
	}
	return operand{sql: sql, typ: typ, desc: desc}, nil
}

// macroName names the macro a comprehension was expanded from.
func (t *translator) macroName(e ast.Expr) string {
	if call, ok := t.ast.SourceInfo().GetMacroCall(e.ID()); ok && call.Kind() == ast.CallKind {
		return strconv.Quote(call.AsCall().FunctionName())
	}
	return "a comprehension"
}

// callName names a function or operator the way the CEL source spells it.
func callName(c ast.CallExpr) string {
	names := map[string]string{
		operators.Add: `the operator "+"`, operators.Subtract: `the operator "-"`, operators.Multiply: `the operator "*"`,
		operators.Divide: `the operator "/"`, operators.Modulo: `the operator "%"`, operators.Negate: `negation with "-"`,
		operators.Conditional: `the conditional operator "?:"`, operators.Index: "indexing",
		operators.OptIndex: `optional indexing "[?]"`, operators.OptSelect: `optional selection "?."`,
	}
	if n, ok := names[c.FunctionName()]; ok {
		return n
	}
	return strconv.Quote(c.FunctionName())
}
