-- Why: admin operations are SQL functions so the API and a DBA in psql take the same path,
-- with the same checks.
{{ template "functions/admin.sql" . }}
{{ template "functions/system_fields.sql" . }}
{{ template "functions/jsonb.sql" . }}
