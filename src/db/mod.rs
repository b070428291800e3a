//! PostgreSQL (SPEC §7): migrations, partitions, bulk load, dashboards and alert escalation.

pub mod copy;
pub mod copy_count;
pub mod copy_split;
pub mod erase;
pub mod leftover_weeks;
pub mod load;
pub mod maintenance;
pub mod migrations;
pub mod partitions;
pub mod patient_archive;

use postgres::{Client, NoTls};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        target: String,
        source: postgres::Error,
    },
    #[error("{context}: {source}")]
    Query {
        context: String,
        source: postgres::Error,
    },
}

pub fn query_error(context: impl Into<String>) -> impl FnOnce(postgres::Error) -> DbError {
    let context = context.into();
    move |source| DbError::Query { context, source }
}

/// Connects; the error names the host and database, never the password.
pub fn connect(url: &str) -> Result<Client, DbError> {
    Client::connect(url, NoTls).map_err(|source| DbError::Connect {
        target: redact_url(url),
        source,
    })
}

/// Key of the session-level advisory lock held by whoever has standalone week tables under way
/// (`db load`, `restore patient`). `kidjamo_bulk_week_begin` starts a week over from any
/// `_loading` table it finds (one left by a killed load), so two loaders of the same week must
/// not overlap: the second waits until the first is done. ("kjbulkwk" in ASCII.)
pub const BULK_WEEKS_LOCK: i64 = 0x6b6a_6275_6c6b_776b;

/// Takes the bulk-weeks lock on `client` for as long as the connection lives, waiting for the
/// loader that holds it (logged, since the wait has no bound of its own).
pub fn lock_bulk_weeks(client: &mut Client) -> Result<(), DbError> {
    take_bulk_weeks_lock(client, LockScope::Session)
}

pub(crate) enum LockScope {
    /// Held until the connection closes.
    Session,
    /// Held until the transaction ends.
    Transaction,
}

pub(crate) fn take_bulk_weeks_lock(
    client: &mut impl postgres::GenericClient,
    scope: LockScope,
) -> Result<(), DbError> {
    let infix = match scope {
        LockScope::Session => "",
        LockScope::Transaction => "_xact",
    };
    let got: bool = client
        .query_one(
            &format!("SELECT pg_try_advisory{infix}_lock($1)"),
            &[&BULK_WEEKS_LOCK],
        )
        .map_err(query_error("cannot take the bulk-load lock"))?
        .get(0);
    if !got {
        tracing::info!("another load or restore is filling new weeks; waiting for it to finish");
        client
            .execute(
                &format!("SELECT pg_advisory{infix}_lock($1)"),
                &[&BULK_WEEKS_LOCK],
            )
            .map_err(query_error("cannot take the bulk-load lock"))?;
    }
    Ok(())
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_url_drops_the_password_only() {
        assert_eq!(
            super::redact_url("postgres://app:s3cret@db:5432/k"),
            "postgres://app@db:5432/k"
        );
        assert_eq!(
            super::redact_url("host=localhost user=x"),
            "host=localhost user=x"
        );
    }
}
