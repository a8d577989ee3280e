//! Shared code of the integration tests: `mod support;` in a test crate.

pub mod erl;
