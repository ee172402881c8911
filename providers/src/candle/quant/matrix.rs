//! A weight matrix: a typed view into the model file's memory map.
//!
//! The file is mapped once per loaded model and every matrix borrows its
//! bytes, so a model's resident memory is the pages of the file the
//! forward pass touches (shared with the page cache), not a heap copy.

use std::marker::PhantomData;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::GgmlDType;

use super::super::error::ModelError;
use super::q4_0::BlockQ4_0;
use super::q4_1::BlockQ4_1;
use super::q4_k::BlockQ4K;
use super::q5_0::BlockQ5_0;
use super::q5_1::BlockQ5_1;
use super::q5_k::BlockQ5K;
use super::q6_k::BlockQ6K;
use super::q8_0::BlockQ8_0;
use super::{f16, Block};

/// A model file mapped into memory, shared by its matrices.
pub type Mapped = Arc<memmap2::Mmap>;

/// `len` values of `T` at `offset` in the mapped file.
pub struct View<T> {
    map: Mapped,
    offset: usize,
    len: usize,
    _values: PhantomData<T>,
}

impl<T: Copy> View<T> {
    fn new(map: &Mapped, offset: usize, len: usize, name: &str) -> Result<Self, ModelError> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(offset))
            .filter(|end| *end <= map.len());
        if bytes.is_none() {
            return Err(ModelError::Invalid(format!(
                "{name} ends past the end of the file; the file may be truncated"
            )));
        }
        // GGUF aligns tensor data (32 bytes by default); a file that does
        // not cannot be viewed in place.
        if !(map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<T>()) {
            return Err(ModelError::Invalid(format!(
                "{name} is not aligned in the file"
            )));
        }
        Ok(View {
            map: map.clone(),
            offset,
            len,
            _values: PhantomData,
        })
    }

    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `new` checked that the range lies inside the mapping and
        // is aligned for T; T is a plain-old-data block type (repr(C),
        // integer fields) valid for every bit pattern; the mapping lives as
        // long as `self` holds its Arc and is never written.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(self.offset).cast::<T>(), self.len)
        }
    }
}

/// A matrix's values in the file's own type.
pub enum Data {
    Q4_0(View<BlockQ4_0>),
    Q4_1(View<BlockQ4_1>),
    Q5_0(View<BlockQ5_0>),
    Q5_1(View<BlockQ5_1>),
    Q8_0(View<BlockQ8_0>),
    Q4K(View<BlockQ4K>),
    Q5K(View<BlockQ5K>),
    Q6K(View<BlockQ6K>),
    F16(View<u16>),
    F32(View<f32>),
}

/// A `rows × cols` weight matrix (`cols` is the input width).
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Data,
}

/// GGUF's name for a tensor type (`Q4_K`, not Candle's `Q4K`).
pub fn type_name(t: GgmlDType) -> String {
    let debug = format!("{t:?}");
    match debug.strip_suffix('K') {
        Some(head) if head.starts_with('Q') => format!("{head}_K"),
        _ => debug,
    }
}

impl Matrix {
    /// The 2-D tensor `name`, viewed in the mapped file.
    pub fn load(content: &Content, map: &Mapped, name: &str) -> Result<Self, ModelError> {
        let info = content
            .tensor_infos
            .get(name)
            .ok_or_else(|| ModelError::Missing(name.to_owned()))?;
        let (rows, cols) = match info.shape.dims() {
            [rows, cols] => (*rows, *cols),
            dims => {
                return Err(ModelError::Invalid(format!(
                    "{name} has shape {dims:?}, not 2-D"
                )))
            }
        };
        let offset = usize::try_from(content.tensor_data_offset + info.offset)
            .map_err(|_| ModelError::Invalid(format!("{name} lies beyond the address space")))?;
        fn view<B: Copy>(
            map: &Mapped,
            offset: usize,
            rows: usize,
            cols: usize,
            per_block: usize,
            name: &str,
        ) -> Result<View<B>, ModelError> {
            if !cols.is_multiple_of(per_block) {
                return Err(ModelError::Invalid(format!(
                    "{name}: width {cols} is not a multiple of its block size {per_block}"
                )));
            }
            let blocks = rows.checked_mul(cols / per_block).ok_or_else(|| {
                ModelError::Invalid(format!("{name}: {rows} × {cols} is too large"))
            })?;
            View::new(map, offset, blocks, name)
        }
        macro_rules! blocks {
            ($variant:ident, $block:ty) => {
                Data::$variant(view::<$block>(
                    map,
                    offset,
                    rows,
                    cols,
                    <$block as Block>::VALUES,
                    name,
                )?)
            };
        }
        let data = match info.ggml_dtype {
            GgmlDType::Q4_0 => blocks!(Q4_0, BlockQ4_0),
            GgmlDType::Q4_1 => blocks!(Q4_1, BlockQ4_1),
            GgmlDType::Q5_0 => blocks!(Q5_0, BlockQ5_0),
            GgmlDType::Q5_1 => blocks!(Q5_1, BlockQ5_1),
            GgmlDType::Q8_0 => blocks!(Q8_0, BlockQ8_0),
            GgmlDType::Q4K => blocks!(Q4K, BlockQ4K),
            GgmlDType::Q5K => blocks!(Q5K, BlockQ5K),
            GgmlDType::Q6K => blocks!(Q6K, BlockQ6K),
            GgmlDType::F16 => Data::F16(view(map, offset, rows, cols, 1, name)?),
            GgmlDType::F32 => Data::F32(view(map, offset, rows, cols, 1, name)?),
            other => {
                return Err(ModelError::UnsupportedType {
                    tensor: name.to_owned(),
                    dtype: type_name(other),
                })
            }
        };
        Ok(Matrix { rows, cols, data })
    }

    /// Writes row `i` as f32 into `out` (`cols` long).
    pub fn row(&self, i: usize, out: &mut [f32]) -> Result<(), ModelError> {
        if i >= self.rows {
            return Err(ModelError::Invalid(format!(
                "token id {i} is outside the vocabulary ({})",
                self.rows
            )));
        }
        fn blocks<B: Block>(v: &View<B>, i: usize, cols: usize, out: &mut [f32]) {
            let kb = cols / B::VALUES;
            for (b, o) in v.as_slice()[i * kb..(i + 1) * kb]
                .iter()
                .zip(out.chunks_exact_mut(B::VALUES))
            {
                b.dequantize(o);
            }
        }
        let c = self.cols;
        match &self.data {
            Data::Q4_0(v) => blocks(v, i, c, out),
            Data::Q4_1(v) => blocks(v, i, c, out),
            Data::Q5_0(v) => blocks(v, i, c, out),
            Data::Q5_1(v) => blocks(v, i, c, out),
            Data::Q8_0(v) => blocks(v, i, c, out),
            Data::Q4K(v) => blocks(v, i, c, out),
            Data::Q5K(v) => blocks(v, i, c, out),
            Data::Q6K(v) => blocks(v, i, c, out),
            Data::F16(v) => out
                .iter_mut()
                .zip(&v.as_slice()[i * c..(i + 1) * c])
                .for_each(|(o, &h)| *o = f16::to_f32(h)),
            Data::F32(v) => out.copy_from_slice(&v.as_slice()[i * c..(i + 1) * c]),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_ggufs() {
        assert_eq!(type_name(GgmlDType::Q4K), "Q4_K");
        assert_eq!(type_name(GgmlDType::Q2K), "Q2_K");
        assert_eq!(type_name(GgmlDType::Q8_0), "Q8_0");
        assert_eq!(type_name(GgmlDType::BF16), "BF16");
    }
}
