-- Roles (SPEC §7). Roles belong to the whole cluster, so they are created only when missing and
-- shared by every kidjamo database on the server.
--   kidjamo_owner    NOLOGIN; owns every kidjamo object. Run migrations, loads and maintenance as a
--                    member of it (or as a superuser). Row-level security is FORCED, so the owner is
--                    subject to policies too: it reads and writes everything through explicit
--                    `tool_all` policies that `kidjamo audit report` can list.
--   kidjamo_app      LOGIN; the application. Owns nothing, no BYPASSRLS, only the grants it needs;
--                    every query runs as the end user named by `SET LOCAL kidjamo.user_id`.
--   kidjamo_analyst  NOLOGIN read-only role; grant it to analysts' login roles.
-- Passwords are never in this repository: set one with ALTER ROLE kidjamo_app PASSWORD ... .
DO $$
DECLARE
    spec text[];
BEGIN
    FOREACH spec SLICE 1 IN ARRAY ARRAY[
        ['kidjamo_owner',   'NOLOGIN NOINHERIT'],
        ['kidjamo_app',     'LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS'],
        ['kidjamo_analyst', 'NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS']
    ] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = spec[1]) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I %s', spec[1], spec[2]);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- another database's migrator created it at the same moment
            END;
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO kidjamo_owner', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO kidjamo_app, kidjamo_analyst', current_database());
END
$$;

GRANT USAGE, CREATE ON SCHEMA public TO kidjamo_owner;
GRANT USAGE ON SCHEMA public TO kidjamo_app, kidjamo_analyst;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
ALTER TABLE measurement_quality OWNER TO kidjamo_owner;
