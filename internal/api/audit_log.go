package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/puddle/v2"

	"github.com/velocitydev/velocity/internal/store"
)

// decision is one authentication or authorization decision, as velocity.audit_append takes it.
type decision struct {
	At        time.Time      `json:"at"`
	Action    string         `json:"action"`
	Outcome   string         `json:"outcome"`
	Actor     string         `json:"actor"`
	Strategy  string         `json:"strategy,omitempty"`
	FailMode  string         `json:"fail_mode,omitempty"`
	Layer     int            `json:"layer,omitempty"`
	SchemaKey string         `json:"schema_key,omitempty"`
	RecordID  string         `json:"record_id,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
	Detail    map[string]any `json:"detail,omitempty"`
}

// Decision batching: a batch goes out when it holds decisionBatch entries or its first entry
// has waited decisionWait. The queue holds decisionQueue entries; when it is full (the
// database is down or slow) requests wait for room rather than lose their entries.
const (
	decisionBatch = 512
	decisionWait  = 20 * time.Millisecond
	decisionQueue = 8192
)

// decisionLog appends the API's decisions to the audit log in batches, off the request path:
// a decision is one row in one INSERT of hundreds, not a transaction of its own. Data changes
// are audited by Postgres in their own transactions; this log adds who was let in or turned
// away. A crash can lose at most the batch being gathered (decisionWait).
type decisionLog struct {
	st  *store.Store
	log *slog.Logger
	in  chan decision
	// closing wakes senders waiting for room at shutdown; stop tells the batcher that no
	// sender is left, so it drains the queue and ends; done is closed when it has.
	closing, stop, done chan struct{}
	once                sync.Once

	mu     sync.RWMutex
	closed bool
}

func newDecisionLog(st *store.Store, log *slog.Logger) *decisionLog {
	d := &decisionLog{st: st, log: log, in: make(chan decision, decisionQueue),
		closing: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go d.run()
	return d
}

// add queues e. During and after Close it writes e at once, so requests finishing during a
// shutdown are still audited.
func (d *decisionLog) add(e decision) {
	d.mu.RLock()
	if !d.closed {
		select {
		case d.in <- e:
			d.mu.RUnlock()
			return
		case <-d.closing:
		}
	}
	d.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.write(ctx, []decision{e})
}

// Close writes what is queued and stops the batcher, waiting for it until ctx ends.
func (d *decisionLog) Close(ctx context.Context) {
	d.once.Do(func() {
		close(d.closing) // no sender stays blocked on a full queue
		d.mu.Lock()      // wait for senders in flight
		d.closed = true
		d.mu.Unlock()
		close(d.stop)
	})
	select {
	case <-d.done:
	case <-ctx.Done():
	}
}

func (d *decisionLog) run() {
	defer close(d.done)
	batch := make([]decision, 0, decisionBatch)
	for {
		select {
		case e := <-d.in:
			batch = append(batch[:0], e)
		case <-d.stop:
			// Nobody sends any more: what is queued is all there is.
			for {
				batch = batch[:0]
				for len(batch) < decisionBatch && len(d.in) > 0 {
					batch = append(batch, <-d.in)
				}
				if len(batch) == 0 {
					return
				}
				d.write(context.Background(), batch)
			}
		}
		timer := time.NewTimer(decisionWait)
	gather:
		for len(batch) < decisionBatch {
			select {
			case e := <-d.in:
				batch = append(batch, e)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		d.write(context.Background(), batch)
	}
}

// write appends batch, retrying while the database refuses, until ctx ends: an audit entry is
// not dropped because Postgres restarted. Meanwhile the queue fills and requests wait.
func (d *decisionLog) write(ctx context.Context, batch []decision) {
	raw, err := json.Marshal(batch)
	if err != nil {
		d.log.Error("audit decisions: encode", "err", err, "entries", len(batch))
		return
	}
	req := store.Request{Actor: store.Actor{ID: "velocity:api", Kind: "system", Roles: []string{}, Attributes: map[string]any{}}}
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := d.st.InRequest(ctx, req, []store.Statement{{SQL: "SELECT velocity.audit_append($1)", Args: []any{string(raw)}}},
			func(int, pgx.Rows) error { return nil })
		if err == nil {
			return
		}
		if errors.Is(err, puddle.ErrClosedPool) {
			// The store was closed before the server: nothing can be written any more.
			d.log.Error("audit decisions: lost, the store is closed", "entries", len(batch))
			return
		}
		d.log.Error("audit decisions: write failed; retrying", "err", err, "entries", len(batch))
		select {
		case <-ctx.Done():
			d.log.Error("audit decisions: lost", "entries", len(batch))
			return
		case <-time.After(wait):
		}
	}
}
