//! Limits of a [`CallerId`](crate::CallerId), a source's persistent identity.

pub use tsercom_runtime::ids::MAX_CALLER_ID_LEN;
