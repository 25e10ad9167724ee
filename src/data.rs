//! What an aggregator received, beyond the types at the crate root
//! ([`RemoteDataAggregator`](crate::RemoteDataAggregator), [`Reader`](crate::Reader),
//! [`Subscription`](crate::Subscription), [`Timestamped`](crate::Timestamped),
//! [`NewData`](crate::NewData), [`CallerEvent`](crate::CallerEvent),
//! [`DataError`](crate::DataError)): building a stand-alone aggregator store, its
//! statistics and limits.

pub use tsercom_runtime::data::{
    DataStats, Inserted, RemoteDataAggregatorBuilder, DEFAULT_MAX_AHEAD, DEFAULT_MAX_CALLERS,
};
