//! Storages (byte ranges of the archive) and tensors (views into them: dtype, shape, strides,
//! offset), checked against each other when the pickle rebuilds them, and read into plain
//! bytes or `tch::Tensor`s only when asked.

use super::pickle::Value;
use std::borrow::Cow;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Element types of the storages this reader takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }
    /// torch's name (`float32`, `bfloat16`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }
    /// From a storage class name (`FloatStorage`); `None` for the ones not read here
    /// (complex, quantized, float8, unsigned wider than 8 bits).
    pub fn from_storage_type(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "DoubleStorage" => DType::F64,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" | "UntypedStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
    /// From a torch dtype's attribute name (`float32`, `half`, …).
    pub fn from_torch_name(name: &str) -> Option<Self> {
        Some(match name {
            "float32" | "float" => DType::F32,
            "float16" | "half" => DType::F16,
            "bfloat16" => DType::BF16,
            "float64" | "double" => DType::F64,
            "int64" | "long" => DType::I64,
            "int32" | "int" => DType::I32,
            "int16" | "short" => DType::I16,
            "int8" => DType::I8,
            "uint8" => DType::U8,
            "bool" => DType::Bool,
            _ => return None,
        })
    }
    pub fn kind(self) -> tch::Kind {
        use tch::Kind;
        match self {
            DType::F32 => Kind::Float,
            DType::F16 => Kind::Half,
            DType::BF16 => Kind::BFloat16,
            DType::F64 => Kind::Double,
            DType::I64 => Kind::Int64,
            DType::I32 => Kind::Int,
            DType::I16 => Kind::Int16,
            DType::I8 => Kind::Int8,
            DType::U8 => Kind::Uint8,
            DType::Bool => Kind::Bool,
        }
    }
}

/// The open archive the storages are read from.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub(super) file: Mutex<File>,
    pub(super) file_len: u64,
    /// The `byteorder` record said "big": elements are swapped when read.
    pub big_endian: bool,
}

/// One storage: `numel` elements of `dtype` at a byte range of the archive.
#[derive(Debug)]
pub struct Storage {
    /// Its name in the archive (`data/<key>`).
    pub key: String,
    pub dtype: DType,
    pub numel: u64,
    /// Where it lived when saved (`cpu`, `cuda:0`, `mps`); it is read onto the CPU.
    pub location: String,
    pub(super) source: Arc<Source>,
    pub(super) offset: u64,
    pub(super) crc32: u32,
}

impl Storage {
    pub fn byte_len(&self) -> u64 {
        self.numel * self.dtype.size() as u64
    }
    /// Reads the storage's bytes (little-endian), checking the archive's CRC-32.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        let mut bytes = {
            let mut f = self.source.file.lock().map_err(|_| "the file handle was poisoned by a panic".to_string())?;
            super::zip::read_at(&mut f, self.source.file_len, self.offset, self.byte_len())?
        };
        if crc32fast::hash(&bytes) != self.crc32 {
            return Err(format!("data/{}: CRC-32 mismatch, the file is corrupt", self.key));
        }
        if self.source.big_endian {
            let n = self.dtype.size();
            if n > 1 {
                bytes.chunks_exact_mut(n).for_each(<[u8]>::reverse);
            }
        }
        Ok(bytes)
    }
}

/// A tensor of the file: a view (shape, strides, offset in elements) into a storage. Reading
/// its values goes to the file.
#[derive(Debug, Clone)]
pub struct TensorRef {
    pub dtype: DType,
    pub shape: Vec<i64>,
    pub strides: Vec<i64>,
    pub offset: i64,
    pub requires_grad: bool,
    /// Saved as an `nn.Parameter`.
    pub parameter: bool,
    pub storage: Arc<Storage>,
}

fn int_list(v: &Value, what: &str) -> Result<Vec<i64>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => {
            items.iter().map(|x| x.as_int().ok_or_else(|| format!("tensor {what} holds a non-integer"))).collect()
        }
        _ => Err(format!("tensor {what} is not a tuple")),
    }
}

/// At most this many dimensions.
const MAX_DIMS: usize = 64;

impl TensorRef {
    /// From the arguments of `torch._utils._rebuild_tensor{,_v2,_v3}` (`func` names which),
    /// after checking every offset, size and stride against the storage.
    pub fn rebuild(func: &str, args: &[Value]) -> Result<Self, String> {
        let [storage, offset, size, stride, rest @ ..] = args else {
            return Err(format!("{func} with {} arguments", args.len()));
        };
        let Value::Storage(storage) = storage else {
            return Err(format!("{func} of something that is not a storage"));
        };
        let offset = offset.as_int().ok_or_else(|| format!("{func}: storage offset is not an integer"))?;
        let shape = int_list(size, "size")?;
        let strides = int_list(stride, "stride")?;
        let requires_grad = matches!(rest.first(), Some(Value::Bool(true)));
        let mut dtype = storage.dtype;
        let mut metadata = rest.get(2);
        if func.ends_with("_v3") {
            dtype = match rest.get(2) {
                Some(Value::Global(g)) => g.strip_prefix("torch.").and_then(DType::from_torch_name).ok_or_else(|| format!("{func}: dtype {g} is not supported"))?,
                _ => return Err(format!("{func} without a dtype")),
            };
            metadata = rest.get(3);
        }
        // Conjugate / negative bits: a lazily negated or conjugated view; not in state dicts.
        if let Some(Value::Dict(items)) = metadata
            && items.iter().any(|(_, v)| matches!(v, Value::Bool(true)))
        {
            return Err(format!("{func}: a tensor with its conjugate or negative bit set (not a plain weight)"));
        }
        let t = TensorRef { dtype, shape, strides, offset, requires_grad, parameter: false, storage: storage.clone() };
        t.validate()?;
        Ok(t)
    }

    /// Checks that every element the view reaches lies inside the storage.
    fn validate(&self) -> Result<(), String> {
        if self.shape.len() != self.strides.len() {
            return Err(format!("tensor of {} dimensions with {} strides", self.shape.len(), self.strides.len()));
        }
        if self.shape.len() > MAX_DIMS {
            return Err(format!("tensor of {} dimensions (at most {MAX_DIMS})", self.shape.len()));
        }
        if self.offset < 0 || self.shape.iter().any(|&s| s < 0) || self.strides.iter().any(|&s| s < 0) {
            return Err(format!("tensor with a negative offset, size or stride (shape {:?}, strides {:?}, offset {})", self.shape, self.strides, self.offset));
        }
        let capacity = self.storage.byte_len() / self.dtype.size() as u64;
        let too_big = || format!("tensor of shape {:?} overflows", self.shape);
        let mut numel: u64 = 1;
        for &s in &self.shape {
            numel = numel.checked_mul(s as u64).ok_or_else(too_big)?;
        }
        if numel > i64::MAX as u64 {
            return Err(too_big());
        }
        if numel == 0 {
            if self.offset as u64 > capacity {
                return Err(format!("empty tensor at offset {} past its storage's {capacity} elements", self.offset));
            }
            return Ok(());
        }
        let mut last = self.offset as u64;
        for (&s, &st) in self.shape.iter().zip(&self.strides) {
            let reach = (s as u64 - 1).checked_mul(st as u64).ok_or_else(too_big)?;
            last = last.checked_add(reach).ok_or_else(too_big)?;
        }
        if last >= capacity {
            return Err(format!(
                "tensor (shape {:?}, strides {:?}, offset {}) reaches element {last} of storage data/{}, which holds {capacity} {} elements",
                self.shape,
                self.strides,
                self.offset,
                self.storage.key,
                self.dtype.name()
            ));
        }
        Ok(())
    }

    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&s| s as u64).product()
    }

    /// Whether the elements lie in C order, one after another.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1i64;
        for (&s, &st) in self.shape.iter().zip(&self.strides).rev() {
            if s != 1 && st != expected {
                return false;
            }
            expected *= s;
        }
        true
    }

    /// The tensor's elements in C order, as bytes (little-endian), from its storage's bytes.
    pub fn gather<'a>(&self, storage_bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
        let es = self.dtype.size();
        let n = self.numel() as usize;
        let short = || format!("storage data/{} is shorter than its tensors need", self.storage.key);
        if self.is_contiguous() || n == 0 {
            let start = self.offset as usize * es;
            return storage_bytes.get(start..start + n * es).map(Cow::Borrowed).ok_or_else(short);
        }
        let mut out = Vec::new();
        out.try_reserve_exact(n * es).map_err(|_| format!("cannot allocate {} bytes", n * es))?;
        let rank = self.shape.len();
        let mut idx = vec![0i64; rank];
        for _ in 0..n {
            let e: i64 = self.offset + idx.iter().zip(&self.strides).map(|(i, s)| i * s).sum::<i64>();
            let b = e as usize * es;
            out.extend_from_slice(storage_bytes.get(b..b + es).ok_or_else(short)?);
            for d in (0..rank).rev() {
                idx[d] += 1;
                if idx[d] < self.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(Cow::Owned(out))
    }

    /// Reads the tensor's elements (C order, little-endian bytes) from the file.
    pub fn read_bytes(&self) -> Result<Vec<u8>, String> {
        let bytes = self.storage.read()?;
        Ok(self.gather(&bytes)?.into_owned())
    }

    /// The values as f64 (integers and bools converted; f16/bf16 exactly).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, String> {
        let b = self.read_bytes()?;
        Ok(bytes_to_f64(self.dtype, &b))
    }

    /// The values of an integer or bool tensor as i64 (`None` for a float tensor).
    pub fn to_i64_vec(&self) -> Result<Option<Vec<i64>>, String> {
        if self.dtype.is_float() {
            return Ok(None);
        }
        let b = self.read_bytes()?;
        let es = self.dtype.size();
        Ok(Some(
            b.chunks_exact(es)
                .map(|c| match self.dtype {
                    DType::I64 => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
                    DType::I32 => i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    DType::I16 => i64::from(i16::from_le_bytes([c[0], c[1]])),
                    DType::I8 => i64::from(c[0] as i8),
                    _ => i64::from(c[0]),
                })
                .collect(),
        ))
    }

    /// A `tch::Tensor` with the file's dtype on the CPU, from the storage's bytes.
    pub fn to_tch_from(&self, storage_bytes: &[u8]) -> Result<tch::Tensor, String> {
        let b = self.gather(storage_bytes)?;
        tch::Tensor::f_from_data_size(&b, &self.shape, self.dtype.kind()).map_err(|e| e.to_string())
    }

    /// A `tch::Tensor` with the file's dtype on the CPU (reads the storage).
    pub fn to_tch(&self) -> Result<tch::Tensor, String> {
        let bytes = self.storage.read()?;
        self.to_tch_from(&bytes)
    }
}

/// IEEE half → single precision.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

pub fn bytes_to_f64(dtype: DType, b: &[u8]) -> Vec<f64> {
    let es = dtype.size();
    b.chunks_exact(es)
        .map(|c| match dtype {
            DType::F32 => f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            DType::F16 => f64::from(f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
            DType::BF16 => f64::from(f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)),
            DType::F64 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            DType::I64 => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64,
            DType::I32 => f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            DType::I16 => f64::from(i16::from_le_bytes([c[0], c[1]])),
            DType::I8 => f64::from(c[0] as i8),
            DType::U8 | DType::Bool => f64::from(c[0]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    }
}
