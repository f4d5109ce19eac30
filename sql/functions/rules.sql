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

-- velocity.current_actor_attributes(): actor.attributes, as current_actor() has them. For the
-- API's login it reads the transaction's velocity.actor setting directly, like
-- current_actor_roles(), and is written to be inlined, so a policy's
-- (SELECT velocity.actor_attribute_text('region')) costs a setting read and a small jsonb
-- parse per statement, not a call of the SECURITY DEFINER current_actor() (measured: 0.14 ms
-- per statement against 0.01 ms). Other logins go through current_actor() and their bindings.
CREATE OR REPLACE FUNCTION velocity.current_actor_attributes() RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT CASE
    WHEN session_user OPERATOR(pg_catalog.=) 'velocity_authenticator'::pg_catalog.name THEN
      COALESCE(velocity.setting_or_null('velocity.actor')::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'attributes'::pg_catalog.text,
               '{}'::pg_catalog.jsonb)
    ELSE velocity.current_actor() OPERATOR(pg_catalog.->) 'attributes'::pg_catalog.text
  END
$$;

-- velocity.current_actor_kind(): actor.kind ("api_key", "jwt", "db_login", ...).
CREATE OR REPLACE FUNCTION velocity.current_actor_kind() RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT CASE
    WHEN session_user OPERATOR(pg_catalog.=) 'velocity_authenticator'::pg_catalog.name THEN
      COALESCE(velocity.setting_or_null('velocity.actor')::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'kind'::pg_catalog.text,
               'anonymous'::pg_catalog.text)
    ELSE velocity.current_actor() OPERATOR(pg_catalog.->>) 'kind'::pg_catalog.text
  END
$$;

-- The readers of one attribute take the attributes as an argument. A policy calls them as
-- (SELECT velocity.attribute_text(a.v, 'region') FROM (SELECT
-- velocity.current_actor_attributes() AS v OFFSET 0) a), so the actor's JSON is parsed once
-- per attribute the filter reads, per statement, and the reader, one expression that never
-- raises, is inlined. The actor_attribute* forms read the current actor, for psql users.

-- velocity.attribute(attrs, name): the attribute as jsonb; NULL when missing or JSON null.
CREATE OR REPLACE FUNCTION velocity.attribute(p_attrs jsonb, p_name text) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE WHEN pg_catalog.jsonb_typeof(p_attrs OPERATOR(pg_catalog.->) p_name) OPERATOR(pg_catalog.<>) 'null'::pg_catalog.text
              THEN p_attrs OPERATOR(pg_catalog.->) p_name END
$$;

-- velocity.attribute_text(attrs, name): a string attribute as text; a number or boolean as its
-- JSON text (so two attributes compare as text); NULL for anything else.
CREATE OR REPLACE FUNCTION velocity.attribute_text(p_attrs jsonb, p_name text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE WHEN pg_catalog.jsonb_typeof(p_attrs OPERATOR(pg_catalog.->) p_name)
                   OPERATOR(pg_catalog.=) ANY ('{string,number,boolean}'::pg_catalog.text[])
              THEN (p_attrs OPERATOR(pg_catalog.->) p_name) OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[] END
$$;

-- velocity.attribute_numeric(attrs, name): a number attribute as numeric; NULL for anything
-- else, a numeric string included.
CREATE OR REPLACE FUNCTION velocity.attribute_numeric(p_attrs jsonb, p_name text) RETURNS numeric
LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE WHEN pg_catalog.jsonb_typeof(p_attrs OPERATOR(pg_catalog.->) p_name) OPERATOR(pg_catalog.=) 'number'::pg_catalog.text
              THEN ((p_attrs OPERATOR(pg_catalog.->) p_name) OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])::pg_catalog.numeric END
$$;

-- velocity.attribute_bool(attrs, name): a boolean attribute; NULL for anything else.
CREATE OR REPLACE FUNCTION velocity.attribute_bool(p_attrs jsonb, p_name text) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE WHEN pg_catalog.jsonb_typeof(p_attrs OPERATOR(pg_catalog.->) p_name) OPERATOR(pg_catalog.=) 'boolean'::pg_catalog.text
              THEN ((p_attrs OPERATOR(pg_catalog.->) p_name) OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])::pg_catalog.bool END
$$;

-- velocity.attribute_texts(attrs, name): an array attribute as text[] (each element as
-- attribute_text reads it); a scalar as a one-element array; anything else, a missing
-- attribute included, as an empty array. For `x in actor.attributes.name`.
CREATE OR REPLACE FUNCTION velocity.attribute_texts(p_attrs jsonb, p_name text) RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
  SELECT CASE
           WHEN pg_catalog.jsonb_typeof(p_attrs OPERATOR(pg_catalog.->) p_name) OPERATOR(pg_catalog.=) 'array'::pg_catalog.text THEN
             ARRAY(SELECT CASE WHEN pg_catalog.jsonb_typeof(e.v) OPERATOR(pg_catalog.=) ANY ('{string,number,boolean}'::pg_catalog.text[])
                               THEN e.v OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[] END
                     FROM pg_catalog.jsonb_array_elements(p_attrs OPERATOR(pg_catalog.->) p_name) AS e(v))
           WHEN pg_catalog.jsonb_typeof(p_attrs OPERATOR(pg_catalog.->) p_name) OPERATOR(pg_catalog.=) ANY ('{string,number,boolean}'::pg_catalog.text[]) THEN
             ARRAY[(p_attrs OPERATOR(pg_catalog.->) p_name) OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[]]
           ELSE '{}'::pg_catalog.text[]
         END
$$;

-- The same, of the current actor.
CREATE OR REPLACE FUNCTION velocity.actor_attribute(p_name text) RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT velocity.attribute(velocity.current_actor_attributes(), p_name) $$;

CREATE OR REPLACE FUNCTION velocity.actor_attribute_text(p_name text) RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT velocity.attribute_text(velocity.current_actor_attributes(), p_name) $$;

CREATE OR REPLACE FUNCTION velocity.actor_attribute_numeric(p_name text) RETURNS numeric
LANGUAGE sql STABLE
AS $$ SELECT velocity.attribute_numeric(velocity.current_actor_attributes(), p_name) $$;

CREATE OR REPLACE FUNCTION velocity.actor_attribute_bool(p_name text) RETURNS boolean
LANGUAGE sql STABLE
AS $$ SELECT velocity.attribute_bool(velocity.current_actor_attributes(), p_name) $$;

CREATE OR REPLACE FUNCTION velocity.actor_attribute_texts(p_name text) RETURNS text[]
LANGUAGE sql STABLE
AS $$ SELECT velocity.attribute_texts(velocity.current_actor_attributes(), p_name) $$;
