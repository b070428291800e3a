-- Measurements (SPEC §2.1), partitioned by ISO week of recorded_at in UTC, with a DEFAULT
-- partition so that no insert ever fails for want of a partition (`kidjamo db partitions` reports
-- and moves what lands there). Alerts (SPEC §4.5) and their status history.
SET LOCAL ROLE kidjamo_owner;

CREATE TABLE measurements (
    device_id              uuid NOT NULL,
    recorded_at            timestamptz NOT NULL,
    patient_id             uuid NOT NULL REFERENCES patients ON DELETE CASCADE,
    message_id             uuid NOT NULL,
    received_at            timestamptz,
    spo2_pct               double precision CHECK (spo2_pct BETWEEN 50 AND 100),
    heart_rate_bpm         smallint CHECK (heart_rate_bpm BETWEEN 20 AND 260),
    respiratory_rate_min   smallint CHECK (respiratory_rate_min BETWEEN 4 AND 90),
    temperature_c          double precision CHECK (temperature_c BETWEEN 30 AND 45),
    ambient_temperature_c  double precision CHECK (ambient_temperature_c BETWEEN -30 AND 60),
    relative_humidity_pct  double precision CHECK (relative_humidity_pct BETWEEN 0 AND 100),
    hydration_pct          double precision CHECK (hydration_pct BETWEEN 0 AND 100),
    activity_level         smallint CHECK (activity_level BETWEEN 0 AND 10),
    pain_scale             smallint CHECK (pain_scale BETWEEN 0 AND 10),
    heat_index_c           double precision,
    battery_pct            smallint CHECK (battery_pct BETWEEN 0 AND 100),
    signal_quality_pct     smallint CHECK (signal_quality_pct BETWEEN 0 AND 100),
    firmware_version       text,
    quality_flag           text NOT NULL REFERENCES measurement_quality (code),
    -- A device takes one sample at a time: this key is what makes `db load` idempotent.
    PRIMARY KEY (device_id, recorded_at)
) PARTITION BY RANGE (recorded_at);

CREATE INDEX measurements_patient_time ON measurements (patient_id, recorded_at DESC);
CREATE TABLE measurements_default PARTITION OF measurements DEFAULT;

-- Monday 00:00 UTC of the ISO week holding `day`.
CREATE FUNCTION kidjamo_iso_week_start(day date) RETURNS date
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN day - (extract(isodow FROM day)::integer - 1);

CREATE FUNCTION kidjamo_week_partition_name(week_start date) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN 'measurements_' || to_char(week_start, 'IYYY') || 'w' || to_char(week_start, 'IW');

CREATE TABLE alerts (
    alert_id            uuid PRIMARY KEY,
    patient_id          uuid NOT NULL REFERENCES patients ON DELETE CASCADE,
    device_id           uuid,
    rule_id             text NOT NULL,
    severity            text NOT NULL CHECK (severity IN ('info', 'warn', 'alert', 'critical')),
    title               text NOT NULL,
    message             text NOT NULL,
    first_seen_at       timestamptz NOT NULL,
    last_seen_at        timestamptz NOT NULL CHECK (last_seen_at >= first_seen_at),
    vitals_snapshot     jsonb NOT NULL DEFAULT '{}',
    trigger_conditions  text[] NOT NULL DEFAULT '{}',
    suggested_actions   text[] NOT NULL DEFAULT '{}',
    status              text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'acknowledged', 'escalated', 'resolved', 'auto_resolved')),
    escalation_level    smallint NOT NULL DEFAULT 0 CHECK (escalation_level BETWEEN 0 AND 10),
    occurrences         integer NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    acknowledged_at     timestamptz,
    acknowledged_by     uuid REFERENCES users ON DELETE SET NULL,
    escalated_at        timestamptz,
    resolved_at         timestamptz,
    CHECK ((status = 'acknowledged') <= (acknowledged_at IS NOT NULL))
);
CREATE INDEX alerts_patient_time ON alerts (patient_id, first_seen_at DESC);

-- Severity as a number, so that "highest severity" is not a text comparison.
CREATE FUNCTION kidjamo_severity_rank(severity text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN array_position(ARRAY['info', 'warn', 'alert', 'critical'], severity);

CREATE TABLE alert_status_logs (
    log_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    uuid NOT NULL REFERENCES alerts ON DELETE CASCADE,
    patient_id  uuid NOT NULL REFERENCES patients ON DELETE CASCADE,
    status      text NOT NULL CHECK (status IN ('open', 'acknowledged', 'escalated', 'resolved', 'auto_resolved')),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  uuid,
    comment     text
);
CREATE INDEX alert_status_logs_alert ON alert_status_logs (alert_id, changed_at);
CREATE INDEX alert_status_logs_patient ON alert_status_logs (patient_id);

-- Audit trail (SPEC §7), partitioned by month of logged_at. Rows about one patient carry its id
-- so that row-level security can show each patient only their own history.
CREATE TABLE audit_log (
    audit_id         bigint GENERATED ALWAYS AS IDENTITY,
    logged_at        timestamptz NOT NULL DEFAULT now(),
    actor_user_id    uuid,
    db_role          text NOT NULL DEFAULT session_user,
    table_name       text NOT NULL,
    operation        text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'EXPORT', 'BACKUP', 'RESTORE', 'ERASE', 'ACCESS')),
    row_key          text,
    patient_id       uuid,
    row_count        bigint NOT NULL DEFAULT 1,
    changed_columns  text[],
    old_values       jsonb,
    new_values       jsonb,
    transaction_id   xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (audit_id, logged_at)
) PARTITION BY RANGE (logged_at);
CREATE INDEX audit_log_patient ON audit_log (patient_id, logged_at DESC);
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;

-- Creates the week's partition if missing (SECURITY DEFINER: partitions are always owned by
-- kidjamo_owner, whoever runs the maintenance). Rows of that week that had landed in the DEFAULT
-- partition are moved into it (PostgreSQL refuses to create the partition while they are there).
CREATE FUNCTION kidjamo_ensure_week_partition(day date, OUT partition_name text, OUT created boolean, OUT moved_rows bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    week_start date := kidjamo_iso_week_start(day);
    lower_bound timestamptz := week_start::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (week_start + 7)::timestamp AT TIME ZONE 'UTC';
BEGIN
    partition_name := kidjamo_week_partition_name(week_start);
    created := false;
    moved_rows := 0;
    IF to_regclass('public.' || quote_ident(partition_name)) IS NOT NULL THEN
        RETURN;
    END IF;
    LOCK TABLE measurements_default IN ACCESS EXCLUSIVE MODE;
    CREATE TEMP TABLE pg_temp.kidjamo_moving ON COMMIT DROP AS
        WITH moved AS (
            DELETE FROM measurements_default
            WHERE recorded_at >= lower_bound AND recorded_at < upper_bound
            RETURNING *)
        SELECT * FROM moved;
    EXECUTE format('CREATE TABLE public.%I PARTITION OF measurements FOR VALUES FROM (%L) TO (%L)',
                   partition_name, lower_bound, upper_bound);
    INSERT INTO measurements SELECT * FROM pg_temp.kidjamo_moving;
    GET DIAGNOSTICS moved_rows = ROW_COUNT;
    DROP TABLE pg_temp.kidjamo_moving;
    created := true;
END
$$;

CREATE FUNCTION kidjamo_ensure_month_partition(day date, OUT partition_name text, OUT created boolean, OUT moved_rows bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    month_start date := date_trunc('month', day::timestamp)::date;
    lower_bound timestamptz := month_start::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
    partition_name := 'audit_log_' || to_char(month_start, 'YYYY') || 'm' || to_char(month_start, 'MM');
    created := false;
    moved_rows := 0;
    IF to_regclass('public.' || quote_ident(partition_name)) IS NOT NULL THEN
        RETURN;
    END IF;
    LOCK TABLE audit_log_default IN ACCESS EXCLUSIVE MODE;
    CREATE TEMP TABLE pg_temp.kidjamo_moving ON COMMIT DROP AS
        WITH moved AS (
            DELETE FROM audit_log_default
            WHERE logged_at >= lower_bound AND logged_at < upper_bound
            RETURNING *)
        SELECT * FROM moved;
    EXECUTE format('CREATE TABLE public.%I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
                   partition_name, lower_bound, upper_bound);
    INSERT INTO audit_log OVERRIDING SYSTEM VALUE SELECT * FROM pg_temp.kidjamo_moving;
    GET DIAGNOSTICS moved_rows = ROW_COUNT;
    DROP TABLE pg_temp.kidjamo_moving;
    created := true;
END
$$;

REVOKE EXECUTE ON FUNCTION kidjamo_ensure_week_partition(date), kidjamo_ensure_month_partition(date) FROM PUBLIC;

RESET ROLE;
