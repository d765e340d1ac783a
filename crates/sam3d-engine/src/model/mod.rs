//! tch: the SAM3D network ([`net`]), SAM-Med3D for published checkpoints ([`sam_med3d`], its LoRA
//! in [`sam_med3d::lora`]), LoRA adapters ([`lora`]), configs ([`config`]), checkpoint I/O ([`checkpoint`]; PyTorch `.pth`
//! files read without Python: [`torchfile`]) and ndarray ↔ tensor conversion ([`convert`]).
//!
//! [`Model`] owns the base `VarStore` and the network, and optionally a LoRA adapter in its own
//! `VarStore`. Weights carry their config in the checkpoint's metadata, so
//! [`Model::from_checkpoint`] rebuilds exactly the architecture and preprocessing they were
//! trained with.

pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod corrector;
pub mod layers;
pub mod lora;
pub mod net;
pub mod sam_med3d;
pub mod torchfile;

pub use checkpoint::Mismatch;
pub use config::{Config, ConfigError, ConfigFile};
pub use layers::HasLinears;
pub use lora::LoraConfig;
pub use net::{NetInputs, NetOutputs, Sam3dNet};

use checkpoint::StFile;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor, nn};

/// Format tag in the metadata of files this module writes.
pub const CHECKPOINT_FORMAT: &str = "sam3d-studio/checkpoint/1";
/// Version 2 carries the task heads the fine-tuning trained (`head/<name>` tensors, see
/// [`is_head`]); version 1 files (adapters only) still load.
pub const ADAPTER_FORMAT: &str = "sam3d-studio/lora/2";
/// Name prefix of the task heads' tensors in an adapter file.
pub const ADAPTER_HEAD_PREFIX: &str = "head/";

/// Whether a base variable belongs to the task heads, which LoRA fine-tuning trains alongside
/// the adapters (the 2D mask head and the 3D shape decoder) and an adapter file carries.
pub fn is_head(name: &str) -> bool {
    name.starts_with("mask_head.") || name.starts_with("decoder.")
}

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    #[error("LoRA: {0}")]
    Lora(String),
    /// An input tensor of the wrong shape (what was expected and what came).
    #[error("{0}")]
    Shape(String),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

pub use crate::protocol::ModelInfo;

#[derive(Debug)]
struct LoraState {
    vs: nn::VarStore,
    config: LoraConfig,
    /// Names of the adapted linears.
    targets: Vec<String>,
    merged: bool,
    path: Option<PathBuf>,
    /// SHA-256 of the base weights the adapter was attached to (what its file names).
    base_sha256: Option<String>,
    /// The base's own heads, replaced by the heads of a loaded adapter file; put back when the
    /// adapter is detached.
    saved_heads: Vec<(String, Tensor)>,
}

/// The network with its weights (and an optional LoRA adapter).
#[derive(Debug)]
pub struct Model {
    config: Config,
    vs: nn::VarStore,
    net: Sam3dNet,
    lora: Option<LoraState>,
    base_path: Option<PathBuf>,
    base_sha256: Option<String>,
    /// Whether the `volume_context` cube is passed to the network (when the config has one).
    use_context: bool,
}

impl Model {
    /// Randomly initialised (for training; never presented as a model to users).
    pub fn new(config: Config, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let net = Sam3dNet::new(&vs.root(), &config);
        Self { config, vs, net, lora: None, base_path: None, base_sha256: None, use_context: true }
    }

    /// Builds the model described by a checkpoint's metadata and loads its weights.
    pub fn from_checkpoint(path: &Path, device: Device) -> Result<Self, ModelError> {
        let f = StFile::read(path)?;
        let cfg_text = f.metadata.get("config").ok_or_else(|| ModelError::File {
            path: path.to_path_buf(),
            problem: "no model config in its metadata: not a sam3d-studio checkpoint".into(),
        })?;
        let config = Config::from_json(cfg_text, &format!("{} (metadata)", path.display()))?;
        let mut m = Self::new(config, device);
        m.load_from(&f)?;
        Ok(m)
    }

    /// Loads base weights from a checkpoint whose names, shapes and config must match exactly.
    pub fn load_weights(&mut self, path: &Path) -> Result<(), ModelError> {
        let f = StFile::read(path)?;
        self.load_from(&f)
    }

    fn load_from(&mut self, f: &StFile) -> Result<(), ModelError> {
        if self.lora.as_ref().is_some_and(|l| l.merged) {
            return Err(ModelError::Lora("unmerge the adapter before loading other base weights".into()));
        }
        self.copy_matching(f, |_| false, |c| c == &self.config, "the model is", false)?;
        self.base_path = Some(f.path.clone());
        self.base_sha256 = Some(f.sha256.clone());
        Ok(())
    }

    /// Warm start: copies the weights of an unguided checkpoint into this model, whose config
    /// must be the checkpoint's with `volume_context.guide` turned on. Only the guide branches
    /// (`decoder.guide*`) may be missing from the file; they keep their initialisation, which
    /// leaves the output unchanged (see `net::ShapeDecoder`). Anything else that does not match
    /// fails with the usual list of names.
    pub fn init_from(&mut self, path: &Path) -> Result<(), ModelError> {
        let f = StFile::read(path)?;
        let unguided = |c: &Config| {
            let mut want = self.config.clone().into_file();
            want.volume_context.guide = c.volume_context.guide;
            want.name.clone_from(&c.name);
            **c == want
        };
        self.copy_matching(&f, |n| n.starts_with("decoder.guide"), unguided, "which is not, without its guide and name, the model's", true)?;
        Ok(())
    }

    /// Copies the file's weights into the base variables, after checking names, shapes and the
    /// config in its metadata (`config_fits`; `what_model` words the note when it does not fit).
    /// Variables for which `may_be_new` holds may be missing from the file: they keep their
    /// values. Any other difference fails with the list of names, as does a file without a
    /// config when `require_config`.
    fn copy_matching(
        &self,
        f: &StFile,
        may_be_new: impl Fn(&str) -> bool,
        config_fits: impl Fn(&Config) -> bool,
        what_model: &str,
        require_config: bool,
    ) -> Result<(), ModelError> {
        let vars = self.vs.variables();
        let mut m = f.compare(&checkpoint::shapes_of(&vars), "checkpoint");
        let new: Vec<String> = m.missing.iter().filter(|n| may_be_new(n)).cloned().collect();
        m.missing.retain(|n| !may_be_new(n));
        match f.metadata.get("config").map(|c| Config::from_json(c, "metadata")) {
            Some(Ok(c)) if !config_fits(&c) => m.notes.push(format!(
                "it was trained with config '{}' ({}), {what_model} '{}' ({})",
                c.name,
                c.to_json(),
                self.config.name,
                self.config.to_json()
            )),
            Some(Err(e)) => m.notes.push(format!("its config metadata is invalid ({e})")),
            None if require_config => m.notes.push("no model config in its metadata: not a sam3d-studio checkpoint".into()),
            _ => {}
        }
        if !m.is_empty() {
            return Err(ModelError::Mismatch(Box::new(m)));
        }
        let present: HashMap<String, Tensor> = vars.into_iter().filter(|(n, _)| !new.contains(n)).collect();
        f.copy_into(&present)
    }

    /// Saves the base weights (with the config in the metadata), atomically. The saved file
    /// becomes the base that adapters refer to (unless an adapter is merged in).
    pub fn save_weights(&mut self, path: &Path) -> Result<String, ModelError> {
        let mut meta = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("config".to_string(), self.config.to_json()),
        ]);
        let merged = self.lora.as_ref().filter(|l| l.merged);
        if let Some(l) = merged {
            meta.insert("merged_lora".into(), serde_json::to_string(&l.config).unwrap_or_default());
        }
        let sha = checkpoint::write(path, &self.vs.variables(), meta)?;
        if merged.is_none() {
            self.base_path = Some(path.to_path_buf());
            self.base_sha256 = Some(sha.clone());
        }
        Ok(sha)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn device(&self) -> Device {
        self.vs.device()
    }
    pub fn net(&self) -> &Sam3dNet {
        &self.net
    }
    /// The base weights' store (frozen while an adapter is attached).
    pub fn base_vs(&self) -> &nn::VarStore {
        &self.vs
    }
    pub fn base_vs_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }
    /// The adapter's store: build the fine-tuning optimiser on this one.
    pub fn adapter_vs(&self) -> Option<&nn::VarStore> {
        self.lora.as_ref().map(|l| &l.vs)
    }
    /// The file the attached adapter was loaded from (`None`: none, or attached in memory).
    pub fn adapter_path(&self) -> Option<&Path> {
        self.lora.as_ref().and_then(|l| l.path.as_deref())
    }
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref().map(|l| &l.config)
    }
    pub fn base_sha256(&self) -> Option<&str> {
        self.base_sha256.as_deref()
    }

    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            preset: self.config.name.clone(),
            weights: self.base_path.clone(),
            weights_sha256: self.base_sha256.clone(),
            adapter: self.lora.as_ref().and_then(|l| l.path.clone()),
            adapter_rank: self.lora.as_ref().map(|l| l.config.rank),
            adapter_merged: self.lora.as_ref().is_some_and(|l| l.merged),
            parameters: self.vs.variables().values().map(|t| t.numel()).sum(),
            device: format!("{:?}", self.device()),
            corrector: None,
        }
    }

    pub fn forward_t(&self, x: &NetInputs, train: bool) -> NetOutputs {
        match self.without_context(x) {
            Some(x) => self.net.forward_t(&x, train),
            None => self.net.forward_t(x, train),
        }
    }
    pub fn forward_mask(&self, x: &NetInputs, train: bool) -> Tensor {
        match self.without_context(x) {
            Some(x) => self.net.forward_mask(&x, train),
            None => self.net.forward_mask(x, train),
        }
    }

    /// Turns the `volume_context` input off (single-slice mode) or back on. A model trained
    /// with context dropout serves both; one trained without context ignores it anyway.
    pub fn set_use_context(&mut self, on: bool) {
        self.use_context = on;
    }
    pub fn uses_context(&self) -> bool {
        self.use_context && self.config.volume_context.enabled
    }

    fn without_context(&self, x: &NetInputs) -> Option<NetInputs> {
        (!self.use_context && x.context.is_some())
            .then(|| NetInputs { context: None, guide: None, ..x.with_mask(x.mask.shallow_clone(), x.pointmap.shallow_clone()) })
    }

    /// Names of every linear (what LoRA target patterns are matched against).
    pub fn linear_names(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        self.net.visit_linears(&mut |l| names.push(l.name.clone()));
        names
    }

    /// Name → shape of the adapter tensors `cfg` would create.
    fn adapter_shapes(&mut self, cfg: &LoraConfig) -> BTreeMap<String, Vec<usize>> {
        let r = cfg.rank;
        let mut out = BTreeMap::new();
        self.net.visit_linears(&mut |l| {
            if cfg.matches(&l.name) {
                out.insert(format!("{}.lora_A.weight", l.name), vec![r, l.in_dim as usize]);
                out.insert(format!("{}.lora_B.weight", l.name), vec![l.out_dim as usize, r]);
            }
        });
        out
    }

    /// Attaches a fresh adapter (B = 0: outputs unchanged) to every linear matching
    /// `cfg.targets`, in a new `VarStore`, and freezes the base. Replaces any previous adapter.
    /// Returns the number of adapted linears.
    pub fn attach_lora(&mut self, cfg: &LoraConfig) -> Result<usize, ModelError> {
        cfg.check().map_err(ModelError::Lora)?;
        self.detach_lora();
        let vs = nn::VarStore::new(self.device());
        let root = vs.root();
        let mut targets = Vec::new();
        self.net.visit_linears(&mut |l| {
            if cfg.matches(&l.name) {
                let mut p = root.clone();
                for seg in l.name.split('.') {
                    p = p.sub(seg);
                }
                l.lora = Some(lora::LoraAdapter::new(&p, l.in_dim, l.out_dim, cfg));
                targets.push(l.name.clone());
            }
        });
        if targets.is_empty() {
            self.detach_lora();
            let names = self.linear_names();
            return Err(ModelError::Lora(format!(
                "the target patterns {:?} match no linear layer; the model's linears are: {}",
                cfg.targets,
                names.join(", ")
            )));
        }
        self.vs.freeze();
        let n = targets.len();
        let base_sha256 = self.base_sha256.clone();
        self.lora = Some(LoraState { vs, config: cfg.clone(), targets, merged: false, path: None, base_sha256, saved_heads: Vec::new() });
        Ok(n)
    }

    /// Removes the adapter (unmerging it first if merged), puts back the base's heads if the
    /// adapter's file replaced them, and makes the base trainable again.
    pub fn detach_lora(&mut self) {
        if self.lora.as_ref().is_some_and(|l| l.merged) {
            self.unmerge_lora();
        }
        self.net.visit_linears(&mut |l| l.lora = None);
        if let Some(l) = self.lora.take() {
            let vars = self.vs.variables();
            let _g = tch::no_grad_guard();
            for (n, t) in &l.saved_heads {
                if let Some(v) = vars.get(n) {
                    v.shallow_clone().copy_(t);
                }
            }
            self.vs.unfreeze();
        }
    }

    /// Names the base weights the attached adapter belongs to, for a fine-tuning run resumed
    /// from a checkpoint that is not that base (the base with its trained heads); `None`: the
    /// base weights last saved ([`Model::save_weights`]), for a run with no base checkpoint.
    pub fn set_adapter_base_sha256(&mut self, sha: Option<String>) {
        if let Some(l) = self.lora.as_mut() {
            l.base_sha256 = sha;
        }
    }
    /// SHA-256 of the base weights the attached adapter belongs to.
    pub fn adapter_base_sha256(&self) -> Option<&str> {
        self.lora.as_ref().and_then(|l| l.base_sha256.as_deref())
    }

    /// Adds `scale·B·A` into each adapted base weight; the forward then skips the adapters.
    pub fn merge_lora(&mut self) -> bool {
        self.set_merged(true)
    }
    /// Subtracts what [`Model::merge_lora`] added.
    pub fn unmerge_lora(&mut self) -> bool {
        self.set_merged(false)
    }

    fn set_merged(&mut self, merge: bool) -> bool {
        let Some(state) = self.lora.as_mut() else { return false };
        if state.merged == merge {
            return false;
        }
        let _guard = tch::no_grad_guard();
        self.net.visit_linears(&mut |l| {
            if let Some(a) = l.lora.as_mut() {
                let d = a.weight_delta();
                let _ = if merge { l.ws.f_add_(&d) } else { l.ws.f_sub_(&d) };
                a.merged = merge;
            }
        });
        state.merged = merge;
        true
    }

    /// Saves the adapter with the task heads (`head/<name>`, [`is_head`]) and metadata: the
    /// SHA-256 of the base checkpoint it was attached to (else of the last one saved), model
    /// config, rank, alpha, dropout, targets. About 1 MB of heads for the small preset: what
    /// lets the file alone turn the shipped base into the fine-tuned model.
    pub fn save_adapter(&self, path: &Path) -> Result<(), ModelError> {
        let l = self.lora.as_ref().ok_or_else(|| ModelError::Lora("no adapter attached".into()))?;
        if l.merged {
            return Err(ModelError::Lora("unmerge the adapter before saving it".into()));
        }
        let base = l.base_sha256.clone().or_else(|| self.base_sha256.clone()).ok_or_else(|| {
            ModelError::Lora("the base weights were never saved or loaded, so the adapter could not name them; save the base checkpoint first".into())
        })?;
        let meta = HashMap::from([
            ("format".to_string(), ADAPTER_FORMAT.to_string()),
            ("base_sha256".to_string(), base),
            ("config".to_string(), self.config.to_json()),
            ("lora".to_string(), serde_json::to_string(&l.config).unwrap_or_default()),
            ("rank".to_string(), l.config.rank.to_string()),
            ("alpha".to_string(), l.config.alpha.to_string()),
            ("dropout".to_string(), l.config.dropout.to_string()),
            ("targets".to_string(), serde_json::to_string(&l.config.targets).unwrap_or_default()),
        ]);
        let mut tensors = l.vs.variables();
        tensors.extend(self.vs.variables().into_iter().filter(|(n, _)| is_head(n)).map(|(n, t)| (format!("{ADAPTER_HEAD_PREFIX}{n}"), t)));
        checkpoint::write(path, &tensors, meta)?;
        Ok(())
    }

    /// Compares an adapter file with the adapter tensors `expected` and its head tensors with
    /// this model's heads (each `head/<name>` must be a head of the base with its shape).
    /// Returns the problems and the heads to copy (file name, base name).
    fn compare_adapter(&self, f: &StFile, expected: &BTreeMap<String, Vec<usize>>) -> (Mismatch, Vec<(String, String)>) {
        let mut m = f.compare(expected, "LoRA adapter");
        m.unexpected.retain(|n| !n.starts_with(ADAPTER_HEAD_PREFIX));
        let base = checkpoint::shapes_of(&self.vs.variables());
        let mut heads = Vec::new();
        for (name, shape) in f.shapes() {
            let Some(n) = name.strip_prefix(ADAPTER_HEAD_PREFIX) else { continue };
            match base.get(n) {
                Some(s) if is_head(n) && *s == shape => heads.push((name.clone(), n.to_string())),
                Some(s) if is_head(n) => m.misshaped.push((name.clone(), shape, s.clone())),
                _ => m.unexpected.push(name.clone()),
            }
        }
        (m, heads)
    }

    /// Loads an adapter file: its metadata says rank, alpha and targets; it must name this
    /// base checkpoint and config, and its tensors must be exactly those that LoRA config
    /// creates, plus (format 2) the task heads it trained, which replace the base's until the
    /// adapter is detached. On any mismatch nothing changes and the error lists every problem.
    pub fn load_adapter(&mut self, path: &Path) -> Result<usize, ModelError> {
        let f = StFile::read(path)?;
        let cfg: LoraConfig = f
            .metadata
            .get("lora")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| ModelError::File { path: path.to_path_buf(), problem: "no LoRA config in its metadata: not a sam3d-studio adapter".into() })?;
        cfg.check().map_err(|e| ModelError::File { path: path.to_path_buf(), problem: e })?;
        let expected = self.adapter_shapes(&cfg);
        let (mut m, heads) = self.compare_adapter(&f, &expected);
        self.check_adapter_meta(&f, &mut m);
        if expected.is_empty() {
            m.notes.push(format!("its targets {:?} match no linear of this model", cfg.targets));
        }
        if !m.is_empty() {
            return Err(ModelError::Mismatch(Box::new(m)));
        }
        let n = self.attach_lora(&cfg)?;
        self.copy_heads(&f, &heads)?;
        if let Some(l) = self.lora.as_mut() {
            f.copy_into(&l.vs.variables())?;
            l.path = Some(path.to_path_buf());
        }
        Ok(n)
    }

    /// Copies an adapter file's heads (file name, base name) into the base, keeping the base's
    /// own values (the first time) to put back on detach.
    fn copy_heads(&mut self, f: &StFile, heads: &[(String, String)]) -> Result<(), ModelError> {
        let vars = self.vs.variables();
        let Some(l) = self.lora.as_mut() else { return Ok(()) };
        let _g = tch::no_grad_guard();
        for (file_name, n) in heads {
            let v = &vars[n];
            if !l.saved_heads.iter().any(|(s, _)| s == n) {
                l.saved_heads.push((n.clone(), v.copy()));
            }
            let src = f.tensor(file_name)?;
            v.shallow_clone().f_copy_(&src.to_device(v.device())).map_err(|e| ModelError::File { path: f.path.clone(), problem: format!("{file_name}: {e}") })?;
        }
        Ok(())
    }

    /// Loads adapter weights (and the heads the file carries) into the adapter already attached
    /// (e.g. resuming a fine-tuning run with a given LoRA config): the file's rank and targets
    /// must be the attached ones.
    pub fn load_adapter_weights(&mut self, path: &Path) -> Result<(), ModelError> {
        let f = StFile::read(path)?;
        let Some(cfg) = self.lora.as_ref().map(|l| l.config.clone()) else {
            return Err(ModelError::Lora("no adapter attached to load weights into".into()));
        };
        let expected = self.adapter_shapes(&cfg);
        let (mut m, heads) = self.compare_adapter(&f, &expected);
        if let Some(Ok(file_cfg)) = f.metadata.get("lora").map(|s| serde_json::from_str::<LoraConfig>(s)) {
            if file_cfg.rank != cfg.rank {
                m.notes.push(format!("rank {} in the file, {} attached", file_cfg.rank, cfg.rank));
            }
            if file_cfg.targets != cfg.targets {
                m.notes.push(format!("targets {:?} in the file, {:?} attached", file_cfg.targets, cfg.targets));
            }
            if file_cfg.alpha != cfg.alpha {
                m.notes.push(format!("alpha {} in the file, {} attached", file_cfg.alpha, cfg.alpha));
            }
        }
        self.check_adapter_meta(&f, &mut m);
        if !m.is_empty() {
            return Err(ModelError::Mismatch(Box::new(m)));
        }
        if let Some(l) = self.lora.as_mut() {
            if l.merged {
                return Err(ModelError::Lora("unmerge the adapter before loading new adapter weights".into()));
            }
            f.copy_into(&l.vs.variables())?;
            l.path = Some(path.to_path_buf());
        }
        self.copy_heads(&f, &heads)
    }

    fn check_adapter_meta(&self, f: &StFile, m: &mut Mismatch) {
        match (f.metadata.get("base_sha256"), &self.base_sha256) {
            (Some(file), Some(ours)) if file != ours => {
                m.notes.push(format!("it was trained on base weights with SHA-256 {file}, the loaded base is {ours}"))
            }
            (Some(_), None) => m.notes.push("the model's base weights were not loaded from a checkpoint, so the adapter's base cannot be verified".into()),
            (None, _) => m.notes.push("it does not name its base checkpoint (no base_sha256 in its metadata)".into()),
            _ => {}
        }
        match f.metadata.get("config").map(|c| Config::from_json(c, "metadata")) {
            Some(Ok(c)) if c != self.config => {
                m.notes.push(format!("it was made for config '{}', the model is '{}'", c.name, self.config.name))
            }
            Some(Err(e)) => m.notes.push(format!("its config metadata is invalid ({e})")),
            _ => {}
        }
    }

    /// Names of the adapted linears.
    pub fn lora_targets(&self) -> &[String] {
        self.lora.as_ref().map(|l| l.targets.as_slice()).unwrap_or(&[])
    }
}

/// Picks a device: `auto` (CUDA when libtorch sees a GPU, else CPU), `cpu`, `cuda`, `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err("--device cuda: libtorch sees no CUDA GPU (driver missing, or a CPU-only libtorch)".into())
            }
        }
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) if (n as i64) < tch::Cuda::device_count() => Ok(Device::Cuda(n)),
            Some(Ok(n)) => Err(format!("--device cuda:{n}: only {} CUDA device(s) visible", tch::Cuda::device_count())),
            _ => Err(format!("unknown device '{s}' (expected auto, cpu, cuda or cuda:N)")),
        },
    }
}
