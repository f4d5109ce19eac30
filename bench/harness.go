package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/pgcluster"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

const (
	database = "velocity_bench"
	// apiPoolSize bounds Velocity's API pool: enough for the largest client count, and well
	// under the cluster's max_connections (200) with the baseline pool beside it.
	apiPoolSize = 64
)

// ordersDefinition is the benchmarked object: examples/orders.yaml with an integer field, so
// that a create checks and casts a string, an enum, a decimal and an integer.
const ordersDefinition = `
apiVersion: velocity.dev/v1alpha1
kind: SchemaDefinition
metadata:
  name: bench-orders
spec:
  org: bench
  app: shop
  domain: sales
  object: orders
  version: 1
  fields:
    - name: customer_email
      type: string
      required: true
      maxLength: 320
      filterable: true
    - name: status
      type: enum
      values: [pending, paid, shipped]
      default: pending
      filterable: true
      sortable: true
    - name: total
      type: decimal
      filterable: true
      sortable: true
    - name: quantity
      type: integer
  access:
    roles:
      admin: [read, search, create, update, delete, history, restore, archive, purge]
`

// recordBody is the one record every create writes, through the API and the baseline alike.
var recordBody = []byte(`{"customer_email":"buyer@example.com","status":"paid","total":"129.90","quantity":3}`)

// harness is one throwaway Postgres cluster with Velocity's API served over it in this
// process, and what the baseline needs to hit the same table directly.
type harness struct {
	dir       string
	cluster   *pgcluster.Cluster
	store     *store.Store
	log       *slog.Logger
	apis      []*api.Server // the API instances (serveAPI) and their HTTP servers
	servers   []*http.Server
	floor     *http.Server // serves the HTTP floor: a stored response, nothing else
	floorURL  string
	stops     []context.CancelFunc // end the API instances' schema listeners
	client    *http.Client
	apiKey    string
	baseURL   string // the API's http://host:port
	recordURL string // POST here; GET recordURL/{id}
	table     *sqlbuild.Table
	record    sqlbuild.Values // recordBody, checked as the API checks it
	readSQL   string          // the baseline's read by id
	pgVersion string
	// postmaster is the cluster's pid, for counting the CPU its processes use.
	postmaster int
}

// startHarness starts the cluster and does what `velocity dev` does on it (bootstrap,
// migrate, open the store, make an admin key, serve the API), then applies the benchmarked
// definition. Close undoes all of it, also after an error part way.
func startHarness(ctx context.Context, log *slog.Logger) (h *harness, err error) {
	h = &harness{log: log}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	// A short path: the unix socket path must stay under ~107 bytes.
	if h.dir, err = os.MkdirTemp("", "vbench"); err != nil {
		return h, err
	}
	h.cluster, err = pgcluster.Start(ctx, pgcluster.Options{
		DataDir:   filepath.Join(h.dir, "data"),
		SocketDir: filepath.Join(h.dir, "s"),
		Fsync:     false,
	})
	if err != nil {
		return h, err
	}
	if err := h.prepare(ctx); err != nil {
		return h, err
	}
	if pid, err := os.ReadFile(filepath.Join(h.dir, "data", "postmaster.pid")); err == nil {
		h.postmaster, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pid), "\n", 2)[0]))
	}
	h.store, err = store.Open(ctx, h.cluster.DSN(store.AuthenticatorRole, database), h.cluster.DSN(store.OwnerRole, database), apiPoolSize)
	if err != nil {
		return h, err
	}

	if h.table, err = h.applyOrders(ctx, "bench"); err != nil {
		return h, err
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(recordBody, &body); err != nil {
		return h, err
	}
	vals, errs := h.table.CheckRecord(body, sqlbuild.ForCreate)
	if len(errs) > 0 {
		return h, fmt.Errorf("bench record: %w", errs)
	}
	h.record = vals
	// The table, not the read view: the view's RLS would hide every row from a superuser
	// session, which has no Velocity roles.
	h.readSQL = "SELECT row_to_json(t) FROM " + sqlbuild.Qualified(h.table.Names.Schema, h.table.Names.Table) + " t WHERE id = $1"

	admin := store.Request{Actor: store.Actor{ID: "velocity-bench", Kind: "system", Roles: []string{"platform_admin", "admin"}, Attributes: map[string]any{}}}
	key, err := h.store.CreateAPIKey(ctx, admin, "bench admin", []string{"platform_admin", "admin"}, 0, nil)
	if err != nil {
		return h, err
	}
	h.apiKey = key.Secret
	return h, h.serve(ctx, log)
}

// ordersAt is the benchmarked definition under org, named after it.
func ordersAt(org string) (schemadef.Definition, error) {
	def, err := schemadef.Parse([]byte(ordersDefinition))
	if err != nil {
		return def, err
	}
	def.Normalize()
	def.Metadata.Name = org + "-orders"
	def.Spec.Org = org
	return def, nil
}

// applyOrders applies the benchmarked definition under org and returns its builder.
func (h *harness) applyOrders(ctx context.Context, org string) (*sqlbuild.Table, error) {
	def, err := ordersAt(org)
	if err != nil {
		return nil, err
	}
	if err := def.Validate(); err != nil {
		return nil, err
	}
	if _, err := h.store.ApplySchema(ctx, def, false, "bench"); err != nil {
		return nil, fmt.Errorf("apply %s: %w", def.Metadata.Name, err)
	}
	return sqlbuild.NewTable(def.Spec), nil
}

// prepare bootstraps the owner role and database and migrates them, as `velocity dev` does.
// Every login goes over the unix socket, where the cluster trusts local users, so no
// passwords are set.
func (h *harness) prepare(ctx context.Context) error {
	super, err := pgx.Connect(ctx, h.cluster.SuperuserDSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect as superuser: %w", err)
	}
	defer super.Close(ctx)
	if err := super.QueryRow(ctx, "SHOW server_version").Scan(&h.pgVersion); err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	if err := store.Bootstrap(ctx, super, database, ""); err != nil {
		return err
	}
	owner, err := pgx.Connect(ctx, h.cluster.DSN(store.OwnerRole, database))
	if err != nil {
		return fmt.Errorf("connect as owner: %w", err)
	}
	defer owner.Close(ctx)
	return store.Migrate(ctx, owner)
}

// serve runs the API on a loopback port and builds the keep-alive client that loads it.
func (h *harness) serve(ctx context.Context, log *slog.Logger) error {
	var err error
	if h.baseURL, err = h.serveAPI(ctx, api.Config{Logger: log}, "velocity-server"); err != nil {
		return err
	}
	h.client = &http.Client{Transport: &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024, // above any client count, so every worker keeps its connection
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
	h.recordURL = h.baseURL + h.table.Spec.Path()
	return nil
}

// serveAPI serves an API instance with cfg over the harness's store on a new loopback port
// and returns its http://host:port. The same client and key reach every instance; side
// labels the instance's goroutines in a CPU profile. Close stops it.
func (h *harness) serveAPI(ctx context.Context, cfg api.Config, side string) (string, error) {
	if cfg.Logger == nil {
		cfg.Logger = h.log
	}
	server, err := api.New(ctx, h.store, cfg)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	lctx, stop := context.WithCancel(context.Background())
	h.stops = append(h.stops, stop)
	go server.Listen(lctx)
	hs := &http.Server{Handler: server, ReadHeaderTimeout: 10 * time.Second}
	h.apis, h.servers = append(h.apis, server), append(h.servers, hs)
	// Connection goroutines inherit this label, so a CPU profile tells server from client.
	pprof.Do(ctx, pprof.Labels("side", side), func(context.Context) {
		go func() {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				cfg.Logger.Error("serve", "side", side, "err", err)
			}
		}()
	})
	return "http://" + ln.Addr().String(), nil
}

// serveFloor reads record id through the API once and serves that response, headers and
// body, from a bare net/http handler on another loopback port: the cheapest request the
// same client and server stack can make. Its cost is the floor under every REST op.
func (h *harness) serveFloor(ctx context.Context, log *slog.Logger, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.recordURL+"/"+id, nil)
	if err != nil {
		return err
	}
	header, body, err := h.send(req, http.StatusOK)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	header = header.Clone()
	header.Del("Date")
	header.Del("Content-Length")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	h.floor = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		_, _ = w.Write(body)
	})}
	pprof.Do(ctx, pprof.Labels("side", "floor-server"), func(context.Context) {
		go func() {
			if err := h.floor.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve floor", "err", err)
			}
		}()
	})
	h.floorURL = "http://" + ln.Addr().String() + h.table.Spec.Path() + "/" + id
	return nil
}

// floorRead is the floor's op: the read's request, to the stored response.
func (h *harness) floorRead(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.floorURL, nil)
	if err != nil {
		return err
	}
	return h.do(req, http.StatusOK)
}

// Close stops the API and the cluster and removes the temporary directory.
func (h *harness) Close() {
	for _, s := range append(h.servers, h.floor) {
		if s != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.Shutdown(sctx)
			cancel()
		}
	}
	for _, a := range h.apis {
		// Writes the decisions' audit entries still queued, while the store is open.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a.Close(sctx)
		cancel()
	}
	for _, stop := range h.stops {
		stop()
	}
	if h.store != nil {
		h.store.Close()
	}
	if h.cluster != nil {
		if err := h.cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stop postgres:", err)
		}
	}
	if h.dir != "" {
		_ = os.RemoveAll(h.dir)
	}
}

// baselinePool is a superuser pool of size connections on the same database. A superuser
// bypasses RLS (forced on the table), so its INSERT and SELECT are the bare statements; the
// system-fields trigger still fires.
func (h *harness) baselinePool(ctx context.Context, size int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(h.cluster.SuperuserDSN(database))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(size)
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	cfg.ConnConfig.RuntimeParams["application_name"] = "velocity-bench-baseline"
	return pgxpool.NewWithConfig(ctx, cfg)
}

// settle vacuums and analyzes the table and checkpoints, so that autovacuum and checkpoints
// caught up with one test's writes do not run during the next test.
func (h *harness) settle(ctx context.Context) error { return h.settleTables(h.table)(ctx) }

// settleTables is settle for the given tables and their histories.
func (h *harness) settleTables(tables ...*sqlbuild.Table) func(context.Context) error {
	return func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, h.cluster.SuperuserDSN(database))
		if err != nil {
			return fmt.Errorf("settle: %w", err)
		}
		defer conn.Close(ctx)
		var sqls []string
		for _, t := range tables {
			sqls = append(sqls, "VACUUM (ANALYZE) "+sqlbuild.Qualified(t.Names.Schema, t.Names.Table), "VACUUM (ANALYZE) "+t.History())
		}
		for _, sql := range append(sqls, "CHECKPOINT") {
			if _, err := conn.Exec(ctx, sql); err != nil {
				return fmt.Errorf("settle: %s: %w", sql, err)
			}
		}
		return nil
	}
}

// insert is the statement the API runs for a create of recordBody with a new id.
func (h *harness) insert() (sqlbuild.Statement, string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return sqlbuild.Statement{}, "", err
	}
	return h.table.Insert(id.String(), h.record), id.String(), nil
}

// seed writes n records for the read tests and returns their ids.
func (h *harness) seed(ctx context.Context, n int) ([]string, error) {
	pool, err := h.baselinePool(ctx, 1)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	ids := make([]string, 0, n)
	b := &pgx.Batch{}
	for range n {
		st, id, err := h.insert()
		if err != nil {
			return nil, err
		}
		b.Queue(st.SQL, st.Args...)
		ids = append(ids, id)
	}
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("seed %d records: %w", n, err)
	}
	return ids, nil
}

// Velocity's operations: one HTTP request each.

func (h *harness) apiCreate(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.recordURL, bytes.NewReader(recordBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return h.do(req, http.StatusCreated)
}

func (h *harness) apiRead(ctx context.Context, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.recordURL+"/"+id, nil)
	if err != nil {
		return err
	}
	return h.do(req, http.StatusOK)
}

// do sends req with the admin key and reads the whole response, so the connection is reused.
func (h *harness) do(req *http.Request, want int) error {
	_, _, err := h.send(req, want)
	return err
}

// send is do, returning the response's header and body.
func (h *harness) send(req *http.Request, want int) (http.Header, []byte, error) {
	req.Header.Set(auth.HeaderAPIKey, h.apiKey)
	return h.exchange(req, want)
}

// exchange is send with whatever credential req carries.
func (h *harness) exchange(req *http.Request, want int) (http.Header, []byte, error) {
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != want {
		return nil, nil, fmt.Errorf("%s %s: status %d, want %d: %s", req.Method, req.URL.Path, resp.StatusCode, want, bytes.TrimSpace(body))
	}
	return resp.Header, body, nil
}

// The baseline's operations: the same statements, straight to Postgres.

func (h *harness) baselineCreate(ctx context.Context, pool *pgxpool.Pool) error {
	st, _, err := h.insert()
	if err != nil {
		return err
	}
	_, err = pool.Exec(ctx, st.SQL, st.Args...)
	return err
}

func (h *harness) baselineRead(ctx context.Context, pool *pgxpool.Pool, id string) error {
	var row []byte
	return pool.QueryRow(ctx, h.readSQL, id).Scan(&row)
}
