//! Routes raft-rs's `slog` records into `tracing`, so the server has one log stream.

use slog::{Drain, Level, OwnedKVList, Record};

struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, _values: &OwnedKVList) -> Result<(), slog::Never> {
        let msg = record.msg().to_string();
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}"),
            Level::Warning => tracing::warn!(target: "raft", "{msg}"),
            Level::Info => tracing::info!(target: "raft", "{msg}"),
            Level::Debug | Level::Trace => tracing::debug!(target: "raft", "{msg}"),
        }
        Ok(())
    }
}

/// A slog logger that forwards to tracing.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
