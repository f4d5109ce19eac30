// Package schemadef owns the SchemaDefinition document: its Go types, parsing from YAML or
// JSON, validation with a field path in every error, and the deterministic names it maps to.
package schemadef

import "encoding/json"

// APIVersion and Kind are the only accepted values of the document header.
const (
	APIVersion = "velocity.dev/v1alpha1"
	Kind       = "SchemaDefinition"
)

// Definition is one SchemaDefinition document (SPEC.md).
type Definition struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
}

// Metadata names the definition; Name is what `schema get NAME` and approvals refer to.
type Metadata struct {
	Name string `json:"name"`
}

// Spec is the body of a definition.
type Spec struct {
	Org     string  `json:"org"`
	App     string  `json:"app"`
	Domain  string  `json:"domain"`
	Object  string  `json:"object"`
	Version int     `json:"version"`
	Fields  []Field `json:"fields"`
	Search  Search  `json:"search,omitempty"`
	Access  Access  `json:"access,omitempty"`
	Policy  Policy  `json:"policy,omitempty"`
	History History `json:"history,omitempty"`
	Archive Archive `json:"archive,omitempty"`
}

// FieldType is the type of a user field.
type FieldType string

// The field types of SPEC.md.
const (
	TypeString    FieldType = "string"
	TypeText      FieldType = "text"
	TypeInteger   FieldType = "integer"
	TypeNumber    FieldType = "number"
	TypeDecimal   FieldType = "decimal"
	TypeBoolean   FieldType = "boolean"
	TypeTimestamp FieldType = "timestamp"
	TypeDate      FieldType = "date"
	TypeUUID      FieldType = "uuid"
	TypeJSON      FieldType = "json"
	TypeEnum      FieldType = "enum"
)

// FieldTypes lists every valid type in a stable order.
var FieldTypes = []FieldType{TypeString, TypeText, TypeInteger, TypeNumber, TypeDecimal, TypeBoolean,
	TypeTimestamp, TypeDate, TypeUUID, TypeJSON, TypeEnum}

// Field is one user field.
type Field struct {
	Name      string    `json:"name"`
	Type      FieldType `json:"type"`
	Required  bool      `json:"required,omitempty"`
	MaxLength *int      `json:"maxLength,omitempty"`
	Unique    bool      `json:"unique,omitempty"`
	// Searchable defaults to true for string and text (tier 1); nil means "the default".
	Searchable *bool `json:"searchable,omitempty"`
	Filterable bool  `json:"filterable,omitempty"`
	Sortable   bool  `json:"sortable,omitempty"`
	Facet      bool  `json:"facet,omitempty"`
	Sensitive  bool  `json:"sensitive,omitempty"`
	// Values are the allowed values of an enum field.
	Values []string `json:"values,omitempty"`
	// Default is the JSON value used when a create omits the field.
	Default json.RawMessage `json:"default,omitempty"`
}

// IsSearchable reports whether the field gets a search index.
func (f Field) IsSearchable() bool {
	if f.Searchable != nil {
		return *f.Searchable
	}
	return f.Type == TypeString || f.Type == TypeText
}

// Search configures the search tier.
type Search struct {
	Tier     int    `json:"tier,omitempty"`
	Language string `json:"language,omitempty"`
}

// Search tiers; a zero Tier means DefaultSearchTier.
const (
	SearchTierTrigram  = 1
	SearchTierFullText = 2
	SearchTierEngine   = 3
	DefaultSearchTier  = SearchTierTrigram
)

// SearchLanguages are the accepted values of Search.Language, in the order of SPEC.md.
var SearchLanguages = []string{"english", "german", "french", "spanish", "portuguese", "italian",
	"dutch", "swedish", "norwegian", "danish", "russian", "chinese", "japanese"}

// Access holds the access-control layers of the definition.
type Access struct {
	// Roles maps a Velocity role to the verbs it may use (layer 1).
	Roles     map[string][]string    `json:"roles,omitempty"`
	ABAC      []ABACRule             `json:"abac,omitempty"`
	RowFilter string                 `json:"rowFilter,omitempty"`
	Fields    map[string]FieldAccess `json:"fields,omitempty"`
}

// ABACRule is a CEL rule that all requests of its verbs must pass (layer 2).
type ABACRule struct {
	Verbs []string `json:"verbs"`
	Rule  string   `json:"rule"`
}

// FieldAccess holds per-field read and write roles and the mask (layers 5 and 6).
type FieldAccess struct {
	Read  []string `json:"read,omitempty"`
	Write []string `json:"write,omitempty"`
	Mask  string   `json:"mask,omitempty"`
}

// Masks of FieldAccess.Mask; the empty mask hides the field instead.
const (
	MaskPartial = "partial" // keep the last 4 characters
	MaskFull    = "full"    // replace every character
	MaskRedact  = "redact"  // null
)

// Policy holds request and change policies.
type Policy struct {
	RequireReason   []string `json:"requireReason,omitempty"`
	BreakingChanges string   `json:"breakingChanges,omitempty"`
}

// Breaking-change policies.
const (
	BreakingRequireApproval = "requireApproval"
	BreakingAllow           = "allow"
)

// History configures the time machine.
type History struct {
	Redact []string `json:"redact,omitempty"`
}

// Archive is the archive shorthand.
type Archive struct {
	AfterDays int `json:"afterDays,omitempty"`
}

// MaxFields bounds the user fields of a definition, well inside Postgres's 1600 columns.
const MaxFields = 500

// PlatformAdminRole administers the platform itself: schemas, API keys, logins. It is not a
// schema role (a definition may not name it), so holding "admin" on one object grants
// nothing beyond that object (ADR-008).
const PlatformAdminRole = "platform_admin"

// Verbs lists every RBAC verb in a stable order.
var Verbs = []string{"read", "search", "create", "update", "delete", "history", "restore", "archive", "purge"}

// SystemFields are present on every record and reserved as user field names.
var SystemFields = []string{"id", "version", "created_at", "updated_at", "created_by", "updated_by"}

// ReservedNames cannot name a definition because /admin/schemas/{name} would be another route.
var ReservedNames = []string{"approvals"}

// ReservedOrgs cannot be used as an org because they are top-level routes.
var ReservedOrgs = []string{"admin", "auth", "healthz", "readyz", "metrics", "docs", "openapi"}

// Field returns the named user field.
func (s Spec) Field(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// RolesFor returns, sorted, the roles whose verbs include verb.
func (a Access) RolesFor(verb string) []string {
	var out []string
	for role, verbs := range a.Roles {
		for _, v := range verbs {
			if v == verb {
				out = append(out, role)
				break
			}
		}
	}
	sortStrings(out)
	return out
}
