//! Conversions between [`Tensor`] and `ndarray` arrays (cargo feature `ndarray`).

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::{Element, Tensor, TensorError};

impl Tensor {
    /// A tensor from an `ndarray` array of any dimension. Copies the elements once, in
    /// row-major order (a standard-layout array is read as one slice).
    pub fn from_ndarray<T: Element>(array: ArrayViewD<'_, T>) -> Result<Self, TensorError> {
        let shape = array.shape().to_vec();
        match array.as_slice() {
            Some(s) => Tensor::from_slice(shape, s),
            None => Tensor::from_vec(shape, array.iter().copied().collect()),
        }
    }

    /// The tensor as an owned `ndarray` array of `T`, which must be its dtype.
    pub fn to_ndarray<T: Element>(&self) -> Result<ArrayD<T>, TensorError> {
        let values = self.to_vec::<T>()?;
        let got = values.len();
        ArrayD::from_shape_vec(IxDyn(self.shape()), values).map_err(|_| TensorError::Length {
            expected: self.shape().iter().product(),
            got,
        })
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{arr2, Array3};

    use super::*;
    use crate::tensor::DType;

    #[test]
    fn round_trips_standard_and_transposed_layouts() {
        let a = arr2(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]).into_dyn();
        let t = Tensor::from_ndarray(a.view()).unwrap();
        assert_eq!((t.dtype(), t.shape()), (DType::F32, &[2usize, 3][..]));
        assert_eq!(t.to_ndarray::<f32>().unwrap(), a);
        let tr = a.t().to_owned();
        let t = Tensor::from_ndarray(a.t()).unwrap();
        assert_eq!(t.to_ndarray::<f32>().unwrap(), tr);
        let cube = Array3::<u16>::from_shape_fn((2, 2, 2), |(i, j, k)| (i * 4 + j * 2 + k) as u16)
            .into_dyn();
        let t = Tensor::from_ndarray(cube.view()).unwrap();
        assert_eq!(t.to_vec::<u16>().unwrap(), (0..8).collect::<Vec<u16>>());
        assert!(t.to_ndarray::<i16>().is_err());
    }
}
