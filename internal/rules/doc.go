// Package rules owns the CEL of a SchemaDefinition's access section: it compiles the ABAC
// rules of spec.access.abac (layer 2) and evaluates them per request, and it translates
// spec.access.rowFilter (layer 4) into the SQL of an RLS policy.
//
// Both see the variables actor (id, kind, roles, attributes), request (verb, time, ip,
// reason), record and proposed, typed from the schema: a field that does not exist is a
// compile error, and user fields may be null. Every rule is limited to MaxRuleBytes,
// MaxDepth levels of nesting and CostLimit (checked statically when the schema is applied,
// and again at run time with EvalTimeout); a rule that fails at run time denies.
//
// A row filter reads only actor and record, and only a subset of CEL that maps one to one onto
// SQL: comparisons, in (a list literal, actor.roles or a list attribute), &&, ||, !, literals,
// record fields of string, number, boolean and uuid types, and actor.id, actor.kind,
// actor.roles and actor.attributes. The SQL means what the CEL means, with two differences,
// both of which show fewer rows:
//
//   - A comparison with a null value (a null field, a missing attribute, an attribute of
//     another JSON type) is false, != included: record.region != 'eu' does not show rows
//     whose region is null. !e is NOT coalesce(e, false), so !(record.region == 'eu') does.
//   - An attribute is read as the type of what it is compared with (text, number or
//     boolean), and two attributes compare as text; an attribute of another type is null.
//
// Strings order by code point, as in CEL (COLLATE "C" on <, <=, > and >=; an index on the
// column serves those only if it has that collation, and serves equality always).
// Actor values become scalar subqueries, which Postgres evaluates once per statement, and a
// record field stays a bare column, so a btree on it can serve the filter.
package rules
