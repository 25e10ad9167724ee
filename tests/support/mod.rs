//! Helpers shared by the end-to-end tests.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod netns;
pub mod proxy;
pub mod python;
