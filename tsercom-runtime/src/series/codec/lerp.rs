//! [`Lerp`]: linear interpolation of the numeric field types, for
//! `#[series(interpolate)]`.

use crate::Timestamp;

/// `a + (b - a) * t`.
#[inline]
pub fn lerp_f64(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

/// Linear interpolation of numeric field types (integers round to nearest).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be interpolated",
    label = "not a numeric field",
    note = "`#[series(interpolate)]` needs fields of type f64, f32, i32, i64, u32, u64, tsercom::Timestamp, or Option or Vec of those"
)]
pub trait Lerp: Sized {
    /// The value a fraction `t` of the way from `a` to `b`.
    fn lerp(a: &Self, b: &Self, t: f64) -> Self;
}

macro_rules! lerp_int {
    ($($ty:ty),*) => {$(
        impl Lerp for $ty {
            #[inline]
            fn lerp(a: &Self, b: &Self, t: f64) -> Self {
                lerp_f64(*a as f64, *b as f64, t).round() as $ty
            }
        }
    )*};
}
lerp_int!(i32, i64, u32, u64);

impl Lerp for f64 {
    #[inline]
    fn lerp(a: &Self, b: &Self, t: f64) -> Self {
        lerp_f64(*a, *b, t)
    }
}
impl Lerp for f32 {
    #[inline]
    fn lerp(a: &Self, b: &Self, t: f64) -> Self {
        lerp_f64(f64::from(*a), f64::from(*b), t) as f32
    }
}
impl Lerp for Timestamp {
    #[inline]
    fn lerp(a: &Self, b: &Self, t: f64) -> Self {
        let d = (b.as_nanos() as i128 - a.as_nanos() as i128) as f64 * t;
        Timestamp::from_nanos((a.as_nanos() as i128 + d.round() as i128) as i64)
    }
}
/// Element by element when both have the same length, else the nearer side.
impl<T: Lerp + Clone> Lerp for Vec<T> {
    fn lerp(a: &Self, b: &Self, t: f64) -> Self {
        if a.len() == b.len() {
            a.iter().zip(b).map(|(x, y)| T::lerp(x, y, t)).collect()
        } else if t < 0.5 {
            a.clone()
        } else {
            b.clone()
        }
    }
}

impl<T: Lerp + Clone> Lerp for Option<T> {
    fn lerp(a: &Self, b: &Self, t: f64) -> Self {
        match (a, b) {
            (Some(a), Some(b)) => Some(T::lerp(a, b, t)),
            _ if t < 0.5 => a.clone(),
            _ => b.clone(),
        }
    }
}
