package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Kinds of Credential.
const (
	CredentialJTI     = "jti"     // a token's jti claim
	CredentialSubject = "subject" // an actor id, e.g. "jwt:ada"
	CredentialAPIKey  = "api_key" // an API key's UUID
)

// Credential is one revocable thing an actor was authenticated by.
type Credential struct{ Kind, Value string }

// Revocation revokes one credential.
type Revocation struct {
	Credential
	ExpiresAt *time.Time // when the revocation may be forgotten (e.g. the token's exp); nil = never
}

// DurableRevocations is the Postgres side of revocation; the store implements it.
type DurableRevocations interface {
	// ActiveRevocations lists the revocations that have not expired.
	ActiveRevocations(ctx context.Context) ([]Revocation, error)
}

// RevocationOptions configure Revocations. The zero value fails closed.
type RevocationOptions struct {
	FailOpen bool          // when Redis is unreachable, let requests through (and say so) instead of refusing them
	CacheTTL time.Duration // how long a "not revoked" answer is reused without asking Redis; 0 = 30s; capped at 5m
	Channel  string        // pub/sub channel; "" = "velocity:revocations"
	Prefix   string        // key prefix; "" = "velocity:revoked:"
	Now      func() time.Time
	Logger   *slog.Logger
}

// Sentinel errors of revocation: ErrRevoked is a 401; ErrRevocationUnavailable is a 503,
// returned when Redis cannot be asked and fail-closed applies.
var (
	ErrRevoked               = errors.New("credential revoked")
	ErrRevocationUnavailable = errors.New("revocation check unavailable")
)

const (
	defaultCacheTTL  = 30 * time.Second
	maxCacheTTL      = 5 * time.Minute
	defaultChannel   = "velocity:revocations"
	defaultPrefix    = "velocity:revoked:"
	maxCachedOK      = 100_000
	redisTimeout     = 200 * time.Millisecond // one Check's round trip; past it the request fails closed (or open)
	seedTimeout      = 10 * time.Second       // loading from Postgres and writing back to Redis
	subscriberPing   = 5 * time.Second        // a quiet subscription is pinged this often, so a dead link is noticed
	maxSubscriberGap = time.Second            // the longest wait between reconnect attempts
)

// Revocations tells whether a request's credentials are revoked. Revocations are stored in
// Postgres (by the caller) and announced through Redis: a key per revoked credential, which
// any replica can look up, and a pub/sub message that every replica's subscriber applies at
// once. A replica keeps the revocations it has heard of in memory and reuses "not revoked"
// answers for CacheTTL, so a revocation takes effect everywhere within a second through
// pub/sub and within CacheTTL (at most 5 minutes) through the keys alone.
type Revocations struct {
	rdb     *redis.Client
	durable DurableRevocations
	opt     RevocationOptions
	log     *slog.Logger

	mu      sync.Mutex
	revoked map[Credential]time.Time // credential -> when it may be forgotten; zero = never
	ok      map[Credential]time.Time // credential -> when Redis said it was not revoked

	ready     chan struct{} // closed after the subscriber's first subscription and seeding
	readyOnce sync.Once
	done      chan struct{} // closed when the subscriber started by Start has returned
}

// NewRevocations returns revocation checks on rdb. The client should honour context deadlines
// (redis.Options.ContextTimeoutEnabled), so a Redis that hangs fails a Check in 200ms instead
// of after the client's read timeout.
func NewRevocations(rdb *redis.Client, durable DurableRevocations, opt RevocationOptions) *Revocations {
	if opt.CacheTTL <= 0 {
		opt.CacheTTL = defaultCacheTTL
	}
	opt.CacheTTL = min(opt.CacheTTL, maxCacheTTL)
	if opt.Channel == "" {
		opt.Channel = defaultChannel
	}
	if opt.Prefix == "" {
		opt.Prefix = defaultPrefix
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	if !rdb.Options().ContextTimeoutEnabled {
		log.Warn("revocation: the redis client ignores context deadlines; a hung redis delays requests by its read timeout")
	}
	return &Revocations{
		rdb:     rdb,
		durable: durable,
		opt:     opt,
		log:     log,
		revoked: map[Credential]time.Time{},
		ok:      map[Credential]time.Time{},
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Start runs the subscriber in the background until ctx ends. On every (re)connect it loads
// the active revocations from Postgres into memory and writes them back to Redis, so a Redis
// that lost its data is reseeded and messages missed while disconnected are made up for.
func (r *Revocations) Start(ctx context.Context) {
	go func() {
		defer close(r.done)
		r.subscribe(ctx)
	}()
}

// Ready is closed once the subscriber has subscribed and loaded the revocations for the
// first time.
func (r *Revocations) Ready() <-chan struct{} { return r.ready }

func (r *Revocations) subscribe(ctx context.Context) {
	ps := r.rdb.Subscribe(ctx, r.opt.Channel)
	defer ps.Close()
	// ReceiveTimeout does not watch ctx; closing the subscription ends a wait at once.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	wait := 50 * time.Millisecond
	seeded := false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, subscriberPing)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, redis.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return
			}
			var timeout interface{ Timeout() bool }
			if errors.As(err, &timeout) && timeout.Timeout() {
				// A quiet channel: check that the link is alive, and retry a failed seeding.
				if err := ps.Ping(ctx); err != nil {
					r.log.Warn("revocation: subscriber ping failed", "err", err)
				} else if !seeded {
					seeded = r.seed(ctx)
				}
				continue
			}
			r.log.Warn("revocation: subscriber disconnected", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, maxSubscriberGap)
			continue
		}
		wait = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				seeded = r.seed(ctx)
				r.readyOnce.Do(func() { close(r.ready) })
			}
		case *redis.Message:
			r.apply(ctx, m.Payload)
		}
	}
}

// seed loads the active revocations from Postgres into memory and writes those Redis lacks
// back to it. It reports whether both succeeded.
func (r *Revocations) seed(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	revs, err := r.durable.ActiveRevocations(ctx)
	if err != nil {
		r.log.Error("revocation: load active revocations", "err", err)
		return false
	}
	now := r.opt.Now()
	r.mu.Lock()
	for cred, exp := range r.revoked {
		if !exp.IsZero() && !now.Before(exp) {
			delete(r.revoked, cred)
		}
	}
	for _, rev := range revs {
		if rev.ExpiresAt == nil || now.Before(*rev.ExpiresAt) {
			r.remember(rev.Credential, expiry(rev.ExpiresAt))
		}
	}
	r.mu.Unlock()

	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, rev := range revs {
			ttl, live := r.ttl(rev.ExpiresAt, now)
			if live {
				p.SetNX(ctx, r.key(rev.Credential), "1", ttl)
			}
		}
		return nil
	})
	if err != nil {
		r.log.Error("revocation: reseed redis", "err", err)
		return false
	}
	r.log.Info("revocation: loaded active revocations", "count", len(revs))
	return true
}

// apply takes a revocation announced on the channel ("kind:value") into memory. It asks
// Redis how long the revocation lasts; when Redis cannot say, it is kept until the next
// seeding prunes it, which errs on the side of refusing.
func (r *Revocations) apply(ctx context.Context, payload string) {
	kind, value, ok := strings.Cut(payload, ":")
	if !ok || kind == "" || value == "" {
		r.log.Warn("revocation: malformed message ignored")
		return
	}
	cred := Credential{Kind: kind, Value: value}
	var exp time.Time
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	if ttl, err := r.rdb.PTTL(ctx, r.key(cred)).Result(); err == nil && ttl > 0 {
		exp = r.opt.Now().Add(ttl)
	}
	r.mu.Lock()
	r.remember(cred, exp)
	r.mu.Unlock()
}

// remember marks cred revoked until exp (zero = never) and drops its cached "ok". It needs r.mu.
func (r *Revocations) remember(cred Credential, exp time.Time) {
	if old, ok := r.revoked[cred]; ok && (old.IsZero() || (!exp.IsZero() && old.After(exp))) {
		exp = old
	}
	r.revoked[cred] = exp
	delete(r.ok, cred)
}

// Publish announces a revocation to every replica: it sets the credential's key, with a TTL
// until ExpiresAt, and publishes the credential on the channel. The caller stores the
// revocation in Postgres first, so that a replica that misses the message loads it later.
// This process applies it at once. A revocation that has already expired is not published.
func (r *Revocations) Publish(ctx context.Context, rev Revocation) error {
	ttl, live := r.ttl(rev.ExpiresAt, r.opt.Now())
	if !live {
		return nil
	}
	r.mu.Lock()
	r.remember(rev.Credential, expiry(rev.ExpiresAt))
	r.mu.Unlock()
	if err := r.rdb.Set(ctx, r.key(rev.Credential), "1", ttl).Err(); err != nil {
		return fmt.Errorf("publish revocation of %s: set key: %w", rev.Kind, err)
	}
	if err := r.rdb.Publish(ctx, r.opt.Channel, rev.Kind+":"+rev.Value).Err(); err != nil {
		return fmt.Errorf("publish revocation of %s: %w", rev.Kind, err)
	}
	return nil
}

// Check decides for the credentials of one request. It returns the first credential found
// revoked. When Redis cannot be asked, it returns ErrRevocationUnavailable (fail closed), or
// with FailOpen it lets the request through and returns failOpen=true for the caller to audit.
// Credentials known to be revoked stay revoked while Redis is down, and a "not revoked"
// answer younger than CacheTTL is reused.
func (r *Revocations) Check(ctx context.Context, creds []Credential) (revoked *Credential, failOpen bool, err error) {
	now := r.opt.Now()
	var ask []Credential
	r.mu.Lock()
	for _, c := range creds {
		if exp, ok := r.revoked[c]; ok {
			if exp.IsZero() || now.Before(exp) {
				r.mu.Unlock()
				return &c, false, nil
			}
			delete(r.revoked, c)
		}
	}
	for _, c := range creds {
		if at, ok := r.ok[c]; !ok || now.Sub(at) >= r.opt.CacheTTL {
			ask = append(ask, c)
		}
	}
	r.mu.Unlock()
	if len(ask) == 0 {
		return nil, false, nil
	}

	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	ttls := make([]*redis.DurationCmd, len(ask))
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range ask {
			ttls[i] = p.PTTL(ctx, r.key(c))
		}
		return nil
	})
	if err != nil {
		kinds := make([]string, len(ask))
		for i, c := range ask {
			kinds[i] = c.Kind
		}
		if r.opt.FailOpen {
			r.log.Warn("revocation: redis unreachable, failing open", "kinds", kinds, "err", err)
			return nil, true, nil
		}
		r.log.Warn("revocation: redis unreachable, failing closed", "kinds", kinds, "err", err)
		return nil, false, fmt.Errorf("%w: %w", ErrRevocationUnavailable, err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range ask {
		// PTTL is -2 for a missing key, -1 for one without expiry (go-redis keeps these
		// sentinels as nanoseconds), and the time left otherwise.
		switch ttl := ttls[i].Val(); {
		case ttl == -2:
			if len(r.ok) >= maxCachedOK {
				clear(r.ok)
			}
			r.ok[c] = now
		case ttl == -1:
			r.remember(c, time.Time{})
			return &c, false, nil
		default:
			r.remember(c, now.Add(ttl))
			return &c, false, nil
		}
	}
	return nil, false, nil
}

func (r *Revocations) key(c Credential) string { return r.opt.Prefix + c.Kind + ":" + c.Value }

// ttl is the lifetime of a revocation's Redis key: 0 (no expiry) for exp nil, and live=false
// when it has already expired.
func (r *Revocations) ttl(exp *time.Time, now time.Time) (ttl time.Duration, live bool) {
	if exp == nil {
		return 0, true
	}
	ttl = exp.Sub(now)
	if ttl < time.Millisecond {
		return 0, false
	}
	return ttl, true
}

func expiry(exp *time.Time) time.Time {
	if exp == nil {
		return time.Time{}
	}
	return *exp
}
