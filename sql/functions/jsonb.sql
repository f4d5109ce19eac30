-- velocity.jsonb_merge_patch(target, patch): JSON Merge Patch (RFC 7396) for json fields,
-- so a PATCH of {"meta": {"a": null}} removes only meta.a.
CREATE OR REPLACE FUNCTION velocity.jsonb_merge_patch(target jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF patch IS NULL OR jsonb_typeof(patch) <> 'object' THEN
    RETURN patch;
  END IF;
  IF target IS NULL OR jsonb_typeof(target) <> 'object' THEN
    target := '{}'::jsonb;
  END IF;
  RETURN (
    SELECT coalesce(jsonb_object_agg(s.k, s.v), '{}'::jsonb)
      FROM (SELECT t.key AS k, t.value AS v FROM jsonb_each(target) t WHERE NOT patch ? t.key
            UNION ALL
            SELECT p.key, velocity.jsonb_merge_patch(target -> p.key, p.value)
              FROM jsonb_each(patch) p WHERE jsonb_typeof(p.value) <> 'null') s);
END
$$;
