//! `kidjamo db refresh` and `kidjamo db escalate`: the dashboards' materialized views and the
//! escalation of unacknowledged critical alerts (SPEC §4.4, §7).

use super::{query_error, DbError};
use postgres::Client;
use std::time::{Duration, Instant};

/// The materialized views, refreshed in this order.
pub const MATERIALIZED_VIEWS: [&str; 2] = ["mv_patient_latest", "mv_patient_weekly"];

/// Refreshes every view CONCURRENTLY (readers are never blocked); returns each one's duration.
/// A view never populated cannot be refreshed concurrently, so its first refresh is a plain one.
pub fn refresh(client: &mut Client) -> Result<Vec<(&'static str, Duration)>, DbError> {
    let mut done = Vec::new();
    for view in MATERIALIZED_VIEWS {
        let populated: bool = client
            .query_one(
                "SELECT ispopulated FROM pg_matviews WHERE matviewname = $1",
                &[&view],
            )
            .map_err(query_error(format!(
                "cannot find {view}; run `kidjamo db migrate`"
            )))?
            .get(0);
        let how = if populated { "CONCURRENTLY " } else { "" };
        let started = Instant::now();
        client
            .batch_execute(&format!("REFRESH MATERIALIZED VIEW {how}{view}"))
            .map_err(query_error(format!("cannot refresh {view}")))?;
        done.push((view, started.elapsed()));
    }
    Ok(done)
}

/// Escalates critical alerts unacknowledged for `after_s` seconds; returns how many.
pub fn escalate(client: &mut Client, after_s: u32) -> Result<i32, DbError> {
    let after = i32::try_from(after_s).unwrap_or(i32::MAX);
    Ok(client
        .query_one("SELECT kidjamo_escalate_overdue_alerts($1)", &[&after])
        .map_err(query_error("cannot escalate alerts"))?
        .get(0))
}
