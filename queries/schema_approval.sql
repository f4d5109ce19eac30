-- name: SchemaApprovalRequest :one
SELECT id, name, schema_key, from_version, to_version, definition, plan, breaking, requested_by, requested_at,
       status, decided_by, decided_at, reason
FROM velocity.schema_approval_request(
  sqlc.arg(name)::text, sqlc.arg(key)::text, sqlc.arg(from_version)::integer, sqlc.arg(to_version)::integer,
  sqlc.arg(definition)::jsonb, sqlc.arg(plan)::text, sqlc.arg(breaking)::text[], sqlc.arg(requested_by)::text);

-- name: SchemaApprovalApprove :one
SELECT id, name, schema_key, from_version, to_version, definition, plan, breaking, requested_by, requested_at,
       status, decided_by, decided_at, reason
FROM velocity.schema_approve(sqlc.arg(name)::text, sqlc.narg(reason)::text, sqlc.arg(approved_by)::text);

-- name: SchemaApprovalReject :one
SELECT id, name, schema_key, from_version, to_version, definition, plan, breaking, requested_by, requested_at,
       status, decided_by, decided_at, reason
FROM velocity.schema_reject(sqlc.arg(name)::text, sqlc.narg(reason)::text);

-- name: SchemaApprovalList :many
SELECT id, name, schema_key, from_version, to_version, definition, plan, breaking, requested_by, requested_at,
       status, decided_by, decided_at, reason
FROM velocity.schema_approval_list(sqlc.narg(status)::text);
