package api

import (
	"encoding/json"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
)

// recordSchemas are the OpenAPI components of one object, registered under its key
// (acme.shop.sales.orders, acme.shop.sales.orders.create, ...).
type recordSchemas struct {
	record, create, patch, list, query string   // $ref targets
	extra                              []string // names of the object's other components
}

// typeName is the component name of an object: its key, org.app.domain.object. The parts
// cannot contain dots, so two objects never share a name (CamelCase would: a_b.c and a.b_c).
func typeName(spec schemadef.Spec) string { return spec.Key() }

// names are the component names of the object's schemas.
func (r recordSchemas) names() []string {
	out := make([]string, 0, 5)
	for _, ref := range []string{r.record, r.create, r.patch, r.list, r.query} {
		out = append(out, strings.TrimPrefix(ref, "#/components/schemas/"))
	}
	out = append(out, r.extra...)
	return out
}

func fieldSchema(f schemadef.Field) *huma.Schema {
	s := &huma.Schema{}
	switch f.Type {
	case schemadef.TypeString, schemadef.TypeText:
		s.Type = huma.TypeString
		s.MaxLength = f.MaxLength
	case schemadef.TypeEnum:
		s.Type = huma.TypeString
		for _, v := range f.Values {
			s.Enum = append(s.Enum, v)
		}
	case schemadef.TypeInteger:
		s.Type = huma.TypeInteger
		s.Format = "int64"
	case schemadef.TypeNumber:
		s.Type = huma.TypeNumber
		s.Format = "double"
	case schemadef.TypeDecimal:
		s.OneOf = []*huma.Schema{
			{Type: huma.TypeNumber},
			{Type: huma.TypeString, Pattern: `^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$`},
		}
		s.Description = "exact decimal, as a number or a string of digits"
	case schemadef.TypeBoolean:
		s.Type = huma.TypeBoolean
	case schemadef.TypeTimestamp:
		s.Type = huma.TypeString
		s.Format = "date-time"
	case schemadef.TypeDate:
		s.Type = huma.TypeString
		s.Format = "date"
	case schemadef.TypeUUID:
		s.Type = huma.TypeString
		s.Format = "uuid"
	case schemadef.TypeJSON:
		// Any JSON value: no type keyword.
		s.Description = "any JSON value"
	}
	if len(f.Default) > 0 {
		var d any
		if json.Unmarshal(f.Default, &d) == nil {
			s.Default = d
		}
	}
	if !f.Required && s.Type != "" {
		s.Nullable = true
	}
	return s
}

func systemSchemas() map[string]*huma.Schema {
	return map[string]*huma.Schema{
		"id":         {Type: huma.TypeString, Format: "uuid", ReadOnly: true},
		"version":    {Type: huma.TypeInteger, Format: "int32", ReadOnly: true, Description: "starts at 1 and increases by one on each change"},
		"created_at": {Type: huma.TypeString, Format: "date-time", ReadOnly: true},
		"updated_at": {Type: huma.TypeString, Format: "date-time", ReadOnly: true},
		"created_by": {Type: huma.TypeString, ReadOnly: true},
		"updated_by": {Type: huma.TypeString, ReadOnly: true},
	}
}

// registerSchemas adds the object's schemas to the API's components.
func registerSchemas(api huma.API, t *sqlbuild.Table) recordSchemas {
	name := typeName(t.Spec)
	reg := api.OpenAPI().Components.Schemas.Map()
	refs := recordSchemas{
		record: "#/components/schemas/" + name,
		create: "#/components/schemas/" + name + ".create",
		patch:  "#/components/schemas/" + name + ".patch",
		list:   "#/components/schemas/" + name + ".list",
		query:  "#/components/schemas/" + name + ".query",
	}

	record := &huma.Schema{Type: huma.TypeObject, Properties: systemSchemas(), AdditionalProperties: false,
		Description: "A " + t.Spec.Object + " record.", Required: append([]string{}, schemadef.SystemFields...)}
	create := &huma.Schema{Type: huma.TypeObject, Properties: map[string]*huma.Schema{
		"id": {Type: huma.TypeString, Format: "uuid", Description: "made by the server unless given"},
	}, AdditionalProperties: false}
	patch := &huma.Schema{Type: huma.TypeObject, Properties: map[string]*huma.Schema{}, AdditionalProperties: false,
		Description: "JSON merge patch (RFC 7396): given fields are set, null clears a field."}
	var sortable, filterable []any
	for _, sys := range schemadef.SystemFields {
		sortable = append(sortable, sys)
	}
	for _, f := range t.Spec.Fields {
		fs := fieldSchema(f)
		record.Properties[f.Name] = fs
		record.Required = append(record.Required, f.Name)
		create.Properties[f.Name] = fs
		if f.Required && len(f.Default) == 0 {
			create.Required = append(create.Required, f.Name)
		}
		patch.Properties[f.Name] = fs
		if f.Sortable {
			sortable = append(sortable, f.Name)
		}
		if f.Filterable {
			filterable = append(filterable, f.Name)
		}
	}
	reg[name] = record
	reg[name+".create"] = create
	reg[name+".patch"] = patch
	reg[name+".list"] = &huma.Schema{Type: huma.TypeObject, Required: []string{"items", "next_cursor"}, AdditionalProperties: false,
		Properties: map[string]*huma.Schema{
			"items":       {Type: huma.TypeArray, Items: &huma.Schema{Ref: refs.record}},
			"next_cursor": {Type: huma.TypeString, Nullable: true, Description: "pass as cursor for the next page; null on the last page"},
		}}
	where := &huma.Schema{Type: huma.TypeObject,
		Description:          "Conditions: {\"<field>\": {\"eq|ne|lt|lte|gt|gte|in|nin|contains|isNull\": value}}, combined with and/or/not. Filterable fields: " + joinAny(filterable) + " and the system fields.",
		AdditionalProperties: true}
	maxLimit, one := sqlbuild.MaxLimit, 1.0
	maxF := float64(maxLimit)
	reg[name+".query"] = &huma.Schema{Type: huma.TypeObject, AdditionalProperties: false, Properties: map[string]*huma.Schema{
		"where": where,
		"orderBy": {Type: huma.TypeArray, Items: &huma.Schema{Type: huma.TypeObject, AdditionalProperties: false, Required: []string{"field"},
			Properties: map[string]*huma.Schema{
				"field": {Type: huma.TypeString, Enum: sortable},
				"dir":   {Type: huma.TypeString, Enum: []any{"asc", "desc"}},
			}}},
		"limit":  {Type: huma.TypeInteger, Minimum: &one, Maximum: &maxF, Default: sqlbuild.DefaultLimit},
		"cursor": {Type: huma.TypeString},
	}}
	return refs
}

func joinAny(v []any) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = x.(string)
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

func jsonBody(ref string, required bool) *huma.RequestBody {
	return &huma.RequestBody{Required: required, Content: map[string]*huma.MediaType{
		"application/json": {Schema: &huma.Schema{Ref: ref}},
	}}
}

func jsonResponse(desc, ref string) *huma.Response {
	return &huma.Response{Description: desc, Content: map[string]*huma.MediaType{
		"application/json": {Schema: &huma.Schema{Ref: ref}},
	}}
}
