//! How library code reports progress without drawing anything: the command line implements
//! this trait with a progress bar, tests and libraries use `NoProgress`.

pub trait Progress: Send + Sync {
    /// `total` units are expected (0 when unknown).
    fn on_start(&self, total: u64);
    fn on_advance(&self, units: u64);
    fn on_finish(&self);
    /// The stage now running (shown beside the bar).
    fn on_stage(&self, _stage: &str) {}
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn on_start(&self, _total: u64) {}
    fn on_advance(&self, _units: u64) {}
    fn on_finish(&self) {}
}
