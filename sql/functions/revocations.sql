-- velocity.credential_revoke: revokes a token (by jti), a subject (an actor id such as
-- jwt:ada) or an API key (by id), durably; the API then publishes it through Redis so every
-- replica refuses it within a second. expires_at is when the revocation may be forgotten
-- (a token's exp); null keeps it. Revoking an API key also marks the key revoked.
CREATE OR REPLACE FUNCTION velocity.credential_revoke(p_kind text, p_value text, p_expires timestamptz DEFAULT NULL, p_reason text DEFAULT NULL)
RETURNS SETOF velocity.revocations
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM velocity.require_admin();
  IF p_kind IS NULL OR p_kind NOT IN ('jti', 'subject', 'api_key') THEN
    RAISE EXCEPTION 'kind must be jti, subject or api_key' USING ERRCODE = '22023', COLUMN = 'kind';
  END IF;
  IF p_value IS NULL OR length(p_value) NOT BETWEEN 1 AND 300 OR p_value ~ '[[:cntrl:]]' THEN
    RAISE EXCEPTION 'value must be 1 to 300 printable characters' USING ERRCODE = '22023', COLUMN = 'value';
  END IF;
  IF p_kind = 'api_key' THEN
    UPDATE velocity.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id::text = p_value;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no api key %', quote_literal(p_value) USING ERRCODE = '22023', COLUMN = 'value';
    END IF;
  END IF;
  IF p_expires IS NOT NULL AND p_expires <= now() THEN
    RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023', COLUMN = 'expires_at';
  END IF;
  IF p_reason IS NOT NULL AND length(p_reason) > 1000 THEN
    RAISE EXCEPTION 'reason must be at most 1000 characters' USING ERRCODE = '22023', COLUMN = 'reason';
  END IF;
  RETURN QUERY
  INSERT INTO velocity.revocations AS r (kind, value, expires_at, reason, created_by)
  VALUES (p_kind, p_value, p_expires, p_reason, velocity.current_actor_id())
  ON CONFLICT (kind, value) DO UPDATE SET expires_at = excluded.expires_at, reason = excluded.reason
  RETURNING r.*;
END
$$;

-- velocity.revocations_active(): what every API replica loads when it (re)connects to Redis,
-- and writes back there, so a Redis that lost its data forgets no revocation.
CREATE OR REPLACE FUNCTION velocity.revocations_active()
RETURNS TABLE (kind text, value text, expires_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT r.kind, r.value, r.expires_at FROM velocity.revocations r
   WHERE r.expires_at IS NULL OR r.expires_at > now()
   ORDER BY r.kind, r.value
$$;
