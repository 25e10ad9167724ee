//! Helpers shared by the end-to-end tests.

#![allow(dead_code, unused_imports, unreachable_pub, missing_docs)]

#[path = "../../tsercom-runtime/tests/common/certs.rs"]
pub mod certs;
pub mod events;
pub mod netns;
pub mod proxy;
pub mod python;
pub mod raw;
pub mod roles;
pub mod stored;

pub use roles::{wait_until, wait_until_blocking, Nudge, Tick, Ticks, Transport, DEADLINE};
pub use stored::wait_until_latest;
