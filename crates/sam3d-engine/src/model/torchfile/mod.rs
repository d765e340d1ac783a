//! PyTorch checkpoints (`torch.save` files, `.pth`) read without Python and without running
//! anything in them.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`TorchFile::open`] (format detection, the archive's records), [`StateDict`] (the weights found in the file), [`Summary`] (the rest: top-level keys, `args`, epoch), conversion to `tch` |
//! | [`zip`] | the zip archive torch.save writes (central directory, zip64, stored entries), every length checked against the file |
//! | [`pickle`] | the pickle reader: builds data, never calls anything; an allowlist of globals |
//! | [`tensor`] | dtypes, storages (byte ranges of the file, read on demand, CRC-checked), tensor views checked against their storage |
//! | [`describe`] | what a state dict looks like from its names and shapes; the key/shape check ([`check`]) |
//!
//! The format (PyTorch ≥ 1.6): a zip archive `<name>/data.pkl` (the pickled object, protocol 2,
//! tensors as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` with
//! storages as persistent ids `('storage', torch.FloatStorage, key, location, numel)`),
//! `<name>/data/<key>` (each storage's raw bytes), `<name>/byteorder`, `<name>/version`. The
//! legacy format (before 1.6, or `_use_new_zipfile_serialization=False`) is refused with a
//! message saying how to re-save the file. Storages saved from CUDA or MPS are read onto the
//! CPU: their bytes are in the file like any other's.
//!
//! Opening reads only the central directory and `data.pkl`; a storage's bytes are read (and
//! CRC-checked) when a tensor is converted, one storage at a time. A full-size random SAM-Med3D
//! ViT-B (402 MB, 324 tensors) opens in 0.02 s and converts to f32 `tch` tensors in 0.7 s with
//! a peak RSS of 508 MB (383 MB of tensors): the `#[ignore]`d `full_size_sam_med3d_bench` in
//! `tests/torchfile.rs` says how to make the file and run it.

pub mod describe;
pub mod pickle;
pub mod tensor;
pub mod zip;

pub use describe::{Family, describe};
pub use pickle::Value;
pub use tensor::{DType, Storage, TensorRef};

use super::{Mismatch, ModelError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tch::{Device, Kind, Tensor};
use tensor::Source;

/// The pickle of a checkpoint larger than this is refused (SAM-Med3D's, with optimizer state,
/// is well under a megabyte; the weights are separate records).
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// Keys tried, in order, for the model's weights in a checkpoint dict.
pub const WEIGHT_KEYS: [&str; 3] = ["model_state_dict", "state_dict", "model"];

fn err(path: &Path, problem: impl Into<String>) -> ModelError {
    ModelError::File { path: path.to_path_buf(), problem: problem.into() }
}

/// The legacy format starts with a pickled magic number (protocol 2, LONG1 of 10 bytes).
const LEGACY_MAGIC: [u8; 14] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

const RESAVE: &str = "re-save it with PyTorch ≥ 1.6: python -c \"import torch; torch.save(torch.load('IN.pth', map_location='cpu'), 'OUT.pth')\" (add weights_only=False to torch.load only for a file you trust)";

/// A `torch.save` file, its pickle read into a [`Value`]; tensors' bytes stay in the file
/// until they are read.
#[derive(Debug)]
pub struct TorchFile {
    pub path: PathBuf,
    /// The archive's folder name (`archive`, or the file's stem).
    pub archive_name: String,
    /// The `version` record (torch's serialization version), when present.
    pub version: Option<String>,
    pub big_endian: bool,
    root: Value,
}

impl TorchFile {
    /// Opens a `torch.save` archive and reads its pickle (no tensor data yet). Refuses, naming
    /// the file and the reason: the legacy format, TorchScript archives, safetensors and other
    /// files, a pickle asking for anything outside the allowlist, storages that do not fit
    /// their records, truncated or corrupt archives.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let mut file = File::open(path).map_err(|e| err(path, format!("cannot open: {e}")))?;
        let mut head = Vec::new();
        (&mut file).take(512).read_to_end(&mut head).map_err(|e| err(path, format!("cannot read: {e}")))?;
        sniff(&head).map_err(|p| err(path, p))?;
        let archive = zip::Archive::open(&mut file).map_err(|p| err(path, format!("not a readable torch.save archive: {p}")))?;
        if archive.names.iter().any(|n| n.ends_with("/constants.pkl") || n == "constants.pkl") {
            return Err(err(
                path,
                "a TorchScript archive (torch.jit.save), not a torch.save checkpoint: save the weights with torch.save(model.state_dict(), 'OUT.pth')",
            ));
        }
        let pkl = archive
            .names
            .iter()
            .find(|n| n.strip_suffix("/data.pkl").is_some_and(|d| !d.contains('/')) || *n == "data.pkl")
            .cloned()
            .ok_or_else(|| err(path, "a zip archive without data.pkl: not a torch.save checkpoint"))?;
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();
        let record = |file: &mut File, name: &str, max: u64| -> Result<Option<Vec<u8>>, ModelError> {
            let Some(e) = archive.entries.get(&format!("{prefix}{name}")) else { return Ok(None) };
            if e.size > max {
                return Err(err(path, format!("{name} is {} bytes (more than {max} is refused)", e.size)));
            }
            let (off, len) = archive.data_range(file, e).map_err(|p| err(path, p))?;
            let b = zip::read_at(file, archive.file_len, off, len).map_err(|p| err(path, p))?;
            if crc32fast::hash(&b) != e.crc32 {
                return Err(err(path, format!("{name}: CRC-32 mismatch, the file is corrupt")));
            }
            Ok(Some(b))
        };
        let big_endian = match record(&mut file, "byteorder", 16)? {
            None => false,
            Some(b) if b == b"little" => false,
            Some(b) if b == b"big" => true,
            Some(b) => return Err(err(path, format!("byteorder record {:?} (expected little or big)", String::from_utf8_lossy(&b)))),
        };
        let version = record(&mut file, "version", 64)?.map(|b| String::from_utf8_lossy(&b).trim().to_string());
        let data = record(&mut file, "data.pkl", MAX_PICKLE_BYTES)?.ok_or_else(|| err(path, "data.pkl missing"))?;

        let source = Arc::new(Source { path: path.to_path_buf(), file: Mutex::new(file), file_len: archive.file_len, big_endian });
        let mut storages: HashMap<(String, DType), Arc<Storage>> = HashMap::new();
        let mut persistent_load = |pid: &Value| -> Result<Arc<Storage>, String> {
            let Value::Tuple(items) = pid else { return Err("a persistent id that is not a tuple".into()) };
            let [tag, ty, key, location, numel] = items.as_slice() else {
                return Err(format!("a persistent id of {} items (torch.save writes 5)", items.len()));
            };
            if tag.as_str() != Some("storage") {
                return Err("a persistent id that is not a storage".into());
            }
            let Value::Global(ty) = ty else { return Err("a storage without a storage type".into()) };
            let dtype = ty.strip_prefix("torch.").and_then(|t| DType::from_storage_type(t.rsplit('.').next().unwrap_or(t))).ok_or_else(|| {
                format!("storage type {ty} is not supported (complex, quantized and float8 tensors are not model weights here)")
            })?;
            let key = key.as_str().filter(|k| !k.is_empty() && k.len() <= 64 && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            let key = key.ok_or("a storage key that is not a short name")?.to_string();
            let location = location.as_str().filter(|l| l.len() <= 64).ok_or("a storage location that is not a short string")?.to_string();
            let numel = numel.as_int().filter(|&n| n >= 0).ok_or("a storage size that is not a count")? as u64;
            if let Some(s) = storages.get(&(key.clone(), dtype)) {
                if s.numel != numel {
                    return Err(format!("storage data/{key} given {numel} and {} elements", s.numel));
                }
                return Ok(s.clone());
            }
            let name = format!("data/{key}");
            let entry = archive.entries.get(&format!("{prefix}{name}")).ok_or_else(|| {
                format!("storage {name} is missing from the archive (truncated, or not a complete checkpoint)")
            })?;
            let byte_len = numel.checked_mul(dtype.size() as u64).ok_or("a storage size overflows")?;
            if entry.size != byte_len {
                return Err(format!(
                    "storage {name} holds {} bytes, but {numel} {} elements need {byte_len}",
                    entry.size,
                    dtype.name()
                ));
            }
            let (offset, _) = {
                let mut f = source.file.lock().map_err(|_| "the file handle was poisoned".to_string())?;
                archive.data_range(&mut f, entry)?
            };
            let s = Arc::new(Storage { key: key.clone(), dtype, numel, location, source: source.clone(), offset, crc32: entry.crc32 });
            storages.insert((key, dtype), s.clone());
            Ok(s)
        };
        let root = pickle::load(&data, &mut persistent_load).map_err(|p| err(path, p))?;
        let archive_name = prefix.trim_end_matches('/').to_string();
        Ok(Self { path: path.to_path_buf(), archive_name, version, big_endian, root })
    }

    /// The whole pickled object (a dict, for a checkpoint).
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// The model's weights: the first of [`WEIGHT_KEYS`] that holds a dict of tensors, else the
    /// top-level dict if it holds tensors. A `module.` prefix on every name (a save of an
    /// `nn.DataParallel`) is removed.
    pub fn state_dict(&self) -> Result<StateDict, ModelError> {
        let Value::Dict(top) = &self.root else {
            return Err(err(&self.path, format!("the file holds {}, not a dict of weights", self.root.brief())));
        };
        let holds_tensors = |v: &Value| matches!(v, Value::Dict(items) if items.iter().any(|(_, t)| matches!(t, Value::Tensor(_))));
        let (source_key, dict) = match WEIGHT_KEYS.iter().find_map(|k| self.root.get(k).filter(|v| holds_tensors(v)).map(|v| (k, v))) {
            Some((k, v)) => (Some(k.to_string()), v),
            None if holds_tensors(&self.root) => (None, &self.root),
            None => {
                let keys: Vec<String> = top.iter().map(|(k, _)| key_name(k)).collect();
                return Err(err(
                    &self.path,
                    format!(
                        "no model weights found: none of {} holds a dict of tensors, nor does the top level (its keys: {})",
                        WEIGHT_KEYS.join(", "),
                        keys.join(", ")
                    ),
                ));
            }
        };
        let Value::Dict(items) = dict else { return Err(err(&self.path, "the weights are not a dict")) };
        let mut tensors: Vec<(String, TensorRef)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut other = Vec::new();
        for (k, v) in items {
            let name = key_name(k);
            match v {
                Value::Tensor(t) => match index.get(&name) {
                    // A repeated key: the last one wins, as in Python's dict.
                    Some(&i) => tensors[i].1 = t.clone(),
                    None => {
                        index.insert(name.clone(), tensors.len());
                        tensors.push((name, t.clone()));
                    }
                },
                _ => other.push(name),
            }
        }
        let stripped = !tensors.is_empty() && tensors.iter().all(|(n, _)| n.starts_with("module."));
        if stripped {
            for (n, _) in &mut tensors {
                *n = n["module.".len()..].to_string();
            }
            index = tensors.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
            if index.len() != tensors.len() {
                return Err(err(&self.path, "names repeat once the `module.` prefix is removed"));
            }
        }
        Ok(StateDict { path: self.path.clone(), source_key, stripped_module_prefix: stripped, tensors, index, other })
    }

    /// What the file holds besides (and about) its weights, for the user to see.
    pub fn summary(&self) -> Summary {
        let top_level_keys = match &self.root {
            Value::Dict(items) => items.iter().map(|(k, _)| key_name(k)).collect(),
            _ => Vec::new(),
        };
        let epoch = self.root.get("epoch").and_then(Value::as_int);
        let args = match self.root.get("args") {
            Some(Value::Object { state: Some(s), .. }) => fields(s),
            Some(d @ Value::Dict(_)) => fields(d),
            _ => Vec::new(),
        };
        let scalars = match &self.root {
            Value::Dict(items) => items
                .iter()
                .filter(|(_, v)| matches!(v, Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Str(_)))
                .map(|(k, v)| (key_name(k), v.brief()))
                .collect(),
            _ => Vec::new(),
        };
        let weights = self.state_dict().map_err(|e| match e {
            ModelError::File { problem, .. } => problem,
            e => e.to_string(),
        });
        Summary { path: self.path.clone(), top_level_keys, epoch, args, scalars, weights: weights.map(|s| s.summary()) }
    }
}

/// A dict key as a name (strings as they are; other keys rendered).
fn key_name(k: &Value) -> String {
    match k {
        Value::Str(s) => s.clone(),
        other => other.brief(),
    }
}

fn fields(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Dict(items) => items.iter().map(|(k, v)| (key_name(k), v.brief())).collect(),
        _ => Vec::new(),
    }
}

/// Recognises the files that are not a torch.save zip archive, to say what they are.
fn sniff(head: &[u8]) -> Result<(), String> {
    if head.is_empty() {
        return Err("empty file".into());
    }
    if head.starts_with(b"PK\x03\x04") {
        return Ok(());
    }
    if head.starts_with(&LEGACY_MAGIC) {
        return Err(format!(
            "saved in PyTorch's legacy format (before 1.6, or with _use_new_zipfile_serialization=False), which this reader does not take; {RESAVE}"
        ));
    }
    if head.get(257..262) == Some(b"ustar") {
        return Err(format!("a tar archive: PyTorch's oldest checkpoint format (before 0.4), which this reader does not take; {RESAVE}"));
    }
    if head.len() >= 9 && head[8] == b'{' {
        return Err("a safetensors file, not a PyTorch .pth: load it as a safetensors checkpoint".into());
    }
    if head.starts_with(b"PK") {
        return Err("a zip archive that does not start with a file entry: not a torch.save checkpoint".into());
    }
    if head[0] == 0x80 {
        return Err(format!("a bare pickle, not a torch.save archive; {RESAVE}"));
    }
    Err("not a PyTorch checkpoint (neither a torch.save zip archive nor the legacy format)".into())
}

/// The model's weights in a file: names in the file's order → tensors (still in the file).
#[derive(Debug, Clone)]
pub struct StateDict {
    pub path: PathBuf,
    /// The key of the checkpoint dict the weights came from (`model_state_dict`…); `None`: the
    /// top-level dict.
    pub source_key: Option<String>,
    /// Every name started with `module.` (an `nn.DataParallel` save), removed here.
    pub stripped_module_prefix: bool,
    tensors: Vec<(String, TensorRef)>,
    index: HashMap<String, usize>,
    /// Names in that dict whose values are not tensors.
    pub other: Vec<String>,
}

impl StateDict {
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
    pub fn get(&self, name: &str) -> Option<&TensorRef> {
        self.index.get(name).map(|&i| &self.tensors[i].1)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TensorRef)> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t))
    }
    /// Names and shapes, in the file's order.
    pub fn shapes(&self) -> Vec<(String, Vec<i64>)> {
        self.tensors.iter().map(|(n, t)| (n.clone(), t.shape.clone())).collect()
    }
    /// One line saying what the weights look like (see [`describe`]).
    pub fn looks_like(&self) -> String {
        describe(&self.shapes())
    }
    pub fn family(&self) -> Family {
        describe::family(&self.shapes())
    }

    /// Converts every tensor, in the file's order: floats to `float_kind` (e.g. `Kind::Float`),
    /// other dtypes kept, on `device`. Each storage is read once (tensors sharing one are cut
    /// from the same bytes), so the peak is the tensors plus the largest storage.
    pub fn to_tch(&self, device: Device, float_kind: Kind) -> Result<Vec<(String, Tensor)>, ModelError> {
        let mut out: Vec<Option<Tensor>> = (0..self.tensors.len()).map(|_| None).collect();
        self.for_each_tensor(|i, t| {
            let t = if self.tensors[i].1.dtype.is_float() { t.f_to_kind(float_kind)? } else { t };
            out[i] = Some(t.f_to_device(device)?);
            Ok(())
        })?;
        Ok(self.tensors.iter().zip(out).filter_map(|((n, _), t)| t.map(|t| (n.clone(), t))).collect())
    }

    /// Copies each tensor into the variable of the same name (converting dtype and device), for
    /// a model whose names and shapes [`check`] found equal to the file's. Reads one storage at
    /// a time: the peak is the model plus the largest storage.
    pub fn copy_into(&self, vars: &HashMap<String, Tensor>) -> Result<(), ModelError> {
        let _guard = tch::no_grad_guard();
        self.for_each_tensor(|i, t| {
            let (name, _) = &self.tensors[i];
            if let Some(v) = vars.get(name) {
                let mut dst = v.shallow_clone();
                dst.f_copy_(&t)?;
            }
            Ok(())
        })
    }

    /// Calls `f(index, tensor)` for every tensor (CPU, the file's dtype), reading each storage
    /// once.
    fn for_each_tensor(&self, mut f: impl FnMut(usize, Tensor) -> Result<(), tch::TchError>) -> Result<(), ModelError> {
        let mut groups: Vec<(Arc<Storage>, Vec<usize>)> = Vec::new();
        let mut by_storage: HashMap<*const Storage, usize> = HashMap::new();
        for (i, (_, t)) in self.tensors.iter().enumerate() {
            let g = *by_storage.entry(Arc::as_ptr(&t.storage)).or_insert_with(|| {
                groups.push((t.storage.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        for (storage, members) in groups {
            let bytes = storage.read().map_err(|p| err(&self.path, p))?;
            for i in members {
                let (name, t) = &self.tensors[i];
                let tt = t.to_tch_from(&bytes).map_err(|p| err(&self.path, format!("{name}: {p}")))?;
                f(i, tt).map_err(|e| err(&self.path, format!("{name}: {e}")))?;
            }
        }
        Ok(())
    }

    fn summary(&self) -> WeightsSummary {
        let mut dtypes = BTreeMap::new();
        let mut locations = BTreeSet::new();
        let mut elements = 0u64;
        for (_, t) in &self.tensors {
            *dtypes.entry(t.dtype.name()).or_insert(0usize) += 1;
            locations.insert(t.storage.location.clone());
            elements += t.numel();
        }
        WeightsSummary {
            source_key: self.source_key.clone(),
            stripped_module_prefix: self.stripped_module_prefix,
            tensors: self.tensors.len(),
            elements,
            dtypes: dtypes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            locations: locations.into_iter().collect(),
            looks_like: self.looks_like(),
        }
    }
}

/// Checks the weights' names and shapes against what a network expects (name → shape), before
/// any tensor is used. The error lists every missing, unexpected and mis-shaped name, with
/// notes saying what the file looks like.
#[allow(clippy::result_large_err)] // the model layer's `Mismatch`, returned once per load
pub fn check(state: &StateDict, expected: &[(String, Vec<i64>)]) -> Result<(), Mismatch> {
    let mut r = describe::compare(&state.path, &state.shapes(), expected);
    if let Err(m) = &mut r
        && state.stripped_module_prefix
    {
        m.notes.push("the names' `module.` prefix (an nn.DataParallel save) was removed".into());
    }
    r
}

/// Names and shapes of a set of variables (a `VarStore`'s), as [`check`] takes them.
pub fn expected_from_vars(vars: &HashMap<String, Tensor>) -> Vec<(String, Vec<i64>)> {
    let mut v: Vec<(String, Vec<i64>)> = vars.iter().map(|(n, t)| (n.clone(), t.size())).collect();
    v.sort();
    v
}

/// Opens a checkpoint, finds its weights and checks their names and shapes against
/// `expected`: the weights, or the error to show (a [`ModelError::Mismatch`] listing every
/// difference and what the file looks like).
pub fn open_checked(path: &Path, expected: &[(String, Vec<i64>)]) -> Result<StateDict, ModelError> {
    let sd = TorchFile::open(path)?.state_dict()?;
    check(&sd, expected).map_err(|m| ModelError::Mismatch(Box::new(m)))?;
    Ok(sd)
}

/// What a checkpoint holds, for the user to see.
#[derive(Debug, Clone)]
pub struct Summary {
    pub path: PathBuf,
    pub top_level_keys: Vec<String>,
    pub epoch: Option<i64>,
    /// The fields of `args` (an `argparse.Namespace` or a dict): name → short rendering.
    pub args: Vec<(String, String)>,
    /// Top-level numbers, strings and bools (epoch, best_dice…).
    pub scalars: Vec<(String, String)>,
    /// The weights, or why none were found.
    pub weights: Result<WeightsSummary, String>,
}

#[derive(Debug, Clone)]
pub struct WeightsSummary {
    pub source_key: Option<String>,
    pub stripped_module_prefix: bool,
    pub tensors: usize,
    pub elements: u64,
    /// dtype name → number of tensors.
    pub dtypes: Vec<(String, usize)>,
    /// Where the storages lived when saved (`cpu`, `cuda:0`…).
    pub locations: Vec<String>,
    pub looks_like: String,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.path.display())?;
        writeln!(f, "  top-level keys: {}", self.top_level_keys.join(", "))?;
        if let Some(e) = self.epoch {
            writeln!(f, "  epoch: {e}")?;
        }
        if !self.args.is_empty() {
            let a: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(f, "  args: {}", a.join(", "))?;
        }
        match &self.weights {
            Ok(w) => {
                let from = match &w.source_key {
                    Some(k) => format!("'{k}'"),
                    None => "the top-level dict".into(),
                };
                let dt: Vec<String> = w.dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
                write!(f, "  weights: {} tensors ({} values; {}) from {from}", w.tensors, w.elements, dt.join(", "))?;
                if w.stripped_module_prefix {
                    write!(f, ", `module.` prefix (nn.DataParallel) removed")?;
                }
                writeln!(f)?;
                if w.locations.iter().any(|l| l != "cpu") {
                    writeln!(f, "  saved from {} tensors; read onto the CPU", w.locations.join(", "))?;
                }
                write!(f, "  looks like: {}", w.looks_like)
            }
            Err(e) => write!(f, "  weights: {e}"),
        }
    }
}
