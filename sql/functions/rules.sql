-- The actor as row filters see it (spec.access.rowFilter, layer 4). internal/rules compiles a
-- row filter into the USING and WITH CHECK of an RLS policy, which calls these for actor.kind
-- and actor.attributes. Policies always call them as scalar subqueries,
-- (SELECT velocity.actor_attribute_text('region')), so each runs once per statement (an
-- InitPlan), never once per row, and the column side stays free for its index.
--
-- They never raise: an attribute that is missing, JSON null, or of another JSON type reads as
-- NULL (an empty array for actor_attribute_texts), so the comparison is false and the row is
-- not visible. Like current_actor_roles(), they are plain SQL, STABLE, with no SET clause and
-- no SECURITY DEFINER, and they run as the querying user (the API or a BI login). The body of
-- such a function is parsed with the caller's search_path, so every function, operator and
-- type in it is schema-qualified: a session cannot redirect a comparison to an operator of its
-- own and so widen its own row filter.

-- velocity.current_actor_kind(): actor.kind ("api_key", "user", "db_login", ...).
CREATE OR REPLACE FUNCTION velocity.current_actor_kind() RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT velocity.current_actor() OPERATOR(pg_catalog.->>) 'kind'::pg_catalog.text
$$;

-- velocity.actor_attribute(name): the attribute as jsonb; NULL when missing or JSON null.
CREATE OR REPLACE FUNCTION velocity.actor_attribute(p_name text) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN pg_catalog.jsonb_typeof(a.v) OPERATOR(pg_catalog.<>) 'null'::pg_catalog.text THEN a.v END
    FROM (SELECT (velocity.current_actor() OPERATOR(pg_catalog.->) 'attributes'::pg_catalog.text)
                 OPERATOR(pg_catalog.->) p_name AS v) a
$$;

-- velocity.actor_attribute_text(name): a string attribute as text; a number or boolean as its
-- JSON text (so two attributes compare as text); NULL for anything else.
CREATE OR REPLACE FUNCTION velocity.actor_attribute_text(p_name text) RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN pg_catalog.jsonb_typeof(a.v) OPERATOR(pg_catalog.=) ANY ('{string,number,boolean}'::pg_catalog.text[])
              THEN a.v OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[] END
    FROM (SELECT velocity.actor_attribute(p_name) AS v) a
$$;

-- velocity.actor_attribute_numeric(name): a number attribute as numeric; NULL for anything
-- else, a numeric string included.
CREATE OR REPLACE FUNCTION velocity.actor_attribute_numeric(p_name text) RETURNS numeric
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN pg_catalog.jsonb_typeof(a.v) OPERATOR(pg_catalog.=) 'number'::pg_catalog.text
              THEN (a.v OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])::pg_catalog.numeric END
    FROM (SELECT velocity.actor_attribute(p_name) AS v) a
$$;

-- velocity.actor_attribute_bool(name): a boolean attribute; NULL for anything else.
CREATE OR REPLACE FUNCTION velocity.actor_attribute_bool(p_name text) RETURNS boolean
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN pg_catalog.jsonb_typeof(a.v) OPERATOR(pg_catalog.=) 'boolean'::pg_catalog.text
              THEN (a.v OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])::pg_catalog.bool END
    FROM (SELECT velocity.actor_attribute(p_name) AS v) a
$$;

-- velocity.actor_attribute_texts(name): an array attribute as text[] (each element as
-- actor_attribute_text reads it); a scalar as a one-element array; anything else, a missing
-- attribute included, as an empty array. For `x in actor.attributes.name`.
CREATE OR REPLACE FUNCTION velocity.actor_attribute_texts(p_name text) RETURNS text[]
LANGUAGE sql STABLE
AS $$
  SELECT CASE
           WHEN pg_catalog.jsonb_typeof(a.v) OPERATOR(pg_catalog.=) 'array'::pg_catalog.text THEN
             ARRAY(SELECT CASE WHEN pg_catalog.jsonb_typeof(e.v) OPERATOR(pg_catalog.=) ANY ('{string,number,boolean}'::pg_catalog.text[])
                               THEN e.v OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[] END
                     FROM pg_catalog.jsonb_array_elements(a.v) AS e(v))
           WHEN pg_catalog.jsonb_typeof(a.v) OPERATOR(pg_catalog.=) ANY ('{string,number,boolean}'::pg_catalog.text[]) THEN
             ARRAY[a.v OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[]]
           ELSE '{}'::pg_catalog.text[]
         END
    FROM (SELECT velocity.actor_attribute(p_name) AS v) a
$$;
