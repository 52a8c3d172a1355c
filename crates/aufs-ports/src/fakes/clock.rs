//! A clock that records sleeps instead of sleeping.

use crate::Clock;
use std::sync::Mutex;
use std::time::Duration;

/// Records every sleep and returns at once.
#[derive(Debug, Default)]
pub struct FakeClock {
    sleeps: Mutex<Vec<Duration>>,
}

impl FakeClock {
    /// The sleeps asked for, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for FakeClock {
    fn sleep(&self, d: Duration) {
        self.sleeps.lock().unwrap().push(d);
    }
}
