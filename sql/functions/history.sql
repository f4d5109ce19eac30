-- The time machine's shared functions. The planner generates one small trigger function per
-- table (static SQL into its own history table) that calls these.

-- velocity.current_write_op(): 'RESTORE' while the API writes a restored image back, else ''.
-- Trusted, like velocity.actor, only from the authenticator, so a psql session cannot label
-- its own writes as restores. Inlinable: plain SQL, every name schema-qualified.
CREATE OR REPLACE FUNCTION velocity.current_write_op() RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT CASE
    WHEN session_user OPERATOR(pg_catalog.=) 'velocity_authenticator'::pg_catalog.name
     AND pg_catalog.current_setting('velocity.write_op', true) OPERATOR(pg_catalog.=) 'RESTORE'
    THEN 'RESTORE' ELSE '' END
$$;

-- velocity.history_redact(image, fields): image with each listed field replaced by a keyed
-- hash of its value (HMAC-SHA256 under the database's history key), so history shows that a
-- sensitive field changed, never what it held. A null stays null.
CREATE OR REPLACE FUNCTION velocity.history_redact(image jsonb, fields text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  k bytea;
  f text;
BEGIN
  SELECT key INTO STRICT k FROM velocity.history_key;
  FOREACH f IN ARRAY fields LOOP
    IF image ? f AND jsonb_typeof(image -> f) <> 'null' THEN
      image := jsonb_set(image, ARRAY[f], to_jsonb('hmac-sha256:' ||
        encode(velocity_ext.hmac(convert_to(image ->> f, 'UTF8'), k, 'sha256'), 'hex')));
    END IF;
  END LOOP;
  RETURN image;
END
$$;

-- velocity.history_guard(): history and the outbox are append-only. UPDATE, DELETE and
-- TRUNCATE are refused for every role, the owner included, except inside the platform's own
-- maintenance and purge functions, which run as velocity_owner and set
-- velocity.history_maintenance for their transaction.
CREATE OR REPLACE FUNCTION velocity.history_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF current_user = 'velocity_owner' AND current_setting('velocity.history_maintenance', true) = 'on' THEN
    IF TG_LEVEL = 'ROW' AND TG_OP = 'DELETE' THEN
      RETURN OLD;
    END IF;
    RETURN NEW;
  END IF;
  RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP
    USING ERRCODE = '42501', HINT = 'history is removed only by a purge';
END
$$;

-- velocity.history_partition_name(history, month): {history}_YYYY_MM.
CREATE OR REPLACE FUNCTION velocity.history_partition_name(history text, month date) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT history || '_' || to_char(month, 'YYYY_MM') $$;

-- velocity.history_partitions_ensure(schema, history, at, months_ahead): makes sure the
-- monthly partitions of one history table exist from at's month to months_ahead months after
-- it, and returns how many it created. Rows that landed in the default partition for a month
-- (the job did not run in time) are moved into that month's new partition in the same
-- transaction, so no write ever fails for a missing partition and none is lost. Idempotent.
CREATE OR REPLACE FUNCTION velocity.history_partitions_ensure(schema_name text, history text, at timestamptz, months_ahead integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  month date := date_trunc('month', at AT TIME ZONE 'UTC')::date;
  lo timestamptz;
  hi timestamptz;
  part text;
  parent text := format('%I.%I', schema_name, history);
  dflt text := format('%I.%I', schema_name, history || '_default');
  created integer := 0;
  stray boolean;
BEGIN
  IF months_ahead < 0 OR months_ahead > 36 THEN
    RAISE EXCEPTION 'months_ahead must be from 0 to 36' USING ERRCODE = '22023';
  END IF;
  IF to_regclass(parent) IS NULL THEN
    RAISE EXCEPTION 'history table %.% does not exist', schema_name, history USING ERRCODE = '42P01';
  END IF;
  -- Writers wait on the default partition while a partition is attached; never long.
  SET LOCAL lock_timeout = '5s';
  -- One maintainer per history at a time (the job, a schema apply, a DBA).
  PERFORM pg_advisory_xact_lock(hashtext('velocity.history_partitions ' || parent));
  FOR i IN 0..months_ahead LOOP
    lo := (month + make_interval(months => i))::timestamp AT TIME ZONE 'UTC';
    hi := (month + make_interval(months => i + 1))::timestamp AT TIME ZONE 'UTC';
    part := velocity.history_partition_name(history, (month + make_interval(months => i))::date);
    CONTINUE WHEN to_regclass(format('%I.%I', schema_name, part)) IS NOT NULL;

    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS, CONSTRAINT %I CHECK (at >= %L AND at < %L))',
      schema_name, part, parent, part || '_range', lo, hi);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = parent::regclass AND c.oid = to_regclass(dflt)) THEN
      -- ATTACH takes this lock anyway; taking it first means no writer can add a row for the
      -- month to the default partition between the move and the ATTACH.
      EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', dflt);
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE at >= %L AND at < %L)', dflt, lo, hi) INTO stray;
      IF stray THEN
        PERFORM set_config('velocity.history_maintenance', 'on', true);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE at >= %L AND at < %L RETURNING *) INSERT INTO %I.%I SELECT * FROM moved',
          dflt, lo, hi, schema_name, part);
        PERFORM set_config('velocity.history_maintenance', '', true);
      END IF;
    END IF;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)', parent, schema_name, part, lo, hi);
    -- The CHECK only spared ATTACH a scan; the partition bound holds the same rule.
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', schema_name, part, part || '_range');
    EXECUTE format('CREATE TRIGGER velocity_history_guard_truncate BEFORE TRUNCATE ON %I.%I FOR EACH STATEMENT EXECUTE FUNCTION velocity.history_guard()', schema_name, part);
    created := created + 1;
  END LOOP;
  RETURN created;
END
$$;

-- velocity.history_tables(): the history table of every applied schema. The partition job
-- calls history_partitions_ensure for each in its own transaction, so it holds one default
-- partition's lock at a time.
CREATE OR REPLACE FUNCTION velocity.history_tables() RETURNS TABLE (schema_name text, history text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT org || '__' || app, domain || '__' || object || '__history' FROM velocity.schemas ORDER BY key
$$;

-- velocity.history_partitions_ensure_all(at, months_ahead): every applied schema at once, in
-- one transaction (for a DBA in psql; it holds each default partition's lock to the end).
-- Returns the partitions created.
CREATE OR REPLACE FUNCTION velocity.history_partitions_ensure_all(at timestamptz, months_ahead integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  s record;
  created integer := 0;
BEGIN
  FOR s IN SELECT org || '__' || app AS schema_name, domain || '__' || object || '__history' AS history
             FROM velocity.schemas ORDER BY key LOOP
    created := created + velocity.history_partitions_ensure(s.schema_name, s.history, at, months_ahead);
  END LOOP;
  RETURN created;
END
$$;

