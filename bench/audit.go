package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
	"github.com/velocitydev/velocity/workers"
)

// The audit log's goals: creates with every audit entry written at least 0.85 of the same
// creates with none, at 16 and at 64 clients, and the ratio not falling as clients grow
// (writers that waited on each other would fall). "Not falling" allows auditScalingSlack of
// noise between the two counts.
const (
	auditWriteGoal    = 0.85
	auditScalingSlack = 0.05
)

// auditClients are the client counts of the audit write-cost tests; the scaling goal
// compares the last with the first.
var auditClients = []int{16, 64}

// auditLagClients is the client count of the REST load under which the sealing lag is sampled.
const auditLagClients = 16

// auditLagSample is how often the sealing lag is read while the sealer runs.
const auditLagSample = 100 * time.Millisecond

// auditFillChunk is how many entries one transaction of the sealing test inserts, so the
// entries spread over many xids as a live log's do.
const auditFillChunk = 10000

// auditActor is the actor of the inserted entries, shaped like an API key's.
const auditActor = "apikey:0190b3e4-6c2a-7d1e-9f00-5a1b2c3d4e5f"

type auditWriteCost struct {
	Case     string      `json:"case"`
	Clients  int         `json:"clients"`
	Rounds   int         `json:"rounds"` // each side's figures are means over its rounds
	On       measurement `json:"audit_on"`
	Off      measurement `json:"audit_off"`
	Ratio    float64     `json:"ratio"`
	CPURatio float64     `json:"cpu_ratio"`
}

// auditSealing is the sealing test: Inserted entries written straight into the log, then
// one sealing run over everything unsealed and one verify of everything sealed.
type auditSealing struct {
	Inserted    int     `json:"inserted"`
	DetailBytes float64 `json:"detail_bytes"` // mean size of an inserted entry's detail as text
	Sealed      int     `json:"sealed"`
	Blocks      int     `json:"blocks"`
	SealSeconds float64 `json:"seal_seconds"`
	SealRate    float64 `json:"seal_entries_per_sec"`
	// Verified counts every sealed entry, those of the earlier tests included.
	Verified       int64   `json:"verified"`
	VerifiedBlocks int64   `json:"verified_blocks"`
	VerifySeconds  float64 `json:"verify_seconds"`
	VerifyRate     float64 `json:"verify_entries_per_sec"`
}

// auditLag is the sealing lag under load: a sealer run every SealInterval while creates run.
type auditLag struct {
	Clients      int         `json:"clients"`
	Creates      measurement `json:"creates"`
	SealInterval millis      `json:"seal_interval_ms"`
	SealRuns     int         `json:"seal_runs"`
	Sealed       int         `json:"sealed"`
	LongestRun   millis      `json:"longest_seal_run_ms"`
	Samples      int         `json:"samples"`
	P50          millis      `json:"lag_p50_ms"`
	P99          millis      `json:"lag_p99_ms"`
	Max          millis      `json:"lag_max_ms"`
}

type auditReport struct {
	Write   []auditWriteCost `json:"write_cost"`
	Sealing *auditSealing    `json:"sealing,omitempty"`
	Lag     auditLag         `json:"sealing_lag"`
}

// runAudit measures what the audit log costs REST creates, how fast entries are sealed and
// verified, and how far sealing falls behind under load.
func runAudit(ctx context.Context, h *harness, cfg config) (*auditReport, error) {
	rep := &auditReport{}
	// Two fresh tables of the same definition: on keeps the full history writer, off gets the
	// same writer without the audit insert. Each is loaded through its own API instance, on
	// through the one that audits its decisions, off through one that does not.
	on, off, super, err := h.twoTables(ctx, "benchaudit", "benchnoaudit")
	if err != nil {
		return nil, err
	}
	defer super.Close()
	if err := withoutAudit(ctx, super, off); err != nil {
		return nil, err
	}
	offBase, err := h.serveAPI(ctx, api.Config{NoDecisionAudit: true}, "velocity-server-noaudit")
	if err != nil {
		return nil, err
	}
	onURL, offURL := h.baseURL+on.Spec.Path(), offBase+off.Spec.Path()
	for _, u := range []string{onURL, offURL} {
		if err := h.waitRoute(ctx, u); err != nil {
			return nil, err
		}
	}
	jobs, err := store.OpenJobs(ctx, h.cluster.DSN(store.WorkerRole, database), 2)
	if err != nil {
		return nil, err
	}
	defer jobs.Close()
	settle := func(ctx context.Context) error {
		if err := h.settleTables(on, off)(ctx); err != nil {
			return err
		}
		_, err := super.Exec(ctx, "VACUUM (ANALYZE) velocity.audit_entry")
		return err
	}

	// Write cost: the two sides take turns, historyRounds times each, as in the history test.
	for _, n := range auditClients {
		wc := auditWriteCost{Case: "create", Clients: n, Rounds: historyRounds}
		l := load{name: "audit-create", clients: n, postmaster: h.postmaster, settle: settle, warmup: cfg.warmup, duration: cfg.duration}
		if wc.On, wc.Off, err = l.inTurns(ctx, fmt.Sprintf("audit create, %d clients", n),
			side{"audit-on", h.post(onURL)}, side{"audit-off", h.post(offURL)}); err != nil {
			return nil, err
		}
		wc.Ratio, wc.CPURatio = ratios(wc.On, wc.Off)
		rep.Write = append(rep.Write, wc)
	}

	if cfg.auditEntries > 0 {
		if rep.Sealing, err = measureSealing(ctx, super, jobs.Pool, on, cfg.auditEntries); err != nil {
			return nil, err
		}
	}

	progress(fmt.Sprintf("audit sealing lag, %d clients", auditLagClients))
	if rep.Lag, err = h.measureSealingLag(ctx, cfg, super, jobs.Pool, onURL, settle); err != nil {
		return nil, err
	}
	return rep, nil
}

// waitRoute waits until the API at u serves a list of u's records: an instance that was
// running when the schema was applied picks it up from a notification, a moment later.
func (h *harness) waitRoute(ctx context.Context, u string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"?limit=1", nil)
		if err != nil {
			return err
		}
		err = h.do(req, http.StatusOK)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// measureSealing seals what earlier tests left unsealed (untimed), inserts n entries like a
// create's as the superuser in transactions of auditFillChunk, then times one sealing run
// over them and one verify of the whole log, both on the worker's pool as the River job and
// `velocity audit verify` would run them.
func measureSealing(ctx context.Context, super, worker *pgxpool.Pool, t *sqlbuild.Table, n int) (*auditSealing, error) {
	progress("audit sealing: sealing the earlier tests' entries")
	if _, err := store.SealAudit(ctx, worker, store.SealOptions{}); err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("audit sealing: writing %d entries", n))
	if err := fillAudit(ctx, super, t, n); err != nil {
		return nil, err
	}
	s := &auditSealing{Inserted: n}
	if err := super.QueryRow(ctx, `SELECT avg(octet_length(detail::text))::float8
		FROM (SELECT detail FROM velocity.audit_entry ORDER BY id DESC LIMIT 1000) e`).Scan(&s.DetailBytes); err != nil {
		return nil, fmt.Errorf("audit sealing: %w", err)
	}
	// The entries settled as a live log's would be by the time they are sealed: hint bits
	// set, statistics current, no autovacuum or checkpoint due during the timed runs.
	for _, sql := range []string{"VACUUM (ANALYZE) velocity.audit_entry", "CHECKPOINT"} {
		if _, err := super.Exec(ctx, sql); err != nil {
			return nil, fmt.Errorf("audit sealing: %s: %w", sql, err)
		}
	}

	progress(fmt.Sprintf("audit sealing: sealing %d entries", n))
	start := time.Now()
	res, err := store.SealAudit(ctx, worker, store.SealOptions{})
	if err != nil {
		return nil, err
	}
	s.SealSeconds = time.Since(start).Seconds()
	s.Sealed, s.Blocks = res.Entries, res.Blocks
	s.SealRate = float64(res.Entries) / s.SealSeconds

	progress("audit sealing: verifying the log")
	start = time.Now()
	v, err := store.VerifyAudit(ctx, worker, nil)
	if err != nil {
		return nil, err
	}
	s.VerifySeconds = time.Since(start).Seconds()
	if !v.OK {
		detail := "no detail"
		if v.Problem != nil {
			detail = v.Problem.Kind + ": " + v.Problem.Detail
		}
		return nil, fmt.Errorf("audit sealing: verify failed: %s", detail)
	}
	s.Verified, s.VerifiedBlocks = v.Entries, v.Blocks
	s.VerifyRate = float64(v.Entries) / s.VerifySeconds
	return s, nil
}

// fillAudit appends n entries of record creates and updates on t, each with the record's
// image as its detail, auditFillChunk to a transaction.
func fillAudit(ctx context.Context, super *pgxpool.Pool, t *sqlbuild.Table, n int) error {
	for done := 0; done < n; done += auditFillChunk {
		k := min(auditFillChunk, n-done)
		_, err := super.Exec(ctx, `INSERT INTO velocity.audit_entry (action, outcome, actor, schema_key, record_id, request_id, detail)
			SELECT CASE WHEN r.v = 1 THEN 'record.insert' ELSE 'record.update' END, 'allowed', $3::text, $4::text, r.id::text, md5(r.i::text),
			       jsonb_build_object('version', r.v, 'record', jsonb_build_object('id', r.id, 'version', r.v,
			         'created_at', now() - interval '1 hour', 'updated_at', now(), 'created_by', $3::text, 'updated_by', $3::text,
			         'customer_email', 'buyer' || r.i || '@example.com', 'status', 'paid', 'total', 129.90, 'quantity', r.i % 100))
			  FROM (SELECT i, 1 + i % 4 AS v, gen_random_uuid() AS id FROM generate_series($1::integer, $2::integer) i) r`,
			done+1, done+k, auditActor, t.Spec.Key())
		if err != nil {
			return fmt.Errorf("fill audit: %w", err)
		}
	}
	return nil
}

// measureSealingLag runs REST creates on u at auditLagClients clients with a sealer beside
// them, as the River job runs it, and samples the lag every auditLagSample during the
// measured time: now() minus the time of the first unsealed entry in sealing order.
func (h *harness) measureSealingLag(ctx context.Context, cfg config, super, worker *pgxpool.Pool, u string, settle func(context.Context) error) (auditLag, error) {
	lag := auditLag{Clients: auditLagClients, SealInterval: millis(workers.AuditSealInterval)}
	bg, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg               sync.WaitGroup
		samples          []time.Duration
		sealErr, lagErr  error
		sealRuns, sealed int
		longest          time.Duration
	)
	l := load{name: "audit-lag", side: "audit-on", clients: auditLagClients, postmaster: h.postmaster, warmup: cfg.warmup, duration: cfg.duration, op: h.post(u),
		settle: func(ctx context.Context) error {
			// Start from a sealed log, so the lag is the steady state's, not a backlog's.
			if _, err := store.SealAudit(ctx, worker, store.SealOptions{}); err != nil {
				return err
			}
			if err := settle(ctx); err != nil {
				return err
			}
			// The load starts as settle returns; its measured time begins after the warm-up.
			from := time.Now().Add(cfg.warmup)
			end := from.Add(cfg.duration)
			wg.Add(2)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(workers.AuditSealInterval)
				defer tick.Stop()
				for {
					start := time.Now()
					res, err := store.SealAudit(bg, worker, store.SealOptions{})
					switch {
					case bg.Err() != nil:
						return
					case errors.Is(err, store.ErrSealBusy):
					case err != nil:
						sealErr = err
						return
					default:
						sealRuns++
						sealed += res.Entries
						longest = max(longest, time.Since(start))
					}
					select {
					case <-bg.Done():
						return
					case <-tick.C:
					}
				}
			}()
			go func() {
				defer wg.Done()
				tick := time.NewTicker(auditLagSample)
				defer tick.Stop()
				for {
					select {
					case <-bg.Done():
						return
					case now := <-tick.C:
						if now.After(end) {
							return
						}
						if now.Before(from) {
							continue
						}
						d, err := sealingLag(bg, super)
						if err != nil {
							if bg.Err() == nil {
								lagErr = err
							}
							return
						}
						samples = append(samples, d)
					}
				}
			}()
			return nil
		}}
	m, err := l.run(ctx)
	stop()
	wg.Wait()
	if err != nil {
		return lag, err
	}
	if err := errors.Join(sealErr, lagErr); err != nil {
		return lag, fmt.Errorf("audit sealing lag: %w", err)
	}
	slices.Sort(samples)
	lag.Creates, lag.SealRuns, lag.Sealed, lag.LongestRun = m, sealRuns, sealed, millis(longest)
	lag.Samples = len(samples)
	lag.P50, lag.P99 = millis(percentile(samples, 0.50)), millis(percentile(samples, 0.99))
	if len(samples) > 0 {
		lag.Max = millis(samples[len(samples)-1])
	}
	return lag, nil
}

// sealingLag is how long the first unsealed entry in sealing order, (xid, id) after the last
// sealed block's last entry, has waited; 0 when every entry is sealed.
func sealingLag(ctx context.Context, super *pgxpool.Pool) (time.Duration, error) {
	afterXID, afterID := "0", int64(0)
	err := super.QueryRow(ctx, `SELECT last_xid::text, last_id FROM velocity.audit_block ORDER BY block_no DESC LIMIT 1`).Scan(&afterXID, &afterID)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("read the last sealed block: %w", err)
	}
	var seconds *float64
	err = super.QueryRow(ctx, `SELECT extract(epoch FROM now() - at)::float8 FROM velocity.audit_entry
		WHERE (xid, id) > ($1::xid8, $2) ORDER BY xid, id LIMIT 1`, afterXID, afterID).Scan(&seconds)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read the first unsealed entry: %w", err)
	}
	return max(0, time.Duration(*seconds*float64(time.Second))), nil
}

func (r *auditReport) print(out io.Writer) error {
	fmt.Fprintln(out)
	fmt.Fprintf(out, "audit write cost: REST create on two fresh tables of one schema, audit on (full history writer; the API instance auditing its decisions)\n")
	fmt.Fprintf(out, "and audit off (the writer without the audit insert; a second API instance with NoDecisionAudit, sharing the API pool, where each instance's\n")
	fmt.Fprintf(out, "schema listener holds a connection); %d rounds each, in turns, means shown\n", historyRounds)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tclients\ton ops/s\tp50\tp99\tcpu/op\toff ops/s\tp50\tp99\tcpu/op\tratio\tcpu ratio\t")
	for _, w := range r.Write {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%.2fx\t%.2fx\t\n", w.Case, w.Clients,
			w.On.OpsPerSec, w.On.P50, w.On.P99, formatCPU(w.On),
			w.Off.OpsPerSec, w.Off.P50, w.Off.P99, formatCPU(w.Off), w.Ratio, w.CPURatio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if first, last, ok := r.scaling(); ok {
		fmt.Fprintf(out, "writers not serialized: the ratio must not fall as clients grow, judged as the ratio at %d clients >= the ratio at %d - %.2f: %.2fx, want >= %.2fx\n",
			last.Clients, first.Clients, auditScalingSlack, last.Ratio, first.Ratio-auditScalingSlack)
	}

	if s := r.Sealing; s != nil {
		fmt.Fprintln(out)
		fmt.Fprintf(out, "audit sealing: %d entries of record changes (detail %.0f bytes) inserted by the superuser, %d per transaction, then vacuumed;\n", s.Inserted, s.DetailBytes, auditFillChunk)
		fmt.Fprintln(out, "store.SealAudit seals them (blocks of 1,024, transactions of 50,000), store.VerifyAudit checks the whole log; both on the worker's pool")
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "step\tentries\tblocks\tseconds\tentries/s\t")
		fmt.Fprintf(tw, "seal\t%d\t%d\t%.2f\t%.0f\t\n", s.Sealed, s.Blocks, s.SealSeconds, s.SealRate)
		fmt.Fprintf(tw, "verify\t%d\t%d\t%.2f\t%.0f\t\n", s.Verified, s.VerifiedBlocks, s.VerifySeconds, s.VerifyRate)
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	g := r.Lag
	fmt.Fprintln(out)
	fmt.Fprintf(out, "audit sealing lag: REST creates at %d clients (audit on) with store.SealAudit every %s, as the River job runs it;\n", g.Clients, time.Duration(g.SealInterval))
	fmt.Fprintf(out, "lag sampled every %s of the measured time: now() minus the time of the first unsealed entry in (xid, id) order\n", auditLagSample)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "creates/s\tp99\tseal runs\tsealed\tlongest run\tsamples\tlag p50\tlag p99\tlag max\t")
	fmt.Fprintf(tw, "%.0f\t%s\t%d\t%d\t%s\t%d\t%s\t%s\t%s\t\n", g.Creates.OpsPerSec, g.Creates.P99, g.SealRuns, g.Sealed, g.LongestRun, g.Samples, g.P50, g.P99, g.Max)
	return tw.Flush()
}

// scaling is the write cost at the fewest and the most clients.
func (r *auditReport) scaling() (first, last auditWriteCost, ok bool) {
	if len(r.Write) < 2 {
		return first, last, false
	}
	return r.Write[0], r.Write[len(r.Write)-1], true
}

// goals adds the audit log's goals to rep's.
func (r *auditReport) goals() []goal {
	var out []goal
	for _, w := range r.Write {
		out = append(out, goal{Case: "audit " + w.Case, Clients: w.Clients, Want: auditWriteGoal, Ratio: w.Ratio, CPURatio: w.CPURatio, Met: w.Ratio >= auditWriteGoal})
	}
	if first, last, ok := r.scaling(); ok {
		want := first.Ratio - auditScalingSlack
		out = append(out, goal{Case: fmt.Sprintf("audit %s not falling (want: the ratio at %d clients - %.2f)", last.Case, first.Clients, auditScalingSlack),
			Clients: last.Clients, Want: want, Ratio: last.Ratio, CPURatio: last.CPURatio, Met: last.Ratio >= want})
	}
	return out
}
