-- name: SchemaList :many
SELECT key, name, current_version, definition, updated_at
FROM velocity.schemas
ORDER BY key;

-- name: SchemaGetByName :one
SELECT key, name, current_version, definition, updated_at
FROM velocity.schemas
WHERE name = $1;

-- name: SchemaGetForApply :one
-- Locks the registry row so two applies of one schema run one after the other.
SELECT key, name, current_version, definition
FROM velocity.schemas
WHERE key = $1
FOR UPDATE;

-- name: SchemaApplyLock :exec
-- Serializes applies: schemas of one org/app share a Postgres schema and every schema shares
-- the cluster-wide group roles, so concurrent applies would race on both. Applies are rare.
-- lock_timeout bounds how long DDL waits behind running requests, which queue behind it.
-- set_config comes first in the list so the wait for the lock is bounded too.
SELECT set_config('lock_timeout', '10s', true),
       pg_advisory_xact_lock(hashtextextended('velocity.schema_apply', 0));

-- name: SchemaNameOwner :one
SELECT key FROM velocity.schemas WHERE name = $1;

-- name: SchemaVersionRecord :one
SELECT velocity.schema_version_record(
  sqlc.arg(key)::text, sqlc.arg(name)::text, sqlc.arg(org)::text, sqlc.arg(app)::text,
  sqlc.arg(domain)::text, sqlc.arg(object)::text, sqlc.arg(version)::integer,
  sqlc.arg(definition)::jsonb, sqlc.arg(plan)::text, sqlc.arg(breaking)::text[], sqlc.arg(applied_by)::text
)::bigint AS id;

-- name: SchemaVersionList :many
SELECT version, plan, plan_hash, breaking, applied_by, applied_at
FROM velocity.schema_versions
WHERE schema_key = $1
ORDER BY version DESC;

-- name: SchemaApplyContext :exec
-- The reason and request id of an apply, for the audit entries its triggers write. The actor
-- is named in applied_by (and requested_by, decided_by): current_actor() trusts settings only
-- from the API's own login, and applies run as the owner.
SELECT set_config('velocity.reason', sqlc.arg(reason)::text, true),
       set_config('velocity.request_id', sqlc.arg(request_id)::text, true);
