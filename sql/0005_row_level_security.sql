-- Row-level security (SPEC §7). The application connects as kidjamo_app and names the end user of
-- each transaction with SET LOCAL kidjamo.user_id = '<users.user_id>'. Without it, it sees nothing.
-- Access levels, by the end user's role and links:
--   read         the patient themself, their caregivers, their clinicians, admins
--   record       the patient themself, their clinicians, admins      (new measurements)
--   acknowledge  caregivers with can_acknowledge_alerts, clinicians, admins
--   care         their clinicians, admins                            (treatments, alerts, medical fields)
--   manage       admins                                              (links, devices, exports)
-- The kidjamo_owner role reaches every row through explicit `tool_all` policies: FORCE makes even
-- the owner go through policies, so nothing bypasses them silently.
SET LOCAL ROLE kidjamo_owner;

CREATE FUNCTION kidjamo_acting_user() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN nullif(current_setting('kidjamo.user_id', true), '')::uuid;

-- SECURITY DEFINER: the link tables are themselves under RLS; reading them as the owner is what
-- lets a caregiver's policy find the caregiver's patients (the earlier platform's policies read
-- them as the caller and found nothing).
CREATE FUNCTION kidjamo_patients_for(access text) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH me AS (
        SELECT user_id, role FROM users
        WHERE user_id = kidjamo_acting_user() AND is_active
    )
    SELECT p.patient_id FROM patients p, me
    WHERE me.role = 'admin'
    UNION
    SELECT p.patient_id FROM patients p JOIN me ON p.user_id = me.user_id
    WHERE me.role = 'patient' AND access IN ('read', 'record')
    UNION
    SELECT c.patient_id FROM caregivers c JOIN me ON c.user_id = me.user_id
    WHERE me.role = 'caregiver'
      AND (access = 'read' OR (access = 'acknowledge' AND c.can_acknowledge_alerts))
    UNION
    SELECT pc.patient_id FROM patient_clinicians pc JOIN me ON pc.clinician_user_id = me.user_id
    WHERE me.role = 'clinician' AND access IN ('read', 'record', 'acknowledge', 'care')
$$;

-- Users the end user may see: themself, and the people around the patients they may read.
CREATE FUNCTION kidjamo_visible_users() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT kidjamo_acting_user() WHERE kidjamo_acting_user() IS NOT NULL
    UNION
    SELECT u.user_id FROM users u
    WHERE EXISTS (SELECT 1 FROM users me WHERE me.user_id = kidjamo_acting_user() AND me.role = 'admin' AND me.is_active)
    UNION
    SELECT p.user_id FROM patients p WHERE p.patient_id IN (SELECT kidjamo_patients_for('read'))
    UNION
    SELECT c.user_id FROM caregivers c WHERE c.patient_id IN (SELECT kidjamo_patients_for('read'))
    UNION
    SELECT pc.clinician_user_id FROM patient_clinicians pc WHERE pc.patient_id IN (SELECT kidjamo_patients_for('read'))
$$;

REVOKE EXECUTE ON FUNCTION kidjamo_patients_for(text), kidjamo_visible_users() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kidjamo_patients_for(text), kidjamo_visible_users() TO kidjamo_app, kidjamo_analyst;

-- Every patient-data table: RLS enabled and forced, the tool's policy, and reading by `read`.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'patients', 'device_assignments', 'caregivers', 'patient_clinicians',
                             'treatments', 'measurements', 'alerts', 'alert_status_logs', 'audit_log',
                             'patient_exports'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tool_all ON %I TO kidjamo_owner USING (true) WITH CHECK (true)', t);
        IF t <> 'users' THEN
            EXECUTE format('CREATE POLICY linked_read ON %I FOR SELECT TO kidjamo_app, kidjamo_analyst '
                           'USING (patient_id IN (SELECT kidjamo_patients_for(''read'')))', t);
        END IF;
    END LOOP;
END
$$;

CREATE POLICY visible_read ON users FOR SELECT TO kidjamo_app, kidjamo_analyst
    USING (user_id IN (SELECT kidjamo_visible_users()));
CREATE POLICY self_update ON users FOR UPDATE TO kidjamo_app
    USING (user_id = kidjamo_acting_user()) WITH CHECK (user_id = kidjamo_acting_user());

CREATE POLICY care_update ON patients FOR UPDATE TO kidjamo_app
    USING (patient_id IN (SELECT kidjamo_patients_for('care')))
    WITH CHECK (patient_id IN (SELECT kidjamo_patients_for('care')));

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['device_assignments', 'caregivers', 'patient_clinicians'] LOOP
        EXECUTE format('CREATE POLICY manage_insert ON %I FOR INSERT TO kidjamo_app '
                       'WITH CHECK (patient_id IN (SELECT kidjamo_patients_for(''manage'')))', t);
        EXECUTE format('CREATE POLICY manage_update ON %I FOR UPDATE TO kidjamo_app '
                       'USING (patient_id IN (SELECT kidjamo_patients_for(''manage''))) '
                       'WITH CHECK (patient_id IN (SELECT kidjamo_patients_for(''manage'')))', t);
        EXECUTE format('CREATE POLICY manage_delete ON %I FOR DELETE TO kidjamo_app '
                       'USING (patient_id IN (SELECT kidjamo_patients_for(''manage'')))', t);
    END LOOP;
END
$$;

CREATE POLICY care_insert ON treatments FOR INSERT TO kidjamo_app
    WITH CHECK (patient_id IN (SELECT kidjamo_patients_for('care')));
CREATE POLICY care_update ON treatments FOR UPDATE TO kidjamo_app
    USING (patient_id IN (SELECT kidjamo_patients_for('care')))
    WITH CHECK (patient_id IN (SELECT kidjamo_patients_for('care')));

CREATE POLICY record_insert ON measurements FOR INSERT TO kidjamo_app
    WITH CHECK (patient_id IN (SELECT kidjamo_patients_for('record')));

CREATE POLICY care_insert ON alerts FOR INSERT TO kidjamo_app
    WITH CHECK (patient_id IN (SELECT kidjamo_patients_for('care')));
CREATE POLICY acknowledge_update ON alerts FOR UPDATE TO kidjamo_app
    USING (patient_id IN (SELECT kidjamo_patients_for('acknowledge')))
    WITH CHECK (patient_id IN (SELECT kidjamo_patients_for('acknowledge')));

-- The application may add audit rows (for example "viewed the record") in its own name, about
-- patients it may read; it can never change or delete one.
CREATE POLICY own_insert ON audit_log FOR INSERT TO kidjamo_app
    WITH CHECK (actor_user_id = kidjamo_acting_user()
                AND (patient_id IS NULL OR patient_id IN (SELECT kidjamo_patients_for('read'))));

CREATE POLICY manage_insert ON patient_exports FOR INSERT TO kidjamo_app
    WITH CHECK (patient_id IN (SELECT kidjamo_patients_for('manage')));

-- Grants: tables start with none (PUBLIC included); each role gets exactly what it needs.
GRANT SELECT ON users, patients, devices, device_assignments, caregivers, clinicians, patient_clinicians,
                treatments, measurement_quality, measurements, alerts, alert_status_logs, audit_log,
                patient_exports
    TO kidjamo_app, kidjamo_analyst;
GRANT UPDATE (email, phone) ON users TO kidjamo_app;
GRANT UPDATE (weight_kg, height_cm, city, country, emergency_contact_name, emergency_contact_phone,
              current_device_id) ON patients TO kidjamo_app;
GRANT INSERT, UPDATE, DELETE ON device_assignments, caregivers, patient_clinicians TO kidjamo_app;
GRANT INSERT, UPDATE ON treatments TO kidjamo_app;
GRANT INSERT ON measurements TO kidjamo_app;
GRANT INSERT ON alerts TO kidjamo_app;
GRANT UPDATE (status, acknowledged_at, acknowledged_by, resolved_at) ON alerts TO kidjamo_app;
GRANT INSERT ON audit_log, patient_exports TO kidjamo_app;

RESET ROLE;
-- The ledger is the migrator's business only.
REVOKE ALL ON kidjamo_schema_migrations FROM PUBLIC;
