-- velocity.current_actor(): the actor a statement runs for, as jsonb
-- {"id", "kind", "roles": [...], "attributes": {...}}.
--
-- The transaction-local setting velocity.actor is trusted only when the session logged in as
-- the API's authenticator, which sets it from a verified credential in the same round trip as
-- the statement. Any other login (a BI tool, an analyst in psql) gets the roles bound to its
-- login in velocity.role_bindings, whatever it sets itself.
CREATE OR REPLACE FUNCTION velocity.current_actor() RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog
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

  SELECT coalesce(jsonb_agg(DISTINCT b.role), '[]'::jsonb)
    INTO roles
    FROM velocity.role_bindings b
   WHERE b.subject_kind = 'db_login'
     AND b.subject = session_user::text
     AND (b.expires_at IS NULL OR b.expires_at > now());
  SELECT coalesce(jsonb_object_agg(s.key, s.value), '{}'::jsonb)
    INTO attrs
    FROM velocity.role_bindings b, jsonb_each(b.scope) s
   WHERE b.subject_kind = 'db_login'
     AND b.subject = session_user::text
     AND (b.expires_at IS NULL OR b.expires_at > now());
  RETURN jsonb_build_object('id', 'db:' || session_user, 'kind', 'db_login', 'roles', roles, 'attributes', attrs);
END
$$;

-- The actor's id, for created_by / updated_by.
CREATE OR REPLACE FUNCTION velocity.current_actor_id() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog
AS $$ SELECT velocity.current_actor() ->> 'id' $$;

-- The actor's roles. Policies call it as (SELECT velocity.current_actor_roles()) so Postgres
-- evaluates it once per statement, not once per row. An actor without a roles array (Go
-- encodes a nil slice as null) has no roles; it must be denied, not fail every statement.
CREATE OR REPLACE FUNCTION velocity.current_actor_roles() RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog
AS $$
  SELECT coalesce(array_agg(r ORDER BY r), '{}')
    FROM (SELECT velocity.current_actor() -> 'roles' AS roles) a,
         jsonb_array_elements_text(CASE WHEN jsonb_typeof(a.roles) = 'array' THEN a.roles ELSE '[]' END) r
$$;

-- velocity.is_admin(): a platform administrator is an actor holding the admin role, or a DBA
-- session logged in as velocity_owner (or a superuser) calling the admin functions from psql.
CREATE OR REPLACE FUNCTION velocity.is_admin() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog
AS $$
  SELECT 'admin' = ANY (velocity.current_actor_roles())
      OR (session_user <> 'velocity_authenticator'
          AND (session_user::text = 'velocity_owner'
               OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = session_user AND rolsuper)))
$$;

CREATE OR REPLACE FUNCTION velocity.require_admin() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog
AS $$
BEGIN
  IF NOT velocity.is_admin() THEN
    RAISE EXCEPTION 'the admin role is required' USING ERRCODE = '42501';
  END IF;
END
$$;

-- velocity.uuid_v7(): time-ordered ids, so the default keyset order is creation order and
-- the primary-key index stays append-mostly.
CREATE OR REPLACE FUNCTION velocity.uuid_v7() RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog
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
