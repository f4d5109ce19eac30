// Package api serves Velocity's REST API with Huma: admin routes and routes built from the
// live schema set, rebuilt whenever a schema is applied anywhere (ADR-001).
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// Config tunes the server.
type Config struct {
	// MaxBodyBytes bounds request bodies; larger ones get 413. 0 means 1 MiB.
	MaxBodyBytes int64
	// KeyCacheTTL is how long a verified API key is trusted without a lookup. 0 means 5s.
	KeyCacheTTL time.Duration
	// PublicOpenAPI shows every object in /openapi.json and /docs to callers without a key.
	// Off, a caller sees only the objects its roles may use (velocity dev turns it on).
	PublicOpenAPI bool
	// Events paces GET P/events streams; the zero value means DefaultEventPace.
	Events EventPace
	// MaxSnapshots bounds the snapshots this server streams at once, each holding one API
	// connection for up to sqlbuild.SnapshotTimeout; more get 429. 0 means 4.
	MaxSnapshots int
	// Auth lists the authentication strategies in order, with the JWT issuers; nil means API
	// keys only (auth.DefaultConfig).
	Auth *auth.Config
	// JWT tunes the JWT strategy's caches and clock (tests); the zero value is the default.
	JWT auth.JWTOptions
	// OIDC tunes the browser login (HTTP client and clock, for tests).
	OIDC auth.OIDCOptions
	// SessionKey signs session cookies; required when Auth lists the session strategy.
	SessionKey []byte
	// Revocations checks every authenticated request's credentials against revoked tokens,
	// subjects and API keys, through Redis; nil: only API keys revoked in Postgres are refused
	// (within KeyCacheTTL). The caller starts it (auth.Revocations.Start).
	Revocations *auth.Revocations
	// BindingCacheTTL is how long an actor's role bindings are used without a lookup; a new or
	// expired binding takes effect within it. 0 means 5s; negative means no cache (tests).
	BindingCacheTTL time.Duration
	// NoDecisionAudit turns off the audit entries of authentication and authorization
	// decisions (data changes are audited by Postgres whatever this says). Only the
	// benchmark sets it, to measure what the entries cost.
	NoDecisionAudit bool
	Logger          *slog.Logger
}

// Server is the API. Its handler is swapped atomically when the schema set changes, so
// requests in flight finish on the routes they started with.
type Server struct {
	store    *store.Store
	cfg      Config
	log      *slog.Logger
	apiKeys  *auth.APIKeys
	chain    auth.Chain
	oidc     *auth.OIDC // the browser login, when the session strategy is configured
	bindings *bindingCache
	rules    ruleCache // layer 2, compiled per schema version

	routes   atomic.Pointer[routes]
	reloadMu sync.Mutex
	version  atomic.Int64 // bumps on each rebuild, for tests and /readyz

	// closing is closed by CloseStreams: long-lived responses (event streams) end on it.
	closing   chan struct{}
	closeOnce sync.Once
	// snapshots holds one token per snapshot being streamed (Config.MaxSnapshots).
	snapshots chan struct{}
	// decisions appends authentication and authorization decisions to the audit log; nil
	// with Config.NoDecisionAudit.
	decisions *decisionLog
}

// Close writes the audit entries of decisions still queued. Call it after the HTTP server
// has shut down (requests that finish later are audited one by one).
func (s *Server) Close(ctx context.Context) {
	if s.decisions != nil {
		s.decisions.Close(ctx)
	}
}

// CloseStreams ends every open event stream, so a graceful shutdown does not wait for
// clients that never leave; they reconnect elsewhere with Last-Event-ID. NewHTTPServer
// calls it when the server shuts down.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }

// New builds a server over the live schema set.
func New(ctx context.Context, st *store.Store, cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Events == (EventPace{}) {
		cfg.Events = DefaultEventPace
	}
	if cfg.MaxSnapshots <= 0 {
		cfg.MaxSnapshots = 4
	}
	s := &Server{store: st, cfg: cfg, log: cfg.Logger, apiKeys: auth.NewAPIKeys(st, cfg.KeyCacheTTL), closing: make(chan struct{}),
		snapshots: make(chan struct{}, cfg.MaxSnapshots)}
	authCfg := auth.DefaultConfig()
	if cfg.Auth != nil {
		authCfg = *cfg.Auth
	}
	assembly, err := authCfg.Assemble(s.apiKeys, auth.AssembleOptions{JWT: cfg.JWT, OIDC: cfg.OIDC, SessionKey: cfg.SessionKey})
	if err != nil {
		return nil, err
	}
	s.chain, s.oidc = assembly.Chain, assembly.OIDC
	ttl := cfg.BindingCacheTTL
	if ttl == 0 {
		ttl = 5 * time.Second
	}
	s.bindings = &bindingCache{st: st, ttl: max(ttl, 0), entries: map[string]bindingEntry{}}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	if !cfg.NoDecisionAudit {
		s.decisions = newDecisionLog(st, cfg.Logger)
	}
	return s, nil
}

// ServeHTTP serves the current routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := s.routes.Load()
	if format, ok := openAPIFormats[r.URL.Path]; ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		s.serveOpenAPI(rt, format, w, r)
		return
	}
	rt.mux.ServeHTTP(w, r)
}

// Generation counts rebuilds of the routes.
func (s *Server) Generation() int64 { return s.version.Load() }

// Reload rebuilds the routes from the registry.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	infos, err := s.store.Schemas(ctx)
	if err != nil {
		return fmt.Errorf("reload routes: %w", err)
	}
	s.routes.Store(s.build(infos))
	s.version.Add(1)
	return nil
}

func (s *Server) build(infos []store.SchemaInfo) *routes {
	mux := http.NewServeMux()
	config := huma.DefaultConfig("Velocity API", "1.0.0")
	config.Info.Description = "Routes for every applied SchemaDefinition. Authenticate with X-API-Key."
	config.OpenAPIPath = "/openapi"
	config.DocsPath = "/docs"
	config.SchemasPath = ""
	config.CreateHooks = nil // no $schema links in bodies
	config.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"apiKey": {Type: "apiKey", In: "header", Name: auth.HeaderAPIKey},
	}
	config.Security = []map[string][]string{{"apiKey": {}}}
	if slices.Contains(s.chain.Names(), auth.StrategyJWT) {
		config.Components.SecuritySchemes["bearer"] = &huma.SecurityScheme{Type: "http", Scheme: "bearer", BearerFormat: "JWT"}
		config.Security = append(config.Security, map[string][]string{"bearer": {}})
		config.Info.Description = "Routes for every applied SchemaDefinition. Authenticate with X-API-Key or Authorization: Bearer <JWT>."
	}
	config.Transformers = append(config.Transformers, noteProblem)
	api := humago.New(mux, config)
	api.UseMiddleware(s.authenticate(api))

	// Anything no route matches is a problem+json 404 like every other error.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, problem(http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path))
	})
	registerHealth(api, s)
	registerMetrics(mux, s)
	if s.oidc != nil {
		mux.HandleFunc("GET /auth/login", s.oidc.Login)
		mux.HandleFunc("GET /auth/callback", s.auditLogin(s.oidc.Callback))
		mux.HandleFunc("POST /auth/logout", s.oidc.Logout)
		mux.HandleFunc("GET /auth/logout", s.oidc.Logout)
	}
	registerAdmin(api, s)
	registerAudit(api, s)
	registerRevocations(api, s)
	rt := &routes{mux: mux, api: api}
	for _, info := range infos {
		rt.objects = append(rt.objects, registerRecords(api, s, sqlbuild.NewTable(info.Definition.Spec)))
	}
	return rt
}

// Listen reloads the routes on every NOTIFY velocity_schema_changed until ctx ends,
// reconnecting (and reloading, since notifications may have been missed) after errors.
func (s *Server) Listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("schema listener stopped; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) listenOnce(ctx context.Context) error {
	conn, err := s.store.API.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN velocity_schema_changed"); err != nil {
		return err
	}
	defer func() { _, _ = conn.Exec(context.Background(), "UNLISTEN *") }()
	if err := s.Reload(ctx); err != nil {
		return err
	}
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		s.log.Info("schema changed; reloading routes", "payload", n.Payload)
		if err := s.Reload(ctx); err != nil {
			return err
		}
	}
}

type ctxKey int

const (
	actorKey ctxKey = iota
	requestIDKey
	noteKey
	clientIPKey
)

// decisionNote is where a request's denial, if any, is noted for its audit entry.
type decisionNote struct {
	layer    int
	detail   string
	failMode string // "open" when a check could not be made and the deployment let it pass
}

// noteProblem is a Huma transformer: it sees every response body, so it notes the layer and
// detail of a denial for the request's audit entry, whichever handler wrote it.
func noteProblem(ctx huma.Context, _ string, v any) (any, error) {
	if p, ok := v.(*Problem); ok {
		if note, ok := ctx.Context().Value(noteKey).(*decisionNote); ok {
			note.layer, note.detail = p.Layer, p.Detail
		}
	}
	return v, nil
}

// auditDecision records what was decided about an authenticated request once it has been
// answered: denied (403, or the layer that hid a row), or allowed.
func (s *Server) auditDecision(ctx huma.Context, actor store.Actor, rid string, note *decisionNote) {
	if s.decisions == nil {
		return
	}
	op := ctx.Operation()
	status := ctx.Status()
	d := decision{At: time.Now(), Action: "authz", Outcome: "allowed", Actor: actor.ID, Strategy: strategyOf(actor), RequestID: rid,
		Reason: ctx.Header(reasonHeader), Detail: map[string]any{"method": ctx.Method(), "path": ctx.URL().Path, "status": status}}
	if op != nil {
		d.Detail["operation"] = op.OperationID
		if key, ok := op.Metadata["schema"].(string); ok {
			d.SchemaKey = key
		}
	}
	d.RecordID = ctx.Param("id")
	d.FailMode = note.failMode
	// A denial is a 403, or a 404 or 428 that a layer decided (a hidden row, a missing reason).
	if status == http.StatusForbidden || (note.layer > 0 && status >= 400) {
		d.Outcome, d.Layer = "denied", note.layer
		d.Detail["denial"] = note.detail
	}
	s.decisions.add(d)
}

// strategyOf names how actor authenticated.
func strategyOf(actor store.Actor) string {
	switch actor.Kind {
	case "api_key":
		return auth.StrategyAPIKey
	case "jwt":
		return auth.StrategyJWT
	case "session":
		return auth.StrategySession
	}
	return actor.Kind
}

// authenticate is the middleware that turns credentials into an actor for every operation
// not marked public. No credential, or a bad one, is a 401; nothing falls through to
// anonymous.
func (s *Server) authenticate(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		rid := ctx.Header("X-Request-ID")
		if rid == "" || len(rid) > 128 {
			rid = newRequestID()
		}
		ctx.SetHeader("X-Request-ID", rid)
		ctx = huma.WithValue(ctx, requestIDKey, rid)
		if op := ctx.Operation(); op != nil && op.Metadata["public"] == true {
			next(ctx)
			return
		}
		r, _ := humago.Unwrap(ctx)
		actor, strategy, err := s.chain.Authenticate(ctx.Context(), r)
		if err == nil {
			actor, err = s.bindings.apply(ctx.Context(), actor)
		}
		failMode := ""
		if err == nil && s.cfg.Revocations != nil {
			var revoked *auth.Credential
			var open bool
			revoked, open, err = s.cfg.Revocations.Check(ctx.Context(), credentialsOf(actor))
			switch {
			case err == nil && revoked != nil:
				err = fmt.Errorf("%w: %s", auth.ErrRevoked, revoked.Kind)
			case open:
				failMode = "open" // Redis was unreachable and the deployment fails open
			}
		}
		if err != nil {
			status, msg, challenge := s.authnFailure(err, strategy, rid)
			s.auditAuthn(ctx, rid, strategy, status, msg)
			ctx.SetHeader("WWW-Authenticate", challenge)
			_ = huma.WriteErr(api, ctx, status, msg)
			return
		}
		note := &decisionNote{failMode: failMode}
		ctx = huma.WithValue(huma.WithValue(ctx, actorKey, actor), noteKey, note)
		ctx = huma.WithValue(ctx, clientIPKey, s.apiKeys.ClientIP(r))
		next(ctx)
		s.auditDecision(ctx, actor, rid, note)
	}
}

// authnFailure is the answer to a refused credential: 401 with the reason, or 503 when the
// credential could not be checked (fail closed), and the challenge to send.
func (s *Server) authnFailure(err error, strategy, rid string) (status int, msg, challenge string) {
	challenge = `ApiKey header="X-API-Key"`
	if slices.Contains(s.chain.Names(), auth.StrategyJWT) {
		challenge += `, Bearer`
	}
	switch {
	case errors.Is(err, auth.ErrNoCredential):
		return http.StatusUnauthorized, "no valid identity: send " + credentialHint(s.chain), challenge
	case errors.Is(err, auth.ErrUnknownKey), errors.Is(err, auth.ErrExpiredKey),
		errors.Is(err, auth.ErrAddress), errors.Is(err, auth.ErrMalformed):
		return http.StatusUnauthorized, "no valid identity: " + err.Error(), challenge
	case errors.Is(err, auth.ErrSessionExpired):
		return http.StatusUnauthorized, "no valid identity: session expired; log in again at /auth/login", challenge
	case errors.Is(err, auth.ErrRevoked):
		return http.StatusUnauthorized, "no valid identity: " + err.Error(), challenge
	case errors.Is(err, auth.ErrTokenInvalid), errors.Is(err, auth.ErrTokenExpired), errors.Is(err, auth.ErrUnknownIssuer):
		return http.StatusUnauthorized, "no valid identity: " + err.Error(), `Bearer error="invalid_token"`
	default:
		s.log.Error("authenticate", "strategy", strategy, "err", err, "request_id", rid)
		return http.StatusServiceUnavailable, "authentication is unavailable", challenge
	}
}

// credentialHint names the credentials the chain accepts.
func credentialHint(c auth.Chain) string {
	var hints []string
	for _, n := range c.Names() {
		switch n {
		case auth.StrategyAPIKey:
			hints = append(hints, "X-API-Key")
		case auth.StrategyJWT:
			hints = append(hints, "Authorization: Bearer <JWT>")
		}
	}
	return strings.Join(hints, " or ")
}

// auditAuthn records a failed authentication: no actor, the strategy that tried (none when
// no strategy recognized a credential), and whether the API failed closed because a
// dependency was down (503).
func (s *Server) auditAuthn(ctx huma.Context, rid, strategy string, status int, msg string) {
	if s.decisions == nil {
		return
	}
	if strategy == "" {
		strategy = "none"
	}
	d := decision{At: time.Now(), Action: "authn", Outcome: "denied", Strategy: strategy, RequestID: rid, Reason: msg,
		Detail: map[string]any{"method": ctx.Method(), "path": ctx.URL().Path, "status": status}}
	if status == http.StatusServiceUnavailable {
		d.Outcome, d.FailMode = "failed", "closed"
	}
	s.decisions.add(d)
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// requestOf is the store request of an authenticated operation.
func requestOf(ctx context.Context, reason string) store.Request {
	actor, _ := ctx.Value(actorKey).(store.Actor)
	rid, _ := ctx.Value(requestIDKey).(string)
	return store.Request{Actor: actor, Reason: reason, RequestID: rid}
}

func registerHealth(api huma.API, s *Server) {
	type healthOut struct {
		Body struct {
			Status string `json:"status"`
		}
	}
	public := map[string]any{"public": true}
	huma.Register(api, huma.Operation{
		OperationID: "healthz", Method: http.MethodGet, Path: "/healthz", Summary: "Liveness",
		Tags: []string{"health"}, Metadata: public, Security: []map[string][]string{},
	}, func(ctx context.Context, _ *struct{}) (*healthOut, error) {
		out := &healthOut{}
		out.Body.Status = "ok"
		return out, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "readyz", Method: http.MethodGet, Path: "/readyz", Summary: "Readiness: Postgres reachable",
		Tags: []string{"health"}, Metadata: public, Security: []map[string][]string{},
	}, func(ctx context.Context, _ *struct{}) (*healthOut, error) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := s.store.Ping(pctx); err != nil {
			return nil, problem(http.StatusServiceUnavailable, "database unreachable")
		}
		out := &healthOut{}
		out.Body.Status = "ready"
		return out, nil
	})
}

// NewHTTPServer is the http.Server every Velocity process serves the API with: a slow or
// stalled client cannot hold a connection, or a request's database transaction, forever.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	hs := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	if s, ok := h.(*Server); ok {
		hs.RegisterOnShutdown(s.CloseStreams)
	}
	return hs
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// auditLogin records the outcome of a browser login's callback, an authentication decision
// like any other: allowed (the session cookie was set), denied (a bad state, code or token),
// or failed closed (the provider was unreachable).
func (s *Server) auditLogin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next(rec, r)
		if s.decisions == nil {
			return
		}
		rid := r.Header.Get("X-Request-ID")
		if rid == "" || len(rid) > 128 {
			rid = newRequestID()
		}
		d := decision{At: time.Now(), Action: "authn.login", Outcome: "allowed", Strategy: auth.StrategySession, RequestID: rid,
			Detail: map[string]any{"method": r.Method, "path": r.URL.Path, "status": rec.status}}
		switch {
		case rec.status >= 500:
			d.Outcome, d.FailMode = "failed", "closed"
		case rec.status >= 400:
			d.Outcome = "denied"
		}
		s.decisions.add(d)
	}
}

// reasonHeader carries why a request is made, for history and audit.
const reasonHeader = "X-Velocity-Reason"
