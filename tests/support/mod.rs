//! Shared helpers of the integration tests: a fresh PostgreSQL database per test.

#![allow(dead_code)]

pub mod kafka;
pub mod s3;

use std::sync::atomic::{AtomicU32, Ordering};

/// The server the tests use: `KIDJAMO_TEST_PG` (an admin connection URL; scripts/test.sh sets
/// it when it starts a throwaway cluster), else the local server on 127.0.0.1:5432.
pub fn admin_url() -> String {
    std::env::var("KIDJAMO_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test and dropped when the test ends. A missing server fails
/// the test: it never skips.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "kidjamo_t_{tag}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = admin_url();
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL is required for this test and is not reachable at {admin}: {e} (run scripts/test.sh, which starts one)"));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let url = match admin.rfind('/') {
            Some(i) => format!("{}/{name}", &admin[..i]),
            None => panic!("KIDJAMO_TEST_PG must be a URL ending in /database"),
        };
        TestDb { name, url }
    }

    /// The same database, connecting as another role (trust authentication on test servers).
    pub fn url_as(&self, role: &str) -> String {
        let scheme = self.url.find("://").map_or(0, |i| i + 3);
        let at = self.url.rfind('@').expect("test URLs name a user");
        format!("{}{role}{}", &self.url[..scheme], &self.url[at..])
    }

    /// A database with every built-in migration applied.
    pub fn migrated(tag: &str) -> TestDb {
        let db = TestDb::new(tag);
        let list = kidjamo::db::migrations::embedded().expect("embedded migrations");
        kidjamo::db::migrations::migrate(
            &mut db.client(),
            &list,
            None,
            std::time::Duration::from_secs(60),
        )
        .expect("migrate");
        db
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&admin_url(), postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A column of ids as text, whichever way the file stored them: 16 bytes (Parquet's UUID
/// type, which kidjamo's lake tables use and Polars reads as `Binary`) or text.
pub fn id_texts(column: &polars::prelude::Column) -> Vec<Option<String>> {
    if let Ok(bytes) = column.binary() {
        return bytes
            .iter()
            .map(|b| {
                b.map(|b| {
                    let b: [u8; 16] = b.try_into().expect("an id is 16 bytes");
                    uuid::Uuid::from_bytes(b).to_string()
                })
            })
            .collect();
    }
    column
        .str()
        .expect("ids as bytes or text")
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}
