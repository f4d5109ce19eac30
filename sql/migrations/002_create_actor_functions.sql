-- Why: the verified actor is the base of every policy; these functions are the only place
-- that decides whom a session acts for.
{{ template "functions/actor.sql" . }}
