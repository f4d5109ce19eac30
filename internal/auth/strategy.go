package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/velocitydev/velocity/internal/store"
)

// Strategy names, as a deployment lists them in Config.Strategies.
const (
	StrategyAPIKey = "api-key"
	StrategyJWT    = "jwt"
)

// A Strategy turns one kind of credential into an actor.
type Strategy interface {
	// Name is the strategy's name in audit entries and configuration.
	Name() string
	// Recognizes reports whether r carries this strategy's kind of credential, valid or not.
	Recognizes(r *http.Request) bool
	// Authenticate verifies that credential. Any error is a denial.
	Authenticate(ctx context.Context, r *http.Request) (store.Actor, error)
}

// Chain is a deployment's ordered list of strategies. The first that recognizes a request's
// credential decides: a recognized but invalid credential is a denial, never a fall-through
// to the next strategy or to anonymous.
type Chain []Strategy

// Authenticate returns the actor and the name of the strategy that decided. With no
// credential any strategy recognizes, it returns ErrNoCredential and no strategy.
func (c Chain) Authenticate(ctx context.Context, r *http.Request) (store.Actor, string, error) {
	for _, s := range c {
		if s.Recognizes(r) {
			actor, err := s.Authenticate(ctx, r)
			return actor, s.Name(), err
		}
	}
	return store.Actor{}, "", ErrNoCredential
}

// Names lists the strategies in order.
func (c Chain) Names() []string {
	out := make([]string, len(c))
	for i, s := range c {
		out[i] = s.Name()
	}
	return out
}

// Name implements Strategy.
func (a *APIKeys) Name() string { return StrategyAPIKey }

// Recognizes implements Strategy: an X-API-Key header.
func (a *APIKeys) Recognizes(r *http.Request) bool { return r.Header.Get(HeaderAPIKey) != "" }

// JWTIssuer is one trusted issuer in the configuration file: how its tokens are verified and
// how their claims become an actor.
type JWTIssuer struct {
	Issuer     string       `json:"issuer"`
	JWKSURL    string       `json:"jwksURL"`
	Audiences  []string     `json:"audiences"`
	Algorithms []string     `json:"algorithms,omitempty"`
	ClockSkew  string       `json:"clockSkew,omitempty"` // a Go duration; empty = 60s
	Claims     ClaimMapping `json:"claims,omitempty"`
}

// Config is the authentication part of a deployment's configuration (velocity serve
// --auth-config FILE):
//
//	strategies: [api-key, jwt]
//	jwt:
//	  issuers:
//	    - issuer: https://idp.example.com/
//	      jwksURL: https://idp.example.com/.well-known/jwks.json
//	      audiences: [velocity]
//	      claims:
//	        roles: [{claim: groups, transforms: [{kind: prefix_strip, prefix: velocity-}]}]
type Config struct {
	Strategies []string `json:"strategies"`
	// TrustedProxies are the CIDRs of the proxies in front of the API whose X-Forwarded-For
	// names the client, for API keys' IP allowlists (ClientIP). Empty: the peer address.
	TrustedProxies []string `json:"trustedProxies,omitempty"`
	JWT            struct {
		Issuers []JWTIssuer `json:"issuers,omitempty"`
	} `json:"jwt,omitempty"`
	// OIDC is the browser login of the session strategy; its issuer must be one of
	// jwt.issuers, whose keys verify the id_token and whose claim mapping makes the actor.
	OIDC *OIDCConfig `json:"oidc,omitempty"`
}

// DefaultConfig authenticates API keys only.
func DefaultConfig() Config { return Config{Strategies: []string{StrategyAPIKey}} }

// LoadConfig parses and checks a configuration file (YAML or JSON). Every problem is
// reported with where it is; unknown keys are errors.
func LoadConfig(raw []byte) (Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		return cfg, fmt.Errorf("auth config: %w", err)
	}
	if err := cfg.check(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func (c Config) check() error {
	var errs []error
	if len(c.Strategies) == 0 {
		errs = append(errs, errors.New("strategies: list at least one of api-key, jwt"))
	}
	for i, s := range c.Strategies {
		switch {
		case s != StrategyAPIKey && s != StrategyJWT && s != StrategySession:
			errs = append(errs, fmt.Errorf("strategies[%d]: unknown strategy %q (use api-key, jwt or session)", i, s))
		case slices.Index(c.Strategies, s) != i:
			errs = append(errs, fmt.Errorf("strategies[%d]: %q is listed twice", i, s))
		}
	}
	if _, err := c.proxies(); err != nil {
		errs = append(errs, err)
	}
	jwt := slices.Contains(c.Strategies, StrategyJWT)
	session := slices.Contains(c.Strategies, StrategySession)
	switch {
	case jwt && len(c.JWT.Issuers) == 0:
		errs = append(errs, errors.New("jwt.issuers: the jwt strategy needs at least one issuer"))
	case !jwt && !session && len(c.JWT.Issuers) > 0:
		errs = append(errs, errors.New("jwt.issuers: issuers are configured but neither jwt nor session is in strategies"))
	}
	switch {
	case session && c.OIDC == nil:
		errs = append(errs, errors.New("oidc: the session strategy needs an oidc section"))
	case !session && c.OIDC != nil:
		errs = append(errs, errors.New("oidc: configured but session is not in strategies"))
	case session && !slices.ContainsFunc(c.JWT.Issuers, func(is JWTIssuer) bool { return is.Issuer == c.OIDC.Issuer }):
		errs = append(errs, fmt.Errorf("oidc.issuer: %q must be one of jwt.issuers (its keys verify the id_token)", c.OIDC.Issuer))
	}
	for i, is := range c.JWT.Issuers {
		if _, err := is.skew(); err != nil {
			errs = append(errs, fmt.Errorf("jwt.issuers[%d].clockSkew: %w", i, err))
		}
		if _, err := is.Claims.Compile(); err != nil {
			errs = append(errs, fmt.Errorf("jwt.issuers[%d].claims: %w", i, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("auth config: %w", errors.Join(errs...))
	}
	return nil
}

func (is JWTIssuer) skew() (time.Duration, error) {
	if is.ClockSkew == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(is.ClockSkew)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration such as 60s", is.ClockSkew)
	}
	return d, nil
}

// proxies parses TrustedProxies; a single address is a /32 or /128.
func (c Config) proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, raw := range c.TrustedProxies {
		p, err := netip.ParsePrefix(raw)
		if err != nil {
			a, aerr := netip.ParseAddr(raw)
			if aerr != nil {
				return nil, fmt.Errorf("trustedProxies[%d]: %q is not a CIDR such as 10.0.0.0/8", i, raw)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Build makes the chain the configuration lists, around the API key strategy keys. A
// configuration with the session strategy needs Assemble, for its session key.
func (c Config) Build(keys *APIKeys, opt JWTOptions) (Chain, error) {
	a, err := c.Assemble(keys, AssembleOptions{JWT: opt})
	return a.Chain, err
}

// AssembleOptions are what building the strategies needs beyond the configuration file.
type AssembleOptions struct {
	JWT  JWTOptions
	OIDC OIDCOptions
	// SessionKey signs session cookies (at least 32 bytes); required with the session strategy.
	SessionKey []byte
}

// Assembly is a built configuration: the chain, and the browser login when the session
// strategy is in it (its handlers serve /auth/login, /auth/callback and /auth/logout).
type Assembly struct {
	Chain Chain
	OIDC  *OIDC
}

// Assemble builds the chain and the browser login.
func (c Config) Assemble(keys *APIKeys, opt AssembleOptions) (Assembly, error) {
	var a Assembly
	if err := c.check(); err != nil {
		return a, err
	}
	proxies, _ := c.proxies() // checked above
	keys.TrustProxies(proxies)
	var j *JWTStrategy
	if len(c.JWT.Issuers) > 0 {
		var err error
		if j, err = newJWTStrategy(c.JWT.Issuers, opt.JWT); err != nil {
			return a, err
		}
	}
	for _, s := range c.Strategies {
		switch s {
		case StrategyAPIKey:
			a.Chain = append(a.Chain, keys)
		case StrategyJWT:
			a.Chain = append(a.Chain, j)
		case StrategySession:
			o, err := NewOIDC(*c.OIDC, j.verifier, opt.SessionKey, opt.OIDC)
			if err != nil {
				return a, fmt.Errorf("auth config: oidc: %w", err)
			}
			a.OIDC = o
			a.Chain = append(a.Chain, o.SessionStrategy(j.mappings[c.OIDC.Issuer]))
		}
	}
	return a, nil
}

// JWTStrategy authenticates "Authorization: Bearer <JWT>" with the configured issuers and maps
// the verified claims to an actor with the issuer's claim mapping.
type JWTStrategy struct {
	verifier *JWTVerifier
	mappings map[string]*CompiledMapping // by issuer
}

func newJWTStrategy(issuers []JWTIssuer, opt JWTOptions) (*JWTStrategy, error) {
	cfgs := make([]IssuerConfig, len(issuers))
	j := &JWTStrategy{mappings: map[string]*CompiledMapping{}}
	for i, is := range issuers {
		skew, err := is.skew()
		if err != nil {
			return nil, fmt.Errorf("auth config: jwt.issuers[%d].clockSkew: %w", i, err)
		}
		cfgs[i] = IssuerConfig{Issuer: is.Issuer, JWKSURL: is.JWKSURL, Audiences: is.Audiences, Algorithms: is.Algorithms, ClockSkew: skew}
		m, err := is.Claims.Compile()
		if err != nil {
			return nil, fmt.Errorf("auth config: jwt.issuers[%d].claims: %w", i, err)
		}
		j.mappings[is.Issuer] = m
	}
	v, err := NewJWTVerifier(cfgs, opt)
	if err != nil {
		return nil, fmt.Errorf("auth config: %w", err)
	}
	j.verifier = v
	return j, nil
}

// Name implements Strategy.
func (j *JWTStrategy) Name() string { return StrategyJWT }

// Recognizes implements Strategy: an Authorization header with the Bearer scheme.
func (j *JWTStrategy) Recognizes(r *http.Request) bool {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, "Bearer")
}

// Authenticate implements Strategy. The actor's id is "jwt:" and the mapped id, so a token
// can never pass for an API key or a database login.
func (j *JWTStrategy) Authenticate(ctx context.Context, r *http.Request) (store.Actor, error) {
	_, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if token == "" || len(token) > 16<<10 {
		return store.Actor{}, fmt.Errorf("%w: empty or oversized bearer token", ErrTokenInvalid)
	}
	vt, err := j.verifier.Verify(ctx, token)
	if err != nil {
		return store.Actor{}, err
	}
	m := j.mappings[vt.Issuer]
	if m == nil {
		return store.Actor{}, ErrUnknownIssuer
	}
	jti, _ := vt.Claims["jti"].(string)
	return mappedActor(m, vt.Claims, "jwt", jti)
}

// mappedActor is the actor of verified claims: "jwt:" and the mapped id (so a token or a
// session never passes for an API key or a database login), the mapped roles and attributes,
// and the credential's id for revocation checks.
func mappedActor(m *CompiledMapping, claims map[string]any, kind, tokenID string) (store.Actor, error) {
	mapped, err := m.Apply(claims)
	if err != nil {
		return store.Actor{}, fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	}
	attrs := mapped.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	roles := mapped.Roles
	if roles == nil {
		roles = []string{}
	}
	return store.Actor{ID: "jwt:" + mapped.ID, Kind: kind, Roles: roles, Attributes: attrs, TokenID: tokenID}, nil
}
