-- name: DbLoginGrant :one
SELECT velocity.db_login_grant(sqlc.arg(role)::text, sqlc.arg(login)::text, sqlc.narg(password)::text, sqlc.arg(scope)::jsonb)::uuid AS id;

-- name: DbLoginRevoke :one
SELECT velocity.db_login_revoke(sqlc.arg(role)::text, sqlc.arg(login)::text) AS revoked;

-- name: RoleBindingList :many
SELECT id, role, subject_kind, subject, scope, expires_at, created_at, created_by
FROM velocity.role_binding_list();
