-- kidjamo: no-transaction
-- Built CONCURRENTLY so that adding it to a live database does not block alert writes; this is
-- why the file runs outside a transaction.
CREATE INDEX CONCURRENTLY IF NOT EXISTS alerts_open_by_severity
    ON alerts (severity, first_seen_at) WHERE status IN ('open', 'escalated');
