-- Dashboards (SPEC §7): materialized views with unique indexes (so `kidjamo db refresh` can
-- refresh them CONCURRENTLY), readable by the owner only. The application reads them through
-- functions that keep the rows of patients the end user may read; plain views are
-- security_invoker, so row-level security applies to whoever queries them.
SET LOCAL ROLE kidjamo_owner;

-- Latest trend-eligible sample and open alerts per patient. Alerts are aggregated on their own
-- before the join, so counts never multiply each other.
CREATE MATERIALIZED VIEW mv_patient_latest AS
SELECT p.patient_id,
       l.recorded_at AS last_recorded_at,
       l.spo2_pct, l.heart_rate_bpm, l.respiratory_rate_min, l.temperature_c, l.hydration_pct,
       l.battery_pct, l.signal_quality_pct, l.quality_flag,
       coalesce(a.open_alerts, 0) AS open_alerts,
       a.highest_severity
FROM patients p
LEFT JOIN LATERAL (
    SELECT m.recorded_at, m.spo2_pct, m.heart_rate_bpm, m.respiratory_rate_min, m.temperature_c,
           m.hydration_pct, m.battery_pct, m.signal_quality_pct, m.quality_flag
    FROM measurements m
    JOIN measurement_quality q ON q.code = m.quality_flag AND q.trend_eligible
    WHERE m.patient_id = p.patient_id
    ORDER BY m.recorded_at DESC
    LIMIT 1
) l ON true
LEFT JOIN (
    SELECT patient_id, count(*) AS open_alerts,
           (array_agg(severity ORDER BY kidjamo_severity_rank(severity) DESC))[1] AS highest_severity
    FROM alerts
    WHERE status IN ('open', 'acknowledged', 'escalated')
    GROUP BY patient_id
) a ON a.patient_id = p.patient_id;
CREATE UNIQUE INDEX mv_patient_latest_key ON mv_patient_latest (patient_id);

-- Per patient and ISO week (UTC): trend-eligible statistics and alert counts.
CREATE MATERIALIZED VIEW mv_patient_weekly AS
WITH weekly AS (
    SELECT m.patient_id,
           kidjamo_iso_week_start((m.recorded_at AT TIME ZONE 'UTC')::date) AS week_start,
           count(*) AS samples,
           count(*) FILTER (WHERE q.trend_eligible) AS eligible_samples,
           count(DISTINCT (m.recorded_at AT TIME ZONE 'UTC')::date) AS days_monitored,
           avg(m.spo2_pct) FILTER (WHERE q.trend_eligible) AS spo2_mean,
           min(m.spo2_pct) FILTER (WHERE q.trend_eligible) AS spo2_min,
           stddev_samp(m.spo2_pct) FILTER (WHERE q.trend_eligible) AS spo2_stddev,
           avg(m.heart_rate_bpm) FILTER (WHERE q.trend_eligible) AS heart_rate_mean,
           avg(m.temperature_c) FILTER (WHERE q.trend_eligible) AS temperature_mean,
           max(m.temperature_c) FILTER (WHERE q.trend_eligible) AS temperature_max,
           avg(m.hydration_pct) FILTER (WHERE q.trend_eligible) AS hydration_mean
    FROM measurements m
    JOIN measurement_quality q ON q.code = m.quality_flag
    GROUP BY 1, 2
), weekly_alerts AS (
    SELECT patient_id,
           kidjamo_iso_week_start((first_seen_at AT TIME ZONE 'UTC')::date) AS week_start,
           count(*) AS alerts,
           count(*) FILTER (WHERE severity = 'critical') AS critical_alerts
    FROM alerts
    GROUP BY 1, 2
)
SELECT w.*, coalesce(a.alerts, 0) AS alerts, coalesce(a.critical_alerts, 0) AS critical_alerts
FROM weekly w
LEFT JOIN weekly_alerts a USING (patient_id, week_start);
CREATE UNIQUE INDEX mv_patient_weekly_key ON mv_patient_weekly (patient_id, week_start);

CREATE FUNCTION kidjamo_latest_vitals() RETURNS SETOF mv_patient_latest
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT * FROM mv_patient_latest WHERE patient_id IN (SELECT kidjamo_patients_for('read'))
$$;

CREATE FUNCTION kidjamo_weekly_trends() RETURNS SETOF mv_patient_weekly
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT * FROM mv_patient_weekly WHERE patient_id IN (SELECT kidjamo_patients_for('read'))
$$;

CREATE VIEW v_measurements_enriched WITH (security_invoker = true) AS
SELECT m.*, q.severity AS quality_severity, q.trend_eligible, q.requires_review
FROM measurements m
JOIN measurement_quality q ON q.code = m.quality_flag;

CREATE VIEW v_open_alerts WITH (security_invoker = true) AS
SELECT a.alert_id, a.patient_id, a.rule_id, a.severity, a.title, a.first_seen_at, a.last_seen_at,
       a.status, a.escalation_level, a.suggested_actions
FROM alerts a
WHERE a.status IN ('open', 'acknowledged', 'escalated');

REVOKE ALL ON mv_patient_latest, mv_patient_weekly FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kidjamo_latest_vitals(), kidjamo_weekly_trends() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kidjamo_latest_vitals(), kidjamo_weekly_trends() TO kidjamo_app, kidjamo_analyst;
GRANT SELECT ON v_measurements_enriched, v_open_alerts TO kidjamo_app, kidjamo_analyst;

RESET ROLE;
