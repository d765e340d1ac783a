//! LoRA on SAM-Med3D (PEFT semantics, as the project's own model: [`crate::model::lora`]).
//!
//! Adapters go on the linears whose dotted names match the targets ([`default_targets`]: the
//! encoder's attention `qkv` and `proj` and MLP `lin1`, `lin2` in every block, the two-way
//! transformer's attention `q_proj`, `k_proj`, `v_proj`, `out_proj` and MLP `lin1`, `lin2`;
//! the hypernetwork and IoU-head MLPs are left alone). They live in their own `VarStore`
//! under `{linear}.lora_A.weight` / `{linear}.lora_B.weight`, `B` starts at zero (a fresh
//! adapter changes nothing) and the base is frozen.
//!
//! An adapter file ([`ADAPTER_FORMAT`], safetensors, written atomically) holds the adapter
//! tensors only and names its base in the metadata: the checkpoint's file name and the SHA-256
//! of its bytes (`base_file`, `base_sha256`), the architecture (`base_config`) and the LoRA
//! config (`lora`, with `rank`, `alpha`, `dropout`, `targets` repeated for readers). Loading
//! it onto another base, or onto a network whose linears do not have its names and shapes, is
//! refused with a message naming the adapter file and both bases.

use super::{SamMed3d, SamMed3dConfig};
use crate::model::checkpoint::{self, Mismatch, StFile};
use crate::model::layers::HasLinears;
use crate::model::lora::{LoraAdapter, LoraConfig};
use crate::model::{ADAPTER_FORMAT as PROJECT_ADAPTER_FORMAT, ModelError};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::nn;

/// Format tag of a SAM-Med3D adapter file.
pub const ADAPTER_FORMAT: &str = "sam3d-studio/sam-med3d-lora/1";

/// The linears adapted when a config gives no targets: attention and MLP linears of the
/// encoder and of the decoder's two-way transformer.
pub fn default_targets() -> Vec<String> {
    ["qkv", "proj", "lin1", "lin2", "q_proj", "k_proj", "v_proj", "out_proj"].iter().map(|s| s.to_string()).collect()
}

/// `cfg` with [`default_targets`] when it names none.
pub fn with_default_targets(cfg: &LoraConfig) -> LoraConfig {
    let mut c = cfg.clone();
    if c.targets.is_empty() {
        c.targets = default_targets();
    }
    c
}

/// What an adapter belongs to: the base checkpoint's file name and SHA-256, its architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseId {
    pub file_name: String,
    pub sha256: String,
    pub config: SamMed3dConfig,
}

impl BaseId {
    fn describe(&self) -> String {
        format!("{} (SHA-256 {})", self.file_name, self.sha256)
    }
}

/// SHA-256 of a file's bytes, read in 1 MiB pieces (a published checkpoint is 400 MB).
pub fn file_sha256(path: &Path) -> Result<String, ModelError> {
    use sha2::{Digest, Sha256};
    let err = |e: std::io::Error| ModelError::File { path: path.to_path_buf(), problem: format!("cannot read: {e}") };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// An adapter attached to a [`SamMed3d`].
#[derive(Debug)]
pub struct SamLora {
    /// The adapter tensors (trainable), apart from the frozen base.
    pub vs: nn::VarStore,
    pub config: LoraConfig,
    /// Names of the adapted linears.
    pub targets: Vec<String>,
    /// The file it was loaded from or last saved to.
    pub path: Option<PathBuf>,
}

/// Name → shape of the adapter tensors `cfg` creates on `net`.
pub fn adapter_shapes(net: &mut SamMed3d, cfg: &LoraConfig) -> BTreeMap<String, Vec<usize>> {
    let r = cfg.rank;
    let mut out = BTreeMap::new();
    net.visit_linears(&mut |l| {
        if cfg.matches(&l.name) {
            out.insert(format!("{}.lora_A.weight", l.name), vec![r, l.in_dim as usize]);
            out.insert(format!("{}.lora_B.weight", l.name), vec![l.out_dim as usize, r]);
        }
    });
    out
}

/// Attaches fresh adapters (B = 0) to the linears of `net` matching `cfg.targets` (empty:
/// [`default_targets`]) and freezes `base`. Any previous adapter is removed first.
pub fn attach(net: &mut SamMed3d, base: &mut nn::VarStore, cfg: &LoraConfig) -> Result<SamLora, ModelError> {
    let cfg = with_default_targets(cfg);
    cfg.check().map_err(ModelError::Lora)?;
    detach(net, base);
    let vs = nn::VarStore::new(base.device());
    let root = vs.root();
    let mut targets = Vec::new();
    net.visit_linears(&mut |l| {
        if cfg.matches(&l.name) {
            let p = l.name.split('.').fold(root.clone(), |p, seg| p.sub(seg));
            l.lora = Some(LoraAdapter::new(&p, l.in_dim, l.out_dim, &cfg));
            targets.push(l.name.clone());
        }
    });
    if targets.is_empty() {
        let mut names = Vec::new();
        net.visit_linears(&mut |l| names.push(l.name.clone()));
        let shown: Vec<&str> = names.iter().map(String::as_str).filter(|n| n.contains(".0.") || !n.contains("blocks.")).take(24).collect();
        return Err(ModelError::Lora(format!(
            "the target patterns {:?} match no linear of SAM-Med3D; its linears are named like {} (defaults: {:?})",
            cfg.targets,
            shown.join(", "),
            default_targets()
        )));
    }
    base.freeze();
    Ok(SamLora { vs, config: cfg, targets, path: None })
}

/// Removes every adapter from `net` and makes `base` trainable again, except the positional
/// encoding's Gaussian matrix, which is a buffer.
pub fn detach(net: &mut SamMed3d, base: &mut nn::VarStore) {
    let mut had = false;
    net.visit_linears(&mut |l| had |= l.lora.take().is_some());
    if had {
        base.unfreeze();
        if let Some(t) = base.variables().get("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix") {
            let _ = t.shallow_clone().set_requires_grad(false);
        }
    }
}

/// Writes `lora`'s tensors to `path` (atomically) with metadata naming `base`.
pub fn save(lora: &SamLora, base: &BaseId, path: &Path) -> Result<(), ModelError> {
    let c = &lora.config;
    let meta = HashMap::from([
        ("format".to_string(), ADAPTER_FORMAT.to_string()),
        ("family".to_string(), "sam_med3d".to_string()),
        ("base_file".to_string(), base.file_name.clone()),
        ("base_sha256".to_string(), base.sha256.clone()),
        ("base_config".to_string(), serde_json::to_string(&base.config).unwrap_or_default()),
        ("lora".to_string(), serde_json::to_string(c).unwrap_or_default()),
        ("rank".to_string(), c.rank.to_string()),
        ("alpha".to_string(), c.alpha.to_string()),
        ("dropout".to_string(), c.dropout.to_string()),
        ("targets".to_string(), serde_json::to_string(&c.targets).unwrap_or_default()),
    ]);
    checkpoint::write(path, &lora.vs.variables(), meta)?;
    Ok(())
}

/// Reads an adapter file and checks it against `net` and `base` without changing anything:
/// the format, the base it names (file and SHA-256), the architecture, and every tensor's name
/// and shape. Returns the file and its LoRA config, or every problem at once.
pub fn read_checked(path: &Path, net: &mut SamMed3d, base: &BaseId) -> Result<(StFile, LoraConfig), ModelError> {
    let f = StFile::read(path)?;
    let file_err = |problem: String| ModelError::File { path: path.to_path_buf(), problem };
    match f.metadata.get("format").map(String::as_str) {
        Some(ADAPTER_FORMAT) => {}
        Some(PROJECT_ADAPTER_FORMAT) | Some("sam3d-studio/lora/1") => {
            return Err(file_err(format!("an adapter of the project's own model, not of SAM-Med3D; it cannot go on {}", base.file_name)));
        }
        Some(other) => return Err(file_err(format!("format '{other}' is not a SAM-Med3D LoRA adapter ({ADAPTER_FORMAT})"))),
        None => return Err(file_err("no format in its metadata: not a sam3d-studio SAM-Med3D adapter".into())),
    }
    let cfg: LoraConfig = f
        .metadata
        .get("lora")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| file_err("no LoRA config in its metadata".into()))?;
    cfg.check().map_err(file_err)?;
    let expected = adapter_shapes(net, &cfg);
    let mut m: Mismatch = f.compare(&expected, "SAM-Med3D LoRA adapter");
    let file_base = f.metadata.get("base_file").cloned().unwrap_or_else(|| "an unnamed checkpoint".into());
    match f.metadata.get("base_sha256") {
        Some(sha) if *sha != base.sha256 => m.notes.push(format!(
            "it was trained on {file_base} (SHA-256 {sha}), but the loaded base is {}: load {file_base} first, or train an adapter for this base",
            base.describe()
        )),
        Some(_) => {}
        None => m.notes.push("it does not name its base checkpoint (no base_sha256 in its metadata)".into()),
    }
    match f.metadata.get("base_config").map(|s| serde_json::from_str::<SamMed3dConfig>(s)) {
        Some(Ok(c)) if c != base.config => {
            m.notes.push(format!("it was made for the architecture '{}', the loaded base is '{}'", c.describe(), base.config.describe()))
        }
        Some(Err(e)) => m.notes.push(format!("its base_config metadata is invalid ({e})")),
        _ => {}
    }
    if expected.is_empty() {
        m.notes.push(format!("its targets {:?} match no linear of {}", cfg.targets, base.file_name));
    }
    if !m.is_empty() {
        return Err(ModelError::Mismatch(Box::new(m)));
    }
    Ok((f, cfg))
}

/// Loads an adapter file onto `net` (checked by [`read_checked`] first: on any problem nothing
/// changes). Replaces any adapter attached.
pub fn load(path: &Path, net: &mut SamMed3d, base_vs: &mut nn::VarStore, base: &BaseId) -> Result<SamLora, ModelError> {
    let (f, cfg) = read_checked(path, net, base)?;
    let mut lora = attach(net, base_vs, &cfg)?;
    f.copy_into(&lora.vs.variables())?;
    lora.path = Some(path.to_path_buf());
    Ok(lora)
}
