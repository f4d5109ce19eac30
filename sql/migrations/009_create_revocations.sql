-- Why: tokens, subjects and API keys can be revoked. Postgres keeps every revocation; Redis
-- carries it to every API replica within a second (internal/auth/revocation.go).
CREATE TABLE velocity.revocations (
  kind        text NOT NULL,
  value       text NOT NULL,
  expires_at  timestamptz,
  reason      text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL,
  PRIMARY KEY (kind, value)
);

{{ template "functions/audit.sql" . }}
{{ template "functions/revocations.sql" . }}

CREATE TRIGGER velocity_audit AFTER INSERT OR UPDATE OR DELETE ON velocity.revocations
  FOR EACH ROW EXECUTE FUNCTION velocity.audit_admin_change('revocation');

REVOKE ALL ON velocity.revocations FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
  velocity.credential_revoke(text, text, timestamptz, text),
  velocity.revocations_active()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  velocity.credential_revoke(text, text, timestamptz, text),
  velocity.revocations_active()
TO velocity_api;
