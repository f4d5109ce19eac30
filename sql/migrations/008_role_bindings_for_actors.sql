-- Why: JWT subjects, token groups and API keys can be bound to Velocity roles (with an expiry
-- and scope attributes), like database logins already are; the API merges the unexpired
-- bindings into each authenticated actor.
{{ template "functions/bindings.sql" . }}

REVOKE EXECUTE ON FUNCTION
  velocity.role_binding_grant(text, text, text, timestamptz, jsonb),
  velocity.role_binding_revoke(text, text, text),
  velocity.actor_bindings(text[], text[])
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  velocity.role_binding_grant(text, text, text, timestamptz, jsonb),
  velocity.role_binding_revoke(text, text, text),
  velocity.actor_bindings(text[], text[])
TO velocity_api;
