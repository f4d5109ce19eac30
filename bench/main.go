// Command bench measures Velocity's REST create and read-by-id against bare pgx doing the
// same statements on the same throwaway Postgres, and prints each ratio beside the goal.
//
//	go run ./bench [-duration 5s] [-warmup 1s] [-clients 1,16,64] [-json] [-cpuprofile FILE]
//
// -history and -audit add the time machine's and the audit log's tests, -auth the JWT
// read test, -layers reads and queries with every access layer against RBAC only;
// -core=false runs only those.
//
// The profile labels each sample with side (velocity, velocity-server, baseline), case and
// clients: go tool pprof -tagfocus side=velocity-server FILE shows the API's own work.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// seedRecords is how many records the read tests pick their ids from.
const seedRecords = 10000

// goals are the targets: Velocity's throughput at least Want times the baseline's,
// at that many concurrent clients.
var goals = []goal{{Case: "create", Clients: 16, Want: 0.5}, {Case: "read", Clients: 16, Want: 0.5}}

type config struct {
	duration, warmup time.Duration
	clients          []int
	json             bool
	cpuProfile       string
	history          bool
	core             bool
	snapshotRecords  int
	audit            bool
	auditEntries     int
	auth             bool
	layers           bool
}

// benchCase is one operation as Velocity serves it and as the baseline runs it.
type benchCase struct {
	name     string
	velocity func(context.Context) error
	baseline func(context.Context, *pgxpool.Pool) error
}

// result is one case at one client count.
type result struct {
	Case     string      `json:"case"`
	Clients  int         `json:"clients"`
	Velocity measurement `json:"velocity"`
	Baseline measurement `json:"baseline"`
	Ratio    float64     `json:"ratio"` // Velocity ops/s over baseline ops/s
	// CPURatio is the baseline's CPU per op over Velocity's: the ratio a quiet host, where
	// both sides are CPU-bound, would show.
	CPURatio float64 `json:"cpu_ratio"`
}

type goal struct {
	Case     string  `json:"case"`
	Clients  int     `json:"clients"`
	Want     float64 `json:"want_ratio"`
	Ratio    float64 `json:"ratio"`
	CPURatio float64 `json:"cpu_ratio"`
	Met      bool    `json:"met"`
	// Below marks a goal on a figure that must stay under Want (a latency in ms).
	Below bool `json:"below,omitempty"`
}

// floor is the HTTP floor at one client count: the same client reading a stored read
// response from a bare net/http handler (no auth, no routing, no Postgres).
type floor struct {
	Clients int         `json:"clients"`
	HTTP    measurement `json:"http"`
	// ReadCeiling is the read's cpu ratio if Velocity cost nothing beyond the baseline's
	// Postgres work and this round trip: baseline cpu/op over (floor + baseline) cpu/op.
	ReadCeiling float64 `json:"read_ceiling"`
}

// report is the whole output; -json prints it as is.
type report struct {
	Setup   []string       `json:"setup"`
	Results []result       `json:"results"`
	Floors  []floor        `json:"http_floor"`
	History *historyReport `json:"history,omitempty"`
	Audit   *auditReport   `json:"audit,omitempty"`
	Auth    *authReport    `json:"auth,omitempty"`
	Layers  *layersReport  `json:"layers,omitempty"`
	Goals   []goal         `json:"goals"`
}

func main() {
	var cfg config
	clients := "1,16,64"
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured time of each test")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured time before each test")
	flag.StringVar(&clients, "clients", clients, "comma-separated concurrent client counts")
	flag.BoolVar(&cfg.json, "json", false, "print the results as JSON")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the tests to `file` (labels: side, case, clients)")
	flag.BoolVar(&cfg.core, "core", true, "measure create and read against bare pgx, and the HTTP floor")
	flag.BoolVar(&cfg.history, "history", true, "also measure the time machine: history write cost, point-in-time reads, snapshots")
	flag.IntVar(&cfg.snapshotRecords, "snapshot-records", 1000000, "records in the snapshot test (0 skips it)")
	flag.BoolVar(&cfg.audit, "audit", true, "also measure the audit log: its write cost, sealing and verify throughput, sealing lag under load")
	flag.IntVar(&cfg.auditEntries, "audit-entries", 1000000, "entries in the sealing and verify test (0 skips it)")
	flag.BoolVar(&cfg.auth, "auth", true, "also measure JWT auth: read-by-id with a cached JWT, with an API key and with bare pgx, in turns")
	flag.BoolVar(&cfg.layers, "layers", true, "also measure the access layers: read-by-id and a query page with an ABAC rule, a row filter and a masked field against RBAC only, in turns, and CEL evaluation time")
	flag.Parse()
	for _, s := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > apiPoolSize {
			fmt.Fprintf(os.Stderr, "bench: -clients: %q is not a count from 1 to %d\n", s, apiPoolSize)
			os.Exit(2)
		}
		cfg.clients = append(cfg.clients, n)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress("starting postgres and velocity")
	h, err := startHarness(ctx, log)
	if err != nil {
		return err
	}
	defer h.Close()
	ids, err := h.seed(ctx, seedRecords)
	if err != nil {
		return err
	}
	if err := h.serveFloor(ctx, log, ids[0]); err != nil {
		return err
	}
	pick := func() string { return ids[rand.IntN(len(ids))] }
	cases := []benchCase{
		{name: "create", velocity: h.apiCreate, baseline: h.baselineCreate},
		{
			name:     "read",
			velocity: func(ctx context.Context) error { return h.apiRead(ctx, pick()) },
			baseline: func(ctx context.Context, p *pgxpool.Pool) error { return h.baselineRead(ctx, p, pick()) },
		},
	}

	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	rep := report{Setup: []string{
		"postgres " + h.pgVersion + ": throwaway cluster, fsync=off, synchronous_commit=off, full_page_writes=off; every client on its unix socket",
		fmt.Sprintf("velocity: api.New served in this process by net/http on 127.0.0.1, keep-alive client in the same process; API pool %d connections (the schema listener holds one)", apiPoolSize),
		"velocity create: POST, one pipelined round trip of identity settings + INSERT + read-back through the RLS read view; read: GET P/{id} through the read view",
		"baseline: pgx pool as superuser sized to the client count; bypasses RLS (forced on the table), same table, same INSERT (sqlbuild), read: SELECT row_to_json(t) FROM <table> t WHERE id = $1",
		fmt.Sprintf("reads pick from %d seeded ids; %s measured after %s warm-up per test; GOMAXPROCS=%d, %d CPUs shared by load, API and Postgres", seedRecords, cfg.duration, cfg.warmup, runtime.GOMAXPROCS(0), runtime.NumCPU()),
	}}
	for _, c := range cases {
		if !cfg.core {
			break
		}
		for _, n := range cfg.clients {
			r, err := measure(ctx, h, cfg, c, n)
			if err != nil {
				return err
			}
			rep.Results = append(rep.Results, r)
		}
	}
	for _, n := range cfg.clients {
		if !cfg.core {
			break
		}
		f, err := measureFloor(ctx, h, cfg, n, rep.Results)
		if err != nil {
			return err
		}
		rep.Floors = append(rep.Floors, f)
	}
	if cfg.auth {
		if rep.Auth, err = runAuth(ctx, h, cfg, ids); err != nil {
			return err
		}
	}
	if cfg.layers {
		if rep.Layers, err = runLayers(ctx, h, cfg); err != nil {
			return err
		}
	}
	if cfg.history {
		if rep.History, err = runHistory(ctx, h, cfg); err != nil {
			return err
		}
	}
	if cfg.audit {
		if rep.Audit, err = runAudit(ctx, h, cfg); err != nil {
			return err
		}
	}
	rep.Goals = []goal{}
	for _, g := range goals {
		i := slices.IndexFunc(rep.Results, func(r result) bool { return r.Case == g.Case && r.Clients == g.Clients })
		if i < 0 {
			continue
		}
		g.Ratio, g.CPURatio = rep.Results[i].Ratio, rep.Results[i].CPURatio
		g.Met = g.Ratio >= g.Want
		rep.Goals = append(rep.Goals, g)
	}
	if rep.History != nil {
		rep.Goals = append(rep.Goals, rep.History.goals()...)
	}
	if rep.Audit != nil {
		rep.Goals = append(rep.Goals, rep.Audit.goals()...)
	}
	if rep.Auth != nil {
		rep.Goals = append(rep.Goals, rep.Auth.goals()...)
	}
	if rep.Layers != nil {
		rep.Goals = append(rep.Goals, rep.Layers.goals()...)
	}
	if cfg.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}
	return rep.print(out)
}

// measure runs one case at one client count, Velocity first, then the baseline on a pool of
// that many connections.
func measure(ctx context.Context, h *harness, cfg config, c benchCase, clients int) (result, error) {
	r := result{Case: c.name, Clients: clients}
	l := load{name: c.name, clients: clients, postmaster: h.postmaster, settle: h.settle, warmup: cfg.warmup, duration: cfg.duration}

	progress(fmt.Sprintf("%s, %d clients: velocity", c.name, clients))
	l.side, l.op = "velocity", c.velocity
	var err error
	if r.Velocity, err = l.run(ctx); err != nil {
		return r, err
	}

	progress(fmt.Sprintf("%s, %d clients: baseline", c.name, clients))
	pool, err := h.baselinePool(ctx, clients)
	if err != nil {
		return r, err
	}
	defer pool.Close()
	l.side, l.op = "baseline", func(ctx context.Context) error { return c.baseline(ctx, pool) }
	if r.Baseline, err = l.run(ctx); err != nil {
		return r, err
	}
	if r.Baseline.OpsPerSec > 0 {
		r.Ratio = r.Velocity.OpsPerSec / r.Baseline.OpsPerSec
	}
	vb, vp := r.Velocity.cpuPerOp()
	bb, bp := r.Baseline.cpuPerOp()
	if vb+vp > 0 {
		r.CPURatio = float64(bb+bp) / float64(vb+vp)
	}
	return r, nil
}

// measureFloor runs the HTTP floor at one client count and sets the read ceiling from that
// count's read baseline.
func measureFloor(ctx context.Context, h *harness, cfg config, clients int, results []result) (floor, error) {
	progress(fmt.Sprintf("http floor, %d clients", clients))
	l := load{name: "floor", side: "floor", clients: clients, postmaster: h.postmaster, settle: h.settle,
		warmup: cfg.warmup, duration: cfg.duration, op: h.floorRead}
	m, err := l.run(ctx)
	if err != nil {
		return floor{}, err
	}
	f := floor{Clients: clients, HTTP: m}
	i := slices.IndexFunc(results, func(r result) bool { return r.Case == "read" && r.Clients == clients })
	fb, fp := m.cpuPerOp()
	if i >= 0 {
		bb, bp := results[i].Baseline.cpuPerOp()
		if total := fb + fp + bb + bp; total > 0 {
			f.ReadCeiling = float64(bb+bp) / float64(total)
		}
	}
	return f, nil
}

func (rep report) print(out io.Writer) error {
	for _, s := range rep.Setup {
		fmt.Fprintln(out, "# "+s)
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tclients\tvelocity ops/s\tp50\tp99\tcpu/op\tbaseline ops/s\tp50\tp99\tcpu/op\tratio\tcpu ratio\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%.2fx\t%.2fx\t\n", r.Case, r.Clients,
			r.Velocity.OpsPerSec, r.Velocity.P50, r.Velocity.P99, formatCPU(r.Velocity),
			r.Baseline.OpsPerSec, r.Baseline.P50, r.Baseline.P99, formatCPU(r.Baseline), r.Ratio, r.CPURatio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "cpu/op: CPU time per op in this process (load + API) + in Postgres; cpu ratio: baseline cpu/op over velocity's")
	if len(rep.Floors) > 0 {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "http floor: the same client reading a stored read response from a bare net/http handler (no auth, no Huma, no Postgres);")
		fmt.Fprintln(out, "read ceiling: the read's cpu ratio if Velocity cost only this round trip on top of the baseline's own work")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "clients\tfloor ops/s\tp50\tp99\tcpu/op\tread ceiling\t")
		for _, f := range rep.Floors {
			fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%s\t%.2fx\t\n", f.Clients, f.HTTP.OpsPerSec, f.HTTP.P50, f.HTTP.P99, formatCPU(f.HTTP), f.ReadCeiling)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if rep.History != nil {
		if err := rep.History.print(out); err != nil {
			return err
		}
	}
	if rep.Audit != nil {
		if err := rep.Audit.print(out); err != nil {
			return err
		}
	}
	if rep.Auth != nil {
		if err := rep.Auth.print(out); err != nil {
			return err
		}
	}
	if rep.Layers != nil {
		if err := rep.Layers.print(out); err != nil {
			return err
		}
	}
	if noise := rep.noise(); noise > 0.2 {
		fmt.Fprintf(out, "warning: other processes used up to %.1f of the %d cores during a test; ops/s are noisy, cpu/op much less\n", noise, runtime.NumCPU())
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "goals (velocity/baseline throughput):")
	if len(rep.Goals) == 0 {
		fmt.Fprintln(out, "  not measured: run with a client count the goals name")
	}
	for _, g := range rep.Goals {
		mark := "BELOW"
		if g.Met {
			mark = "PASS"
		}
		if g.Below {
			fmt.Fprintf(out, "  %-5s %s: %.2f\n", mark, g.Case, g.Ratio)
			continue
		}
		fmt.Fprintf(out, "  %-5s %-6s at %d clients: %.2fx (cpu ratio %.2fx), want >= %.2fx\n", mark, g.Case, g.Clients, g.Ratio, g.CPURatio, g.Want)
	}
	return nil
}

// formatCPU shows the CPU time of one op in this process and in Postgres, in microseconds.
func formatCPU(m measurement) string {
	bench, postgres := m.cpuPerOp()
	return fmt.Sprintf("%d+%dµs", bench.Microseconds(), postgres.Microseconds())
}

// noise is the most CPU that neither this process nor its Postgres used during a test.
func (rep report) noise() float64 {
	var most float64
	for _, r := range rep.Results {
		for _, m := range []measurement{r.Velocity, r.Baseline} {
			most = max(most, m.otherCores())
		}
	}
	return most
}

func progress(msg string) { fmt.Fprintln(os.Stderr, "bench: "+msg) }
