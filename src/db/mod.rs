//! PostgreSQL (SPEC §7): migrations, partitions, bulk load, dashboards and alert escalation.

pub mod copy;
pub mod copy_split;
pub mod erase;
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
