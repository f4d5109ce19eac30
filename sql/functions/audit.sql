-- velocity.audit_guard(): the audit tables are append-only for every role, the owner
-- included. (A superuser can still disable the trigger; `velocity audit verify` finds what
-- such a session changed.)
CREATE OR REPLACE FUNCTION velocity.audit_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION '%.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = '42501';
END
$$;

-- velocity.audit_append(entries): appends the API's authentication and authorization
-- decisions, a batch at a time, as a JSON array of objects with the keys at, action, outcome,
-- actor, strategy, fail_mode, layer, schema_key, record_id, reason, request_id and detail.
-- Only the API may call it. Returns how many entries it wrote.
CREATE OR REPLACE FUNCTION velocity.audit_append(entries jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  n integer;
BEGIN
  IF jsonb_typeof(entries) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'audit entries must be a JSON array' USING ERRCODE = '22023';
  END IF;
  INSERT INTO velocity.audit_entry (at, action, outcome, actor, strategy, fail_mode, layer, schema_key, record_id, reason, request_id, detail)
  SELECT coalesce(e.at, clock_timestamp()), e.action, e.outcome::velocity.audit_outcome, coalesce(e.actor, ''), e.strategy, e.fail_mode,
         e.layer, e.schema_key, e.record_id, e.reason, e.request_id, coalesce(e.detail, '{}')
    FROM jsonb_to_recordset(entries) AS e(at timestamptz, action text, outcome text, actor text, strategy text, fail_mode text,
                                          layer smallint, schema_key text, record_id text, reason text, request_id text, detail jsonb);
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

-- velocity.audit_admin_change(): AFTER trigger on the platform's own tables (applied schema
-- versions, API keys, role bindings, database logins). Whoever makes the change, the API or a
-- DBA in psql, it is an audit entry in the same transaction. Secrets (key hashes) never enter
-- the entry. TG_ARGV[0] names the kind of object ("schema", "apikey", "binding", "dblogin").
CREATE OR REPLACE FUNCTION velocity.audit_admin_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  kind text := TG_ARGV[0];
  verb text;
  row_image jsonb;
  target text;
  schema_key text;
BEGIN
  IF TG_OP = 'DELETE' THEN
    row_image := to_jsonb(OLD);
    verb := 'delete';
  ELSE
    row_image := to_jsonb(NEW);
    verb := CASE TG_OP WHEN 'INSERT' THEN 'create' ELSE 'update' END;
  END IF;
  row_image := row_image - 'key_hash' - 'plan' - 'definition';
  CASE kind
    WHEN 'schema' THEN
      verb := 'apply';
      target := row_image ->> 'version';
      schema_key := row_image ->> 'schema_key';
    WHEN 'apikey' THEN
      IF TG_OP = 'UPDATE' AND OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
        verb := 'revoke';
      END IF;
      target := row_image ->> 'id';
    WHEN 'binding' THEN
      verb := CASE TG_OP WHEN 'INSERT' THEN 'grant' WHEN 'DELETE' THEN 'revoke' ELSE 'update' END;
      target := (row_image ->> 'subject_kind') || ':' || (row_image ->> 'subject');
    WHEN 'revocation' THEN
      target := (row_image ->> 'kind') || ':' || (row_image ->> 'value');
    ELSE
      target := row_image ->> 'login';
  END CASE;
  -- The owner session applies schemas on behalf of the API actor named in applied_by.
  INSERT INTO velocity.audit_entry (action, outcome, actor, schema_key, record_id, reason, request_id, detail)
  VALUES (kind || '.' || verb, 'allowed', coalesce(row_image ->> 'applied_by', velocity.current_actor_id()), schema_key, target,
          NULLIF(current_setting('velocity.reason', true), ''), NULLIF(current_setting('velocity.request_id', true), ''),
          row_image);
  RETURN NULL;
END
$$;
