-- Schema approvals: a breaking apply under policy.breakingChanges: requireApproval waits in
-- velocity.schema_approvals until a second platform admin approves it. Each function is
-- SECURITY DEFINER and checks velocity.require_admin() first, as the admin functions do.
--
-- Requests and approvals run in the owner session's apply transaction (the API applies
-- schemas as velocity_owner), so, like velocity.schema_version_record, they take the API actor
-- they act for as a parameter and only the owner may call them. Rejecting and listing change
-- no schema: the API calls them as its actor.

-- schema_approval_request records a breaking change waiting for approval and returns it. The
-- same request again (same schema, versions and definition) returns the pending one
-- unchanged; another request for the name supersedes the pending one.
CREATE OR REPLACE FUNCTION velocity.schema_approval_request(
  p_name text, p_key text, p_from_version integer, p_to_version integer, p_definition jsonb,
  p_plan text, p_breaking text[], p_requested_by text DEFAULT NULL)
RETURNS velocity.schema_approvals
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_by text := coalesce(p_requested_by, velocity.current_actor_id());
  v_row velocity.schema_approvals;
BEGIN
  PERFORM velocity.require_admin();
  SELECT * INTO v_row FROM velocity.schema_approvals a
   WHERE a.name = p_name AND a.status = 'pending'
     FOR UPDATE;
  IF FOUND THEN
    IF v_row.schema_key = p_key AND v_row.from_version = p_from_version
       AND v_row.to_version = p_to_version AND v_row.definition = p_definition THEN
      RETURN v_row;
    END IF;
    UPDATE velocity.schema_approvals
       SET status = 'superseded', decided_by = v_by, decided_at = now(),
           reason = format('superseded by a newer request for version %s', p_to_version)
     WHERE id = v_row.id;
  END IF;
  INSERT INTO velocity.schema_approvals AS a
    (name, schema_key, from_version, to_version, definition, plan, breaking, requested_by)
  VALUES (p_name, p_key, p_from_version, p_to_version, p_definition, p_plan, coalesce(p_breaking, '{}'), v_by)
  RETURNING a.* INTO v_row;
  RETURN v_row;
END
$$;

-- schema_approve marks the pending request of schema p_name approved by p_approved_by and
-- returns it; the caller then applies its definition in the same transaction (the API's
-- POST /admin/schemas/{name}/approve). It refuses when nothing is pending (no_data_found) and
-- when the approver made the request (insufficient_privilege, constraint
-- schema_approvals_four_eyes). When another version was applied since the request, the
-- request is marked superseded and returned with that status instead: the plan it was
-- approved for no longer applies, and the caller must not apply it.
CREATE OR REPLACE FUNCTION velocity.schema_approve(p_name text, p_reason text DEFAULT NULL, p_approved_by text DEFAULT NULL)
RETURNS velocity.schema_approvals
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_by text := coalesce(p_approved_by, velocity.current_actor_id());
  v_row velocity.schema_approvals;
  v_current integer;
BEGIN
  PERFORM velocity.require_admin();
  SELECT * INTO v_row FROM velocity.schema_approvals a
   WHERE a.name = p_name AND a.status = 'pending'
     FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no change of schema % is waiting for approval', quote_literal(p_name)
      USING ERRCODE = 'P0002', COLUMN = 'name';
  END IF;
  IF v_row.requested_by = v_by THEN
    RAISE EXCEPTION 'four eyes: % requested this change and cannot approve it; another platform admin must', v_by
      USING ERRCODE = '42501', CONSTRAINT = 'schema_approvals_four_eyes';
  END IF;
  SELECT s.current_version INTO v_current FROM velocity.schemas s WHERE s.key = v_row.schema_key;
  IF coalesce(v_current, 0) <> v_row.from_version THEN
    UPDATE velocity.schema_approvals a
       SET status = 'superseded', decided_by = v_by, decided_at = now(),
           reason = format('version %s was applied after the request, which was planned against version %s',
                           coalesce(v_current, 0), v_row.from_version)
     WHERE a.id = v_row.id
    RETURNING a.* INTO v_row;
    RETURN v_row;
  END IF;
  UPDATE velocity.schema_approvals a
     SET status = 'approved', decided_by = v_by, decided_at = now(), reason = NULLIF(p_reason, '')
   WHERE a.id = v_row.id
  RETURNING a.* INTO v_row;
  RETURN v_row;
END
$$;

-- schema_reject marks the pending request of schema p_name rejected by the current actor and
-- returns it; nothing is applied. The requester may reject (withdraw) their own request.
CREATE OR REPLACE FUNCTION velocity.schema_reject(p_name text, p_reason text DEFAULT NULL)
RETURNS velocity.schema_approvals
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_row velocity.schema_approvals;
BEGIN
  PERFORM velocity.require_admin();
  UPDATE velocity.schema_approvals a
     SET status = 'rejected', decided_by = velocity.current_actor_id(), decided_at = now(), reason = NULLIF(p_reason, '')
   WHERE a.name = p_name AND a.status = 'pending'
  RETURNING a.* INTO v_row;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no change of schema % is waiting for approval', quote_literal(p_name)
      USING ERRCODE = 'P0002', COLUMN = 'name';
  END IF;
  RETURN v_row;
END
$$;

-- schema_approval_list returns the requests with status p_status (all when NULL), newest first.
CREATE OR REPLACE FUNCTION velocity.schema_approval_list(p_status text DEFAULT NULL)
RETURNS SETOF velocity.schema_approvals
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM velocity.require_admin();
  IF p_status IS NOT NULL AND p_status NOT IN ('pending', 'approved', 'rejected', 'superseded') THEN
    RAISE EXCEPTION 'status must be pending, approved, rejected or superseded' USING ERRCODE = '22023', COLUMN = 'status';
  END IF;
  RETURN QUERY
    SELECT a.* FROM velocity.schema_approvals a
     WHERE p_status IS NULL OR a.status = p_status
     ORDER BY a.id DESC;
END
$$;

-- velocity.audit_schema_approval(): the audit entry of each request and decision, in the same
-- transaction. It is not velocity.audit_admin_change because the actor is not the session's:
-- requests and approvals are written by the owner session on behalf of the API actor named in
-- requested_by and decided_by. Actions: schema_approval.request, .approve, .reject and
-- .supersede; the reason is the decision's, else the request's X-Velocity-Reason.
CREATE OR REPLACE FUNCTION velocity.audit_schema_approval() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_verb text := 'update';
  v_actor text;
  v_reason text := NULLIF(current_setting('velocity.reason', true), '');
BEGIN
  IF TG_OP = 'INSERT' THEN
    v_verb := 'request';
    v_actor := NEW.requested_by;
  ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
    v_verb := CASE NEW.status WHEN 'approved' THEN 'approve' WHEN 'rejected' THEN 'reject'
                            WHEN 'superseded' THEN 'supersede' ELSE 'update' END;
    v_actor := NEW.decided_by;
    v_reason := coalesce(NEW.reason, v_reason);
  END IF;
  INSERT INTO velocity.audit_entry (action, outcome, actor, schema_key, record_id, reason, request_id, detail)
  VALUES ('schema_approval.' || v_verb, 'allowed', coalesce(v_actor, velocity.current_actor_id()), NEW.schema_key, NEW.id::text,
          v_reason, NULLIF(current_setting('velocity.request_id', true), ''),
          to_jsonb(NEW) - 'plan' - 'definition');
  RETURN NULL;
END
$$;
