-- Measurement quality codes (SPEC §2.3): the reference that measurements.quality_flag points to.
-- severity: 0 ok, 1 info, 2 warning, 3 error. Only ok and battery_low feed trends and vital rules.
CREATE TABLE measurement_quality (
    code            text PRIMARY KEY,
    severity        smallint NOT NULL CHECK (severity BETWEEN 0 AND 3),
    trend_eligible  boolean NOT NULL,
    requires_review boolean NOT NULL,
    description     text NOT NULL
);

INSERT INTO measurement_quality (code, severity, trend_eligible, requires_review, description) VALUES
    ('ok',            0, true,  false, 'valid measurement'),
    ('calibrating',   1, false, false, 'sensor calibrating after being put on'),
    ('user_removed',  1, false, false, 'device not worn (removed or charging)'),
    ('motion',        2, false, false, 'motion artefact during the reading'),
    ('low_signal',    2, false, false, 'weak optical signal'),
    ('low_perfusion', 2, false, false, 'low peripheral perfusion'),
    ('noise',         2, false, false, 'noisy signal'),
    ('battery_low',   2, true,  false, 'battery low; reading still valid'),
    ('sensor_drop',   3, false, true,  'sensor lost contact'),
    ('signal_loss',   3, false, true,  'signal lost'),
    ('out_of_range',  3, false, true,  'sensor reported a value outside its range'),
    ('checksum_fail', 3, false, true,  'payload checksum failed on the device'),
    ('device_error',  3, false, true,  'device reported an internal error'),
    ('flatline',      3, false, true,  'device detected a frozen signal');
