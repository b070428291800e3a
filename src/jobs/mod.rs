//! Whole jobs that tie the library's parts together for one command: they read and write
//! through the adapters and report through `Progress`, and contain no command-line concerns.

pub mod simulate;
pub mod simulate_tables;
