-- Why: under policy.breakingChanges: requireApproval (the default) a breaking apply no longer
-- fails; it waits here until a second platform admin approves it (four eyes). A request keeps
-- the exact definition and plan it was made with, and approving it applies that definition in
-- the same transaction as the approval (docs/schema-definition.md#breaking-changes).
CREATE TABLE velocity.schema_approvals (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          text NOT NULL,
  schema_key    text NOT NULL,
  -- The applied version the plan was made against; approving refuses when it has moved.
  from_version  integer NOT NULL,
  to_version    integer NOT NULL,
  definition    jsonb NOT NULL,
  plan          text NOT NULL,
  breaking      text[] NOT NULL,
  requested_by  text NOT NULL,
  requested_at  timestamptz NOT NULL DEFAULT now(),
  status        text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'approved', 'rejected', 'superseded')),
  decided_by    text,
  decided_at    timestamptz,
  reason        text
);
-- At most one request per schema waits; a newer one supersedes it.
CREATE UNIQUE INDEX schema_approvals_pending ON velocity.schema_approvals (name) WHERE status = 'pending';
CREATE INDEX schema_approvals_status ON velocity.schema_approvals (status, id);

{{ template "functions/approvals.sql" . }}

-- Request, approval, rejection and supersession are audit entries, whoever makes them.
CREATE TRIGGER velocity_audit AFTER INSERT OR UPDATE ON velocity.schema_approvals
  FOR EACH ROW EXECUTE FUNCTION velocity.audit_schema_approval();

REVOKE ALL ON velocity.schema_approvals FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
  velocity.audit_schema_approval(),
  velocity.schema_approval_request(text, text, integer, integer, jsonb, text, text[], text),
  velocity.schema_approve(text, text, text),
  velocity.schema_reject(text, text),
  velocity.schema_approval_list(text)
FROM PUBLIC;
-- The API lists and rejects as its actor; requests and approvals run in the owner's apply
-- transaction, like velocity.schema_version_record.
GRANT EXECUTE ON FUNCTION
  velocity.schema_reject(text, text),
  velocity.schema_approval_list(text)
TO velocity_api;
