-- name: ApiKeyRegister :one
SELECT id, name, hint, roles, allow_ips, expires_at, created_at, created_by, revoked_at
FROM velocity.api_key_register(sqlc.arg(name)::text, sqlc.arg(roles)::text[], sqlc.narg(ttl)::interval,
                               sqlc.arg(allow_ips)::cidr[], sqlc.arg(key_hash)::bytea, sqlc.arg(hint)::text);

-- name: ApiKeyVerify :one
SELECT id, name, roles, allow_ips, expires_at
FROM velocity.api_key_verify(sqlc.arg(key_hash)::bytea);

-- name: ApiKeyList :many
SELECT id, name, hint, roles, allow_ips, expires_at, created_at, created_by, revoked_at
FROM velocity.api_key_list();

-- name: ApiKeyRevoke :one
SELECT velocity.api_key_revoke(sqlc.arg(id)::uuid) AS revoked;
