package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"text/tabwriter"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/store"
)

// The JWT goal: at authGoalClients clients, verifying a (cached) JWT costs under
// authShareGoal of the request, measured against the same read with an API key.
const (
	authGoalClients = 16
	authShareGoal   = 0.05
)

// authRounds is how many times each side runs, in turns, at authGoalClients; the other
// client counts run once per side, which keeps the section near a minute and a half.
const authRounds = 2

// authRole is the one role both credentials carry, so the actors differ only in how they
// authenticated. The orders definition grants it read.
const authRole = "admin"

// The bench's identity provider, as the JWT instance is configured to trust it.
const (
	authIssuer   = "https://idp.bench/"
	authAudience = "velocity"
	authKeyID    = "bench-1"
)

// authNoise is the host CPU, in cores, that other processes may use during a test before
// its throughput is too noisy to judge a 5% difference by.
const authNoise = 0.2

// authRead is read-by-id at one client count three ways: a JWT, an API key (both through
// the JWT-configured instance) and bare pgx.
type authRead struct {
	Clients  int         `json:"clients"`
	Rounds   int         `json:"rounds"` // each side's figures are means over its rounds
	JWT      measurement `json:"jwt"`
	APIKey   measurement `json:"api_key"`
	Baseline measurement `json:"baseline"`
	// KeyRatio is JWT ops/s over API-key ops/s; KeyCPURatio API-key cpu/op over JWT's.
	KeyRatio    float64 `json:"jwt_over_api_key"`
	KeyCPURatio float64 `json:"jwt_over_api_key_cpu"`
	// BaselineRatio and BaselineCPURatio are the same against bare pgx.
	BaselineRatio    float64 `json:"jwt_over_baseline"`
	BaselineCPURatio float64 `json:"jwt_over_baseline_cpu"`
	// CostShare is 1 - JWT ops/s / API-key ops/s; CPUCostShare is 1 - API-key cpu/op / JWT
	// cpu/op. Both are the part of a JWT request that the API-key request does not pay.
	CostShare    float64 `json:"jwt_cost_share"`
	CPUCostShare float64 `json:"jwt_cpu_cost_share"`
	// RoundShares is CostShare of each round alone: their spread is the throughput's noise.
	RoundShares []float64 `json:"round_cost_shares"`
	// StepShare is the authentication step's extra cost for a JWT (authStep) over the JWT
	// request's cpu/op: a cross-check that load noise hardly moves.
	StepShare float64 `json:"jwt_step_share"`
}

// authStep is the authentication step alone, cache warm, timed in this process on one
// goroutine: the strategy chain turning a request's header into an actor.
type authStep struct {
	JWT    float64 `json:"jwt_us"` // microseconds per request
	APIKey float64 `json:"api_key_us"`
}

type authReport struct {
	Reads []authRead `json:"read"`
	Step  authStep   `json:"step"`
	// JWKSFetches counts the JWK set requests over the whole section: the JWT instance's and
	// the step test's chain's, one each while the keys stay fresh.
	JWKSFetches int64 `json:"jwks_fetches"`
	// JudgedBy names the share the goal was judged by: "throughput" or "cpu/op".
	JudgedBy string `json:"judged_by"`
	Why      string `json:"why"`
}

// runAuth measures read-by-id with a warm-cached JWT, with an API key and with bare pgx, at
// each client count, the three sides in turns.
func runAuth(ctx context.Context, h *harness, cfg config, ids []string) (*authReport, error) {
	rep := &authReport{}
	progress("auth: starting the identity provider and the JWT instance")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	var fetches atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: authKeyID, Algorithm: string(jose.RS256), Use: "sig"}}}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=3600")
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer jwks.Close()
	authCfg, err := benchAuthConfig(jwks.URL)
	if err != nil {
		return nil, err
	}
	base, err := h.serveAPI(ctx, api.Config{Auth: &authCfg}, "velocity-server-jwt")
	if err != nil {
		return nil, err
	}
	recordURL := base + h.table.Spec.Path()

	// One credential of each kind per client of the largest count, made and checked up front:
	// the first request with each token verifies its signature and fills the cache.
	most := slices.Max(cfg.clients)
	tokens, err := signTokens(key, most)
	if err != nil {
		return nil, err
	}
	keys, err := h.roleKeys(ctx, most)
	if err != nil {
		return nil, err
	}
	pick := func() string { return ids[mathrand.IntN(len(ids))] }
	for i := range most {
		for _, cred := range [][2]string{{"Authorization", tokens[i]}, {auth.HeaderAPIKey, keys[i]}} {
			if err := h.readWith(recordURL, cred[0], []string{cred[1]}, pick)(ctx); err != nil {
				return nil, fmt.Errorf("auth: first read with %s: %w", cred[0], err)
			}
		}
	}
	progress("auth: timing the authentication step alone")
	if rep.Step, err = h.timeAuthStep(ctx, authCfg, recordURL, tokens[0], keys[0]); err != nil {
		return nil, err
	}

	for _, n := range cfg.clients {
		rounds := 1
		if n == authGoalClients {
			rounds = authRounds
		}
		pool, err := h.baselinePool(ctx, n)
		if err != nil {
			return nil, err
		}
		l := load{name: "auth-read", clients: n, postmaster: h.postmaster, settle: h.settle, warmup: cfg.warmup, duration: cfg.duration}
		runs, err := l.turns(ctx, fmt.Sprintf("auth read, %d clients", n), rounds,
			side{"jwt", h.readWith(recordURL, "Authorization", tokens[:n], pick)},
			side{"api-key", h.readWith(recordURL, auth.HeaderAPIKey, keys[:n], pick)},
			side{"baseline", func(ctx context.Context) error { return h.baselineRead(ctx, pool, pick()) }})
		pool.Close()
		if err != nil {
			return nil, err
		}
		r := authRead{Clients: n, Rounds: rounds, JWT: meanOf(runs[0]), APIKey: meanOf(runs[1]), Baseline: meanOf(runs[2])}
		r.KeyRatio, r.KeyCPURatio = ratios(r.JWT, r.APIKey)
		r.BaselineRatio, r.BaselineCPURatio = ratios(r.JWT, r.Baseline)
		r.CostShare, r.CPUCostShare = 1-r.KeyRatio, 1-r.KeyCPURatio
		if r.KeyCPURatio == 0 {
			r.CPUCostShare = 0 // no CPU figures on this host
		}
		for i := range runs[0] {
			ratio, _ := ratios(runs[0][i], runs[1][i])
			r.RoundShares = append(r.RoundShares, 1-ratio)
		}
		if b, p := r.JWT.cpuPerOp(); b+p > 0 {
			r.StepShare = (rep.Step.JWT - rep.Step.APIKey) / (float64(b+p) / float64(time.Microsecond))
		}
		rep.Reads = append(rep.Reads, r)
		// The judgement reads the goal's client count, whose runs these are.
		if n == authGoalClients {
			rep.JudgedBy, rep.Why = judgeShare(r, slices.Concat(runs...))
		}
	}
	rep.JWKSFetches = fetches.Load()
	return rep, nil
}

// benchAuthConfig is the JWT instance's configuration: API keys first, then JWTs from the
// bench's issuer, whose groups claim names roles with a velocity- prefix.
func benchAuthConfig(jwksURL string) (auth.Config, error) {
	raw, err := json.Marshal(map[string]any{
		"strategies": []string{auth.StrategyAPIKey, auth.StrategyJWT},
		"jwt": map[string]any{"issuers": []any{map[string]any{
			"issuer": authIssuer, "jwksURL": jwksURL, "audiences": []string{authAudience},
			"claims": map[string]any{
				"roles": []any{map[string]any{"claim": "groups", "transforms": []any{map[string]any{"kind": "prefix_strip", "prefix": "velocity-"}}}},
			},
		}}},
	})
	if err != nil {
		return auth.Config{}, err
	}
	return auth.LoadConfig(raw)
}

// signTokens signs n tokens, one per client, each with its own subject and role authRole,
// valid for an hour; they come back as Authorization header values.
func signTokens(key *rsa.PrivateKey, n int) ([]string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", authKeyID))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]string, n)
	for i := range out {
		raw, err := jwt.Signed(signer).Claims(map[string]any{
			"iss": authIssuer, "aud": authAudience, "sub": fmt.Sprintf("bench-client-%d", i),
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "groups": []string{"velocity-" + authRole},
		}).Serialize()
		if err != nil {
			return nil, fmt.Errorf("sign token: %w", err)
		}
		out[i] = "Bearer " + raw
	}
	return out, nil
}

// roleKeys makes n API keys with role authRole, one per client, and returns their secrets.
func (h *harness) roleKeys(ctx context.Context, n int) ([]string, error) {
	admin := store.Request{Actor: store.Actor{ID: "velocity-bench", Kind: "system", Roles: []string{"platform_admin"}, Attributes: map[string]any{}}}
	out := make([]string, n)
	for i := range out {
		k, err := h.store.CreateAPIKey(ctx, admin, fmt.Sprintf("bench client %d", i), []string{authRole}, 0, nil)
		if err != nil {
			return nil, err
		}
		out[i] = k.Secret
	}
	return out, nil
}

// authStepBatches and authStepBatch size the step test: the fastest batch of each side is
// taken, since a slower one was only preempted by the rest of the host.
const (
	authStepBatches = 50
	authStepBatch   = 500
)

// timeAuthStep times a chain built from cfg, as the JWT instance builds its own, turning a
// request with token and one with key into actors, in alternating batches.
func (h *harness) timeAuthStep(ctx context.Context, cfg auth.Config, u, token, key string) (authStep, error) {
	chain, err := cfg.Build(auth.NewAPIKeys(h.store, 0), auth.JWTOptions{})
	if err != nil {
		return authStep{}, err
	}
	var reqs [2]*http.Request
	for i, cred := range [][2]string{{"Authorization", token}, {auth.HeaderAPIKey, key}} {
		if reqs[i], err = http.NewRequestWithContext(ctx, http.MethodGet, u, nil); err != nil {
			return authStep{}, err
		}
		reqs[i].Header.Set(cred[0], cred[1])
	}
	var fastest [2]time.Duration // of a whole batch
	// The first batch's first call verifies and caches; the fastest batch is all cache hits.
	for range authStepBatches {
		for i, req := range reqs {
			start := time.Now()
			for range authStepBatch {
				if _, _, err := chain.Authenticate(ctx, req); err != nil {
					return authStep{}, fmt.Errorf("auth step: %w", err)
				}
			}
			if d := time.Since(start); fastest[i] == 0 || d < fastest[i] {
				fastest[i] = d
			}
		}
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return authStep{JWT: us(fastest[0]) / authStepBatch, APIKey: us(fastest[1]) / authStepBatch}, nil
}

// readWith is GET u/{id} of a random seeded id with a credential from creds in header, and
// nothing else. Each request in flight holds a credential of its own, so at n clients with
// n credentials every client's requests carry a different one.
func (h *harness) readWith(u, header string, creds []string, pick func() string) func(context.Context) error {
	free := make(chan string, len(creds))
	for _, c := range creds {
		free <- c
	}
	return func(ctx context.Context) error {
		cred := <-free
		defer func() { free <- cred }()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/"+pick(), nil)
		if err != nil {
			return err
		}
		req.Header.Set(header, cred)
		_, _, err = h.exchange(req, http.StatusOK)
		return err
	}
}

// turns runs l on every side in turns, rounds times each, so drift on a shared host falls on
// every side alike, and returns each side's runs in order.
func (l load) turns(ctx context.Context, what string, rounds int, sides ...side) ([][]measurement, error) {
	runs := make([][]measurement, len(sides))
	for round := 1; round <= rounds; round++ {
		for i, s := range sides {
			progress(fmt.Sprintf("%s, round %d: %s", what, round, s.name))
			l.side, l.op = s.name, s.op
			m, err := l.run(ctx)
			if err != nil {
				return nil, err
			}
			runs[i] = append(runs[i], m)
		}
	}
	return runs, nil
}

// judgeShare picks the share the goal is judged by. Throughput is the measure; it
// gives way to cpu/op, which hardly moves when others take CPU, when other processes used
// more than authNoise cores during a run or the rounds' throughput shares differ by more
// than the goal itself.
func judgeShare(r authRead, runs []measurement) (by, why string) {
	if r.KeyCPURatio == 0 {
		return "throughput", "no CPU figures on this host"
	}
	var other float64
	for _, m := range runs {
		other = max(other, m.otherCores())
	}
	spread := slices.Max(r.RoundShares) - slices.Min(r.RoundShares)
	switch {
	case other > authNoise:
		return "cpu/op", fmt.Sprintf("other processes used up to %.1f cores during a run", other)
	case spread > authShareGoal:
		return "cpu/op", fmt.Sprintf("the rounds' throughput shares differ by %.1f points, more than the goal", spread*100)
	}
	return "throughput", fmt.Sprintf("host quiet (others up to %.1f cores), rounds' throughput shares within %.1f points", other, spread*100)
}

func (r *authReport) print(out io.Writer) error {
	fmt.Fprintln(out)
	fmt.Fprintln(out, "auth: GET P/{id} of random seeded ids through an API instance configured with [api-key, jwt], one credential per client,")
	fmt.Fprintf(out, "role %s either way: a JWT (RS256, 2048-bit key, signed up front, cache warm) or an API key; and bare pgx. Sides in turns,\n", authRole)
	fmt.Fprintf(out, "%d rounds at %d clients, 1 elsewhere, means shown; JWKS fetched %d times\n", authRounds, authGoalClients, r.JWKSFetches)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tside\tops/s\tp50\tp99\tcpu/op\t")
	for _, a := range r.Reads {
		for _, s := range []struct {
			name string
			m    measurement
		}{{"jwt", a.JWT}, {"api-key", a.APIKey}, {"baseline", a.Baseline}} {
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t\n", a.Clients, s.name, s.m.OpsPerSec, s.m.P50, s.m.P99, formatCPU(s.m))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\tjwt/api-key\tcpu ratio\tjwt/baseline\tcpu ratio\tjwt cost share\tby cpu/op\tby step\trounds' shares\t")
	for _, a := range r.Reads {
		rounds := ""
		for i, s := range a.RoundShares {
			if i > 0 {
				rounds += " "
			}
			rounds += fmt.Sprintf("%.1f%%", s*100)
		}
		fmt.Fprintf(tw, "%d\t%.3fx\t%.3fx\t%.2fx\t%.2fx\t%.1f%%\t%.1f%%\t%.2f%%\t%s\t\n", a.Clients, a.KeyRatio, a.KeyCPURatio,
			a.BaselineRatio, a.BaselineCPURatio, a.CostShare*100, a.CPUCostShare*100, a.StepShare*100, rounds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "jwt cost share: 1 - jwt ops/s / api-key ops/s; by cpu/op: 1 - api-key cpu/op / jwt cpu/op; cpu ratio: the other side's cpu/op over jwt's")
	fmt.Fprintf(out, "by step: (jwt step - api-key step) / jwt cpu/op, where the step alone, cache warm, on one goroutine (fastest of %d batches of %d)\n", authStepBatches, authStepBatch)
	fmt.Fprintf(out, "takes %.2fµs with a jwt and %.2fµs with an api key: the cross-check that load noise hardly moves\n", r.Step.JWT, r.Step.APIKey)
	if r.JudgedBy != "" {
		fmt.Fprintf(out, "goal judged by the %s share at %d clients: %s\n", r.JudgedBy, authGoalClients, r.Why)
	}
	return nil
}

// goals adds the JWT goal, in percent, to rep's.
func (r *authReport) goals() []goal {
	i := slices.IndexFunc(r.Reads, func(a authRead) bool { return a.Clients == authGoalClients })
	if i < 0 {
		return nil
	}
	a := r.Reads[i]
	share, other, otherName := a.CostShare, a.CPUCostShare, "cpu/op"
	if r.JudgedBy == "cpu/op" {
		share, other, otherName = a.CPUCostShare, a.CostShare, "throughput"
	}
	return []goal{{
		Case: fmt.Sprintf("jwt cost share at %d clients in %%, by %s (want < %.0f; by %s %.1f, by step %.2f)",
			authGoalClients, r.JudgedBy, authShareGoal*100, otherName, other*100, a.StepShare*100),
		Clients: authGoalClients, Want: authShareGoal * 100, Ratio: share * 100, Met: share < authShareGoal, Below: true,
	}}
}
