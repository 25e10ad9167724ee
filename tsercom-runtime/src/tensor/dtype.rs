//! Element types: [`DType`] and the Rust types that are elements ([`Element`]).

use std::fmt;
use std::str::FromStr;

use half::{bf16, f16};

use super::TensorError;

/// The element type of a tensor. Its wire name (`TensorInitializer.dtype`) is the numpy /
/// PyTorch name: `"float32"`, `"int64"`, `"bool"`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// `bool`, one byte (0 or 1).
    Bool,
    /// IEEE 754 half precision (`half::f16`).
    F16,
    /// bfloat16 (`half::bf16`).
    BF16,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `i8`.
    I8,
    /// `u8`.
    U8,
    /// `i16`.
    I16,
    /// `u16`.
    U16,
    /// `i32`.
    I32,
    /// `u32`.
    U32,
    /// `i64`.
    I64,
    /// `u64`.
    U64,
}

impl DType {
    /// Every dtype.
    pub const ALL: [DType; 13] = [
        DType::Bool,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::U32,
        DType::I64,
        DType::U64,
    ];

    /// The size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// The wire name, as numpy and PyTorch spell it.
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
        }
    }

    /// Whether the type is a floating point type (interpolated by the smoothed demuxer).
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// Reads the element at the start of `bytes` (at least [`size`](Self::size) long) as
    /// `f64`.
    pub(crate) fn read_f64(self, b: &[u8]) -> f64 {
        fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
            let mut a = [0u8; N];
            a.copy_from_slice(&b[..N]);
            a
        }
        match self {
            DType::Bool => f64::from(u8::from(b[0] != 0)),
            DType::F16 => f16::from_le_bytes(arr(b)).to_f64(),
            DType::BF16 => bf16::from_le_bytes(arr(b)).to_f64(),
            DType::F32 => f64::from(f32::from_le_bytes(arr(b))),
            DType::F64 => f64::from_le_bytes(arr(b)),
            DType::I8 => f64::from(i8::from_le_bytes(arr(b))),
            DType::U8 => f64::from(b[0]),
            DType::I16 => f64::from(i16::from_le_bytes(arr(b))),
            DType::U16 => f64::from(u16::from_le_bytes(arr(b))),
            DType::I32 => f64::from(i32::from_le_bytes(arr(b))),
            DType::U32 => f64::from(u32::from_le_bytes(arr(b))),
            DType::I64 => i64::from_le_bytes(arr(b)) as f64,
            DType::U64 => u64::from_le_bytes(arr(b)) as f64,
        }
    }

    /// Writes `v` converted to this type (integers rounded and saturated, bool is `v != 0`)
    /// as little-endian bytes to the start of `out`.
    pub(crate) fn write_f64(self, v: f64, out: &mut [u8]) {
        let n = self.size();
        match self {
            DType::Bool => out[0] = u8::from(v != 0.0),
            DType::F16 => out[..n].copy_from_slice(&f16::from_f64(v).to_le_bytes()),
            DType::BF16 => out[..n].copy_from_slice(&bf16::from_f64(v).to_le_bytes()),
            DType::F32 => out[..n].copy_from_slice(&(v as f32).to_le_bytes()),
            DType::F64 => out[..n].copy_from_slice(&v.to_le_bytes()),
            DType::I8 => out[..n].copy_from_slice(&(v.round() as i8).to_le_bytes()),
            DType::U8 => out[0] = v.round() as u8,
            DType::I16 => out[..n].copy_from_slice(&(v.round() as i16).to_le_bytes()),
            DType::U16 => out[..n].copy_from_slice(&(v.round() as u16).to_le_bytes()),
            DType::I32 => out[..n].copy_from_slice(&(v.round() as i32).to_le_bytes()),
            DType::U32 => out[..n].copy_from_slice(&(v.round() as u32).to_le_bytes()),
            DType::I64 => out[..n].copy_from_slice(&(v.round() as i64).to_le_bytes()),
            DType::U64 => out[..n].copy_from_slice(&(v.round() as u64).to_le_bytes()),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = TensorError;

    /// Parses a wire name (case-insensitive, as the reference reads it).
    fn from_str(s: &str) -> Result<Self, TensorError> {
        let lower = s.to_ascii_lowercase();
        DType::ALL
            .into_iter()
            .find(|d| d.name() == lower)
            .ok_or_else(|| TensorError::UnknownDType(s.to_owned()))
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that is a tensor element: `bool`, `half::f16`, `half::bf16`, `f32`, `f64`,
/// and the integer types of 8 to 64 bits.
pub trait Element: sealed::Sealed + Copy + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// Its dtype.
    const DTYPE: DType;
    /// Appends its little-endian bytes.
    fn put_le(self, out: &mut Vec<u8>);
    /// Reads it from little-endian bytes (exactly `DTYPE.size()` long).
    fn from_le(b: &[u8]) -> Self;
}

macro_rules! element {
    ($($ty:ty => $dt:ident),* $(,)?) => {$(
        impl sealed::Sealed for $ty {}
        impl Element for $ty {
            const DTYPE: DType = DType::$dt;
            #[inline]
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn from_le(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$ty>()];
                a.copy_from_slice(b);
                <$ty>::from_le_bytes(a)
            }
        }
    )*};
}

element!(
    f16 => F16, bf16 => BF16, f32 => F32, f64 => F64,
    i8 => I8, u8 => U8, i16 => I16, u16 => U16,
    i32 => I32, u32 => U32, i64 => I64, u64 => U64,
);

impl sealed::Sealed for bool {}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    #[inline]
    fn put_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    #[inline]
    fn from_le(b: &[u8]) -> Self {
        b[0] != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        assert_eq!("FLOAT32".parse::<DType>().unwrap(), DType::F32);
        assert!(matches!(
            "complex64".parse::<DType>(),
            Err(TensorError::UnknownDType(s)) if s == "complex64"
        ));
    }

    #[test]
    fn f64_conversions_round_and_saturate() {
        let mut b = [0u8; 8];
        DType::I8.write_f64(300.0, &mut b);
        assert_eq!(DType::I8.read_f64(&b), 127.0);
        DType::U16.write_f64(-5.0, &mut b);
        assert_eq!(DType::U16.read_f64(&b), 0.0);
        DType::I32.write_f64(2.5, &mut b);
        assert_eq!(DType::I32.read_f64(&b), 3.0);
        DType::BF16.write_f64(1.5, &mut b);
        assert_eq!(DType::BF16.read_f64(&b), 1.5);
        DType::Bool.write_f64(0.2, &mut b);
        assert_eq!(DType::Bool.read_f64(&b), 1.0);
    }
}
