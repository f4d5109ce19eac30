package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"

	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/authz"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

// routes is one build of the API for one schema set.
type routes struct {
	mux     *http.ServeMux
	api     huma.API
	objects []objectDoc
	docs    sync.Map // visibility + format -> rendered document
}

// objectDoc is what the OpenAPI document holds about one object.
type objectDoc struct {
	key     string
	access  schemadef.Access
	paths   []string
	schemas []string
}

// openAPIFormats are the document paths Huma's docs page and clients fetch.
var openAPIFormats = map[string]string{
	"/openapi.json": "json", "/openapi.yaml": "yaml", "/openapi-3.0.json": "json30", "/openapi-3.0.yaml": "yaml30",
}

// serveOpenAPI serves the document of the objects the caller may use: an object's routes and
// fields are another tenant's business until the caller holds a verb on it. Without a key the
// caller sees the platform routes only, unless Config.PublicOpenAPI (velocity dev) says
// otherwise. A key that is sent must be valid.
func (s *Server) serveOpenAPI(rt *routes, format string, w http.ResponseWriter, r *http.Request) {
	var actor store.Actor
	if a, strategy, err := s.chain.Authenticate(r.Context(), r); !errors.Is(err, auth.ErrNoCredential) {
		if err == nil {
			a, err = s.bindings.apply(r.Context(), a)
		}
		if err != nil {
			// The same answer as any route: 401 for a bad credential, 503 when it cannot be
			// checked (fail closed).
			status, msg, challenge := s.authnFailure(err, strategy, r.Header.Get("X-Request-ID"))
			w.Header().Set("WWW-Authenticate", challenge)
			writeProblem(w, problem(status, msg))
			return
		}
		actor = a
	}
	var visible []string
	hidden := map[string]bool{}
	for _, o := range rt.objects {
		if s.cfg.PublicOpenAPI || actor.HasRole(authz.AdminRole) || canAny(o.access, actor) {
			visible = append(visible, o.key)
			continue
		}
		for _, p := range o.paths {
			hidden[p] = true
		}
		for _, n := range o.schemas {
			hidden[n] = true
		}
		hidden["tag:"+o.key] = true
	}
	sort.Strings(visible)
	cacheKey := format + "|" + strings.Join(visible, ",")
	body, ok := rt.docs.Load(cacheKey)
	if !ok {
		b, err := renderOpenAPI(rt.api.OpenAPI(), hidden, format)
		if err != nil {
			s.log.Error("render openapi", "err", err)
			writeProblem(w, problem(http.StatusInternalServerError, "internal error; the server log has the cause"))
			return
		}
		body, _ = rt.docs.LoadOrStore(cacheKey, b)
	}
	if strings.HasPrefix(format, "yaml") {
		w.Header().Set("Content-Type", "application/openapi+yaml")
	} else {
		w.Header().Set("Content-Type", "application/openapi+json")
	}
	_, _ = w.Write(body.([]byte))
}

func canAny(access schemadef.Access, actor store.Actor) bool {
	for _, verb := range schemadef.Verbs {
		if authz.Can(access, actor, verb) {
			return true
		}
	}
	return false
}

// renderOpenAPI copies the document without the hidden paths, schemas and tags.
func renderOpenAPI(full *huma.OpenAPI, hidden map[string]bool, format string) ([]byte, error) {
	doc := *full
	doc.Paths = map[string]*huma.PathItem{}
	for p, item := range full.Paths {
		if !hidden[p] {
			doc.Paths[p] = item
		}
	}
	doc.Tags = nil
	for _, t := range full.Tags {
		if !hidden["tag:"+t.Name] {
			doc.Tags = append(doc.Tags, t)
		}
	}
	comps := *full.Components
	reg := huma.NewMapRegistry("#/components/schemas/", huma.DefaultSchemaNamer)
	for name, schema := range full.Components.Schemas.Map() {
		if !hidden[name] {
			reg.Map()[name] = schema
		}
	}
	comps.Schemas = reg
	doc.Components = &comps
	switch format {
	case "yaml":
		return doc.YAML()
	case "json30":
		return doc.Downgrade()
	case "yaml30":
		return doc.DowngradeYAML()
	}
	return json.Marshal(&doc)
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
