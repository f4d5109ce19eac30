-- Admin functions. Each is SECURITY DEFINER (it runs as velocity_owner), checks
-- velocity.require_admin() first, and validates every name it turns into SQL.
-- EXECUTE is revoked from PUBLIC and granted to the API role at the end of this file.
--
-- Migrations 003 and 013 include this file, so every statement in it must run again on a
-- database that already has its objects: CREATE OR REPLACE, no CREATE TYPE or CREATE TABLE.

-- What may be shown about a key: everything but its hash.
CREATE OR REPLACE VIEW velocity.api_key_info AS
  SELECT id, name, hint, roles, allow_ips, expires_at, created_at, created_by, revoked_at
    FROM velocity.api_keys;

-- api_key_check validates the fields of a new key.
CREATE OR REPLACE FUNCTION velocity.api_key_check(p_name text, p_roles text[], p_ttl interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_name IS NULL OR length(p_name) NOT BETWEEN 1 AND 200 THEN
    RAISE EXCEPTION 'name must be 1 to 200 characters' USING ERRCODE = '22023', COLUMN = 'name';
  END IF;
  IF p_roles IS NULL OR cardinality(p_roles) = 0 THEN
    RAISE EXCEPTION 'at least one role is required' USING ERRCODE = '22023', COLUMN = 'roles';
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(p_roles) r WHERE r !~ '^[a-z][a-z0-9_]{0,40}$') THEN
    RAISE EXCEPTION 'role names must match ^[a-z][a-z0-9_]{0,40}$' USING ERRCODE = '22023', COLUMN = 'roles';
  END IF;
  IF p_ttl IS NOT NULL AND p_ttl <= interval '0' THEN
    RAISE EXCEPTION 'ttl must be positive' USING ERRCODE = '22023', COLUMN = 'ttl';
  END IF;
END
$$;

-- api_key_create is for a DBA in psql: it returns the only copy of the secret; only its SHA-256
-- is stored. Its result type, velocity.api_key_secret, is created by migration 003.
CREATE OR REPLACE FUNCTION velocity.api_key_create(
  p_name text, p_roles text[], p_ttl interval DEFAULT NULL, p_allow_ips cidr[] DEFAULT '{}')
RETURNS SETOF velocity.api_key_secret
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_secret text;
  v_id uuid;
  v_expires timestamptz;
BEGIN
  PERFORM velocity.require_admin();
  PERFORM velocity.api_key_check(p_name, p_roles, p_ttl);
  v_secret := 'vk_' || translate(encode(velocity_ext.gen_random_bytes(32), 'base64'), '+/=', '-_');
  v_expires := CASE WHEN p_ttl IS NULL THEN NULL ELSE now() + p_ttl END;
  INSERT INTO velocity.api_keys (name, key_hash, hint, roles, allow_ips, expires_at, created_by)
  VALUES (p_name, sha256(convert_to(v_secret, 'UTF8')), right(v_secret, 4),
          (SELECT array_agg(DISTINCT r ORDER BY r) FROM unnest(p_roles) r),
          coalesce(p_allow_ips, '{}'), v_expires, velocity.current_actor_id())
  RETURNING api_keys.id INTO v_id;
  RETURN QUERY SELECT v_id, v_secret, v_expires;
END
$$;

-- api_key_register stores a key whose secret was made by the caller (the API makes it, so
-- the secret never reaches the database or its logs); it returns the stored key.
CREATE OR REPLACE FUNCTION velocity.api_key_register(
  p_name text, p_roles text[], p_ttl interval, p_allow_ips cidr[], p_hash bytea, p_hint text)
RETURNS SETOF velocity.api_key_info
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM velocity.require_admin();
  PERFORM velocity.api_key_check(p_name, p_roles, p_ttl);
  IF p_hash IS NULL OR length(p_hash) <> 32 THEN
    RAISE EXCEPTION 'key hash must be 32 bytes of SHA-256' USING ERRCODE = '22023';
  END IF;
  RETURN QUERY
  INSERT INTO velocity.api_keys AS k (name, key_hash, hint, roles, allow_ips, expires_at, created_by)
  VALUES (p_name, p_hash, p_hint, (SELECT array_agg(DISTINCT r ORDER BY r) FROM unnest(p_roles) r),
          coalesce(p_allow_ips, '{}'), CASE WHEN p_ttl IS NULL THEN NULL ELSE now() + p_ttl END,
          velocity.current_actor_id())
  RETURNING k.id, k.name, k.hint, k.roles, k.allow_ips, k.expires_at, k.created_at, k.created_by, k.revoked_at;
END
$$;

-- api_key_verify is what authentication calls with the SHA-256 of a presented key. It is not
-- an admin function: it reveals nothing beyond the key's own grants, and only to a caller
-- that already holds the secret.
CREATE OR REPLACE FUNCTION velocity.api_key_verify(p_hash bytea)
RETURNS SETOF velocity.api_key_info
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT k.id, k.name, k.hint, k.roles, k.allow_ips, k.expires_at, k.created_at, k.created_by, k.revoked_at
    FROM velocity.api_keys k
   WHERE k.key_hash = p_hash AND k.revoked_at IS NULL
$$;

CREATE OR REPLACE FUNCTION velocity.api_key_list()
RETURNS SETOF velocity.api_key_info
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM velocity.require_admin();
  RETURN QUERY
    SELECT k.id, k.name, k.hint, k.roles, k.allow_ips, k.expires_at, k.created_at, k.created_by, k.revoked_at
      FROM velocity.api_keys k
     ORDER BY k.created_at, k.id;
END
$$;

-- api_key_revoke returns false when no such unrevoked key exists.
CREATE OR REPLACE FUNCTION velocity.api_key_revoke(p_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM velocity.require_admin();
  UPDATE velocity.api_keys SET revoked_at = now() WHERE id = p_id AND revoked_at IS NULL;
  RETURN FOUND;
END
$$;

-- ensure_group_role creates velocity_r_<role>, the Postgres group role a Velocity role maps to.
CREATE OR REPLACE FUNCTION velocity.ensure_group_role(p_role text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_group text := 'velocity_r_' || p_role;
BEGIN
  IF p_role !~ '^[a-z][a-z0-9_]{0,40}$' THEN
    RAISE EXCEPTION 'invalid role name %: use ^[a-z][a-z0-9_]{0,40}$', quote_literal(p_role) USING ERRCODE = '22023', COLUMN = 'role';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_group) THEN
    BEGIN
      EXECUTE format('CREATE ROLE %I NOLOGIN', v_group);
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- roles are cluster-wide: a concurrent apply made it first
    END;
  END IF;
  RETURN v_group;
END
$$;

-- db_login_grant binds a Postgres login to a Velocity role for BI tools: the login gets the
-- group role's table grants, and velocity.current_actor() derives its roles from the binding.
-- Velocity binds only logins it created itself (velocity.db_logins): binding, or setting the
-- password of, a role someone else made could hand its other rights to the caller. A login
-- that has since been given any membership besides velocity_r_* groups is refused too.
-- p_password may be a SCRAM-SHA-256 verifier (what the API sends) or, from psql, plain text.
-- p_scope holds the login's attributes for row filters (velocity.current_actor() reads them):
-- an object of attribute names to strings, numbers, booleans or arrays of strings. Granting
-- the same role to the same login again replaces the binding's scope, as role_binding_grant
-- does for the API's actors. (Migration 013 added p_scope.)
CREATE OR REPLACE FUNCTION velocity.db_login_grant(
  p_role text, p_login text, p_password text DEFAULT NULL, p_scope jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_group text;
  v_id uuid;
BEGIN
  PERFORM velocity.require_admin();
  IF p_login !~ '^[a-z][a-z0-9_]{0,62}$' OR p_login LIKE 'velocity%' OR p_login LIKE 'pg\_%' OR p_login = 'postgres' THEN
    RAISE EXCEPTION 'invalid login name %: use ^[a-z][a-z0-9_]{0,62}$, not velocity*, pg_* or postgres', quote_literal(p_login)
      USING ERRCODE = '22023', COLUMN = 'login';
  END IF;
  IF p_role = 'platform_admin' THEN
    RAISE EXCEPTION 'platform_admin cannot be bound to a database login; use velocity_owner for administration in SQL'
      USING ERRCODE = '22023', COLUMN = 'role';
  END IF;
  p_scope := coalesce(p_scope, '{}');
  IF jsonb_typeof(p_scope) <> 'object'
     OR EXISTS (SELECT 1 FROM jsonb_each(p_scope) e
                 WHERE e.key !~ '^[a-z][a-z0-9_]{0,62}$'
                    OR CASE WHEN jsonb_typeof(e.value) = 'array'
                            THEN EXISTS (SELECT 1 FROM jsonb_array_elements(e.value) x WHERE jsonb_typeof(x) <> 'string')
                            ELSE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean')
                       END) THEN
    RAISE EXCEPTION 'scope must be an object of attribute names (^[a-z][a-z0-9_]{0,62}$) to strings, numbers, booleans or arrays of strings'
      USING ERRCODE = '22023', COLUMN = 'scope';
  END IF;
  v_group := velocity.ensure_group_role(p_role);
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = p_login) THEN
    IF NOT EXISTS (SELECT 1 FROM velocity.db_logins WHERE login = p_login) THEN
      RAISE EXCEPTION 'role % exists and was not created by Velocity; choose a new login name', quote_literal(p_login)
        USING ERRCODE = '22023', COLUMN = 'login';
    END IF;
  ELSE
    EXECUTE format('CREATE ROLE %I LOGIN', p_login);
    INSERT INTO velocity.db_logins (login, created_by) VALUES (p_login, velocity.current_actor_id());
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = p_login AND (rolsuper OR rolcreaterole OR rolbypassrls OR rolreplication))
     OR EXISTS (SELECT 1
                  FROM pg_catalog.pg_auth_members m
                  JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                  JOIN pg_catalog.pg_roles l ON l.oid = m.member
                 WHERE l.rolname = p_login AND g.rolname NOT LIKE 'velocity\_r\_%') THEN
    RAISE EXCEPTION 'login % has rights beyond Velocity roles and cannot be bound', quote_literal(p_login)
      USING ERRCODE = '22023', COLUMN = 'login';
  END IF;
  IF p_password IS NOT NULL THEN
    EXECUTE format('ALTER ROLE %I PASSWORD %L', p_login, p_password);
  END IF;
  EXECUTE format('GRANT %I TO %I', v_group, p_login);
  INSERT INTO velocity.role_bindings (role, subject_kind, subject, scope, created_by)
  VALUES (p_role, 'db_login', p_login, p_scope, velocity.current_actor_id())
  ON CONFLICT (subject_kind, subject, role) DO UPDATE SET expires_at = NULL, scope = excluded.scope
  RETURNING role_bindings.id INTO v_id;
  RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION velocity.db_login_revoke(p_role text, p_login text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM velocity.require_admin();
  DELETE FROM velocity.role_bindings WHERE subject_kind = 'db_login' AND subject = p_login AND role = p_role;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'velocity_r_' || p_role)
     AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = p_login) THEN
    EXECUTE format('REVOKE %I FROM %I', 'velocity_r_' || p_role, p_login);
  END IF;
  RETURN true;
END
$$;

-- schema_version_record registers an applied definition version. It runs inside the apply
-- transaction, after the plan's DDL, and tells every API replica to reload. p_applied_by
-- names the API actor on whose behalf the owner session applies; only the owner may call it.
CREATE OR REPLACE FUNCTION velocity.schema_version_record(
  p_key text, p_name text, p_org text, p_app text, p_domain text, p_object text,
  p_version integer, p_definition jsonb, p_plan text, p_breaking text[], p_applied_by text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_id bigint;
BEGIN
  PERFORM velocity.require_admin();
  INSERT INTO velocity.schema_versions (schema_key, version, definition, plan, plan_hash, breaking, applied_by)
  VALUES (p_key, p_version, p_definition, p_plan, encode(sha256(convert_to(p_plan, 'UTF8')), 'hex'),
          coalesce(p_breaking, '{}'), coalesce(p_applied_by, velocity.current_actor_id()))
  RETURNING id INTO v_id;
  INSERT INTO velocity.schemas (key, name, org, app, domain, object, current_version, definition)
  VALUES (p_key, p_name, p_org, p_app, p_domain, p_object, p_version, p_definition)
  ON CONFLICT (key) DO UPDATE
    SET current_version = excluded.current_version, definition = excluded.definition, name = excluded.name,
        updated_at = now();
  PERFORM pg_notify('velocity_schema_changed', p_key || ':' || p_version);
  RETURN v_id;
END
$$;

REVOKE EXECUTE ON FUNCTION
  velocity.api_key_create(text, text[], interval, cidr[]),
  velocity.api_key_register(text, text[], interval, cidr[], bytea, text),
  velocity.api_key_list(),
  velocity.api_key_revoke(uuid),
  velocity.api_key_verify(bytea),
  velocity.ensure_group_role(text),
  velocity.db_login_grant(text, text, text, jsonb),
  velocity.db_login_revoke(text, text),
  velocity.schema_version_record(text, text, text, text, text, text, integer, jsonb, text, text[], text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  velocity.api_key_create(text, text[], interval, cidr[]),
  velocity.api_key_register(text, text[], interval, cidr[], bytea, text),
  velocity.api_key_list(),
  velocity.api_key_revoke(uuid),
  velocity.api_key_verify(bytea),
  velocity.db_login_grant(text, text, text, jsonb),
  velocity.db_login_revoke(text, text)
TO velocity_api;

-- The API reads the registry to build its routes; it never writes it directly.
GRANT SELECT ON velocity.schemas, velocity.schema_versions TO velocity_api;

CREATE OR REPLACE FUNCTION velocity.role_binding_list()
RETURNS SETOF velocity.role_bindings
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM velocity.require_admin();
  RETURN QUERY
    SELECT b.*
      FROM velocity.role_bindings b
     ORDER BY b.subject_kind, b.subject, b.role;
END
$$;
REVOKE EXECUTE ON FUNCTION velocity.role_binding_list() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION velocity.role_binding_list() TO velocity_api;
