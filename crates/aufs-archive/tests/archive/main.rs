//! Integration tests of aufs-archive: round trips, changes, hostile input, exact bytes.

mod util;

mod changes;
mod exact;
mod goref;
mod hostile;
mod roundtrip;
mod views;
