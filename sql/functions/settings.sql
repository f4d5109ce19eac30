-- velocity.setting_or_null(name): the transaction's setting name, or null when it is unset or
-- empty (the API sets velocity.reason and velocity.request_id, possibly to ''). On the write
-- path of every change, so it is written to be inlined: plain SQL, STABLE, no SET clause, and
-- every function and operator schema-qualified, since an inlined body is parsed with the
-- caller's search_path.
CREATE OR REPLACE FUNCTION velocity.setting_or_null(name text) RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN pg_catalog.current_setting(name, true) OPERATOR(pg_catalog.=) '' THEN NULL
              ELSE pg_catalog.current_setting(name, true) END
$$;
