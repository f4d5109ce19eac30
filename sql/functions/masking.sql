-- Field masks (layer 6). The read views and the history views show a field masked to an actor
-- whose roles are not in the field's read list, and the history writers mask the same fields in
-- audit entries. A redact mask needs no function: it is NULL.
--
-- They run for every masked value of every row read, so they are written to be inlined by the
-- planner: plain SQL, IMMUTABLE, no SET clause, and not STRICT (Postgres does not inline a
-- STRICT function whose body is a CASE). A null still gives null. Inlined bodies are parsed
-- with the caller's search_path, and a history writer (SECURITY DEFINER) calls them with its
-- caller's, so every function and operator is schema-qualified and no type is named.

-- velocity.mask_partial(value): a value longer than 4 characters keeps its last 4 and every
-- other character becomes '*'; a shorter one, which the last 4 would show whole, becomes all
-- '*'. Characters, not bytes: 'Zürich' gives '**rich'.
CREATE OR REPLACE FUNCTION velocity.mask_partial(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN pg_catalog.char_length(value) OPERATOR(pg_catalog.>) 4
    THEN pg_catalog.repeat('*', pg_catalog.char_length(value) OPERATOR(pg_catalog.-) 4)
         OPERATOR(pg_catalog.||) pg_catalog.right(value, 4)
    ELSE pg_catalog.repeat('*', pg_catalog.char_length(value))
  END
$$;

-- velocity.mask_full(value): every character becomes '*'; the length stays.
CREATE OR REPLACE FUNCTION velocity.mask_full(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT pg_catalog.repeat('*', pg_catalog.char_length(value))
$$;
