-- Role bindings for the API's actors: a JWT subject, a group from a token, or an API key holds
-- a Velocity role, optionally until a time and with scope attributes (region=eu) that row
-- filters read. Database logins are bound through velocity.db_login_grant, which also grants
-- the group role. Every change is audited by the trigger on velocity.role_bindings.

-- velocity.role_binding_grant: binds, or updates the expiry and scope of an existing binding.
CREATE OR REPLACE FUNCTION velocity.role_binding_grant(
  p_role text, p_kind text, p_subject text, p_expires timestamptz DEFAULT NULL, p_scope jsonb DEFAULT '{}')
RETURNS SETOF velocity.role_bindings
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM velocity.require_admin();
  IF p_role IS NULL OR p_role !~ '^[a-z][a-z0-9_]{0,40}$' THEN
    RAISE EXCEPTION 'role must match ^[a-z][a-z0-9_]{0,40}$' USING ERRCODE = '22023', COLUMN = 'role';
  END IF;
  IF p_kind IS NULL OR p_kind NOT IN ('subject', 'group', 'api_key') THEN
    RAISE EXCEPTION 'subject_kind must be subject, group or api_key (bind database logins with db_login_grant)'
      USING ERRCODE = '22023', COLUMN = 'subject_kind';
  END IF;
  IF p_subject IS NULL OR length(p_subject) NOT BETWEEN 1 AND 300 OR p_subject ~ '[[:cntrl:]]' THEN
    RAISE EXCEPTION 'subject must be 1 to 300 printable characters' USING ERRCODE = '22023', COLUMN = 'subject';
  END IF;
  IF p_kind = 'api_key' AND NOT EXISTS (
       SELECT 1 FROM velocity.api_keys WHERE id::text = p_subject AND revoked_at IS NULL) THEN
    RAISE EXCEPTION 'no unrevoked api key %', quote_literal(p_subject) USING ERRCODE = '22023', COLUMN = 'subject';
  END IF;
  IF p_expires IS NOT NULL AND p_expires <= now() THEN
    RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023', COLUMN = 'expires_at';
  END IF;
  p_scope := coalesce(p_scope, '{}');
  IF jsonb_typeof(p_scope) <> 'object'
     OR EXISTS (SELECT 1 FROM jsonb_each(p_scope) e
                 WHERE e.key !~ '^[a-z][a-z0-9_]{0,62}$' OR jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean')) THEN
    RAISE EXCEPTION 'scope must be an object of attribute names (^[a-z][a-z0-9_]{0,62}$) to strings, numbers or booleans'
      USING ERRCODE = '22023', COLUMN = 'scope';
  END IF;
  RETURN QUERY
  INSERT INTO velocity.role_bindings AS b (role, subject_kind, subject, scope, expires_at, created_by)
  VALUES (p_role, p_kind, p_subject, p_scope, p_expires, velocity.current_actor_id())
  ON CONFLICT (subject_kind, subject, role) DO UPDATE SET expires_at = excluded.expires_at, scope = excluded.scope
  RETURNING b.*;
END
$$;

-- velocity.role_binding_revoke: removes a binding; false when there was none.
CREATE OR REPLACE FUNCTION velocity.role_binding_revoke(p_role text, p_kind text, p_subject text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM velocity.require_admin();
  IF p_kind = 'db_login' THEN
    RAISE EXCEPTION 'remove database login bindings with db_login_revoke' USING ERRCODE = '22023', COLUMN = 'subject_kind';
  END IF;
  DELETE FROM velocity.role_bindings WHERE role = p_role AND subject_kind = p_kind AND subject = p_subject;
  RETURN FOUND;
END
$$;

-- velocity.actor_bindings(kinds, subjects): the unexpired bindings of an authenticated actor,
-- given as parallel arrays of (subject_kind, subject) pairs. The API calls it after it has
-- verified the credential; an expired binding stops counting at once, without a restart.
CREATE OR REPLACE FUNCTION velocity.actor_bindings(p_kinds text[], p_subjects text[])
RETURNS TABLE (role text, scope jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT b.role, b.scope
    FROM velocity.role_bindings b
    JOIN unnest(p_kinds, p_subjects) AS a(kind, subject) ON b.subject_kind = a.kind AND b.subject = a.subject
   WHERE b.subject_kind <> 'db_login' AND (b.expires_at IS NULL OR b.expires_at > now())
   ORDER BY b.role
$$;
