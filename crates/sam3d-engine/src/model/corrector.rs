//! The corrector: a small 3D U-Net that turns an object's previous candidate and its prompt
//! points into a corrected mask (issue 21), on the cube of [`crate::data::correction`].
//!
//! Input `[B, 4, N, N, N]` (scan, previous candidate, positive and negative points), output
//! `[B, 1, N, N, N]` logits. Each level is two 3×3×3 convolutions with group normalisation
//! and leaky ReLU; a strided convolution goes down, a transposed one up, skips are concatenated.
//! The previous candidate is also added to the logits as `prior · (2p − 1)` (`prior` learned,
//! starting at 2), so that an untrained network already returns the candidate it was given
//! and training learns what to change.
//!
//! Checkpoints are safetensors files whose metadata holds the [`CorrectorConfig`] as JSON
//! (`sam3d.corrector`); loading checks every tensor's name and shape against that config.

use super::ModelError;
use super::checkpoint::{self, StFile};
use crate::data::correction::CHANNELS;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor, nn, nn::Module};

/// The metadata key of a corrector checkpoint's config.
pub const META_KEY: &str = "sam3d.corrector";

/// The network's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrectorConfig {
    /// Channels at full resolution; each level down doubles them.
    pub base: i64,
    /// Levels below full resolution.
    pub levels: usize,
    /// Cells along each side of the cube it is trained and run on (a multiple of `2^levels`).
    pub cells: usize,
}

impl CorrectorConfig {
    /// The shipped size.
    pub const SMALL: CorrectorConfig = CorrectorConfig { base: 8, levels: 3, cells: 48 };
    /// For tests.
    pub const TINY: CorrectorConfig = CorrectorConfig { base: 4, levels: 2, cells: 16 };

    pub fn check(&self) -> Result<(), String> {
        let step = 1usize << self.levels;
        if self.base < 1 || self.base > 32 {
            return Err(format!("base {} (1–32 channels)", self.base));
        }
        if self.levels == 0 || self.levels > 5 || self.cells < step || self.cells % step != 0 || self.cells > 128 {
            return Err(format!("cells {} must be a multiple of 2^levels = {step} (levels 1–5, at most 128 cells)", self.cells));
        }
        Ok(())
    }
}

fn groups(c: i64) -> i64 {
    if c % 4 == 0 { 4 } else { 1 }
}

#[derive(Debug)]
struct DoubleConv {
    c1: nn::Conv3D,
    n1: nn::GroupNorm,
    c2: nn::Conv3D,
    n2: nn::GroupNorm,
}

impl DoubleConv {
    fn new(p: &nn::Path, cin: i64, cout: i64) -> Self {
        let cfg = nn::ConvConfig { padding: 1, ..Default::default() };
        DoubleConv {
            c1: nn::conv3d(p / "c1", cin, cout, 3, cfg),
            n1: nn::group_norm(p / "n1", groups(cout), cout, Default::default()),
            c2: nn::conv3d(p / "c2", cout, cout, 3, cfg),
            n2: nn::group_norm(p / "n2", groups(cout), cout, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.n1.forward(&self.c1.forward(x)).leaky_relu();
        self.n2.forward(&self.c2.forward(&x)).leaky_relu()
    }
}

/// The network and its weights.
#[derive(Debug)]
pub struct Corrector {
    pub vs: nn::VarStore,
    pub config: CorrectorConfig,
    enc: Vec<DoubleConv>,
    down: Vec<nn::Conv3D>,
    up: Vec<nn::ConvTranspose3D>,
    dec: Vec<DoubleConv>,
    head: nn::Conv3D,
    prior: Tensor,
}

impl Corrector {
    /// A freshly initialised network (seeded by libtorch's global generator).
    pub fn new(config: CorrectorConfig, device: Device) -> Result<Self, ModelError> {
        config.check().map_err(ModelError::Shape)?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let width = |l: usize| config.base << l;
        let mut enc = vec![DoubleConv::new(&(&root / "enc0"), CHANNELS as i64, width(0))];
        let (mut down, mut up, mut dec) = (Vec::new(), Vec::new(), Vec::new());
        let strided = nn::ConvConfig { stride: 2, ..Default::default() };
        let tcfg = nn::ConvTransposeConfig { stride: 2, ..Default::default() };
        for l in 1..=config.levels {
            down.push(nn::conv3d(&root / format!("down{l}"), width(l - 1), width(l - 1), 2, strided));
            enc.push(DoubleConv::new(&(&root / format!("enc{l}")), width(l - 1), width(l)));
            up.push(nn::conv_transpose3d(&root / format!("up{l}"), width(l), width(l - 1), 2, tcfg));
            dec.push(DoubleConv::new(&(&root / format!("dec{l}")), 2 * width(l - 1), width(l - 1)));
        }
        let head = nn::conv3d(&root / "head", width(0), 1, 1, Default::default());
        let prior = root.var("prior", &[1], nn::Init::Const(2.0));
        Ok(Corrector { vs, config, enc, down, up, dec, head, prior })
    }

    /// Logits `[B, 1, N, N, N]` of the input `[B, 4, N, N, N]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut skips = Vec::with_capacity(self.config.levels + 1);
        let mut h = self.enc[0].forward(x);
        for l in 1..=self.config.levels {
            skips.push(h.shallow_clone());
            h = self.enc[l].forward(&self.down[l - 1].forward(&h).leaky_relu());
        }
        for l in (1..=self.config.levels).rev() {
            let u = self.up[l - 1].forward(&h);
            h = self.dec[l - 1].forward(&Tensor::cat(&[u, skips.pop().unwrap_or_else(|| Tensor::zeros([1], (Kind::Float, x.device())))], 1));
        }
        let previous = x.narrow(1, 1, 1);
        self.head.forward(&h) + &self.prior * (previous * 2.0 - 1.0)
    }

    /// One cube's logits (`[4, N, N, N]` in → `[N, N, N]` out), without gradients.
    pub fn predict(&self, input: &ndarray::Array4<f32>) -> Result<ndarray::Array3<f32>, ModelError> {
        let n = self.config.cells;
        if input.shape() != [CHANNELS, n, n, n] {
            return Err(ModelError::Shape(format!("corrector input {:?}, expected [{CHANNELS}, {n}, {n}, {n}]", input.shape())));
        }
        let _guard = tch::no_grad_guard();
        let x = super::convert::tensor_from(input, self.vs.device()).unsqueeze(0);
        let y = self.forward(&x).squeeze_dim(0).squeeze_dim(0).to_device(Device::Cpu).contiguous();
        let v: Vec<f32> = Vec::<f32>::try_from(&y.reshape([-1]))?;
        ndarray::Array3::from_shape_vec((n, n, n), v).map_err(|e| ModelError::Shape(e.to_string()))
    }

    /// Trainable tensors by name.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Writes the weights with the config (and `extra` metadata), atomically. Returns the
    /// file's SHA-256.
    pub fn save(&self, path: &Path, extra: HashMap<String, String>) -> Result<String, ModelError> {
        let mut meta = extra;
        meta.insert(META_KEY.into(), serde_json::to_string(&self.config).map_err(|e| ModelError::Shape(e.to_string()))?);
        checkpoint::write(path, &self.vs.variables(), meta)
    }

    /// Reads a corrector checkpoint: its config from the metadata, every tensor checked.
    pub fn load(path: &Path, device: Device) -> Result<Self, ModelError> {
        let file = StFile::read(path)?;
        let raw = file.metadata.get(META_KEY).ok_or_else(|| ModelError::File {
            path: path.to_path_buf(),
            problem: format!("not a corrector checkpoint (no '{META_KEY}' in its metadata)"),
        })?;
        let config: CorrectorConfig = serde_json::from_str(raw).map_err(|e| ModelError::File { path: path.to_path_buf(), problem: format!("{META_KEY}: {e}") })?;
        config.check().map_err(|e| ModelError::File { path: path.to_path_buf(), problem: format!("{META_KEY}: {e}") })?;
        let net = Corrector::new(config, device)?;
        let vars = net.vs.variables();
        let mismatch = file.compare(&checkpoint::shapes_of(&vars), "corrector");
        if !mismatch.is_empty() {
            return Err(ModelError::Mismatch(Box::new(mismatch)));
        }
        file.copy_into(&vars)?;
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untrained_corrector_returns_the_candidate_it_was_given() {
        tch::manual_seed(0);
        let c = CorrectorConfig::TINY;
        let net = Corrector::new(c, Device::Cpu).expect("net");
        let n = c.cells;
        let mut x = ndarray::Array4::<f32>::zeros((CHANNELS, n, n, n));
        for k in 4..12 {
            for j in 4..12 {
                for i in 4..12 {
                    x[[1, k, j, i]] = 1.0;
                }
            }
        }
        // The head starts small against the prior: the sign follows the candidate.
        let mut head = net.vs.variables()["head.weight"].shallow_clone();
        tch::no_grad(|| {
            let _ = head.zero_();
        });
        let y = net.predict(&x).expect("predict");
        assert_eq!(y.shape(), &[n, n, n]);
        assert!(y[[8, 8, 8]] > 1.0 && y[[0, 0, 0]] < -1.0, "{} {}", y[[8, 8, 8]], y[[0, 0, 0]]);
        let wrong = ndarray::Array4::<f32>::zeros((CHANNELS, n, n, n + 1));
        assert!(matches!(net.predict(&wrong), Err(ModelError::Shape(_))));
    }

    #[test]
    fn a_saved_corrector_loads_with_its_config_and_a_wrong_file_is_named() {
        tch::manual_seed(1);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.safetensors");
        let net = Corrector::new(CorrectorConfig::TINY, Device::Cpu).expect("net");
        net.save(&path, HashMap::new()).expect("save");
        let back = Corrector::load(&path, Device::Cpu).expect("load");
        assert_eq!(back.config, CorrectorConfig::TINY);
        let x = ndarray::Array4::<f32>::from_shape_fn((CHANNELS, 16, 16, 16), |(c, k, j, i)| ((c * 7 + k * 3 + j + i) % 5) as f32 / 5.0);
        assert_eq!(net.predict(&x).expect("a"), back.predict(&x).expect("b"));
        // Any other safetensors file: named, with what is missing.
        let other = dir.path().join("other.safetensors");
        checkpoint::write(&other, &HashMap::from([("w".to_string(), Tensor::zeros([2], (Kind::Float, Device::Cpu)))]), HashMap::new()).expect("write");
        let e = Corrector::load(&other, Device::Cpu).expect_err("not a corrector").to_string();
        assert!(e.contains("other.safetensors") && e.contains("not a corrector"), "{e}");
    }
}
