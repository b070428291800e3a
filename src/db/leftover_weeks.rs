//! Standalone week tables left behind by a `db load` or `restore patient` that was killed.
//!
//! Both fill `measurements_YYYYwWW_loading` tables outside `measurements`, committed while they
//! fill, and attach them at the end (sql/0010). A process killed in between leaves them: they
//! hold patient rows that never reached `measurements`, outside its row-level security and out
//! of sight of `erase patient`. Only the holder of the bulk-weeks lock (`super::lock_bulk_weeks`)
//! uses such tables, so one found while that lock is free — or held by the caller — is garbage.

use super::{query_error, DbError, BULK_WEEKS_LOCK};
use postgres::GenericClient;
use uuid::Uuid;

/// A leftover table and how many rows it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Leftover {
    pub table: String,
    pub rows: i64,
}

/// The `_loading` tables that exist now, in name order, whoever is using them.
fn loading_tables(client: &mut impl GenericClient) -> Result<Vec<String>, DbError> {
    Ok(client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relispartition
                AND c.relname ~ '^measurements_[0-9]{4}w[0-9]{2}_loading$'
              ORDER BY 1",
            &[],
        )
        .map_err(query_error("cannot look for tables left by a killed load"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

fn count(
    client: &mut impl GenericClient,
    table: &str,
    patient: Option<Uuid>,
) -> Result<i64, DbError> {
    let row = match patient {
        Some(p) => client.query_one(
            &format!("SELECT count(*) FROM public.{table} WHERE patient_id = $1"),
            &[&p],
        ),
        None => client.query_one(&format!("SELECT count(*) FROM public.{table}"), &[]),
    };
    Ok(row
        .map_err(query_error(format!("cannot count {table}")))?
        .get(0))
}

/// Counts the rows of each leftover table (of `patient` only, when given); with `drop`, drops
/// the tables too. The caller must hold the bulk-weeks lock.
pub fn sweep_locked(
    client: &mut impl GenericClient,
    patient: Option<Uuid>,
    drop: bool,
) -> Result<Vec<Leftover>, DbError> {
    let mut found = Vec::new();
    for table in loading_tables(client)? {
        let rows = count(client, &table, patient)?;
        if drop {
            client
                .batch_execute(&format!("DROP TABLE public.{table}"))
                .map_err(query_error(format!(
                    "cannot drop {table}, left by a killed load or restore (drop it as kidjamo_owner)"
                )))?;
        }
        found.push(Leftover { table, rows });
    }
    if drop && !found.is_empty() {
        tracing::info!(
            "dropped {} table(s) left by a killed load or restore",
            found.len()
        );
    }
    Ok(found)
}

/// Leftover tables when no load or restore is running (`None` when one is: the tables it has
/// are in use, not left over); with `drop`, drops them. Takes and releases the lock itself.
pub fn sweep(
    client: &mut impl GenericClient,
    drop: bool,
) -> Result<Option<Vec<Leftover>>, DbError> {
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&BULK_WEEKS_LOCK])
        .map_err(query_error("cannot take the bulk-load lock"))?
        .get(0);
    if !free {
        return Ok(None);
    }
    let swept = sweep_locked(client, None, drop);
    let released = client
        .execute("SELECT pg_advisory_unlock($1)", &[&BULK_WEEKS_LOCK])
        .map_err(query_error("cannot release the bulk-load lock"));
    let swept = swept?;
    released?;
    Ok(Some(swept))
}

/// Takes the bulk-weeks lock until the end of the caller's transaction, waiting for a running
/// load or restore.
pub fn lock_for_transaction(client: &mut impl GenericClient) -> Result<(), DbError> {
    super::take_bulk_weeks_lock(client, super::LockScope::Transaction)
}
