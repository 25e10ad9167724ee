//! Helpers shared by the end-to-end tests.

#![allow(dead_code, unreachable_pub, missing_docs)]

#[path = "../../tsercom-runtime/tests/common/certs.rs"]
pub mod certs;
pub mod netns;
pub mod proxy;
pub mod python;
