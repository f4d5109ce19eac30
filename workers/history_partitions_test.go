package workers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/workers"
)

// TestHistoryPartitionsAcrossMonthBoundary runs the partition job with a clock just before and
// just after a month boundary, over history rows that arrived before their partitions did.
func TestHistoryPartitionsAcrossMonthBoundary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	// The apply made this month's partition and the next three; two years on has none, so the
	// test means the same whatever today is.
	y := time.Now().UTC().Year() + 2
	month := func(m time.Month) string { return fmt.Sprintf("%s_%d_%02d", f.names.History, y, m) }
	date := func(m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, time.UTC) }

	// Rows written before the job ran: INSERT into history is allowed (only UPDATE and
	// DELETE are refused), so the superuser stands in for the history trigger.
	events := []time.Time{
		date(time.January, 15, 12, 0),
		date(time.March, 1, 0, 0).Add(-time.Microsecond), // the last instant of February
		date(time.April, 30, 23, 0),
		date(time.May, 1, 0, 0), // the first instant of May
		date(time.June, 10, 8, 30),
	}
	ids := make([]int64, len(events))
	for i, at := range events {
		require.NoError(t, f.super.QueryRow(ctx, `INSERT INTO `+f.history()+`
			(event_id, xid, at, record_id, op, version, actor, image)
			VALUES (nextval('velocity.event_seq'), pg_current_xact_id(), $1, gen_random_uuid(), 'INSERT', 1, 'test', '{}')
			RETURNING event_id`, at).Scan(&ids[i]))
	}
	require.Equal(t, map[string][]int64{f.names.HistoryDefault: ids}, f.partitionRows(t), "no partition yet: all in the default")

	var now time.Time
	w := &workers.HistoryPartitionsWorker{Deps: workers.Deps{Jobs: f.jobs, Logger: quietLogger(), Now: func() time.Time { return now }}}
	work := func(at time.Time) {
		t.Helper()
		now = at
		require.NoError(t, w.Work(ctx, &river.Job[workers.HistoryPartitionsArgs]{JobRow: &rivertype.JobRow{}}))
	}

	// One minute before February: January and the three months after it.
	work(date(time.January, 31, 23, 59))
	parts := f.partitions(t)
	for _, m := range []time.Month{time.January, time.February, time.March, time.April} {
		require.Contains(t, parts, month(m))
	}
	require.NotContains(t, parts, month(time.May))
	require.Equal(t, map[string][]int64{
		month(time.January):    {ids[0]},
		month(time.February):   {ids[1]},
		month(time.April):      {ids[2]},
		f.names.HistoryDefault: {ids[3], ids[4]},
	}, f.partitionRows(t))

	// February has begun: May is made, and its row moves out of the default partition.
	work(date(time.February, 1, 0, 0))
	want := map[string][]int64{
		month(time.January):    {ids[0]},
		month(time.February):   {ids[1]},
		month(time.April):      {ids[2]},
		month(time.May):        {ids[3]},
		f.names.HistoryDefault: {ids[4]},
	}
	require.Equal(t, want, f.partitionRows(t))
	parts = f.partitions(t)
	require.Contains(t, parts, month(time.May))
	require.NotContains(t, parts, month(time.June))

	// Running again changes nothing.
	work(date(time.February, 1, 0, 0))
	require.Equal(t, want, f.partitionRows(t))
	require.Equal(t, parts, f.partitions(t))

	// Rows kept their time: nothing was rewritten on the way.
	var moved int
	require.NoError(t, f.super.QueryRow(ctx, `SELECT count(*) FROM `+f.history()+` WHERE (event_id, at) IN (SELECT * FROM unnest($1::bigint[], $2::timestamptz[]))`, ids, events).Scan(&moved))
	require.Equal(t, len(events), moved)
}
