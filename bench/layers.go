package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/rules"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// The layers goal: at layersGoalClients clients, reads and queries of a schema with every
// layer active (an ABAC rule, a row filter, a masked field) at least layersGoal times the
// same requests on a schema with RBAC only.
const (
	layersGoalClients = 16
	layersGoal        = 0.8
)

// layersRounds is how many times each side runs, in turns, at layersGoalClients; the other
// client counts run once per side.
const layersRounds = 3

// layersRole is the one role of both sides' actors; both schemas grant it read.
const layersRole = "reader"

// The layered schema's rules, as SPEC.md's example writes them.
const (
	layersReadRule   = "request.time.getHours() >= 0 && actor.attributes.clearance >= 1"
	layersUpdateRule = "record.total <= 1000.0 || 'admin' in actor.roles"
	layersRowFilter  = "record.region == actor.attributes.region || 'admin' in actor.roles"
)

// layersQueryLimit is the page size of the query case; its where keeps to the rows the
// layered actor sees, so both sides return this many rows.
const layersQueryLimit = 50

var layersQueryBody = []byte(fmt.Sprintf(`{"where":{"region":{"eq":"eu"}},"limit":%d}`, layersQueryLimit))

// layersScope is the scope both sides' actors are bound with: they differ only in the
// schema they read.
func layersScope(clearance int) map[string]any {
	return map[string]any{"region": "eu", "clearance": clearance}
}

// celEvals is how many rule evaluations each CEL timing takes.
const celEvals = 100000

// layersCase is one case at one client count, the two sides in turns.
type layersCase struct {
	Case    string      `json:"case"`
	Clients int         `json:"clients"`
	Rounds  int         `json:"rounds"` // each side's figures are means over its rounds
	Layered measurement `json:"layered"`
	RBAC    measurement `json:"rbac"`
	// Ratio is layered ops/s over RBAC-only ops/s; CPURatio RBAC-only cpu/op over layered.
	Ratio    float64 `json:"ratio"`
	CPURatio float64 `json:"cpu_ratio"`
	// RoundRatios is Ratio of each round alone: their spread is the throughput's noise.
	RoundRatios []float64 `json:"round_ratios"`
}

// celTiming is rules.Set.Check of one verb, timed call by call in this process.
type celTiming struct {
	Verb       string  `json:"verb"`
	Rule       string  `json:"rule"`
	Goroutines int     `json:"goroutines"`
	Evals      int     `json:"evals"`
	P50        float64 `json:"p50_us"`
	P99        float64 `json:"p99_us"`
	Max        float64 `json:"max_us"`
	PerSec     float64 `json:"evals_per_sec"`
}

type layersReport struct {
	Cases []layersCase `json:"cases"`
	CEL   []celTiming  `json:"cel"`
	// Checked lists what was asserted of the layered side before measuring.
	Checked []string `json:"checked"`
	Rows    int      `json:"rows"`    // seeded into each table
	Visible int      `json:"visible"` // of them, the layered actor's (region eu)
}

// layersTables are the two schemas' builders and what the load reads of them.
type layersTables struct {
	rbac, layered   *sqlbuild.Table
	ids             []string // the same ids in both tables
	euIDs, usIDs    []string
	emails          map[string]string // id -> stored customer_email
	rbacURL, layURL string
}

// runLayers measures read-by-id and a query page on a schema with every layer active against
// the same schema with RBAC only, and times the CEL rules in process.
func runLayers(ctx context.Context, h *harness, cfg config) (*layersReport, error) {
	rep := &layersReport{}
	progress("layers: applying the rbac-only and the layered schema")
	lt, err := h.layersTables(ctx)
	if err != nil {
		return nil, err
	}
	super, err := h.baselinePool(ctx, 2)
	if err != nil {
		return nil, err
	}
	defer super.Close()
	if err := lt.seed(ctx, super, seedRecords); err != nil {
		return nil, err
	}
	rep.Rows, rep.Visible = len(lt.ids), len(lt.euIDs)

	most := slices.Max(cfg.clients)
	progress(fmt.Sprintf("layers: %d API keys per side, bound to %s with scope %v", most, layersRole, layersScope(2)))
	layKeys, err := h.boundKeys(ctx, "layered", most, layersScope(2))
	if err != nil {
		return nil, err
	}
	rbacKeys, err := h.boundKeys(ctx, "rbac", most, layersScope(2))
	if err != nil {
		return nil, err
	}
	lowKeys, err := h.boundKeys(ctx, "low-clearance", 1, layersScope(0))
	if err != nil {
		return nil, err
	}
	if rep.Checked, err = h.checkLayers(ctx, lt, layKeys, rbacKeys, lowKeys[0]); err != nil {
		return nil, err
	}

	pickEU := func() string { return lt.euIDs[rand.IntN(len(lt.euIDs))] }
	settle := h.settleTables(lt.rbac, lt.layered)
	for _, name := range []string{"read", "query"} {
		for _, n := range cfg.clients {
			rounds := 1
			if n == layersGoalClients {
				rounds = layersRounds
			}
			var lay, rb func(context.Context) error
			switch name {
			case "read":
				lay = h.readWith(lt.layURL, auth.HeaderAPIKey, layKeys[:n], pickEU)
				rb = h.readWith(lt.rbacURL, auth.HeaderAPIKey, rbacKeys[:n], pickEU)
			case "query":
				lay = h.queryWith(lt.layURL, layKeys[:n])
				rb = h.queryWith(lt.rbacURL, rbacKeys[:n])
			}
			l := load{name: "layers-" + name, clients: n, postmaster: h.postmaster, settle: settle, warmup: cfg.warmup, duration: cfg.duration}
			runs, err := l.turns(ctx, fmt.Sprintf("layers %s, %d clients", name, n), rounds,
				side{"layered", lay}, side{"rbac-only", rb})
			if err != nil {
				return nil, err
			}
			lc := layersCase{Case: name, Clients: n, Rounds: rounds, Layered: meanOf(runs[0]), RBAC: meanOf(runs[1])}
			lc.Ratio, lc.CPURatio = ratios(lc.Layered, lc.RBAC)
			for i := range runs[0] {
				r, _ := ratios(runs[0][i], runs[1][i])
				lc.RoundRatios = append(lc.RoundRatios, r)
			}
			rep.Cases = append(rep.Cases, lc)
		}
	}

	progress("layers: timing the CEL rules in process")
	if rep.CEL, err = timeCEL(ctx, lt.layered.Spec); err != nil {
		return nil, err
	}
	return rep, nil
}

// regionMaxLength bounds the region field the layered schema filters rows on.
var regionMaxLength = 16

// layersDefinitions are the benchmarked definition with a region field, once with RBAC only
// (org benchrbac) and once with an ABAC read rule, an update rule, a row filter on region and
// a partially masked customer_email (org benchlayers).
func layersDefinitions() (rbac, layered schemadef.Definition, err error) {
	build := func(org string) (schemadef.Definition, error) {
		def, err := ordersAt(org)
		if err != nil {
			return def, err
		}
		if _, ok := def.Spec.Field("region"); !ok {
			def.Spec.Fields = append(def.Spec.Fields, schemadef.Field{Name: "region", Type: schemadef.TypeString, Required: true, MaxLength: &regionMaxLength, Filterable: true})
		}
		def.Spec.Access = schemadef.Access{Roles: map[string][]string{
			"admin":    slices.Clone(schemadef.Verbs),
			layersRole: {"read", "history"},
		}}
		return def, nil
	}
	if rbac, err = build("benchrbac"); err != nil {
		return rbac, layered, err
	}
	if layered, err = build("benchlayers"); err != nil {
		return rbac, layered, err
	}
	layered.Spec.Access.ABAC = []schemadef.ABACRule{
		{Verbs: []string{"read"}, Rule: layersReadRule},
		{Verbs: []string{"update"}, Rule: layersUpdateRule},
	}
	layered.Spec.Access.RowFilter = layersRowFilter
	layered.Spec.Access.Fields = map[string]schemadef.FieldAccess{
		"customer_email": {Read: []string{"admin"}, Mask: schemadef.MaskPartial},
	}
	for _, d := range []schemadef.Definition{rbac, layered} {
		if err := d.Validate(); err != nil {
			return rbac, layered, fmt.Errorf("%s: %w", d.Metadata.Name, err)
		}
	}
	// Validate does not compile the CEL; a rule that does not compile would deny everything.
	if _, errs := rules.Compile(layered.Spec); len(errs) > 0 {
		return rbac, layered, fmt.Errorf("%s: rules: %v", layered.Metadata.Name, errs)
	}
	return rbac, layered, nil
}

// layersTables applies both definitions.
func (h *harness) layersTables(ctx context.Context) (*layersTables, error) {
	rbac, layered, err := layersDefinitions()
	if err != nil {
		return nil, err
	}
	lt := &layersTables{}
	for _, d := range []struct {
		def schemadef.Definition
		to  **sqlbuild.Table
	}{{rbac, &lt.rbac}, {layered, &lt.layered}} {
		if _, err := h.store.ApplySchema(ctx, d.def, false, "bench"); err != nil {
			return nil, fmt.Errorf("apply %s: %w", d.def.Metadata.Name, err)
		}
		*d.to = sqlbuild.NewTable(d.def.Spec)
	}
	lt.rbacURL, lt.layURL = h.baseURL+lt.rbac.Spec.Path(), h.baseURL+lt.layered.Spec.Path()
	return lt, nil
}

// seed writes the same n records into both tables as the superuser: the same ids, every
// other one in region eu, each with its own email.
func (lt *layersTables) seed(ctx context.Context, super *pgxpool.Pool, n int) error {
	lt.ids = make([]string, n)
	regions := make([]string, n)
	emails := make([]string, n)
	lt.emails = make(map[string]string, n)
	for i := range lt.ids {
		lt.ids[i] = uuid.NewString()
		regions[i] = "us"
		if i%2 == 0 {
			regions[i] = "eu"
			lt.euIDs = append(lt.euIDs, lt.ids[i])
		} else {
			lt.usIDs = append(lt.usIDs, lt.ids[i])
		}
		emails[i] = fmt.Sprintf("buyer%d@example.com", i)
		lt.emails[lt.ids[i]] = emails[i]
	}
	for _, t := range []*sqlbuild.Table{lt.rbac, lt.layered} {
		_, err := super.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, customer_email, status, total, quantity, region)
			SELECT r.id::uuid, r.email, 'paid', 129.90, 3, r.region FROM unnest($1::text[], $2::text[], $3::text[]) AS r(id, email, region)`,
			sqlbuild.Qualified(t.Names.Schema, t.Names.Table)), lt.ids, emails, regions)
		if err != nil {
			return fmt.Errorf("seed %s: %w", t.Spec.Key(), err)
		}
	}
	return nil
}

// boundKeys makes n API keys with role layersRole and binds each, through the API as an
// administrator would, to that role with scope.
func (h *harness) boundKeys(ctx context.Context, name string, n int, scope map[string]any) ([]string, error) {
	admin := store.Request{Actor: store.Actor{ID: "velocity-bench", Kind: "system", Roles: []string{"platform_admin"}, Attributes: map[string]any{}}}
	out := make([]string, n)
	for i := range out {
		k, err := h.store.CreateAPIKey(ctx, admin, fmt.Sprintf("bench %s %d", name, i), []string{layersRole}, 0, nil)
		if err != nil {
			return nil, err
		}
		body, err := json.Marshal(map[string]any{"role": layersRole, "subject_kind": "api_key", "subject": k.ID.String(), "scope": scope})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.baseURL+"/admin/role-bindings", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if err := h.do(req, http.StatusCreated); err != nil {
			return nil, fmt.Errorf("layers: bind key %s: %w", k.ID, err)
		}
		out[i] = k.Secret
	}
	return out, nil
}

// checkLayers asserts, before anything is measured, that the layered side enforces every
// layer the comparison is about and the RBAC-only side none, so that the benchmark cannot
// silently measure nothing. It returns what it checked.
func (h *harness) checkLayers(ctx context.Context, lt *layersTables, layKeys, rbacKeys []string, lowKey string) ([]string, error) {
	eu, us := lt.euIDs[0], lt.usIDs[0]
	get := func(u, key string, want int) (map[string]any, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set(auth.HeaderAPIKey, key)
		_, body, err := h.exchange(req, want)
		if err != nil || want != http.StatusOK {
			return nil, err
		}
		var m map[string]any
		return m, json.Unmarshal(body, &m)
	}
	// The API serves a new schema's routes once its listener has reloaded them.
	deadline := time.Now().Add(30 * time.Second)
	for _, u := range []string{lt.rbacURL, lt.layURL} {
		for {
			_, err := get(u+"/"+eu, rbacKeys[0], http.StatusOK)
			if u == lt.layURL {
				_, err = get(u+"/"+eu, layKeys[0], http.StatusOK)
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("layers: the first read: %w", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	var checked []string
	fail := func(format string, args ...any) ([]string, error) {
		return nil, fmt.Errorf("layers: the layered schema does not enforce as designed: "+format, args...)
	}
	// Layer 4: the row filter hides the other region's records (404, not 403).
	if _, err := get(lt.layURL+"/"+us, layKeys[0], http.StatusNotFound); err != nil {
		return fail("row filter: a region us record: %v", err)
	}
	checked = append(checked, "row filter: GET of a region us id as the layered actor is 404")
	// Layer 6: the masked field.
	rec, err := get(lt.layURL+"/"+eu, layKeys[0], http.StatusOK)
	if err != nil {
		return nil, err
	}
	if email, want := rec["customer_email"], lt.emails[eu]; !isMasked(email, want) {
		return fail("mask: customer_email reads %v, stored %q", email, want)
	}
	checked = append(checked, fmt.Sprintf("mask: customer_email of a region eu id reads %v", rec["customer_email"]))
	// Layer 2: the ABAC read rule refuses an actor without clearance.
	if _, err := get(lt.layURL+"/"+eu, lowKey, http.StatusForbidden); err != nil {
		return fail("abac: clearance 0: %v", err)
	}
	checked = append(checked, "abac: GET as an actor bound with clearance 0 is 403")
	// The query: a full page of eu records, masked, on the layered side; the same page, in the
	// clear, on the RBAC-only side.
	for _, s := range []struct {
		name, u, key string
		masked       bool
	}{{"layered", lt.layURL, layKeys[0], true}, {"rbac-only", lt.rbacURL, rbacKeys[0], false}} {
		items, err := h.queryPage(ctx, s.u, s.key)
		if err != nil {
			return nil, err
		}
		if len(items) != layersQueryLimit {
			return fail("query as %s: %d items, want %d", s.name, len(items), layersQueryLimit)
		}
		for _, it := range items {
			id, _ := it["id"].(string)
			if it["region"] != "eu" {
				return fail("query as %s: record %s of region %v", s.name, id, it["region"])
			}
			if masked := isMasked(it["customer_email"], lt.emails[id]); masked != s.masked {
				return fail("query as %s: customer_email %v (stored %q)", s.name, it["customer_email"], lt.emails[id])
			}
		}
	}
	checked = append(checked, fmt.Sprintf("query: %d region eu items on both sides, emails masked on the layered side only", layersQueryLimit))
	// The RBAC-only side filters nothing and masks nothing.
	rec, err = get(lt.rbacURL+"/"+us, rbacKeys[0], http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("layers: rbac-only side: %w", err)
	}
	if rec["customer_email"] != lt.emails[us] {
		return nil, fmt.Errorf("layers: rbac-only side: customer_email reads %v, stored %q", rec["customer_email"], lt.emails[us])
	}
	checked = append(checked, "rbac-only: GET of a region us id is 200 with the email in the clear")
	return checked, nil
}

// isMasked reports whether got is stored partially masked: as long, starred, not the same.
func isMasked(got any, stored string) bool {
	s, ok := got.(string)
	return ok && s != stored && strings.Contains(s, "*") && len([]rune(s)) == len([]rune(stored))
}

// queryPage is one POST P/query of the load's body with key, decoded.
func (h *harness) queryPage(ctx context.Context, u, key string) ([]map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u+"/query", bytes.NewReader(layersQueryBody))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(auth.HeaderAPIKey, key)
	_, body, err := h.exchange(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var page struct {
		Items []map[string]any `json:"items"`
	}
	return page.Items, json.Unmarshal(body, &page)
}

// queryWith is POST u/query of the region eu page with a key from keys, each request in
// flight holding a key of its own, as readWith does.
func (h *harness) queryWith(u string, keys []string) func(context.Context) error {
	free := make(chan string, len(keys))
	for _, k := range keys {
		free <- k
	}
	return func(ctx context.Context) error {
		key := <-free
		defer func() { free <- key }()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u+"/query", bytes.NewReader(layersQueryBody))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(auth.HeaderAPIKey, key)
		_, _, err = h.exchange(req, http.StatusOK)
		return err
	}
}

// timeCEL times rules.Set.Check of spec's read rule and update rule, compiled as the API
// compiles them, call by call: celEvals calls on one goroutine, then celEvals spread over
// GOMAXPROCS goroutines.
func timeCEL(ctx context.Context, spec schemadef.Spec) ([]celTiming, error) {
	set, errs := rules.Compile(spec)
	if len(errs) > 0 {
		return nil, fmt.Errorf("layers: compile rules: %v", errs)
	}
	// The actor as the API sees it: the key's role and the binding's scope, as decoded JSON.
	var attrs map[string]any
	if err := json.Unmarshal([]byte(`{"region":"eu","clearance":2}`), &attrs); err != nil {
		return nil, err
	}
	actor := rules.Actor{ID: "apikey:" + uuid.NewString(), Kind: "api_key", Roles: []string{layersRole}, Attributes: attrs}
	var current map[string]any
	if err := json.Unmarshal([]byte(`{"id":"`+uuid.NewString()+`","version":1,"created_at":"2025-01-02T03:04:05.123456Z",
		"updated_at":"2025-01-02T03:04:05.123456Z","created_by":"bench","updated_by":"bench","customer_email":"buyer1@example.com",
		"status":"paid","total":129.90,"quantity":3,"region":"eu"}`), &current); err != nil {
		return nil, err
	}
	proposed := make(map[string]any, len(current))
	for k, v := range current {
		proposed[k] = v
	}
	proposed["quantity"] = float64(4)

	var out []celTiming
	for _, c := range []struct {
		verb, rule string
		in         rules.Input
	}{
		{"read", layersReadRule, rules.Input{Actor: actor}},
		{"update", layersUpdateRule, rules.Input{Actor: actor, Record: current, Proposed: proposed}},
	} {
		if !set.Has(c.verb) {
			return nil, fmt.Errorf("layers: no %s rule compiled", c.verb)
		}
		for _, g := range []int{1, runtime.GOMAXPROCS(0)} {
			t, err := timeCheck(ctx, set, c.verb, c.in, g)
			if err != nil {
				return nil, err
			}
			t.Rule = c.rule
			out = append(out, t)
		}
	}
	return out, nil
}

// timeCheck runs celEvals checks of verb over goroutines goroutines, after a warm-up, and
// returns their latency percentiles. Every check must allow: a denial is an error.
func timeCheck(ctx context.Context, set *rules.Set, verb string, in rules.Input, goroutines int) (celTiming, error) {
	check := func() error {
		in := in
		in.Request = rules.Request{Verb: verb, Time: time.Now(), IP: "127.0.0.1"}
		if d := set.Check(ctx, verb, in); d != nil {
			return fmt.Errorf("layers: the %s rule denied the bench actor: %s", verb, d.Error())
		}
		return nil
	}
	for range 1000 {
		if err := check(); err != nil {
			return celTiming{}, err
		}
	}
	per := celEvals / goroutines
	lat := make([][]time.Duration, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, per)
			for range per {
				in := in
				in.Request = rules.Request{Verb: verb, Time: time.Now(), IP: "127.0.0.1"}
				t0 := time.Now()
				d := set.Check(ctx, verb, in)
				l = append(l, time.Since(t0))
				if d != nil {
					errs[g] = fmt.Errorf("layers: the %s rule denied the bench actor: %s", verb, d.Error())
					return
				}
			}
			lat[g] = l
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return celTiming{}, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return celTiming{
		Verb: verb, Goroutines: goroutines, Evals: len(all),
		P50: us(percentile(all, 0.50)), P99: us(percentile(all, 0.99)), Max: us(all[len(all)-1]),
		PerSec: float64(len(all)) / wall.Seconds(),
	}, nil
}

func (r *layersReport) print(out io.Writer) error {
	fmt.Fprintln(out)
	fmt.Fprintf(out, "layers: the same %d records (half region eu) in two tables of the orders schema plus a region field, read by API keys of role %s\n", r.Rows, layersRole)
	fmt.Fprintln(out, "bound with scope {region: eu, clearance: 2}, one per client. layered: ABAC read rule, row filter on region, customer_email masked")
	fmt.Fprintln(out, "(partial); rbac-only: roles alone. read: GET P/{id} of random region eu ids; query: POST P/query where region = eu, limit 50;")
	fmt.Fprintf(out, "both sides return the same rows. Sides in turns, %d rounds at %d clients, 1 elsewhere, means shown\n", layersRounds, layersGoalClients)
	for _, c := range r.Checked {
		fmt.Fprintln(out, "  checked: "+c)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tclients\tlayered ops/s\tp50\tp99\tcpu/op\trbac-only ops/s\tp50\tp99\tcpu/op\tratio\tcpu ratio\trounds' ratios\t")
	for _, c := range r.Cases {
		rounds := make([]string, len(c.RoundRatios))
		for i, x := range c.RoundRatios {
			rounds[i] = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%.2fx\t%.2fx\t%s\t\n", c.Case, c.Clients,
			c.Layered.OpsPerSec, c.Layered.P50, c.Layered.P99, formatCPU(c.Layered),
			c.RBAC.OpsPerSec, c.RBAC.P50, c.RBAC.P99, formatCPU(c.RBAC), c.Ratio, c.CPURatio, strings.Join(rounds, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "ratio: layered ops/s over rbac-only; cpu ratio: rbac-only cpu/op over layered")
	var other float64
	for _, c := range r.Cases {
		other = max(other, c.Layered.otherCores(), c.RBAC.otherCores())
	}
	if other > 0.2 {
		fmt.Fprintf(out, "other processes used up to %.1f of the %d cores during a run (means over rounds): ops/s are noisy, cpu/op much less\n", other, runtime.NumCPU())
	}
	if len(r.CEL) > 0 {
		fmt.Fprintln(out)
		fmt.Fprintf(out, "cel: rules.Set.Check of the layered schema's rules in this process, %d evaluations each, timed one by one\n", celEvals)
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "verb\tgoroutines\tp50\tp99\tmax\tevals/s\t")
		for _, t := range r.CEL {
			fmt.Fprintf(tw, "%s\t%d\t%.2fµs\t%.2fµs\t%.0fµs\t%.0f\t\n", t.Verb, t.Goroutines, t.P50, t.P99, t.Max, t.PerSec)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, v := range []string{"read", "update"} {
			if i := slices.IndexFunc(r.CEL, func(t celTiming) bool { return t.Verb == v }); i >= 0 {
				fmt.Fprintf(out, "  %s: %s\n", v, r.CEL[i].Rule)
			}
		}
	}
	return nil
}

// goals adds the layers goals: each case at layersGoalClients.
func (r *layersReport) goals() []goal {
	var out []goal
	for _, c := range r.Cases {
		if c.Clients == layersGoalClients {
			out = append(out, goal{Case: "layers " + c.Case, Clients: c.Clients, Want: layersGoal, Ratio: c.Ratio, CPURatio: c.CPURatio, Met: c.Ratio >= layersGoal})
		}
	}
	return out
}
