//! Tests of the Linux adapters against the real kernel. Those that need
//! root skip with a printed reason otherwise.

mod util;

mod create_and_write;
mod locks;
mod mounts;
mod remove_all;
mod statfs;
