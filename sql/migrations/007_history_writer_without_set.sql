-- Why: the generated history writers drop their SET search_path clause (every name in them is
-- schema-qualified instead); a SET clause on a SECURITY DEFINER trigger function cost every
-- write two search-path switches. They read the reason and request id through this function.
-- store.Migrate regenerates the writers of tables applied before this migration.
{{ template "functions/settings.sql" . }}
