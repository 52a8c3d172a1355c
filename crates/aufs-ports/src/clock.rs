//! Time, for retries: the fake records sleeps instead of waiting.

use std::time::Duration;

/// Sleeping between retries.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Blocks the calling thread for `d`.
    fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}
