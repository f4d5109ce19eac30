-- velocity.current_actor(): the actor a statement runs for, as jsonb
-- {"id", "kind", "roles": [...], "attributes": {...}}.
--
-- The transaction-local setting velocity.actor is trusted only when the session logged in as
-- the API's authenticator, which sets it from a verified credential in the same round trip as
-- the statement. Any other login (a BI tool, an analyst in psql) gets the roles bound to its
-- login in velocity.role_bindings, whatever it sets itself.
CREATE OR REPLACE FUNCTION velocity.current_actor() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  raw text;
  roles jsonb;
  attrs jsonb;
BEGIN
  IF session_user = 'velocity_authenticator' THEN
    raw := current_setting('velocity.actor', true);
    IF raw IS NULL OR raw = '' THEN
      RETURN jsonb_build_object('id', 'anonymous', 'kind', 'anonymous', 'roles', '[]'::jsonb, 'attributes', '{}'::jsonb);
    END IF;
    RETURN raw::jsonb;
  END IF;

  roles := to_jsonb(velocity.db_login_roles());
  SELECT coalesce(jsonb_object_agg(s.key, s.value), '{}'::jsonb)
    INTO attrs
    FROM velocity.role_bindings b, jsonb_each(b.scope) s
   WHERE b.subject_kind = 'db_login'
     AND b.subject = session_user::text
     AND (b.expires_at IS NULL OR b.expires_at > now());
  RETURN jsonb_build_object('id', 'db:' || session_user, 'kind', 'db_login', 'roles', roles, 'attributes', attrs);
END
$$;

-- velocity.db_login_roles(): the roles bound to the session's login, for BI tools and psql.
CREATE OR REPLACE FUNCTION velocity.db_login_roles() RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(array_agg(DISTINCT b.role ORDER BY b.role), '{}')
    FROM velocity.role_bindings b
   WHERE b.subject_kind = 'db_login'
     AND b.subject = session_user::text
     AND (b.expires_at IS NULL OR b.expires_at > now())
$$;

-- velocity.current_actor_roles() and velocity.current_actor_id() are on every statement's
-- path (policies, the system-fields trigger), so they are written to be inlined by the
-- planner: plain SQL, STABLE, no SET clause, no SECURITY DEFINER. Inlined bodies are parsed
-- with the caller's search_path, so every function and operator is schema-qualified; a
-- session cannot redirect the session_user test to an operator of its own. The API sets
-- velocity.actor_roles (a text[] literal) and velocity.actor_id beside velocity.actor in the
-- same statement; they are trusted under the same rule as velocity.actor. Policies call
-- (SELECT velocity.current_actor_roles()) so it runs once per statement, not per row.
CREATE OR REPLACE FUNCTION velocity.current_actor_roles() RETURNS text[]
LANGUAGE sql STABLE
AS $$
  SELECT CASE
    WHEN session_user OPERATOR(pg_catalog.=) 'velocity_authenticator'::pg_catalog.name THEN
      CASE WHEN pg_catalog.current_setting('velocity.actor_roles', true) IS NULL
             OR pg_catalog.current_setting('velocity.actor_roles', true) OPERATOR(pg_catalog.=) ''
           THEN '{}'::pg_catalog.text[]
           ELSE pg_catalog.current_setting('velocity.actor_roles', true)::pg_catalog.text[]
      END
    ELSE velocity.db_login_roles()
  END
$$;

-- The actor's id, for created_by / updated_by.
CREATE OR REPLACE FUNCTION velocity.current_actor_id() RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT CASE
    WHEN session_user OPERATOR(pg_catalog.=) 'velocity_authenticator'::pg_catalog.name THEN
      COALESCE(pg_catalog.current_setting('velocity.actor_id', true), '')
    ELSE 'db:' OPERATOR(pg_catalog.||) session_user::pg_catalog.text
  END
$$;

-- velocity.is_admin(): a platform administrator is an actor holding the platform_admin role
-- (a role no schema may define, ADR-008), or a DBA session logged in as velocity_owner (or a
-- superuser) calling the admin functions from psql.
CREATE OR REPLACE FUNCTION velocity.is_admin() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT 'platform_admin' = ANY (velocity.current_actor_roles())
      OR (session_user <> 'velocity_authenticator'
          AND (session_user::text = 'velocity_owner'
               OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = session_user AND rolsuper)))
$$;

CREATE OR REPLACE FUNCTION velocity.require_admin() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT velocity.is_admin() THEN
    RAISE EXCEPTION 'the platform_admin role is required' USING ERRCODE = '42501';
  END IF;
END
$$;

-- velocity.uuid_v7(): time-ordered ids, so the default keyset order is creation order and
-- the primary-key index stays append-mostly.
CREATE OR REPLACE FUNCTION velocity.uuid_v7() RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  ms bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
  b bytea := uuid_send(gen_random_uuid());
BEGIN
  b := overlay(b PLACING substring(int8send(ms) FROM 3) FROM 1 FOR 6);
  b := set_byte(b, 6, (get_byte(b, 6) & 15) | 112);
  RETURN encode(b, 'hex')::uuid;
END
$$;
