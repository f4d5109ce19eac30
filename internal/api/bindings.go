package api

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/velocitydev/velocity/internal/store"
)

// bindingCache merges an authenticated actor's role bindings into it: the roles of every
// unexpired binding of its subject, its groups (the "groups" attribute of a token) or its API
// key, and their scope attributes, which override what the credential said. Lookups are
// cached for ttl, so a new or expired binding takes effect within ttl, without a restart.
type bindingCache struct {
	st  *store.Store
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]bindingEntry
}

type bindingEntry struct {
	bound   []store.BoundRole
	fetched time.Time
}

const maxBindingEntries = 10000

// bindingPairs are the (subject_kind, subject) pairs an actor may be bound by.
func bindingPairs(actor store.Actor) (kinds, subjects []string) {
	switch actor.Kind {
	case "jwt":
		kinds, subjects = append(kinds, store.SubjectKindSubject), append(subjects, strings.TrimPrefix(actor.ID, "jwt:"))
		var groups []string
		switch g := actor.Attributes["groups"].(type) {
		case string:
			groups = []string{g}
		case []string:
			groups = g
		case []any:
			for _, v := range g {
				if s, ok := v.(string); ok {
					groups = append(groups, s)
				}
			}
		}
		for _, g := range groups {
			kinds, subjects = append(kinds, store.SubjectKindGroup), append(subjects, g)
		}
	case "api_key":
		kinds, subjects = append(kinds, store.SubjectKindAPIKey), append(subjects, strings.TrimPrefix(actor.ID, "apikey:"))
	}
	return kinds, subjects
}

// apply returns actor with its bindings merged in. A failed lookup is an error: the caller
// fails closed.
func (c *bindingCache) apply(ctx context.Context, actor store.Actor) (store.Actor, error) {
	kinds, subjects := bindingPairs(actor)
	if len(kinds) == 0 {
		return actor, nil
	}
	key := strings.Join(kinds, ",") + "\x00" + strings.Join(subjects, "\x00")
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || now.Sub(e.fetched) >= c.ttl {
		bound, err := c.st.ActorBindings(ctx, kinds, subjects)
		if err != nil {
			return actor, err
		}
		e = bindingEntry{bound: bound, fetched: now}
		c.mu.Lock()
		if len(c.entries) >= maxBindingEntries {
			clear(c.entries)
		}
		c.entries[key] = e
		c.mu.Unlock()
	}
	return mergeBindings(actor, e.bound), nil
}

// mergeBindings adds the bound roles (sorted, without repeats) and scope attributes to actor,
// on copies: the cached credential's slices and maps are shared.
func mergeBindings(actor store.Actor, bound []store.BoundRole) store.Actor {
	if len(bound) == 0 {
		return actor
	}
	roles := slices.Clone(actor.Roles)
	attrs := maps.Clone(actor.Attributes)
	if attrs == nil {
		attrs = map[string]any{}
	}
	for _, b := range bound {
		roles = append(roles, b.Role)
		maps.Copy(attrs, b.Scope)
	}
	slices.Sort(roles)
	actor.Roles = slices.Compact(roles)
	actor.Attributes = attrs
	return actor
}
