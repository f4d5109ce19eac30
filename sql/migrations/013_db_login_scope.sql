-- Why: a database login for a BI tool can be given scope attributes (region=eu) that row
-- filters read, as the API's actors can: velocity.db_login_grant takes an optional p_scope,
-- and granting the same role to the login again replaces it. A new parameter is a new
-- signature, and CREATE OR REPLACE would add it beside the old one (a call with three
-- arguments would then be ambiguous), so the old one is dropped first; it goes with its
-- grants, which admin.sql sets again for the new one as 003 set them: no EXECUTE for PUBLIC,
-- EXECUTE for velocity_api. A database created from scratch already has the new function
-- from 003 (which renders the current admin.sql), so the DROP finds nothing there.
DROP FUNCTION IF EXISTS velocity.db_login_grant(text, text, text);

{{ template "functions/admin.sql" . }}
