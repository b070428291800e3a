-- Bulk loading of a week that has no partition yet (`kidjamo db load`): rows are COPied into a
-- standalone table with the week's range check and no index at all (kidjamo has already left
-- out unknown patients and samples repeated within a file); the finished table gets its key and
-- index built once and is ATTACHed, which makes PostgreSQL validate each foreign key with one
-- anti-join instead of one lookup per row.
-- Both functions are SECURITY DEFINER so the partition belongs to kidjamo_owner whoever loads.
SET LOCAL ROLE kidjamo_owner;

-- Returns the standalone table to fill, or NULL when the week must be loaded the regular way
-- (its partition holds rows, or rows of that week wait in DEFAULT). An empty partition, as
-- `db partitions` creates ahead, is dropped and replaced by the bulk-loaded table.
CREATE FUNCTION kidjamo_bulk_week_begin(day date) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    week_start date := kidjamo_iso_week_start(day);
    lower_bound timestamptz := week_start::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (week_start + 7)::timestamp AT TIME ZONE 'UTC';
    partition text := kidjamo_week_partition_name(week_start);
    loading text := partition || '_loading';
    has_rows boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM measurements_default
               WHERE recorded_at >= lower_bound AND recorded_at < upper_bound) THEN
        RETURN NULL;
    END IF;
    IF to_regclass('public.' || quote_ident(partition)) IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM public.%I)', partition) INTO has_rows;
        IF has_rows THEN
            RETURN NULL;
        END IF;
        EXECUTE format('DROP TABLE public.%I', partition);
    END IF;
    -- A table left by an interrupted load holds nothing committed to measurements: start over.
    EXECUTE format('DROP TABLE IF EXISTS public.%I', loading);
    EXECUTE format('CREATE TABLE public.%I (LIKE measurements INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                        CONSTRAINT week_range CHECK (recorded_at >= %L AND recorded_at < %L))
                    WITH (autovacuum_enabled = false)',
                   loading, lower_bound, upper_bound);
    RETURN loading;
END
$$;

-- Keys, indexes, audits and attaches a filled week; returns the partition's name and how many
-- rows were removed as copies of a sample that came in two files.
CREATE FUNCTION kidjamo_bulk_week_finish(day date, OUT partition_name text, OUT duplicates bigint)
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
    -- A restore is audited once by kidjamo instead (kidjamo_triggers_quiet, sql/0006).
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

REVOKE EXECUTE ON FUNCTION kidjamo_bulk_week_begin(date), kidjamo_bulk_week_finish(date) FROM PUBLIC;

RESET ROLE;
