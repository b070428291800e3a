"""The same Silver + patient_daily logic as `kidjamo etl daily`, written independently in DuckDB,
for the benchmark (scripts/bench-etl.sh). Usage:
    etl_duckdb.py LAKE DATE OUT THRESHOLDS_YAML [KIDJAMO_PATIENT_DAILY_DIR KEY]
Silver: first received copy per message_id, then per (device_id, recorded_at); known patients
only; age group at the sample's date; tiers of five vitals and the heat index from the
thresholds file; trend eligibility (ok, battery_low). patient_daily: per patient, samples,
trend-eligible samples, min/mean/p5/p95/max of five vitals over eligible samples (linear
quantiles), battery and signal statistics. Prints the wall time of each part, and, given
kidjamo's patient_daily and key, the largest difference between the two implementations."""
import hashlib, hmac, sys, time
import duckdb, yaml

lake, date, out, thresholds_path = sys.argv[1:5]
t = yaml.safe_load(open(thresholds_path))
groups = sorted(t["age_groups"].items(), key=lambda kv: kv[1]["min_years"])
age_case = "CASE " + " ".join(
    f"WHEN age >= {g['min_years']} AND age < {g['max_years']} THEN '{gid}'" for gid, g in groups
) + " END"


def band_case(kind, b, col):
    if kind == "lower_is_worse":
        return (f"CASE WHEN {col} <= {b['emergency_max']} THEN 'emergency' WHEN {col} <= {b['alert_max']} "
                f"THEN 'alert' WHEN {col} < {b['normal_min']} THEN 'vigilance' ELSE 'normal' END")
    lo, hi = b["normal"]
    low = ""
    if "low_emergency" in b:
        low += f"WHEN {col} < {b['low_emergency']} THEN 'low_emergency' "
    if "low_alert" in b:
        low += f"WHEN {col} < {b['low_alert']} THEN 'low_alert' "
    return (f"CASE WHEN {col} >= {b['emergency']} THEN 'emergency' WHEN {col} >= {b['alert']} THEN 'alert' "
            f"WHEN {col} > {hi} THEN 'vigilance' {low}WHEN {col} < {lo} THEN 'low_vigilance' ELSE 'normal' END")


def tier_case(vital, col):
    spec = t["vitals"][vital]
    parts = []
    for gid, _ in groups:
        b = spec["groups"].get(gid, spec["groups"].get("all"))
        parts.append(f"WHEN age_group = '{gid}' THEN {band_case(spec['kind'], b, col)}")
    return f"CASE WHEN {col} IS NULL THEN NULL {' '.join(parts)} END"


con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
# NWS heat index, in °C (Steadman below 80 °F, else Rothfusz with adjustments).
con.execute("""
CREATE MACRO hi_f(t, rh) AS CASE
  WHEN (0.5 * (t + 61.0 + (t - 68.0) * 1.2 + rh * 0.094) + t) / 2.0 < 80.0
    THEN 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + rh * 0.094)
  ELSE (-42.379 + 2.04901523 * t + 10.14333127 * rh - 0.22475541 * t * rh - 0.00683783 * t * t
        - 0.05481717 * rh * rh + 0.00122874 * t * t * rh + 0.00085282 * t * rh * rh
        - 0.00000199 * t * t * rh * rh)
       + CASE WHEN rh < 13.0 AND t BETWEEN 80.0 AND 112.0
                THEN -((13.0 - rh) / 4.0) * sqrt((17.0 - abs(t - 95.0)) / 17.0)
              WHEN rh > 85.0 AND t BETWEEN 80.0 AND 87.0
                THEN ((rh - 85.0) / 10.0) * ((87.0 - t) / 5.0)
              ELSE 0 END
END""")
con.execute("CREATE MACRO heat_index_c(c, rh) AS round((hi_f(c * 9.0 / 5.0 + 32.0, rh) - 32.0) * 5.0 / 9.0, 1)")

timings = {}
t0 = time.time()
order = "received_at, ingest_run_id, source, source_offset"
con.execute(f"""
CREATE TEMP TABLE silver AS
WITH bronze AS (
  SELECT * FROM read_parquet('{lake}/bronze/measurements/event_date={date}/*.parquet')
  WHERE recorded_at >= TIMESTAMPTZ '{date} 00:00:00+00' AND recorded_at < TIMESTAMPTZ '{date} 00:00:00+00' + INTERVAL 1 DAY
), by_message AS (
  SELECT * FROM bronze QUALIFY row_number() OVER (PARTITION BY message_id ORDER BY {order}) = 1
), by_sample AS (
  SELECT * FROM by_message QUALIFY row_number() OVER (PARTITION BY device_id, recorded_at ORDER BY {order}) = 1
), aged AS (
  SELECT b.*, date_sub('year', p.birth_date, CAST(b.recorded_at AS DATE)) AS age
  FROM by_sample b JOIN read_parquet('{lake}/reference/patients.parquet') p USING (patient_id)
), grouped AS (
  SELECT * EXCLUDE (age), {age_case} AS age_group,
         heat_index_c(ambient_temperature_c, relative_humidity_pct) AS heat_index_c,
         quality_flag IN ('ok', 'battery_low') AS trend_eligible
  FROM aged
)
SELECT *,
  {tier_case('spo2_pct', 'spo2_pct')} AS spo2_tier,
  {tier_case('heart_rate_bpm', 'heart_rate_bpm')} AS heart_rate_tier,
  {tier_case('respiratory_rate_min', 'respiratory_rate_min')} AS respiratory_rate_tier,
  {tier_case('temperature_c', 'temperature_c')} AS temperature_tier,
  {tier_case('hydration_pct', 'hydration_pct')} AS hydration_tier,
  {tier_case('heat_index_c', 'heat_index_c')} AS heat_index_tier
FROM grouped WHERE age_group IS NOT NULL
""")
con.execute(f"COPY (SELECT * FROM silver ORDER BY patient_id, recorded_at, device_id) TO '{out}/silver.parquet' (FORMAT parquet, COMPRESSION zstd)")
timings["silver"] = time.time() - t0

t1 = time.time()
stats = []
for col, prefix in [("spo2_pct", "spo2"), ("heart_rate_bpm", "heart_rate"), ("respiratory_rate_min", "respiratory_rate"),
                    ("temperature_c", "temperature"), ("hydration_pct", "hydration")]:
    e = f"CAST({col} AS DOUBLE)"
    stats += [f"min({e}) FILTER (trend_eligible) AS {prefix}_min", f"avg({e}) FILTER (trend_eligible) AS {prefix}_mean",
              f"quantile_cont({e}, 0.05) FILTER (trend_eligible) AS {prefix}_p5",
              f"quantile_cont({e}, 0.95) FILTER (trend_eligible) AS {prefix}_p95",
              f"max({e}) FILTER (trend_eligible) AS {prefix}_max"]
con.execute(f"""
COPY (
  SELECT patient_id, count(*) AS samples, count(*) FILTER (trend_eligible) AS trend_eligible_samples,
         {', '.join(stats)},
         min(battery_pct) AS battery_min, avg(battery_pct) AS battery_mean, avg(signal_quality_pct) AS signal_mean,
         avg(CAST(signal_quality_pct < {t['device']['signal_poor_pct']} AS DOUBLE)) AS signal_poor_share
  FROM silver GROUP BY patient_id ORDER BY patient_id
) TO '{out}/patient_daily.parquet' (FORMAT parquet, COMPRESSION zstd)""")
timings["patient_daily"] = time.time() - t1
rows = con.execute("SELECT count(*) FROM silver").fetchall()[0][0]
print(f"duckdb {duckdb.__version__}: silver {rows} rows in {timings['silver']:.2f} s, patient_daily in {timings['patient_daily']:.2f} s, total {sum(timings.values()):.2f} s")

if len(sys.argv) > 6:
    kid_dir, key = sys.argv[5], sys.argv[6].encode()
    cols = ["samples", "spo2_mean", "heart_rate_p95", "temperature_p5", "hydration_max"]
    sel = ", ".join(cols)
    ours = {r[0]: r[1:] for r in duckdb.sql(f"SELECT patient_id, {sel} FROM read_parquet('{out}/patient_daily.parquet')").fetchall()}
    theirs = {r[0]: r[1:] for r in duckdb.sql(f"SELECT patient_key, {sel} FROM read_parquet('{kid_dir}/*.parquet')").fetchall()}
    worst = [0.0] * len(cols)
    matched = 0
    for pid, row in ours.items():
        other = theirs.get(hmac.new(key, pid.encode(), hashlib.sha256).hexdigest())
        if other is None:
            continue
        matched += 1
        for i, (a, b) in enumerate(zip(row, other)):
            if (a is None) != (b is None):
                worst[i] = float("inf")
            elif a is not None:
                worst[i] = max(worst[i], abs(a - b))
    print(f"cross-check on {matched} of {len(ours)} patients (kidjamo has {len(theirs)}): max |Δ| " +
          ", ".join(f"{c} {w:.3g}" for c, w in zip(cols, worst)))
