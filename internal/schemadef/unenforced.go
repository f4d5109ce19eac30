package schemadef

import (
	"fmt"
	"slices"
)

// ReasonVerbs are the verbs whose routes enforce policy.requireReason (428 without one).
var ReasonVerbs = []string{"create", "update", "delete", "restore"}

// Unenforced lists the parts of a valid definition that this release does not act on yet.
// They change no guarantee (an index tier, a future archive threshold) and are applied with a
// warning. Access rules are all enforced; apply compiles them (rules.Validate, in the store).
func (d Definition) Unenforced() (ignored []FieldError) {
	if d.Spec.Search.Tier > SearchTierTrigram {
		ignored = append(ignored, FieldError{Path: "spec.search.tier", Message: fmt.Sprintf("tier %d search is not served yet; tier 1 (trigram) indexes are created", d.Spec.Search.Tier)})
	}
	for i, verb := range d.Spec.Policy.RequireReason {
		if !slices.Contains(ReasonVerbs, verb) {
			ignored = append(ignored, FieldError{Path: fmt.Sprintf("spec.policy.requireReason[%d]", i), Message: fmt.Sprintf("no route serves %q yet, so no reason is asked for it", verb)})
		}
	}
	if d.Spec.Archive.AfterDays > 0 {
		ignored = append(ignored, FieldError{Path: "spec.archive.afterDays", Message: "archiving is not available yet"})
	}
	for i, f := range d.Spec.Fields {
		if f.Facet {
			ignored = append(ignored, FieldError{Path: fmt.Sprintf("spec.fields[%d].facet", i), Message: "facets (tier 3 search) are not served yet"})
		}
	}
	return ignored
}
