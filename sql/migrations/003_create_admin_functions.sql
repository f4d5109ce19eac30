-- Why: admin operations are SQL functions so the API and a DBA in psql take the same path,
-- with the same checks.

-- What velocity.api_key_create returns. It is created here, not in functions/admin.sql,
-- because Postgres has no CREATE TYPE IF NOT EXISTS and later migrations (013) include that
-- file again to bring its functions up to date.
CREATE TYPE velocity.api_key_secret AS (id uuid, secret text, expires_at timestamptz);

{{ template "functions/admin.sql" . }}
{{ template "functions/system_fields.sql" . }}
{{ template "functions/jsonb.sql" . }}
