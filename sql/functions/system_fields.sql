-- velocity.set_system_fields(): BEFORE INSERT OR UPDATE trigger on every user table. Postgres,
-- not the API, owns the system fields, so psql and BI writes keep them right too.
-- An UPDATE that changes no user field leaves version and updated_* alone.
CREATE OR REPLACE FUNCTION velocity.set_system_fields() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.id IS NULL THEN
      NEW.id := velocity.uuid_v7();
    END IF;
    NEW.version := 1;
    NEW.created_at := statement_timestamp();
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
  NEW.updated_at := statement_timestamp();
  NEW.updated_by := velocity.current_actor_id();
  RETURN NEW;
END
$$;
