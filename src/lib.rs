//! kidjamo: simulation, streaming, batch ETL, database and audit tooling for remote monitoring
//! of people living with sickle-cell disease. The library is usable without the command line.

pub mod audit;
pub mod config;
pub mod db;
pub mod domain;
pub mod etl;
pub mod id_hash;
pub mod jobs;
pub mod lake;
pub mod output;
pub mod progress;
pub mod serve;
pub mod simulate;
pub mod storage;
pub mod stream;
