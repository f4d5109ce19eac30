package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/velocitydev/velocity/internal/schemadef"
)

// Actor is who a request acts for, as a rule sees it.
type Actor struct {
	ID         string
	Kind       string
	Roles      []string
	Attributes map[string]any
}

// Request is what a rule sees of the request. A zero Time reads as the time of the check; an
// empty Verb as the verb being checked.
type Request struct {
	Verb   string
	Time   time.Time
	IP     string
	Reason string
}

// Input is everything one check evaluates against.
type Input struct {
	Actor   Actor
	Request Request
	// Record is the current record as encoding/json decodes it (float64 numbers, RFC 3339
	// strings for times); nil when there is none (a create).
	Record map[string]any
	// Proposed is the record as the write would leave it; nil when there is none (a read or
	// a delete).
	Proposed map[string]any
}

// listVerbs act on many records at once, so their rules cannot read one record; per-record
// read rules are the row filter's job.
var listVerbs = []string{"read", "search", "history", "archive"}

// Errors a Denial carries when a rule could not be evaluated.
var (
	ErrTimeout   = errors.New("timeout")
	ErrCostLimit = errors.New("cost limit exceeded")
	ErrNotBool   = errors.New("the rule did not return a boolean")
)

// Set holds the compiled ABAC rules of one schema version. It is safe for concurrent use.
type Set struct {
	rules  []rule
	byVerb map[string][]int // indexes into rules, in document order
	fields map[string]schemadef.FieldType
	// filter is spec.access.rowFilter as a CEL program, for RowFilterDenies; nil without one.
	filter cel.Program
}

type rule struct {
	index       int // in spec.access.abac
	expr        string
	prg         cel.Program
	err         error // compile error: the rule denies every request of its verbs
	readsRecord bool
}

// Compile compiles every rule of spec.access.abac, once per schema version. Each problem is
// reported with its path. The returned Set is never nil: a rule that did not compile denies
// every request of its verbs, so a caller that ignores the errors still fails closed.
func Compile(spec schemadef.Spec) (*Set, []schemadef.FieldError) {
	_, fields := recordFields(spec)
	s := &Set{byVerb: map[string][]int{}, fields: fields}
	if spec.Access.RowFilter == "" && len(spec.Access.ABAC) == 0 {
		return s, nil
	}
	env, envErr := newEnv(spec)
	if spec.Access.RowFilter != "" && envErr == nil {
		// Errors are ValidateRowFilter's to report; without a program the filter says nothing.
		if checked, msg := compileExpr(env, spec.Access.RowFilter); msg == "" {
			s.filter, _ = env.Program(checked, cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(interruptEvery), cel.EvalOptions(cel.OptOptimize))
		}
	}
	if len(spec.Access.ABAC) == 0 {
		return s, nil
	}
	var errs []schemadef.FieldError
	for i, r := range spec.Access.ABAC {
		path := fmt.Sprintf("spec.access.abac[%d]", i)
		c := rule{index: i, expr: r.Rule}
		if len(r.Verbs) == 0 {
			errs = append(errs, schemadef.FieldError{Path: path + ".verbs", Message: "at least one verb is required"})
		}
		for j, v := range r.Verbs {
			if !slices.Contains(schemadef.Verbs, v) {
				errs = append(errs, schemadef.FieldError{Path: fmt.Sprintf("%s.verbs[%d]", path, j), Message: fmt.Sprintf("unknown verb %q", v)})
			}
		}
		msg := ""
		var checked *cel.Ast
		if envErr != nil {
			msg = envErr.Error()
		} else {
			checked, msg = compileExpr(env, r.Rule)
		}
		if checked != nil {
			c.readsRecord = references(checked, varRecord, varProposed)
			for _, v := range r.Verbs {
				if c.readsRecord && slices.Contains(listVerbs, v) {
					msg = fmt.Sprintf("a rule for %q cannot read record or proposed, because %s acts on many records at once: use spec.access.rowFilter for per-record read rules", v, v)
					break
				}
			}
		}
		if msg == "" {
			var err error
			c.prg, err = env.Program(checked,
				cel.CostLimit(CostLimit),
				cel.InterruptCheckFrequency(interruptEvery),
				cel.EvalOptions(cel.OptOptimize))
			if err != nil {
				msg = fmt.Sprintf("cannot be planned: %v", err)
			}
		}
		if msg != "" {
			errs = append(errs, schemadef.FieldError{Path: path + ".rule", Message: msg})
			c.err = errors.New(msg)
			c.prg, c.readsRecord = nil, false // it denies without looking
		}
		s.rules = append(s.rules, c)
		for _, v := range r.Verbs {
			if !slices.Contains(s.byVerb[v], len(s.rules)-1) {
				s.byVerb[v] = append(s.byVerb[v], len(s.rules)-1)
			}
		}
	}
	return s, errs
}

// Has reports whether any rule applies to verb.
func (s *Set) Has(verb string) bool { return s != nil && len(s.byVerb[verb]) > 0 }

// NeedsRecord reports whether a rule of verb reads record or proposed, so the caller must
// load the record before Check.
func (s *Set) NeedsRecord(verb string) bool {
	if s == nil {
		return false
	}
	for _, i := range s.byVerb[verb] {
		if s.rules[i].readsRecord {
			return true
		}
	}
	return false
}

// Denial says which rule denied a request. Err is set when the rule could not be evaluated
// (timeout, cost limit, a runtime error such as a missing attribute, a non-boolean result, a
// rule that did not compile): the request is denied all the same.
type Denial struct {
	Rule int // index in spec.access.abac
	Expr string
	Verb string
	Err  error
}

func (d *Denial) Error() string {
	if d.Err != nil {
		return fmt.Sprintf("rule spec.access.abac[%d] could not be evaluated: %v", d.Rule, d.Err)
	}
	return fmt.Sprintf("rule spec.access.abac[%d] denied %s", d.Rule, d.Verb)
}

func (d *Denial) Unwrap() error { return d.Err }

// Check evaluates every rule of verb in document order and returns the first denial, or nil
// when every rule returned true. Each evaluation has EvalTimeout and CostLimit.
func (s *Set) Check(ctx context.Context, verb string, in Input) *Denial {
	if !s.Has(verb) {
		return nil
	}
	idx := s.byVerb[verb]
	deny := func(i int, err error) *Denial {
		return &Denial{Rule: s.rules[i].index, Expr: s.rules[i].expr, Verb: verb, Err: err}
	}
	vars := map[string]any{
		varActor:    actorValue(in.Actor),
		varRequest:  requestValue(verb, in.Request),
		varRecord:   types.NullValue,
		varProposed: types.NullValue,
	}
	if s.NeedsRecord(verb) {
		first := idx[0]
		for _, i := range idx {
			if s.rules[i].readsRecord {
				first = i
				break
			}
		}
		for name, rec := range map[string]map[string]any{varRecord: in.Record, varProposed: in.Proposed} {
			v, err := recordValue(s.fields, rec)
			if err != nil {
				return deny(first, fmt.Errorf("%s: %w", name, err))
			}
			vars[name] = v
		}
	}
	act, err := cel.NewActivation(vars)
	if err != nil {
		return deny(idx[0], err)
	}
	for _, i := range idx {
		r := s.rules[i]
		if r.prg == nil {
			return deny(i, r.err)
		}
		if err := ctx.Err(); err != nil {
			return deny(i, contextError(err))
		}
		out, err := eval(ctx, r.prg, act)
		if err != nil {
			return deny(i, err)
		}
		ok, isBool := out.Value().(bool)
		if !isBool {
			return deny(i, ErrNotBool)
		}
		if !ok {
			return deny(i, nil)
		}
	}
	return nil
}

func eval(ctx context.Context, prg cel.Program, act cel.Activation) (ref.Val, error) {
	// The deadline is the evaluation's own: deriving it from the request's context would
	// register it with the request's cancellation on every call, which profiling showed to
	// cost more than a simple rule's evaluation. The caller checks ctx before each rule.
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), EvalTimeout)
	defer cancel()
	out, _, err := prg.ContextEval(ectx, act)
	if err == nil && types.IsError(out) {
		err = out.(*types.Err)
	}
	if err == nil {
		return out, nil
	}
	var cancelled interpreter.EvalCancelledError
	switch {
	case errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded:
		return nil, ErrCostLimit
	case errors.Is(err, interpreter.InterruptError{}) || ectx.Err() != nil:
		return nil, contextError(ectx.Err())
	}
	return nil, err
}

// contextError names why an evaluation stopped: its deadline or the caller's cancellation.
func contextError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return ErrTimeout
}

func actorValue(a Actor) map[string]any {
	roles := a.Roles
	if roles == nil {
		roles = []string{}
	}
	attrs := a.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	return map[string]any{"id": a.ID, "kind": a.Kind, "roles": roles, "attributes": attrs}
}

func requestValue(verb string, r Request) map[string]any {
	if r.Verb == "" {
		r.Verb = verb
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	return map[string]any{"verb": r.Verb, "time": r.Time, "ip": r.IP, "reason": r.Reason}
}

// recordValue converts a decoded JSON record into the values its CEL type declares; every
// declared field is present, null when the record does not have it. Unknown keys are dropped.
func recordValue(fields map[string]schemadef.FieldType, rec map[string]any) (ref.Val, error) {
	if rec == nil {
		return types.NullValue, nil
	}
	out := make(map[string]any, len(fields))
	for name, t := range fields {
		v, err := fieldValue(t, rec[name])
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", name, err)
		}
		out[name] = v
	}
	return types.NewStringInterfaceMap(types.DefaultTypeAdapter, out), nil
}

func fieldValue(t schemadef.FieldType, v any) (ref.Val, error) {
	if v == nil {
		return types.NullValue, nil
	}
	switch t {
	case schemadef.TypeInteger:
		switch x := v.(type) {
		case int64:
			return types.Int(x), nil
		case int:
			return types.Int(x), nil
		case json.Number:
			if i, err := x.Int64(); err == nil {
				return types.Int(i), nil
			}
		}
		f, err := number(v)
		if err != nil {
			return nil, err
		}
		if f != math.Trunc(f) || f >= 1<<63 || f < -(1<<63) {
			return nil, fmt.Errorf("%v is not an integer", v)
		}
		return types.Int(int64(f)), nil
	case schemadef.TypeNumber, schemadef.TypeDecimal:
		f, err := number(v)
		if err != nil {
			return nil, err
		}
		return types.Double(f), nil
	case schemadef.TypeBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("%v is not a boolean", v)
		}
		return types.Bool(b), nil
	case schemadef.TypeTimestamp:
		switch x := v.(type) {
		case time.Time:
			return types.Timestamp{Time: x}, nil
		case string:
			ts, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, fmt.Errorf("%q is not an RFC 3339 time", x)
			}
			return types.Timestamp{Time: ts}, nil
		}
		return nil, fmt.Errorf("%v is not a time", v)
	case schemadef.TypeJSON:
		if n, ok := v.(json.Number); ok {
			f, err := n.Float64()
			if err != nil {
				return nil, err
			}
			return types.Double(f), nil
		}
		return types.DefaultTypeAdapter.NativeToValue(v), nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%v is not a string", v)
	}
	return types.String(s), nil
}

// number accepts what a JSON decoder or Go code hands over for a number; a decimal may
// arrive as a string to keep its digits.
func number(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case json.Number:
		return x.Float64()
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
		return f, nil
	}
	return 0, fmt.Errorf("%v is not a number", v)
}

// RowFilterDenies reports whether the row filter evaluates, cleanly, to false for the actor
// and in.Proposed. Postgres enforces the row filter (layer 4); the API asks this only for a
// write that a later layer already refuses, so that the denial names the earliest layer. An
// evaluation error, or no filter, says nothing (false): Postgres has the last word.
func (s *Set) RowFilterDenies(ctx context.Context, in Input) bool {
	if s == nil || s.filter == nil {
		return false
	}
	rec, err := recordValue(s.fields, in.Proposed)
	if err != nil {
		return false
	}
	act, err := cel.NewActivation(map[string]any{
		varActor: actorValue(in.Actor), varRecord: rec, varRequest: types.NullValue, varProposed: types.NullValue,
	})
	if err != nil {
		return false
	}
	out, err := eval(ctx, s.filter, act)
	if err != nil {
		return false
	}
	ok, isBool := out.Value().(bool)
	return isBool && !ok
}
