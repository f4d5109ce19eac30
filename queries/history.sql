-- name: HistoryTables :many
-- The history table of every applied schema, for the partition job.
SELECT schema_name::text AS schema_name, history::text AS history FROM velocity.history_tables();

-- name: HistoryPartitionsEnsure :one
-- The monthly partitions of one history table from at's month through months_ahead months
-- later, with rows that landed in its default partition for those months moved into them.
-- Returns how many partitions it created; idempotent.
SELECT velocity.history_partitions_ensure(sqlc.arg(schema_name)::text, sqlc.arg(history)::text,
  sqlc.arg(at)::pg_catalog.timestamptz, sqlc.arg(months_ahead)::integer)::integer AS created;
