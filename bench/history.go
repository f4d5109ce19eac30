package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/sqlbuild"
)

// historyClients is the client count of the history write-cost tests (the goal).
const historyClients = 16

// The time machine's goals: writes with history and outbox at least 0.8 of the same writes
// without the triggers; a point-in-time read's p99 under 5 ms with 100,000 events.
const (
	historyWriteGoal = 0.8
	pitDeepEvents    = 100000
	pitGoal          = 5 * time.Millisecond
)

// historyRounds is how many times each side of a write-cost test runs, in turns. One 5 s turn
// of each side varies by about ±0.06 in the ratio on a shared 2-core host (the rounds' ratios
// are printed); the mean of five is steadier than a goal 0.05 away from it.
const historyRounds = 5

// twoTables applies the benchmarked definition twice, as orgs a and b, for a comparison of
// two ways to provision it, and opens a superuser pool to change one of them with.
func (h *harness) twoTables(ctx context.Context, a, b string) (*sqlbuild.Table, *sqlbuild.Table, *pgxpool.Pool, error) {
	ta, err := h.applyOrders(ctx, a)
	if err != nil {
		return nil, nil, nil, err
	}
	tb, err := h.applyOrders(ctx, b)
	if err != nil {
		return nil, nil, nil, err
	}
	super, err := h.baselinePool(ctx, 2)
	return ta, tb, super, err
}

// withoutAudit replaces t's history writer with one that writes no audit entry.
func withoutAudit(ctx context.Context, super *pgxpool.Pool, t *sqlbuild.Table) error {
	if _, err := super.Exec(ctx, planner.HistoryWriter(t.Spec, planner.WriterOptions{NoAudit: true})); err != nil {
		return fmt.Errorf("provision %s without audit: %w", sqlbuild.Qualified(t.Names.Schema, t.Names.Table), err)
	}
	return nil
}

// side is one side of a comparison: a name for the profile labels and its operation.
type side struct {
	name string
	op   func(context.Context) error
}

// inTurns runs l on a and b in turns, historyRounds times each, so drift on a shared host (the
// tables growing, someone else's load) falls on both alike, and returns each side's means.
func (l load) inTurns(ctx context.Context, what string, a, b side) (measurement, measurement, error) {
	runs, err := l.turns(ctx, what, historyRounds, a, b)
	if err != nil {
		return measurement{}, measurement{}, err
	}
	return meanOf(runs[0]), meanOf(runs[1]), nil
}

// meanOf averages measurements of the same test: counts, rates, latencies and CPU.
func meanOf(ms []measurement) measurement {
	var out measurement
	n := float64(len(ms))
	for _, m := range ms {
		out.Ops += m.Ops
		out.OpsPerSec += m.OpsPerSec / n
		out.P50 += millis(float64(m.P50) / n)
		out.P99 += millis(float64(m.P99) / n)
		out.BenchCores += m.BenchCores / n
		out.PostgresCores += m.PostgresCores / n
		out.HostCores += m.HostCores / n
	}
	return out
}

// pitDepths are the numbers of events of the records read at a point in time.
var pitDepths = []int{10, 1000, pitDeepEvents}

type writeCost struct {
	Case     string      `json:"case"`
	Clients  int         `json:"clients"`
	Rounds   int         `json:"rounds"` // each side's figures are means over its rounds
	History  measurement `json:"with_history"`
	Bare     measurement `json:"without_history"`
	Ratio    float64     `json:"ratio"`
	CPURatio float64     `json:"cpu_ratio"`
	// RoundRatios is the ratio of each round alone: their spread is the noise.
	RoundRatios []float64 `json:"round_ratios"`
}

type pitLatency struct {
	Events int         `json:"events"`
	Reads  measurement `json:"reads"`
}

type snapshotRun struct {
	Format  string  `json:"format"`
	Records int     `json:"records"`
	Seconds float64 `json:"seconds"`
	Bytes   int64   `json:"bytes"`
	// PeakRSSMiB is the peak resident memory of this process (API server and the client
	// reading the stream) during the snapshot, measured from a reset high-water mark.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// BaseRSSMiB is the resident memory just before it.
	BaseRSSMiB float64 `json:"base_rss_mib"`
}

type historyReport struct {
	Write       []writeCost   `json:"write_cost"`
	PointInTime []pitLatency  `json:"point_in_time"`
	Snapshots   []snapshotRun `json:"snapshot"`
}

// runHistory measures what history costs writes, how point-in-time reads scale with the
// number of events, and a snapshot of snapshotRecords records.
func runHistory(ctx context.Context, h *harness, cfg config) (*historyReport, error) {
	rep := &historyReport{}
	// Two fresh tables of the same definition, seeded alike; one loses its history triggers.
	with, bare, super, err := h.twoTables(ctx, "benchhist", "benchbare")
	if err != nil {
		return nil, err
	}
	defer super.Close()
	bareTable := sqlbuild.Qualified(bare.Names.Schema, bare.Names.Table)
	for _, trg := range []string{"velocity_history", "velocity_history_update"} {
		if _, err := super.Exec(ctx, "DROP TRIGGER "+trg+" ON "+bareTable); err != nil {
			return nil, fmt.Errorf("provision %s without history: %w", bareTable, err)
		}
	}
	// The writer also appends the change's audit entry; the audit benchmark measures that.
	// Here the history side writes what this test is about: the event and the outbox row.
	if err := withoutAudit(ctx, super, with); err != nil {
		return nil, err
	}

	// Write cost: create and update through REST on both tables.
	withIDs, err := h.seedTable(ctx, super, with, seedRecords)
	if err != nil {
		return nil, err
	}
	bareIDs, err := h.seedTable(ctx, super, bare, seedRecords)
	if err != nil {
		return nil, err
	}
	withURL, bareURL := h.baseURL+with.Spec.Path(), h.baseURL+bare.Spec.Path()
	for _, c := range []struct {
		name       string
		with, bare func(context.Context) error
	}{
		{"create", h.post(withURL), h.post(bareURL)},
		{"update", h.patchRandom(withURL, withIDs), h.patchRandom(bareURL, bareIDs)},
	} {
		wc := writeCost{Case: c.name, Clients: historyClients, Rounds: historyRounds}
		l := load{name: "history-" + c.name, clients: historyClients, postmaster: h.postmaster, settle: h.settleTables(with, bare), warmup: cfg.warmup, duration: cfg.duration}
		runs, err := l.turns(ctx, fmt.Sprintf("history %s, %d clients", c.name, historyClients), historyRounds,
			side{"with-history", c.with}, side{"without-history", c.bare})
		if err != nil {
			return nil, err
		}
		wc.History, wc.Bare = meanOf(runs[0]), meanOf(runs[1])
		wc.Ratio, wc.CPURatio = ratios(wc.History, wc.Bare)
		for i := range runs[0] {
			r, _ := ratios(runs[0][i], runs[1][i])
			wc.RoundRatios = append(wc.RoundRatios, r)
		}
		rep.Write = append(rep.Write, wc)
	}

	// Point-in-time reads of records with 10, 1,000 and 100,000 events.
	for _, depth := range pitDepths {
		progress(fmt.Sprintf("point-in-time reads, %d events", depth))
		id, from, to, err := h.deepRecord(ctx, super, depth)
		if err != nil {
			return nil, err
		}
		span := to.Sub(from)
		l := load{name: "history-at", side: "velocity", clients: 1, postmaster: h.postmaster, settle: h.settle, warmup: cfg.warmup, duration: cfg.duration,
			op: func(ctx context.Context) error {
				at := from.Add(time.Duration(rand.Int64N(int64(span) + 1)))
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.recordURL+"/"+id+"?at="+url.QueryEscape(at.Format(time.RFC3339Nano)), nil)
				if err != nil {
					return err
				}
				return h.do(req, http.StatusOK)
			}}
		m, err := l.run(ctx)
		if err != nil {
			return nil, err
		}
		rep.PointInTime = append(rep.PointInTime, pitLatency{Events: depth, Reads: m})
	}

	if cfg.snapshotRecords > 0 {
		snap, err := h.applyOrders(ctx, "benchsnap")
		if err != nil {
			return nil, err
		}
		progress(fmt.Sprintf("snapshot: writing %d records of history", cfg.snapshotRecords))
		if err := fillHistory(ctx, super, snap, cfg.snapshotRecords); err != nil {
			return nil, err
		}
		for _, format := range []string{"ndjson", "parquet"} {
			progress("snapshot: " + format)
			run, err := h.snapshot(ctx, h.baseURL+snap.Spec.Path()+"/snapshot?format="+format, cfg.snapshotRecords)
			if err != nil {
				return nil, err
			}
			run.Format, run.Records = format, cfg.snapshotRecords
			rep.Snapshots = append(rep.Snapshots, run)
		}
	}
	return rep, nil
}

func ratios(v, base measurement) (ratio, cpuRatio float64) {
	if base.OpsPerSec > 0 {
		ratio = v.OpsPerSec / base.OpsPerSec
	}
	vb, vp := v.cpuPerOp()
	bb, bp := base.cpuPerOp()
	if vb+vp > 0 {
		cpuRatio = float64(bb+bp) / float64(vb+vp)
	}
	return ratio, cpuRatio
}

// seedTable writes n records of recordBody into t as the superuser and returns their ids.
func (h *harness) seedTable(ctx context.Context, super *pgxpool.Pool, t *sqlbuild.Table, n int) ([]string, error) {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	_, err := super.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, customer_email, status, total, quantity)
		SELECT id::uuid, 'buyer@example.com', 'paid', 129.90, 3 FROM unnest($1::text[]) id`, sqlbuild.Qualified(t.Names.Schema, t.Names.Table)), ids)
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", t.Spec.Key(), err)
	}
	return ids, nil
}

func (h *harness) post(u string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(recordBody))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		return h.do(req, http.StatusCreated)
	}
}

// patchRandom changes the quantity of a random record to a new value each time, so every
// PATCH is a real change (a no-op would write no history).
func (h *harness) patchRandom(u string, ids []string) func(context.Context) error {
	return func(ctx context.Context) error {
		body := `{"quantity":` + strconv.FormatInt(rand.Int64N(1<<40), 10) + `}`
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u+"/"+ids[rand.IntN(len(ids))], strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		return h.do(req, http.StatusOK)
	}
}

// deepRecord creates a record with depth events: its INSERT through the trigger, then
// depth-1 UPDATE events one millisecond apart written straight into history (as a long-lived
// record's history would be). It returns the id and the time span of the events.
func (h *harness) deepRecord(ctx context.Context, super *pgxpool.Pool, depth int) (id string, from, to time.Time, err error) {
	st, id, err := h.insert()
	if err != nil {
		return "", from, to, err
	}
	if _, err := super.Exec(ctx, st.SQL, st.Args...); err != nil {
		return "", from, to, fmt.Errorf("deep record: %w", err)
	}
	hist := h.table.History()
	if err := super.QueryRow(ctx, "SELECT at FROM "+hist+" WHERE record_id = $1", id).Scan(&from); err != nil {
		return "", from, to, fmt.Errorf("deep record: %w", err)
	}
	_, err = super.Exec(ctx, `INSERT INTO `+hist+` (event_id, xid, at, record_id, op, version, actor, image)
		SELECT nextval('velocity.event_seq'), pg_current_xact_id(), $2::timestamptz + i * interval '1 millisecond', $1::uuid, 'UPDATE', i + 1, 'bench',
		       b.image || jsonb_build_object('quantity', i, 'version', i + 1)
		  FROM generate_series(1, $3::integer - 1) i, (SELECT image FROM `+hist+` WHERE record_id = $1::uuid) b`, id, from, depth)
	if err != nil {
		return "", from, to, fmt.Errorf("deep record of %d events: %w", depth, err)
	}
	if _, err := super.Exec(ctx, "ANALYZE "+hist); err != nil {
		return "", from, to, err
	}
	return id, from, from.Add(time.Duration(depth) * time.Millisecond), nil
}

// fillHistory writes n INSERT events of n distinct records into t's history, as the
// history of n created records would be.
func fillHistory(ctx context.Context, super *pgxpool.Pool, t *sqlbuild.Table, n int) error {
	const chunk = 200000
	for done := 0; done < n; done += chunk {
		k := min(chunk, n-done)
		_, err := super.Exec(ctx, `INSERT INTO `+t.History()+` (event_id, xid, at, record_id, op, version, actor, image)
			SELECT nextval('velocity.event_seq'), pg_current_xact_id(), now() - interval '1 hour', r.id, 'INSERT', 1, 'bench',
			       jsonb_build_object('id', r.id, 'version', 1, 'created_at', now() - interval '1 hour', 'updated_at', now() - interval '1 hour',
			         'created_by', 'bench', 'updated_by', 'bench', 'customer_email', 'buyer' || r.i || '@example.com',
			         'status', 'paid', 'total', 129.90, 'quantity', r.i % 100)
			  FROM (SELECT i, gen_random_uuid() AS id FROM generate_series($1::integer, $2::integer) i) r`, done+1, done+k)
		if err != nil {
			return fmt.Errorf("fill history: %w", err)
		}
	}
	_, err := super.Exec(ctx, "VACUUM (ANALYZE) "+t.History())
	return err
}

// snapshot downloads one snapshot, counting its bytes, and measures this process's peak RSS
// while it streams.
func (h *harness) snapshot(ctx context.Context, u string, want int) (snapshotRun, error) {
	var run snapshotRun
	runtime.GC()
	// Writing 5 to clear_refs resets the VmHWM high-water mark (Linux 4.0+).
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return run, fmt.Errorf("reset peak RSS: %w", err)
	}
	run.BaseRSSMiB = procStatusMiB("VmRSS")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return run, err
	}
	req.Header.Set("X-API-Key", h.apiKey)
	start := time.Now()
	// A snapshot takes longer than the client's defaults allow a response; no timeout here.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return run, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return run, fmt.Errorf("snapshot: status %d: %s", resp.StatusCode, body)
	}
	lines := &lineCounter{}
	n, err := io.Copy(lines, resp.Body)
	if err != nil {
		return run, fmt.Errorf("snapshot: after %d bytes: %w", n, err)
	}
	if strings.Contains(u, "format=ndjson") && lines.n != want {
		return run, fmt.Errorf("snapshot: %d records, want %d", lines.n, want)
	}
	run.Seconds = time.Since(start).Seconds()
	run.Bytes = n
	run.PeakRSSMiB = procStatusMiB("VmHWM")
	return run, nil
}

// lineCounter counts the lines written to it: the records of an NDJSON stream.
type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// procStatusMiB reads a kB field of /proc/self/status in MiB (0 when it cannot).
func procStatusMiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func (r *historyReport) print(out io.Writer) error {
	fmt.Fprintln(out)
	fmt.Fprintf(out, "history write cost: the same REST writes on two fresh tables of one schema, with history + outbox triggers and with them dropped; %d rounds each, in turns, means shown\n", historyRounds)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tclients\twith ops/s\tp50\tp99\tcpu/op\twithout ops/s\tp50\tp99\tcpu/op\tratio\tcpu ratio\trounds' ratios\t")
	for _, w := range r.Write {
		rounds := make([]string, len(w.RoundRatios))
		for i, x := range w.RoundRatios {
			rounds[i] = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%.2fx\t%.2fx\t%s\t\n", w.Case, w.Clients,
			w.History.OpsPerSec, w.History.P50, w.History.P99, formatCPU(w.History),
			w.Bare.OpsPerSec, w.Bare.P50, w.Bare.P99, formatCPU(w.Bare), w.Ratio, w.CPURatio, strings.Join(rounds, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "point-in-time read: GET P/{id}?at=T at random T over a record's events, 1 client")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "events\treads/s\tp50\tp99\t")
	for _, p := range r.PointInTime {
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t\n", p.Events, p.Reads.OpsPerSec, p.Reads.P50, p.Reads.P99)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Snapshots) > 0 {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "snapshot: GET P/snapshot streamed to the client in this process; peak RSS of this process (API + client)")
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "format\trecords\tseconds\trecords/s\tMiB sent\tRSS before MiB\tpeak RSS MiB\t")
		for _, s := range r.Snapshots {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f\t%.1f\t%.0f\t%.0f\t\n", s.Format, s.Records, s.Seconds, float64(s.Records)/s.Seconds,
				float64(s.Bytes)/(1<<20), s.BaseRSSMiB, s.PeakRSSMiB)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// goals adds the time machine's goals to rep's.
func (r *historyReport) goals() []goal {
	var out []goal
	for _, w := range r.Write {
		out = append(out, goal{Case: "history " + w.Case, Clients: w.Clients, Want: historyWriteGoal, Ratio: w.Ratio, CPURatio: w.CPURatio, Met: w.Ratio >= historyWriteGoal})
	}
	for _, p := range r.PointInTime {
		if p.Events == pitDeepEvents {
			out = append(out, goal{Case: fmt.Sprintf("p99 at %d events (ms, want < %d)", p.Events, pitGoal.Milliseconds()), Clients: 1,
				Want: float64(pitGoal.Milliseconds()), Ratio: float64(time.Duration(p.Reads.P99)) / float64(time.Millisecond), Met: time.Duration(p.Reads.P99) < pitGoal, Below: true})
		}
	}
	return out
}
