-- Audit trail (SPEC §7): who (end user and database role), when, table, row key, patient, changed
-- columns, old and new values without secrets. Measurements are audited per statement, one row per
-- patient touched with the number of rows, so a bulk load does not double every write.
SET LOCAL ROLE kidjamo_owner;

-- `kidjamo restore patient` puts rows back exactly as they were, status logs and audit rows
-- included, and `kidjamo erase patient` must not copy the erased personal data into new audit
-- rows: in both, the triggers stay quiet. They do so when the transaction says
-- `SET LOCAL kidjamo.quiet_triggers = 'on'` AND the session belongs to kidjamo_owner (the
-- application role cannot use the switch to write unaudited rows). kidjamo audits the restore or
-- the erasure itself, once.
CREATE FUNCTION kidjamo_triggers_quiet() RETURNS boolean
    LANGUAGE sql STABLE
    RETURN coalesce(current_setting('kidjamo.quiet_triggers', true), '') = 'on'
           AND pg_has_role(session_user, 'kidjamo_owner', 'MEMBER');

-- Columns whose values never enter the audit log (their change is still recorded by name).
CREATE FUNCTION kidjamo_audit_secret_columns() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY['password_hash'];

-- Row trigger. TG_ARGV: the key columns of the table.
CREATE FUNCTION kidjamo_audit_row() RETURNS trigger
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

-- Statement trigger on measurements: one audit row per patient touched by the statement.
CREATE FUNCTION kidjamo_audit_measurements() RETURNS trigger
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

CREATE TRIGGER audit_insert AFTER INSERT ON measurements
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kidjamo_audit_measurements();
CREATE TRIGGER audit_update AFTER UPDATE ON measurements
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kidjamo_audit_measurements();
CREATE TRIGGER audit_delete AFTER DELETE ON measurements
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kidjamo_audit_measurements();

CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION kidjamo_audit_row('user_id');
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON patients
    FOR EACH ROW EXECUTE FUNCTION kidjamo_audit_row('patient_id');
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON device_assignments
    FOR EACH ROW EXECUTE FUNCTION kidjamo_audit_row('device_id', 'assigned_from');
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON caregivers
    FOR EACH ROW EXECUTE FUNCTION kidjamo_audit_row('user_id', 'patient_id');
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON patient_clinicians
    FOR EACH ROW EXECUTE FUNCTION kidjamo_audit_row('patient_id', 'clinician_user_id');
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON treatments
    FOR EACH ROW EXECUTE FUNCTION kidjamo_audit_row('treatment_id');
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON alerts
    FOR EACH ROW EXECUTE FUNCTION kidjamo_audit_row('alert_id');
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON alert_status_logs
    FOR EACH ROW EXECUTE FUNCTION kidjamo_audit_row('log_id');
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON patient_exports
    FOR EACH ROW EXECUTE FUNCTION kidjamo_audit_row('export_id');

RESET ROLE;
