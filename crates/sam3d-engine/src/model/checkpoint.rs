//! Safetensors checkpoint I/O: atomic writes with metadata, reads that compare every name and
//! shape against what the model expects and report all differences in one [`Mismatch`].

use super::ModelError;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Everything that keeps a checkpoint or adapter from fitting, collected at once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mismatch {
    pub path: PathBuf,
    /// "checkpoint" or "LoRA adapter".
    pub what: &'static str,
    /// Problems that are not about one tensor (base hash, config, rank).
    pub notes: Vec<String>,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// (name, shape in the file, shape the model expects).
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl Mismatch {
    pub fn is_empty(&self) -> bool {
        self.notes.is_empty() && self.missing.is_empty() && self.unexpected.is_empty() && self.misshaped.is_empty()
    }
}

/// How many names of each kind a [`Mismatch`] message lists (a checkpoint of another
/// architecture differs in hundreds; the notes say what it is).
pub const LISTED_NAMES: usize = 8;

/// The first [`LISTED_NAMES`] items, then how many more.
fn first_few(items: impl ExactSizeIterator<Item = String>) -> String {
    let n = items.len();
    let mut shown: Vec<String> = items.take(LISTED_NAMES).collect();
    if n > LISTED_NAMES {
        shown.push(format!("… and {} more", n - LISTED_NAMES));
    }
    shown.join(", ")
}

fn shape_str(s: &[usize]) -> String {
    format!("[{}]", s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: this {} does not fit the model", self.path.display(), self.what)?;
        for n in &self.notes {
            write!(f, "; {n}")?;
        }
        if !self.missing.is_empty() {
            write!(f, "; {} missing: {}", self.missing.len(), first_few(self.missing.iter().cloned()))?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "; {} unexpected: {}", self.unexpected.len(), first_few(self.unexpected.iter().cloned()))?;
        }
        if !self.misshaped.is_empty() {
            let list = self.misshaped.iter().map(|(n, file, model)| format!("{n} (file {}, model {})", shape_str(file), shape_str(model)));
            write!(f, "; {} mis-shaped: {}", self.misshaped.len(), first_few(list))?;
        }
        Ok(())
    }
}

/// A safetensors file read into memory.
pub struct StFile {
    pub path: PathBuf,
    bytes: Vec<u8>,
    pub metadata: HashMap<String, String>,
    /// SHA-256 of the file's bytes (hex).
    pub sha256: String,
}

impl fmt::Debug for StFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StFile({}, {} bytes)", self.path.display(), self.bytes.len())
    }
}

fn file_err(path: &Path, problem: impl Into<String>) -> ModelError {
    ModelError::File { path: path.to_path_buf(), problem: problem.into() }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl StFile {
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| file_err(path, format!("not a safetensors file ({e})")))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        // Validate the whole file once (offsets, sizes), so later views cannot fail.
        SafeTensors::deserialize(&bytes).map_err(|e| file_err(path, format!("corrupt safetensors file ({e})")))?;
        let sha256 = sha256_hex(&bytes);
        Ok(Self { path: path.to_path_buf(), bytes, metadata, sha256 })
    }

    fn st(&self) -> SafeTensors<'_> {
        // Validated in `read`.
        SafeTensors::deserialize(&self.bytes).unwrap_or_else(|e| panic!("{}: validated file no longer parses: {e}", self.path.display()))
    }

    /// Name → shape of every tensor in the file.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.st().tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect()
    }

    /// One tensor as a CPU float tensor.
    pub fn tensor(&self, name: &str) -> Result<Tensor, ModelError> {
        let st = self.st();
        let v = st.tensor(name).map_err(|e| file_err(&self.path, format!("{name}: {e}")))?;
        let kind = match v.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F64 => Kind::Double,
            d => return Err(file_err(&self.path, format!("{name}: unsupported dtype {d:?} (expected a float type)"))),
        };
        let shape: Vec<i64> = v.shape().iter().map(|&x| x as i64).collect();
        Ok(Tensor::from_data_size(v.data(), &shape, kind).to_kind(Kind::Float))
    }

    /// Compares the file's names and shapes with `expected` (name → shape).
    pub fn compare(&self, expected: &BTreeMap<String, Vec<usize>>, what: &'static str) -> Mismatch {
        let found = self.shapes();
        let mut m = Mismatch { path: self.path.clone(), what, ..Default::default() };
        for (name, shape) in expected {
            match found.get(name) {
                None => m.missing.push(name.clone()),
                Some(s) if s != shape => m.misshaped.push((name.clone(), s.clone(), shape.clone())),
                _ => {}
            }
        }
        m.unexpected = found.keys().filter(|n| !expected.contains_key(*n)).cloned().collect();
        m
    }

    /// Copies every tensor of `vars` from the file (call after [`StFile::compare`] found nothing).
    pub fn copy_into(&self, vars: &HashMap<String, Tensor>) -> Result<(), ModelError> {
        let _guard = tch::no_grad_guard();
        for (name, var) in vars {
            let src = self.tensor(name)?;
            let mut dst = var.shallow_clone();
            dst.f_copy_(&src).map_err(|e| file_err(&self.path, format!("{name}: {e}")))?;
        }
        Ok(())
    }
}

/// Name → shape of a set of variables.
pub fn shapes_of(vars: &HashMap<String, Tensor>) -> BTreeMap<String, Vec<usize>> {
    vars.iter().map(|(n, t)| (n.clone(), t.size().iter().map(|&x| x as usize).collect())).collect()
}

/// Writes `tensors` (as float32) with `metadata`, atomically (temporary file, then rename).
/// Returns the SHA-256 of the bytes written.
pub fn write(path: &Path, tensors: &HashMap<String, Tensor>, metadata: HashMap<String, String>) -> Result<String, ModelError> {
    let mut raw: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, t) in tensors {
        let t = t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&x| x as usize).collect();
        let v: Vec<f32> = Vec::<f32>::try_from(&t.reshape([-1])).map_err(|e| file_err(path, format!("{name}: {e}")))?;
        raw.insert(name.clone(), (shape, bytemuck::cast_slice(&v).to_vec()));
    }
    let mut views = Vec::with_capacity(raw.len());
    for (name, (shape, bytes)) in &raw {
        let v = TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(|e| file_err(path, format!("{name}: {e}")))?;
        views.push((name.clone(), v));
    }
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| file_err(path, format!("cannot serialise: {e}")))?;
    let sha = sha256_hex(&bytes);
    crate::volume::atomic_write(path, |w| std::io::Write::write_all(w, &bytes)).map_err(|e| file_err(path, e.problem))?;
    Ok(sha)
}
