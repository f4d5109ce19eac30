-- Why: everything Velocity keeps about itself lives in the velocity schema, owned by
-- velocity_owner (not a superuser, ADR-007). Roles are cluster-wide, so they are created only
-- when missing: every database of a cluster, and every cloned test database, runs this file.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'velocity_api') THEN
    -- The rights the API acts with; reachable only through SET ROLE from the authenticator.
    CREATE ROLE velocity_api NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'velocity_authenticator') THEN
    -- The API's login: NOINHERIT and no grants of its own, so it can do nothing until it
    -- switches to velocity_api inside a request transaction.
    CREATE ROLE velocity_authenticator LOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'velocity_worker') THEN
    CREATE ROLE velocity_worker LOGIN;
  END IF;
END
$$;

GRANT velocity_api TO velocity_authenticator;

CREATE SCHEMA IF NOT EXISTS velocity;
-- Extensions live apart from user schemas so their objects never collide with user names.
CREATE SCHEMA IF NOT EXISTS velocity_ext;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA velocity_ext;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA velocity_ext;

-- Policies on user tables call velocity.* functions as whoever runs the query, including BI
-- logins; the tables in these schemas stay private.
GRANT USAGE ON SCHEMA velocity, velocity_ext TO PUBLIC;

-- The registry of applied definitions: one row per org.app.domain.object.
CREATE TABLE velocity.schemas (
  key             text PRIMARY KEY,
  name            text NOT NULL UNIQUE,
  org             text NOT NULL,
  app             text NOT NULL,
  domain          text NOT NULL,
  object          text NOT NULL,
  current_version integer NOT NULL,
  definition      jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every applied version with the exact plan that produced it.
CREATE TABLE velocity.schema_versions (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  schema_key  text NOT NULL,
  version     integer NOT NULL,
  definition  jsonb NOT NULL,
  plan        text NOT NULL,
  plan_hash   text NOT NULL,
  breaking    text[] NOT NULL DEFAULT '{}',
  applied_by  text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (schema_key, version)
);

-- API keys are stored as SHA-256 of the secret only; hint is the last four characters so
-- a person can tell keys apart in a list.
CREATE TABLE velocity.api_keys (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name        text NOT NULL,
  key_hash    bytea NOT NULL UNIQUE,
  hint        text NOT NULL,
  roles       text[] NOT NULL,
  allow_ips   cidr[] NOT NULL DEFAULT '{}',
  expires_at  timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL,
  revoked_at  timestamptz,
  CHECK (cardinality(roles) > 0)
);

-- Role bindings: an actor (JWT subject, group claim, API key, or Postgres login) holds a
-- Velocity role, optionally until a time and with scope attributes for row filters.
CREATE TABLE velocity.role_bindings (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  role          text NOT NULL,
  subject_kind  text NOT NULL CHECK (subject_kind IN ('subject', 'group', 'api_key', 'db_login')),
  subject       text NOT NULL,
  scope         jsonb NOT NULL DEFAULT '{}',
  expires_at    timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  created_by    text NOT NULL,
  UNIQUE (subject_kind, subject, role)
);
CREATE INDEX role_bindings_subject_idx ON velocity.role_bindings (subject, subject_kind);

-- The Postgres logins Velocity created for BI tools; only these may be bound or given a
-- password through the admin functions.
CREATE TABLE velocity.db_logins (
  login       text PRIMARY KEY,
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL
);
