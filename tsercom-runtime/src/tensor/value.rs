//! [`Tensor`] (a typed dense tensor) and [`TensorSpec`] (what both ends of a stream know).

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use super::{Chunk, DType, Element, TensorError, Update};
use crate::time::Timestamp;
use crate::wire;

/// The largest tensor (in element bytes) this crate builds, decodes or receives: 1 GiB.
/// A peer cannot make a receiver allocate more than this by announcing a large shape.
pub const MAX_TENSOR_BYTES: usize = 1 << 30;

fn checked_len(dtype: DType, shape: &[usize]) -> Result<usize, TensorError> {
    let mut n: u128 = 1;
    for d in shape {
        n = n.saturating_mul(*d as u128);
    }
    let bytes = n.saturating_mul(dtype.size() as u128);
    if bytes > MAX_TENSOR_BYTES as u128 {
        return Err(TensorError::TooLarge(bytes));
    }
    Ok(n as usize)
}

fn fill_bytes(dtype: DType, len: usize, fill: f64) -> Vec<u8> {
    let size = dtype.size();
    let mut one = [0u8; 8];
    dtype.write_f64(fill, &mut one);
    if one[..size].iter().all(|b| *b == 0) {
        return vec![0u8; len * size];
    }
    let mut out = Vec::with_capacity(len * size);
    for _ in 0..len {
        out.extend_from_slice(&one[..size]);
    }
    out
}

/// `len` zero bytes without allocating or writing them: a slice of one shared zeroed
/// region (allocated zeroed, so its pages cost memory only once read), grown to the
/// largest length asked for.
fn shared_zeros(len: usize) -> Bytes {
    static ZEROS: std::sync::Mutex<Bytes> = std::sync::Mutex::new(Bytes::from_static(&[]));
    let mut zeros = ZEROS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if zeros.len() < len {
        let size = len
            .max(4096)
            .checked_next_power_of_two()
            .unwrap_or(len)
            .min(MAX_TENSOR_BYTES)
            .max(len);
        *zeros = Bytes::from(vec![0u8; size]);
    }
    zeros.slice(..len)
}

/// The element bytes of `len` elements of `fill`: shared zeros when they are all zero
/// bytes (no allocation, no writes), otherwise a new buffer.
fn filled(dtype: DType, len: usize, fill: f64) -> Bytes {
    let mut one = [0u8; 8];
    dtype.write_f64(fill, &mut one);
    if one.iter().all(|b| *b == 0) {
        shared_zeros(len * dtype.size())
    } else {
        Bytes::from(fill_bytes(dtype, len, fill))
    }
}

/// A dense tensor: dtype, shape and little-endian element bytes in row-major order.
///
/// Cloning shares the bytes. A `Tensor` is a series type (encoded as a self-contained
/// `tsercom.TensorInitializer` with one chunk holding every element), so it can be a
/// runtime's data type or a field of a `#[tsercom::series]` struct.
///
/// ```
/// # mod tsercom { pub use tsercom_runtime::tensor::{DType, Tensor}; }
/// use tsercom::{DType, Tensor};
///
/// let t = Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4])?;
/// assert_eq!(t.dtype(), DType::I32);
/// assert_eq!(t.len(), 4);
/// assert_eq!(t.to_vec::<i32>()?, [1, 2, 3, 4]);
/// assert_eq!(t.as_bytes()[..4], 1i32.to_le_bytes());
/// # Ok::<(), tsercom_runtime::tensor::TensorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Bytes,
}

impl Default for Tensor {
    /// A scalar `0.0f32` (shape `[]`, one element): what an empty message decodes to.
    fn default() -> Self {
        Tensor {
            dtype: DType::F32,
            shape: Vec::new(),
            data: Bytes::from_static(&[0, 0, 0, 0]),
        }
    }
}

impl Tensor {
    /// A tensor of `dtype` and `shape` over little-endian element bytes (not copied when
    /// given as [`Bytes`] or `Vec<u8>`).
    pub fn new(
        dtype: DType,
        shape: Vec<usize>,
        data: impl Into<Bytes>,
    ) -> Result<Self, TensorError> {
        let data = data.into();
        let len = checked_len(dtype, &shape)?;
        if data.len() != len * dtype.size() {
            return Err(TensorError::Length {
                expected: len,
                got: data.len() / dtype.size(),
            });
        }
        Ok(Tensor { dtype, shape, data })
    }

    /// A tensor from elements in row-major order.
    pub fn from_vec<T: Element>(shape: Vec<usize>, values: Vec<T>) -> Result<Self, TensorError> {
        Self::from_slice(shape, &values)
    }

    /// A tensor from elements in row-major order.
    pub fn from_slice<T: Element>(shape: Vec<usize>, values: &[T]) -> Result<Self, TensorError> {
        let mut data = Vec::with_capacity(values.len() * T::DTYPE.size());
        for v in values {
            v.put_le(&mut data);
        }
        Self::new(T::DTYPE, shape, data)
    }

    /// A tensor with every element `fill` (converted to `dtype`).
    pub fn full(dtype: DType, shape: Vec<usize>, fill: f64) -> Result<Self, TensorError> {
        let len = checked_len(dtype, &shape)?;
        Ok(Tensor {
            dtype,
            data: filled(dtype, len, fill),
            shape,
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape (empty for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The little-endian element bytes, row-major.
    pub fn as_bytes(&self) -> &Bytes {
        &self.data
    }

    /// The element bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// The same elements under another shape with as many elements.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Self, TensorError> {
        Tensor::new(self.dtype, shape, self.data)
    }

    /// The elements as `T`, which must be the tensor's dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, TensorError> {
        if T::DTYPE != self.dtype {
            return Err(TensorError::DTypeMismatch {
                expected: T::DTYPE,
                got: self.dtype,
            });
        }
        Ok(self
            .data
            .chunks_exact(self.dtype.size())
            .map(T::from_le)
            .collect())
    }

    /// Element `i` (flat index) converted to `f64`.
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        let size = self.dtype.size();
        let start = i.checked_mul(size)?;
        let b = self.data.get(start..start.checked_add(size)?)?;
        Some(self.dtype.read_f64(b))
    }

    /// The [`TensorSpec`] of this tensor's dtype and shape with `fill`.
    pub fn spec(&self, fill: f64) -> TensorSpec {
        TensorSpec {
            dtype: self.dtype,
            shape: self.shape.clone(),
            fill,
        }
    }

    fn data_chunk(&self) -> Chunk {
        Chunk {
            timestamp: Timestamp::UNIX_EPOCH,
            starting_index: 0,
            data: self.data.clone(),
            compression: super::Compression::None,
        }
    }

    fn initial_state_len(&self) -> usize {
        if self.data.is_empty() {
            return 0;
        }
        let chunk = encoding::message::encoded_len(1, &self.data_chunk());
        encoding::key_len(4) + encoding::encoded_len_varint(chunk as u64) + chunk
    }

    /// Applies the chunks of a decoded `initial_state` onto this tensor's elements.
    fn apply_initial_state(&mut self, update: &Update) -> Result<(), TensorError> {
        let len = self.len();
        if let [only] = update.chunks.as_slice() {
            let (start, bytes) = only.elements(self.dtype, len)?;
            if start == 0 && bytes.len() == self.data.len() {
                self.data = bytes; // the whole tensor: no copy
                return Ok(());
            }
        }
        let mut data = self.data.to_vec();
        for c in &update.chunks {
            let (start, bytes) = c.elements(self.dtype, len)?;
            let at = start * self.dtype.size();
            data[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        self.data = Bytes::from(data);
        Ok(())
    }
}

#[allow(deprecated)] // prost offers no other way to describe a custom error
fn decode_err(e: TensorError) -> DecodeError {
    DecodeError::new(format!("invalid tensor: {e}"))
}

/// Encoded as `tsercom.TensorInitializer { shape, dtype, fill_value = 0, initial_state =
/// { chunks = [ every element at index 0, uncompressed ] } }`. Decoding reads any valid
/// initializer (fill value, several chunks, LZ4) in field order and checks it.
impl prost::Message for Tensor {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.shape.is_empty() {
            let dims: Vec<i64> = self.shape.iter().map(|d| *d as i64).collect();
            encoding::int64::encode_packed(1, &dims, buf);
        }
        encoding::string::encode(2, &self.dtype.name().to_owned(), buf);
        if !self.data.is_empty() {
            let chunk = self.data_chunk();
            let chunk_len = encoding::message::encoded_len(1, &chunk);
            encoding::encode_key(4, WireType::LengthDelimited, buf);
            encoding::encode_varint(chunk_len as u64, buf);
            encoding::message::encode(1, &chunk, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let mut dims: Vec<i64> = Vec::new();
                encoding::int64::merge_repeated(wire_type, &mut dims, buf, ctx)?;
                let mut shape = self.shape.clone();
                for d in &dims {
                    let d = usize::try_from(*d)
                        .map_err(|_| decode_err(TensorError::Shape(dims.clone())))?;
                    shape.push(d);
                }
                *self = Tensor::full(self.dtype, shape, 0.0).map_err(decode_err)?;
                Ok(())
            }
            2 => {
                let mut name = String::new();
                encoding::string::merge(wire_type, &mut name, buf, ctx)?;
                let dtype: DType = name.parse().map_err(decode_err)?;
                *self = Tensor::full(dtype, std::mem::take(&mut self.shape), 0.0)
                    .map_err(decode_err)?;
                Ok(())
            }
            3 => {
                let mut fill = 0.0f64;
                encoding::double::merge(wire_type, &mut fill, buf, ctx)?;
                *self = Tensor::full(self.dtype, std::mem::take(&mut self.shape), fill)
                    .map_err(decode_err)?;
                Ok(())
            }
            4 => {
                let mut update = Update::default();
                encoding::message::merge(wire_type, &mut update, buf, ctx)?;
                self.apply_initial_state(&update).map_err(decode_err)
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let shape = if self.shape.is_empty() {
            0
        } else {
            let dims: Vec<i64> = self.shape.iter().map(|d| *d as i64).collect();
            encoding::int64::encoded_len_packed(1, &dims)
        };
        shape
            + encoding::string::encoded_len(2, &self.dtype.name().to_owned())
            + self.initial_state_len()
    }

    fn clear(&mut self) {
        *self = Tensor::default();
    }
}

/// What both ends of a tensor stream know before the first update: dtype, shape and the
/// fill value every element starts from (`TensorInitializer` without its initial state).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The element type.
    pub dtype: DType,
    /// The shape.
    pub shape: Vec<usize>,
    /// The value every element holds before any update.
    pub fill: f64,
}

impl TensorSpec {
    /// A spec; fails for a shape over [`MAX_TENSOR_BYTES`].
    pub fn new(dtype: DType, shape: Vec<usize>, fill: f64) -> Result<Self, TensorError> {
        checked_len(dtype, &shape)?;
        Ok(TensorSpec { dtype, shape, fill })
    }

    /// A flat tensor of `len` elements.
    pub fn flat(dtype: DType, len: usize, fill: f64) -> Result<Self, TensorError> {
        Self::new(dtype, vec![len], fill)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor before any update: every element `fill`.
    pub fn initial(&self) -> Tensor {
        Tensor {
            dtype: self.dtype,
            shape: self.shape.clone(),
            data: filled(self.dtype, self.len(), self.fill),
        }
    }

    pub(crate) fn fill_bytes(&self) -> Vec<u8> {
        fill_bytes(self.dtype, self.len(), self.fill)
    }

    /// The `TensorInitializer` of this spec with `initial_state`.
    pub fn to_initializer(&self, initial_state: &Update) -> wire::TensorInitializer {
        wire::TensorInitializer {
            shape: self.shape.iter().map(|d| *d as i64).collect(),
            dtype: self.dtype.name().to_owned(),
            fill_value: self.fill,
            initial_state: Some(initial_state.to_wire()),
        }
    }

    /// The spec and initial state of a `TensorInitializer` from a peer, checked.
    pub fn from_initializer(init: &wire::TensorInitializer) -> Result<(Self, Update), TensorError> {
        let dtype: DType = init.dtype.parse()?;
        let shape = init
            .shape
            .iter()
            .map(|d| usize::try_from(*d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TensorError::Shape(init.shape.clone()))?;
        let spec = TensorSpec::new(dtype, shape, init.fill_value)?;
        let update = match &init.initial_state {
            Some(u) => Update::from_wire(u)?,
            None => Update::default(),
        };
        Ok((spec, update))
    }
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};
    use prost::Message;

    use super::*;
    use crate::tensor::{Compression, CompressionPolicy};

    #[test]
    fn every_dtype_round_trips_through_the_initializer_encoding() {
        let tensors = [
            Tensor::from_vec(vec![3], vec![true, false, true]).unwrap(),
            Tensor::from_vec(vec![2], vec![f16::from_f32(1.5), f16::from_f32(-2.0)]).unwrap(),
            Tensor::from_vec(vec![2], vec![bf16::from_f32(1.5), bf16::from_f32(-2.0)]).unwrap(),
            Tensor::from_vec(vec![2, 2], vec![1.0f32, -0.0, f32::NAN, 4.0]).unwrap(),
            Tensor::from_vec(vec![1], vec![std::f64::consts::PI]).unwrap(),
            Tensor::from_vec(vec![2], vec![-1i8, 1]).unwrap(),
            Tensor::from_vec(vec![2], vec![255u8, 0]).unwrap(),
            Tensor::from_vec(vec![2], vec![-300i16, 7]).unwrap(),
            Tensor::from_vec(vec![2], vec![65535u16, 1]).unwrap(),
            Tensor::from_vec(vec![2], vec![i32::MIN, 7]).unwrap(),
            Tensor::from_vec(vec![2], vec![u32::MAX, 7]).unwrap(),
            Tensor::from_vec(vec![2], vec![i64::MIN, 7]).unwrap(),
            Tensor::from_vec(vec![2], vec![u64::MAX, 7]).unwrap(),
            Tensor::from_vec(vec![0, 3], Vec::<f32>::new()).unwrap(),
            Tensor::from_vec(vec![], vec![5u16]).unwrap(),
        ];
        for t in tensors {
            let bytes = t.encode_to_vec();
            assert_eq!(bytes.len(), t.encoded_len());
            assert_eq!(Tensor::decode(&bytes[..]).unwrap(), t, "{t:?}");
            // The generated TensorInitializer reads it as the reference would.
            let init = wire::TensorInitializer::decode(&bytes[..]).unwrap();
            assert_eq!(init.dtype, t.dtype().name());
            let (spec, update) = TensorSpec::from_initializer(&init).unwrap();
            assert_eq!(spec.shape, t.shape());
            let raw: usize = update.chunks.iter().map(|c| c.data.len()).sum();
            assert_eq!(raw, t.as_bytes().len());
        }
    }

    #[test]
    fn an_initializer_with_fill_and_compressed_chunks_decodes() {
        let spec = TensorSpec::flat(DType::I16, 6, 7.0).unwrap();
        let chunk = Chunk::encode(
            Timestamp::from_nanos(5),
            4,
            Bytes::from_static(&[1, 0, 2, 0]),
            CompressionPolicy::Never,
        );
        let mut lz4 = chunk.clone();
        lz4.data = Bytes::from(crate::tensor::chunk::lz4_compress(&[1, 0, 2, 0]).unwrap());
        lz4.compression = Compression::Lz4;
        let init = spec.to_initializer(&Update { chunks: vec![lz4] });
        let t = Tensor::decode(&init.encode_to_vec()[..]).unwrap();
        assert_eq!(t.to_vec::<i16>().unwrap(), [7, 7, 7, 7, 1, 2]);
    }

    #[test]
    fn bad_initializers_are_decode_errors() {
        let mut init = TensorSpec::flat(DType::F32, 2, 0.0)
            .unwrap()
            .to_initializer(&Update::default());
        init.dtype = "complex128".into();
        assert!(Tensor::decode(&init.encode_to_vec()[..]).is_err());
        init.dtype = "float32".into();
        init.shape = vec![-1];
        assert!(Tensor::decode(&init.encode_to_vec()[..]).is_err());
        init.shape = vec![1 << 40];
        assert!(
            Tensor::decode(&init.encode_to_vec()[..]).is_err(),
            "no 4 TiB allocation"
        );
        init.shape = vec![2];
        init.initial_state = Some(
            Update {
                chunks: vec![Chunk::encode(
                    Timestamp::UNIX_EPOCH,
                    1,
                    Bytes::from_static(&[0; 8]),
                    CompressionPolicy::Never,
                )],
            }
            .to_wire(),
        );
        assert!(
            Tensor::decode(&init.encode_to_vec()[..]).is_err(),
            "past the end"
        );
    }

    #[test]
    fn decoding_a_dense_tensor_copies_nothing_and_zero_fills_share_memory() {
        let t = Tensor::from_vec(vec![1 << 16], vec![1.5f32; 1 << 16]).unwrap();
        let wire = Bytes::from(t.encode_to_vec());
        let back = Tensor::decode(wire.clone()).unwrap();
        assert_eq!(back, t);
        let inside = wire.as_ptr_range();
        assert!(
            inside.contains(&back.as_bytes().as_ptr()),
            "the frame's bytes"
        );
        // Fill-zero tensors (what decoding starts from) neither allocate nor write.
        let a = Tensor::full(DType::F32, vec![1 << 20], 0.0).unwrap();
        let b = Tensor::full(DType::I64, vec![1 << 19], 0.0).unwrap();
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        assert!(a.as_bytes().iter().all(|x| *x == 0));
        assert_eq!(
            Tensor::full(DType::F32, vec![2], -0.0)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()[0]
                .to_bits(),
            (-0.0f32).to_bits()
        );
    }

    #[test]
    fn constructors_check_lengths_and_dtypes() {
        assert!(matches!(
            Tensor::new(DType::F32, vec![2], vec![0u8; 7]),
            Err(TensorError::Length {
                expected: 2,
                got: 1
            })
        ));
        let t = Tensor::full(DType::U8, vec![2, 2], 3.0).unwrap();
        assert_eq!(t.to_vec::<u8>().unwrap(), [3; 4]);
        assert!(matches!(
            t.to_vec::<i8>(),
            Err(TensorError::DTypeMismatch { .. })
        ));
        assert_eq!(t.clone().reshape(vec![4]).unwrap().shape(), [4]);
        assert!(t.reshape(vec![5]).is_err());
        assert!(matches!(
            Tensor::full(DType::F64, vec![1 << 28, 8], 0.0),
            Err(TensorError::TooLarge(_))
        ));
    }
}
