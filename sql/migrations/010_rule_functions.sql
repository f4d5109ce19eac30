-- Why: row filters (spec.access.rowFilter, layer 4) are compiled into RLS policies, which read
-- the actor's kind and attributes through these functions on every query of a filtered table.
{{ template "functions/rules.sql" . }}

-- The same grants as current_actor_roles() (002): a policy calls its functions as whoever
-- runs the query, the API role and every BI login alike, and the velocity_r_* group roles of
-- those logins are created when schemas are applied, after this migration. The functions
-- read only the caller's own actor, so PUBLIC keeps EXECUTE; granting it here says so, and
-- keeps it so under default privileges that revoke it.
GRANT EXECUTE ON FUNCTION
  velocity.current_actor_attributes(),
  velocity.current_actor_kind(),
  velocity.attribute(jsonb, text),
  velocity.attribute_text(jsonb, text),
  velocity.attribute_numeric(jsonb, text),
  velocity.attribute_bool(jsonb, text),
  velocity.attribute_texts(jsonb, text),
  velocity.actor_attribute(text),
  velocity.actor_attribute_text(text),
  velocity.actor_attribute_numeric(text),
  velocity.actor_attribute_bool(text),
  velocity.actor_attribute_texts(text)
TO PUBLIC;
