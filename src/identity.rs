//! Proving an identity: the sizes and errors of the Ed25519 proof behind an
//! [`Identity`](crate::Identity) (a [`CallerId`](crate::CallerId) with the key that
//! proves it). See the README's "Security" section for what is proved and when.

pub use tsercom_runtime::identity::{
    KeyError, ProofError, NONCE_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN,
};
