package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/velocitydev/velocity/internal/authz"
	"github.com/velocitydev/velocity/internal/rules"
	"github.com/velocitydev/velocity/internal/schemadef"
)

// ruleCache keeps the compiled layer 2 rules of each schema version, so a reload that
// rebuilds every route compiles only what changed.
type ruleCache struct {
	mu   sync.Mutex
	sets map[string]compiledRules
}

type compiledRules struct {
	set  *rules.Set
	errs []schemadef.FieldError
}

func (c *ruleCache) get(spec schemadef.Spec) compiledRules {
	key := fmt.Sprintf("%s@%d", spec.Key(), spec.Version)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cr, ok := c.sets[key]; ok {
		return cr
	}
	set, errs := rules.Compile(spec)
	cr := compiledRules{set: set, errs: errs}
	if c.sets == nil {
		c.sets = map[string]compiledRules{}
	}
	c.sets[key] = cr
	return cr
}

// abac is layer 2: every rule of verb must hold for the actor, the request and the record
// (current) and what the write would make of it (proposed). A rule that fails to evaluate
// (timeout, cost limit, error) denies: fail closed.
func (r *records) abac(ctx context.Context, verb, reason string, current, proposed map[string]any) error {
	if len(r.t.Spec.Access.ABAC) == 0 {
		return nil
	}
	if len(r.rules.errs) > 0 || r.rules.set == nil {
		// Apply refuses such rules, so this is a definition stored before the check existed.
		return denied(authz.LayerABAC, "the access rules of "+r.t.Spec.Key()+" do not compile; re-apply the schema")
	}
	if !r.rules.set.Has(verb) {
		return nil
	}
	ip := ""
	if a, ok := ctx.Value(clientIPKey).(netip.Addr); ok && a.IsValid() {
		ip = a.String()
	}
	in := rules.Input{
		Actor:    rulesActor(ctx),
		Request:  rules.Request{Verb: verb, Time: time.Now(), IP: ip, Reason: reason},
		Record:   current,
		Proposed: proposed,
	}
	if d := r.rules.set.Check(ctx, verb, in); d != nil {
		return denied(authz.LayerABAC, d.Error())
	}
	return nil
}

// rulesActor is the request's actor as the rules see it.
func rulesActor(ctx context.Context) rules.Actor {
	a := actorOf(ctx)
	return rules.Actor{ID: a.ID, Kind: a.Kind, Roles: a.Roles, Attributes: a.Attributes}
}

// needsRecord reports whether layer 2 must see the stored record before a write of verb.
func (r *records) needsRecord(verb string) bool {
	return len(r.t.Spec.Access.ABAC) > 0 && r.rules.set != nil && r.rules.set.NeedsRecord(verb)
}

// decodeRecord reads a record's JSON for the rules; nil stays nil.
func decodeRecord(raw []byte) (map[string]any, error) {
	if raw == nil {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// merged is the record a merge patch would leave: current with body's fields set.
func merged(current map[string]any, body map[string]json.RawMessage) (map[string]any, error) {
	out := make(map[string]any, len(current)+len(body))
	for k, v := range current {
		out[k] = v
	}
	for k, raw := range body {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// rowFilterFirst turns err, a later layer's denial of a write, into layer 4's when the row
// filter already refuses the record the write proposes: the first layer that denies speaks.
// Postgres enforces layer 4 on every write regardless.
func (r *records) rowFilterFirst(ctx context.Context, proposed map[string]any, err error) error {
	if r.rules.set == nil {
		return err
	}
	in := rules.Input{Actor: rulesActor(ctx), Proposed: proposed}
	if r.rules.set.RowFilterDenies(ctx, in) {
		return denied(authz.LayerRowFilter, "the record would be outside the rows your row filter allows")
	}
	return err
}
