//! The [`Series`] trait: what `#[tsercom::series]` implements for a data or event type.

/// A type that travels in a tsercom stream: a protobuf message with a known schema.
///
/// Implemented by `#[tsercom::series]`; implementing it by hand is possible but the schema
/// text and fingerprint must then be kept in step with the encoding by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tsercom series type",
    label = "not a series type",
    note = "annotate the type with `#[tsercom::series]`"
)]
pub trait Series: prost::Message + Default + Clone + Send + Sync + 'static {
    /// The fully qualified protobuf message name, e.g. `"weather.Reading"`.
    const MESSAGE_NAME: &'static str;

    /// A stable fingerprint of the wire schema of this type and everything it references.
    /// It changes exactly when the bytes on the wire would be read differently.
    fn fingerprint() -> u64;

    /// The complete `.proto` file text for this type and every type it references.
    fn proto() -> String;
}

/// Linear interpolation between two values of a series, for
/// `RemoteDataAggregator::get_interpolated_at`. Implemented by
/// `#[tsercom::series(interpolate)]` for structs of numeric fields.
pub trait Interpolate: Series {
    /// The value a fraction `t` (in `0.0..=1.0`) of the way from `a` to `b`.
    fn interpolate(a: &Self, b: &Self, t: f64) -> Self;
}
