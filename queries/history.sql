-- name: HistoryPartitionsEnsureAll :one
-- The partition job's one call: for every applied schema, the monthly history partitions from
-- at's month through months_ahead months later, with rows that landed in the default partition
-- for those months moved into them. Returns how many partitions it created; idempotent.
SELECT velocity.history_partitions_ensure_all(sqlc.arg(at)::pg_catalog.timestamptz, sqlc.arg(months_ahead)::integer)::integer AS created;
