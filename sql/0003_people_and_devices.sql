-- People, links and devices (SPEC §2.2). CHECKs hold for every row the simulator writes and never
-- depend on the current date.
SET LOCAL ROLE kidjamo_owner;

CREATE TABLE users (
    user_id        uuid PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('patient', 'caregiver', 'clinician', 'admin')),
    given_name     text NOT NULL CHECK (length(given_name) BETWEEN 1 AND 100),
    family_name    text NOT NULL CHECK (length(family_name) BETWEEN 1 AND 100),
    email          text UNIQUE CHECK (email ~* '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$'),
    phone          text CHECK (phone ~ '^\+?[0-9 .-]{6,20}$'),
    -- Set by the application's login flow; never exported, never audited in clear.
    password_hash  text,
    is_active      boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz
);

CREATE TABLE devices (
    device_id         uuid PRIMARY KEY,
    model             text NOT NULL,
    firmware_version  text NOT NULL CHECK (firmware_version ~ '^[0-9]+\.[0-9]+\.[0-9]+$')
);

CREATE TABLE patients (
    patient_id               uuid PRIMARY KEY,
    user_id                  uuid NOT NULL UNIQUE REFERENCES users ON DELETE CASCADE,
    sex                      text NOT NULL CHECK (sex IN ('F', 'M')),
    birth_date               date NOT NULL CHECK (birth_date >= DATE '1900-01-01'),
    genotype                 text NOT NULL CHECK (genotype IN ('SS', 'SC', 'AS', 'Sβ0', 'Sβ+')),
    weight_kg                numeric(5, 2) CHECK (weight_kg > 0 AND weight_kg < 500),
    height_cm                numeric(5, 1) CHECK (height_cm > 0 AND height_cm < 300),
    city                     text,
    country                  text NOT NULL,
    emergency_contact_name   text,
    emergency_contact_phone  text CHECK (emergency_contact_phone ~ '^\+?[0-9 .-]{6,20}$'),
    current_device_id        uuid REFERENCES devices ON DELETE SET NULL,
    created_at               timestamptz NOT NULL DEFAULT now()
);

-- Which patient wore which device when: [assigned_from, assigned_to).
CREATE TABLE device_assignments (
    device_id      uuid NOT NULL REFERENCES devices ON DELETE CASCADE,
    patient_id     uuid NOT NULL REFERENCES patients ON DELETE CASCADE,
    assigned_from  timestamptz NOT NULL,
    assigned_to    timestamptz CHECK (assigned_to > assigned_from),
    PRIMARY KEY (device_id, assigned_from)
);
CREATE INDEX device_assignments_patient ON device_assignments (patient_id);

CREATE TABLE caregivers (
    user_id                 uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    patient_id              uuid NOT NULL REFERENCES patients ON DELETE CASCADE,
    relationship            text NOT NULL CHECK (relationship IN ('parent', 'guardian', 'family')),
    priority                smallint NOT NULL CHECK (priority BETWEEN 1 AND 3),
    can_acknowledge_alerts  boolean NOT NULL DEFAULT true,
    PRIMARY KEY (user_id, patient_id)
);
CREATE INDEX caregivers_patient ON caregivers (patient_id);

CREATE TABLE clinicians (
    user_id         uuid PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    license_number  text NOT NULL,
    specialty       text NOT NULL,
    hospital        text NOT NULL
);

CREATE TABLE patient_clinicians (
    patient_id         uuid NOT NULL REFERENCES patients ON DELETE CASCADE,
    clinician_user_id  uuid NOT NULL REFERENCES clinicians ON DELETE CASCADE,
    role               text NOT NULL CHECK (role IN ('primary_physician', 'specialist', 'emergency', 'consultant')),
    is_primary         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (patient_id, clinician_user_id),
    CHECK (NOT is_primary OR role = 'primary_physician')
);
CREATE UNIQUE INDEX patient_clinicians_one_primary ON patient_clinicians (patient_id) WHERE is_primary;
CREATE INDEX patient_clinicians_clinician ON patient_clinicians (clinician_user_id);

CREATE TABLE treatments (
    treatment_id        uuid PRIMARY KEY,
    patient_id          uuid NOT NULL REFERENCES patients ON DELETE CASCADE,
    drug_name           text NOT NULL,
    dosage              text,
    frequency           text,
    start_date          date NOT NULL,
    end_date            date CHECK (end_date >= start_date),
    prescriber_user_id  uuid REFERENCES clinicians ON DELETE SET NULL,
    notes               text
);
CREATE INDEX treatments_patient ON treatments (patient_id);

-- Exports, backups, restores and erasures done for a patient (SPEC §8). patient_id has no foreign
-- key on purpose: the record of an erasure outlives the patient it erased.
CREATE TABLE patient_exports (
    export_id     uuid PRIMARY KEY,
    patient_id    uuid NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('export', 'backup', 'restore', 'erasure')),
    requested_by  uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    file_sha256   text CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    row_counts    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX patient_exports_patient ON patient_exports (patient_id);

RESET ROLE;
