//! `kidjamo serve`: the ingestion API (SPEC §2, §3). Devices POST measurements over HTTP; each
//! record is validated with the stream's domain code, valid ones are produced to the
//! measurements topic and rejected ones to the quarantine topic, and the answer waits for the
//! broker. Devices authenticate with a bearer token or an HMAC signature (see `auth`).

pub mod auth;
pub mod body;
pub mod credentials;
pub mod http;
pub mod ingest;
pub mod metrics;
