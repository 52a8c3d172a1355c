//! aufsctl: the command line over the aufs driver.
fn main() {}
