-- Alert workflow (SPEC §4.4, §4.5): every status change is written to alert_status_logs by a
-- trigger, whatever path made it; the functions below are what the application calls.
SET LOCAL ROLE kidjamo_owner;

CREATE FUNCTION kidjamo_log_alert_status() RETURNS trigger
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

CREATE TRIGGER log_status AFTER INSERT OR UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION kidjamo_log_alert_status();

-- Runs as the caller, so row-level security decides which alerts they may touch; returns false
-- when the alert does not exist for them or is not open.
CREATE FUNCTION kidjamo_acknowledge_alert(alert uuid, comment text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('kidjamo.comment', coalesce(comment, ''), true);
    UPDATE alerts
    SET status = 'acknowledged', acknowledged_at = now(), acknowledged_by = kidjamo_acting_user()
    WHERE alert_id = alert AND status IN ('open', 'escalated')
      AND patient_id IN (SELECT kidjamo_patients_for('acknowledge'));
    RETURN FOUND;
END
$$;

CREATE FUNCTION kidjamo_resolve_alert(alert uuid, comment text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('kidjamo.comment', coalesce(comment, ''), true);
    UPDATE alerts
    SET status = 'resolved', resolved_at = now()
    WHERE alert_id = alert AND status IN ('open', 'acknowledged', 'escalated')
      AND patient_id IN (SELECT kidjamo_patients_for('care'));
    RETURN FOUND;
END
$$;

-- Escalates, one level, every critical alert still unacknowledged `after_s` seconds after it was
-- raised or last escalated. Called by `kidjamo db escalate` with the threshold of thresholds.yaml
-- (escalation.critical_unacknowledged_after_s); returns the number escalated.
CREATE FUNCTION kidjamo_escalate_overdue_alerts(after_s integer, at timestamptz DEFAULT now()) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    IF after_s IS NULL OR after_s <= 0 THEN
        RAISE EXCEPTION 'escalation threshold must be a positive number of seconds, got %', after_s;
    END IF;
    PERFORM set_config('kidjamo.comment', format('unacknowledged for %s s', after_s), true);
    UPDATE alerts
    SET status = 'escalated', escalation_level = escalation_level + 1, escalated_at = at
    WHERE severity = 'critical' AND status IN ('open', 'escalated') AND acknowledged_at IS NULL
      AND escalation_level < 10
      AND coalesce(escalated_at, first_seen_at) + make_interval(secs => after_s) <= at;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

REVOKE EXECUTE ON FUNCTION kidjamo_escalate_overdue_alerts(integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kidjamo_acknowledge_alert(uuid, text), kidjamo_resolve_alert(uuid, text) TO kidjamo_app;

RESET ROLE;
