-- `kidjamo restore patient` puts rows back exactly as they were, status logs and audit rows
-- included, and `kidjamo erase patient` must not copy the erased personal data into new audit
-- rows: in both, the triggers stay quiet. They do so when the transaction says
-- `SET LOCAL kidjamo.quiet_triggers = 'on'` AND the session belongs to kidjamo_owner (the
-- application role cannot use the switch to write unaudited rows). kidjamo audits the restore or
-- the erasure itself, once.
SET LOCAL ROLE kidjamo_owner;

CREATE FUNCTION kidjamo_triggers_quiet() RETURNS boolean
    LANGUAGE sql STABLE
    RETURN coalesce(current_setting('kidjamo.quiet_triggers', true), '') = 'on'
           AND pg_has_role(session_user, 'kidjamo_owner', 'MEMBER');

CREATE OR REPLACE FUNCTION kidjamo_log_alert_status() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF kidjamo_triggers_quiet() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.escalation_level IS DISTINCT FROM OLD.escalation_level THEN
        INSERT INTO alert_status_logs (alert_id, patient_id, status, changed_by, comment)
        VALUES (NEW.alert_id, NEW.patient_id, NEW.status, kidjamo_acting_user(),
                nullif(current_setting('kidjamo.comment', true), ''));
    END IF;
    RETURN NULL;
END
$$;

-- The audit triggers of 0006, with the same guard in front.
CREATE OR REPLACE FUNCTION kidjamo_audit_row() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    any_row jsonb := coalesce(new_row, old_row);
    secrets text[] := kidjamo_audit_secret_columns();
    changed text[];
    key text;
    patient uuid;
BEGIN
    IF kidjamo_triggers_quiet() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        SELECT array_agg(n.key ORDER BY n.key) INTO changed
        FROM jsonb_each(new_row) n
        WHERE n.value IS DISTINCT FROM old_row -> n.key;
        IF changed IS NULL THEN
            RETURN NULL; -- nothing changed: nothing to record
        END IF;
        SELECT jsonb_object_agg(c, old_row -> c), jsonb_object_agg(c, new_row -> c)
        INTO old_row, new_row
        FROM unnest(changed) c WHERE c <> ALL (secrets);
    ELSE
        SELECT array_agg(k ORDER BY k) INTO changed FROM jsonb_object_keys(any_row) k;
        old_row := old_row - secrets;
        new_row := new_row - secrets;
    END IF;
    SELECT string_agg(any_row ->> k, '/') INTO key FROM unnest(TG_ARGV) k;
    IF TG_TABLE_NAME = 'users' THEN
        SELECT p.patient_id INTO patient FROM patients p WHERE p.user_id = (any_row ->> 'user_id')::uuid;
    ELSE
        patient := (any_row ->> 'patient_id')::uuid;
    END IF;
    INSERT INTO audit_log (actor_user_id, table_name, operation, row_key, patient_id, changed_columns,
                           old_values, new_values)
    VALUES (kidjamo_acting_user(), TG_TABLE_NAME, TG_OP, key, patient, changed, old_row, new_row);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION kidjamo_audit_measurements() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF kidjamo_triggers_quiet() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO audit_log (actor_user_id, table_name, operation, row_key, patient_id, row_count)
        SELECT kidjamo_acting_user(), 'measurements', TG_OP,
               min(recorded_at)::text || ' .. ' || max(recorded_at)::text, patient_id, count(*)
        FROM old_rows GROUP BY patient_id;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO audit_log (actor_user_id, table_name, operation, row_key, patient_id, row_count)
        SELECT kidjamo_acting_user(), 'measurements', TG_OP,
               min(recorded_at)::text || ' .. ' || max(recorded_at)::text, patient_id, count(*)
        FROM new_rows GROUP BY patient_id;
    ELSE
        INSERT INTO audit_log (actor_user_id, table_name, operation, row_key, patient_id, row_count,
                               changed_columns)
        SELECT kidjamo_acting_user(), 'measurements', TG_OP,
               min(n.recorded_at)::text || ' .. ' || max(n.recorded_at)::text, n.patient_id, count(*),
               (SELECT array_agg(DISTINCT c.key ORDER BY c.key)
                FROM old_rows o2 JOIN new_rows n2 USING (device_id, recorded_at),
                     jsonb_each(to_jsonb(n2)) c
                WHERE n2.patient_id = n.patient_id AND c.value IS DISTINCT FROM to_jsonb(o2) -> c.key)
        FROM new_rows n GROUP BY n.patient_id;
    END IF;
    RETURN NULL;
END
$$;

-- The bulk loading of 0010, used by restore too, with the same guard on its audit rows.
CREATE OR REPLACE FUNCTION kidjamo_bulk_week_finish(day date, OUT partition_name text, OUT duplicates bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    week_start date := kidjamo_iso_week_start(day);
    lower_bound timestamptz := week_start::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (week_start + 7)::timestamp AT TIME ZONE 'UTC';
    loading text := kidjamo_week_partition_name(week_start) || '_loading';
BEGIN
    partition_name := kidjamo_week_partition_name(week_start);
    duplicates := 0;
    BEGIN
        EXECUTE format('ALTER TABLE public.%I ADD PRIMARY KEY (device_id, recorded_at)', loading);
    EXCEPTION WHEN unique_violation THEN
        -- The same sample in two files (two runs over one day): keep the first received.
        EXECUTE format('DELETE FROM public.%I t USING (
                            SELECT ctid AS row_ctid, row_number() OVER (
                                PARTITION BY device_id, recorded_at ORDER BY received_at, ctid) AS n
                            FROM public.%I) d
                        WHERE t.ctid = d.row_ctid AND d.n > 1', loading, loading);
        GET DIAGNOSTICS duplicates = ROW_COUNT;
        EXECUTE format('ALTER TABLE public.%I ADD PRIMARY KEY (device_id, recorded_at)', loading);
    END;
    -- Rows of this week that reached DEFAULT meanwhile join the table (ATTACH requires it).
    LOCK TABLE measurements_default IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('INSERT INTO public.%I SELECT * FROM measurements_default
                    WHERE recorded_at >= %L AND recorded_at < %L ON CONFLICT DO NOTHING',
                   loading, lower_bound, upper_bound);
    DELETE FROM measurements_default WHERE recorded_at >= lower_bound AND recorded_at < upper_bound;
    EXECUTE format('CREATE INDEX ON public.%I (patient_id, recorded_at DESC)', loading);
    -- The audit trigger fires on statements against measurements; this table is not one yet.
    -- A restore is audited once by kidjamo instead (see kidjamo_triggers_quiet above).
    IF NOT kidjamo_triggers_quiet() THEN
    EXECUTE format('INSERT INTO audit_log (actor_user_id, table_name, operation, row_key, patient_id, row_count)
                    SELECT kidjamo_acting_user(), ''measurements'', ''INSERT'',
                           min(recorded_at)::text || '' .. '' || max(recorded_at)::text, patient_id, count(*)
                    FROM public.%I GROUP BY patient_id', loading);
    END IF;
    EXECUTE format('ALTER TABLE measurements ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                   loading, lower_bound, upper_bound);
    EXECUTE format('ALTER TABLE public.%I RENAME TO %I', loading, partition_name);
    -- Vacuum was off while the table filled (it would only compete with the load for CPU).
    EXECUTE format('ALTER TABLE public.%I RESET (autovacuum_enabled)', partition_name);
END
$$;

RESET ROLE;
