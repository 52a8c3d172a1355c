//! In-memory fakes.
