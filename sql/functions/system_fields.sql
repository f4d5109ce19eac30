-- velocity.set_system_fields(): BEFORE INSERT OR UPDATE trigger on every user table. Postgres,
-- not the API, owns the system fields, so psql and BI writes keep them right too.
-- An UPDATE that changes no user field leaves version and updated_* alone. A restore that
-- recreates a deleted record (velocity.current_write_op() = 'RESTORE', trusted only from the
-- API) keeps the version, created_at and created_by it is given, so the record's history
-- reads on without a gap. Times come from clock_timestamp(): a BEFORE UPDATE trigger runs
-- once the row is locked, so a record's updated_at grows with its version even when two
-- transactions race for it, and its history event carries the same time.
CREATE OR REPLACE FUNCTION velocity.set_system_fields() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.id IS NULL THEN
      NEW.id := velocity.uuid_v7();
    END IF;
    IF velocity.current_write_op() = 'RESTORE' AND NEW.version IS NOT NULL AND NEW.created_at IS NOT NULL THEN
      NEW.updated_at := clock_timestamp();
      NEW.updated_by := velocity.current_actor_id();
      RETURN NEW;
    END IF;
    NEW.version := 1;
    NEW.created_at := clock_timestamp();
    NEW.updated_at := NEW.created_at;
    NEW.created_by := velocity.current_actor_id();
    NEW.updated_by := NEW.created_by;
    RETURN NEW;
  END IF;

  IF NEW.id IS DISTINCT FROM OLD.id THEN
    RAISE EXCEPTION 'id cannot be changed' USING ERRCODE = '42501', COLUMN = 'id';
  END IF;
  NEW.version := OLD.version;
  NEW.created_at := OLD.created_at;
  NEW.created_by := OLD.created_by;
  NEW.updated_at := OLD.updated_at;
  NEW.updated_by := OLD.updated_by;
  IF NEW IS NOT DISTINCT FROM OLD THEN
    RETURN NEW;
  END IF;
  NEW.version := OLD.version + 1;
  NEW.updated_at := clock_timestamp();
  NEW.updated_by := velocity.current_actor_id();
  RETURN NEW;
END
$$;
