-- Device credentials for `kidjamo serve` (ingestion API). Only what checks a token is kept:
-- SHA-256 of the token's secret and the HMAC signing key derived from it, never the token.
-- No grants: the analyst and app roles cannot read it; the ingestion service connects as the
-- owner (or a role the operator grants SELECT to).
CREATE TABLE device_credentials (
    device_id     uuid PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    token_sha256  bytea NOT NULL CHECK (length(token_sha256) = 32),
    signing_key   bytea NOT NULL CHECK (length(signing_key) = 32),
    issued_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
REVOKE ALL ON device_credentials FROM PUBLIC;
