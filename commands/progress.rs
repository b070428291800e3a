//! The library's `Progress` drawn as an indicatif bar on stderr, or nothing when stderr is not
//! a terminal, with --quiet, or with -v (log lines and a bar do not mix).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kidjamo::progress::Progress;
use std::io::IsTerminal;

pub struct Bar(ProgressBar);

impl Bar {
    pub fn new(label: &str, quiet: bool, verbose: u8) -> Bar {
        let visible = !quiet && verbose == 0 && std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:40}] {percent:>3}% {elapsed_precise} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        Bar(bar)
    }
}

impl Progress for Bar {
    fn on_start(&self, total: u64) {
        self.0.set_length(total);
    }

    fn on_advance(&self, units: u64) {
        self.0.inc(units);
    }

    fn on_finish(&self) {
        self.0.finish_and_clear();
    }

    fn on_stage(&self, stage: &str) {
        self.0.set_message(stage.to_string());
    }
}
