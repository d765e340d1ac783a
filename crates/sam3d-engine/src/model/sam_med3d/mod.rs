//! SAM-Med3D (Wang et al., the `medim` package's `sam_med3d.py`) in tch, for published
//! checkpoints (`sam_med3d.pth`, `sam_med3d_turbo.pth`).
//!
//! - [`encoder`]: the 3D ViT image encoder (`image_encoder.*`): 16³ patches, absolute position
//!   embedding, blocks with decomposed relative positions, windowed (window 14, the token grid
//!   zero-padded to a multiple of it *without* an attention mask, as the reference does) or
//!   global, and the neck to `prompt_dim` channels with 3D layer norms.
//! - [`prompt`]: the prompt encoder (`prompt_encoder.*`): random Gaussian Fourier positional
//!   encoding (a buffer in the state dict), point embeddings, mask down-scaling.
//! - [`decoder`]: the two-way-transformer mask decoder (`mask_decoder.*`) giving low-resolution
//!   logits (a quarter of the input size: 32³ for 128³) and the IoU prediction.
//!
//! Two quirks of the reference are reproduced on purpose, because the published weights were
//! trained with them: its decomposed relative positions broadcast the d/h/w terms onto other
//! axes than their names say (see [`encoder::Attention`]), and its dense positional encoding
//! pairs a point's first coordinate with the grid's second axis (see [`prompt`]). Neither
//! changes the point convention of [`SamMed3d::decode`]: (d, h, w) tensor indices.
//!
//! Variable names are exactly the reference's state-dict keys, so a checkpoint's
//! `model_state_dict` copies in name by name. Encode once ([`SamMed3d::image_embedding`]), then
//! decode many prompts ([`SamMed3d::decode`]) on the cached embedding.
//!
//! Parity with the reference is tested by `tests/sam_med3d_parity.rs` against fixtures from
//! `tests/oracle/sam_med3d_fixtures.py` (random weights, reduced widths).

pub mod decoder;
pub mod encoder;
pub mod lora;
pub mod prompt;

use super::ModelError;
use super::layers::{HasLinears, Linear};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

pub use decoder::MaskDecoder;
pub use encoder::ImageEncoder;
pub use prompt::PromptEncoder;

/// The architecture's numbers. [`SamMed3dConfig::vit_b`] is the published one; every field is a
/// constructor argument of the reference classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamMed3dConfig {
    /// Side of the cubic input crop (voxels).
    pub img_size: i64,
    /// Side of the cubic patches (the token grid is `img_size / patch_size` per axis).
    pub patch_size: i64,
    pub encoder_width: i64,
    pub encoder_depth: i64,
    pub encoder_heads: i64,
    /// MLP hidden width = `mlp_ratio · encoder_width`.
    pub mlp_ratio: i64,
    /// Window side of the windowed blocks (tokens); the grid is zero-padded to a multiple.
    pub window_size: i64,
    /// Blocks with global attention (the others are windowed).
    pub global_attn_indexes: Vec<i64>,
    /// Channels of the image embedding, the prompt embeddings and the decoder (the reference's
    /// `out_chans` / `prompt_embed_dim` / `transformer_dim`).
    pub prompt_dim: i64,
    /// Hidden channels of the mask down-scaling.
    pub mask_in_chans: i64,
    pub decoder_depth: i64,
    pub decoder_heads: i64,
    /// Hidden width of the two-way transformer's MLPs (2048 in medim, hard-coded there).
    pub decoder_mlp_dim: i64,
    pub num_multimask_outputs: i64,
    pub iou_head_depth: i64,
    pub iou_head_hidden_dim: i64,
}

impl SamMed3dConfig {
    /// The published SAM-Med3D / SAM-Med3D-turbo network: medim's `build_sam3D_vit_b_ori`
    /// (ViT-B: width 768, 12 blocks, 12 heads, global blocks 2, 5, 8, 11, window 14; 128³ input,
    /// 16³ patches; prompt width 384, `mask_in_chans` 16; decoder depth 2, 8 heads, MLP 2048,
    /// 3 multimask outputs, IoU head 3 × 256).
    pub fn vit_b() -> Self {
        Self {
            img_size: 128,
            patch_size: 16,
            encoder_width: 768,
            encoder_depth: 12,
            encoder_heads: 12,
            mlp_ratio: 4,
            window_size: 14,
            global_attn_indexes: vec![2, 5, 8, 11],
            prompt_dim: 384,
            mask_in_chans: 16,
            decoder_depth: 2,
            decoder_heads: 8,
            decoder_mlp_dim: 2048,
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 256,
        }
    }

    /// The reduced configuration of the parity fixtures (`tests/oracle/sam_med3d_fixtures.py`):
    /// the same architecture — 128³ input, 16³ patches, an 8³ grid padded to the 14-token window,
    /// windowed and global blocks, the decoder's depth and heads — with small widths: encoder 32
    /// (4 heads, depth 6, global blocks 2 and 5), prompt width 48, decoder MLP 64, IoU head 32.
    pub fn reduced() -> Self {
        Self {
            encoder_width: 32,
            encoder_depth: 6,
            encoder_heads: 4,
            global_attn_indexes: vec![2, 5],
            prompt_dim: 48,
            decoder_mlp_dim: 64,
            iou_head_hidden_dim: 32,
            ..Self::vit_b()
        }
    }

    /// Tokens per axis of the image embedding.
    pub fn grid(&self) -> i64 {
        self.img_size / self.patch_size
    }

    /// Side of the low-resolution logits and of the mask prompt (4 × the grid).
    pub fn low_res_size(&self) -> i64 {
        4 * self.grid()
    }

    pub fn num_mask_tokens(&self) -> i64 {
        self.num_multimask_outputs + 1
    }

    /// Whether the numbers make a network (divisibility the reference asserts or assumes).
    pub fn check(&self) -> Result<(), String> {
        let mut bad = Vec::new();
        let pos = [
            ("img_size", self.img_size),
            ("patch_size", self.patch_size),
            ("encoder_width", self.encoder_width),
            ("encoder_depth", self.encoder_depth),
            ("encoder_heads", self.encoder_heads),
            ("mlp_ratio", self.mlp_ratio),
            ("window_size", self.window_size),
            ("prompt_dim", self.prompt_dim),
            ("mask_in_chans", self.mask_in_chans),
            ("decoder_depth", self.decoder_depth),
            ("decoder_heads", self.decoder_heads),
            ("decoder_mlp_dim", self.decoder_mlp_dim),
            ("iou_head_depth", self.iou_head_depth),
            ("iou_head_hidden_dim", self.iou_head_hidden_dim),
        ];
        for (n, v) in pos {
            if v <= 0 {
                bad.push(format!("{n} must be positive (is {v})"));
            }
        }
        if self.num_multimask_outputs < 0 {
            bad.push("num_multimask_outputs must not be negative".into());
        }
        if !bad.is_empty() {
            return Err(bad.join("; "));
        }
        if self.img_size % self.patch_size != 0 {
            bad.push(format!("img_size {} is not a multiple of patch_size {}", self.img_size, self.patch_size));
        }
        if self.encoder_width % self.encoder_heads != 0 {
            bad.push(format!("encoder_width {} is not a multiple of encoder_heads {}", self.encoder_width, self.encoder_heads));
        }
        if self.prompt_dim % 3 != 0 {
            bad.push(format!("prompt_dim {} is not a multiple of 3 (the positional encoding has 3 × prompt_dim/3 channels)", self.prompt_dim));
        }
        if self.prompt_dim % 8 != 0 {
            bad.push(format!("prompt_dim {} is not a multiple of 8 (the output up-scaling divides it by 4 and 8)", self.prompt_dim));
        }
        if self.prompt_dim % self.decoder_heads != 0 || (self.prompt_dim / 2) % self.decoder_heads != 0 {
            bad.push(format!("prompt_dim {} and its half must be multiples of decoder_heads {}", self.prompt_dim, self.decoder_heads));
        }
        if self.mask_in_chans % 4 != 0 {
            bad.push(format!("mask_in_chans {} is not a multiple of 4", self.mask_in_chans));
        }
        if let Some(i) = self.global_attn_indexes.iter().find(|&&i| i < 0 || i >= self.encoder_depth) {
            bad.push(format!("global attention block {i} is outside 0..{}", self.encoder_depth));
        }
        if bad.is_empty() { Ok(()) } else { Err(bad.join("; ")) }
    }

    /// Every state-dict key of this architecture with its shape, in the reference's
    /// `state_dict()` order (what a checkpoint must hold; see also [`SamMed3d::new`]'s
    /// `VarStore`, which holds exactly these).
    pub fn expected_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let mut v: Vec<(String, Vec<i64>)> = Vec::new();
        let mut add = |n: String, s: &[i64]| v.push((n, s.to_vec()));
        let (w, g, p, c) = (self.encoder_width, self.grid(), self.patch_size, self.prompt_dim);
        let e = "image_encoder";
        add(format!("{e}.pos_embed"), &[1, g, g, g, w]);
        add(format!("{e}.patch_embed.proj.weight"), &[w, 1, p, p, p]);
        add(format!("{e}.patch_embed.proj.bias"), &[w]);
        let hd = w / self.encoder_heads;
        let hidden = w * self.mlp_ratio;
        for i in 0..self.encoder_depth {
            let b = format!("{e}.blocks.{i}");
            let span = if self.global_attn_indexes.contains(&i) { g } else { self.window_size };
            add(format!("{b}.norm1.weight"), &[w]);
            add(format!("{b}.norm1.bias"), &[w]);
            for axis in ["d", "h", "w"] {
                add(format!("{b}.attn.rel_pos_{axis}"), &[2 * span - 1, hd]);
            }
            add(format!("{b}.attn.qkv.weight"), &[3 * w, w]);
            add(format!("{b}.attn.qkv.bias"), &[3 * w]);
            add(format!("{b}.attn.proj.weight"), &[w, w]);
            add(format!("{b}.attn.proj.bias"), &[w]);
            add(format!("{b}.norm2.weight"), &[w]);
            add(format!("{b}.norm2.bias"), &[w]);
            add(format!("{b}.mlp.lin1.weight"), &[hidden, w]);
            add(format!("{b}.mlp.lin1.bias"), &[hidden]);
            add(format!("{b}.mlp.lin2.weight"), &[w, hidden]);
            add(format!("{b}.mlp.lin2.bias"), &[w]);
        }
        add(format!("{e}.neck.0.weight"), &[c, w, 1, 1, 1]);
        add(format!("{e}.neck.1.weight"), &[c]);
        add(format!("{e}.neck.1.bias"), &[c]);
        add(format!("{e}.neck.2.weight"), &[c, c, 3, 3, 3]);
        add(format!("{e}.neck.3.weight"), &[c]);
        add(format!("{e}.neck.3.bias"), &[c]);

        let pe = "prompt_encoder";
        add(format!("{pe}.pe_layer.positional_encoding_gaussian_matrix"), &[3, c / 3]);
        add(format!("{pe}.point_embeddings.0.weight"), &[1, c]);
        add(format!("{pe}.point_embeddings.1.weight"), &[1, c]);
        add(format!("{pe}.not_a_point_embed.weight"), &[1, c]);
        let (m4, m) = (self.mask_in_chans / 4, self.mask_in_chans);
        add(format!("{pe}.mask_downscaling.0.weight"), &[m4, 1, 2, 2, 2]);
        add(format!("{pe}.mask_downscaling.0.bias"), &[m4]);
        add(format!("{pe}.mask_downscaling.1.weight"), &[m4]);
        add(format!("{pe}.mask_downscaling.1.bias"), &[m4]);
        add(format!("{pe}.mask_downscaling.3.weight"), &[m, m4, 2, 2, 2]);
        add(format!("{pe}.mask_downscaling.3.bias"), &[m]);
        add(format!("{pe}.mask_downscaling.4.weight"), &[m]);
        add(format!("{pe}.mask_downscaling.4.bias"), &[m]);
        add(format!("{pe}.mask_downscaling.6.weight"), &[c, m, 1, 1, 1]);
        add(format!("{pe}.mask_downscaling.6.bias"), &[c]);
        add(format!("{pe}.no_mask_embed.weight"), &[1, c]);

        let t = "mask_decoder.transformer";
        let attn = |add: &mut dyn FnMut(String, &[i64]), n: String, internal: i64| {
            for x in ["q_proj", "k_proj", "v_proj"] {
                add(format!("{n}.{x}.weight"), &[internal, c]);
                add(format!("{n}.{x}.bias"), &[internal]);
            }
            add(format!("{n}.out_proj.weight"), &[c, internal]);
            add(format!("{n}.out_proj.bias"), &[c]);
        };
        for i in 0..self.decoder_depth {
            let l = format!("{t}.layers.{i}");
            attn(&mut add, format!("{l}.self_attn"), c);
            add(format!("{l}.norm1.weight"), &[c]);
            add(format!("{l}.norm1.bias"), &[c]);
            attn(&mut add, format!("{l}.cross_attn_token_to_image"), c / 2);
            add(format!("{l}.norm2.weight"), &[c]);
            add(format!("{l}.norm2.bias"), &[c]);
            add(format!("{l}.mlp.lin1.weight"), &[self.decoder_mlp_dim, c]);
            add(format!("{l}.mlp.lin1.bias"), &[self.decoder_mlp_dim]);
            add(format!("{l}.mlp.lin2.weight"), &[c, self.decoder_mlp_dim]);
            add(format!("{l}.mlp.lin2.bias"), &[c]);
            for n in ["norm3", "norm4"] {
                add(format!("{l}.{n}.weight"), &[c]);
                add(format!("{l}.{n}.bias"), &[c]);
            }
            attn(&mut add, format!("{l}.cross_attn_image_to_token"), c / 2);
        }
        attn(&mut add, format!("{t}.final_attn_token_to_image"), c / 2);
        add(format!("{t}.norm_final_attn.weight"), &[c]);
        add(format!("{t}.norm_final_attn.bias"), &[c]);
        let d = "mask_decoder";
        let nm = self.num_mask_tokens();
        add(format!("{d}.iou_token.weight"), &[1, c]);
        add(format!("{d}.mask_tokens.weight"), &[nm, c]);
        add(format!("{d}.output_upscaling.0.weight"), &[c, c / 4, 2, 2, 2]);
        add(format!("{d}.output_upscaling.0.bias"), &[c / 4]);
        add(format!("{d}.output_upscaling.1.weight"), &[c / 4]);
        add(format!("{d}.output_upscaling.1.bias"), &[c / 4]);
        add(format!("{d}.output_upscaling.3.weight"), &[c / 4, c / 8, 2, 2, 2]);
        add(format!("{d}.output_upscaling.3.bias"), &[c / 8]);
        let mlp = |add: &mut dyn FnMut(String, &[i64]), n: String, dims: &[i64]| {
            for (j, io) in dims.windows(2).enumerate() {
                add(format!("{n}.layers.{j}.weight"), &[io[1], io[0]]);
                add(format!("{n}.layers.{j}.bias"), &[io[1]]);
            }
        };
        for i in 0..nm {
            mlp(&mut add, format!("{d}.output_hypernetworks_mlps.{i}"), &[c, c, c, c / 8]);
        }
        let mut dims = vec![c];
        dims.extend(std::iter::repeat_n(self.iou_head_hidden_dim, (self.iou_head_depth - 1).max(0) as usize));
        dims.push(nm);
        mlp(&mut add, format!("{d}.iou_prediction_head"), &dims);
        v
    }

    /// Reads the architecture from a state dict's names and shapes (what a checkpoint "looks
    /// like"): widths, depths, heads (from the relative-position tables), window, global
    /// blocks, grid and patch size, decoder widths. `decoder_heads` cannot be seen in shapes and
    /// is taken as the published 8. The result is not checked against the names: compare
    /// [`SamMed3dConfig::expected_shapes`] with the file for that.
    pub fn from_shapes(shapes: &BTreeMap<String, Vec<usize>>) -> Result<Self, String> {
        let get = |n: &str| shapes.get(n).map(|s| s.iter().map(|&x| x as i64).collect::<Vec<i64>>());
        let need = |n: &str, rank: usize| -> Result<Vec<i64>, String> {
            match get(n) {
                Some(s) if s.len() == rank => Ok(s),
                Some(s) => Err(format!("{n} has shape {s:?}, expected {rank} dimensions")),
                None => Err(format!("no {n}: not a SAM-Med3D state dict")),
            }
        };
        let count = |prefix: &str, suffix: &str| {
            (0..).take_while(|i| shapes.contains_key(&format!("{prefix}.{i}.{suffix}"))).count() as i64
        };
        let patch = need("image_encoder.patch_embed.proj.weight", 5)?;
        let pos = need("image_encoder.pos_embed", 5)?;
        let (w, p, g) = (patch[0], patch[2], pos[1]);
        let depth = count("image_encoder.blocks", "norm1.weight");
        if depth == 0 {
            return Err("no image_encoder.blocks.0: not a SAM-Med3D state dict".into());
        }
        let mut global = Vec::new();
        let mut window = None;
        let mut head_dim = None;
        for i in 0..depth {
            let r = need(&format!("image_encoder.blocks.{i}.attn.rel_pos_d"), 2)?;
            head_dim.get_or_insert(r[1]);
            let span = (r[0] + 1) / 2;
            if span == g {
                global.push(i);
            } else {
                window.get_or_insert(span);
            }
        }
        let lin1 = need("image_encoder.blocks.0.mlp.lin1.weight", 2)?;
        let neck = need("image_encoder.neck.0.weight", 5)?;
        let mask2 = need("prompt_encoder.mask_downscaling.3.weight", 5)?;
        let dec_depth = count("mask_decoder.transformer.layers", "norm1.weight");
        let dec_mlp = need("mask_decoder.transformer.layers.0.mlp.lin1.weight", 2)?;
        let tokens = need("mask_decoder.mask_tokens.weight", 2)?;
        let iou_depth = count("mask_decoder.iou_prediction_head.layers", "weight");
        let iou0 = need("mask_decoder.iou_prediction_head.layers.0.weight", 2)?;
        let hd = head_dim.unwrap_or(w).max(1);
        let cfg = Self {
            img_size: g * p,
            patch_size: p,
            encoder_width: w,
            encoder_depth: depth,
            encoder_heads: w / hd,
            mlp_ratio: lin1[0] / w.max(1),
            // Every block global: the window does not matter; keep the published one.
            window_size: window.unwrap_or(14),
            global_attn_indexes: global,
            prompt_dim: neck[0],
            mask_in_chans: mask2[0],
            decoder_depth: dec_depth,
            decoder_heads: 8,
            decoder_mlp_dim: dec_mlp[0],
            num_multimask_outputs: tokens[0] - 1,
            iou_head_depth: iou_depth,
            iou_head_hidden_dim: if iou_depth > 1 { iou0[0] } else { 256 },
        };
        Ok(cfg)
    }

    /// One line describing the architecture, for messages ("encoder width 768, depth 12, …").
    pub fn describe(&self) -> String {
        format!(
            "input {}³, patches {}³, encoder width {}, depth {}, {} heads, global blocks {:?}, window {}, prompt width {}, decoder depth {} (MLP {}), {} mask tokens",
            self.img_size,
            self.patch_size,
            self.encoder_width,
            self.encoder_depth,
            self.encoder_heads,
            self.global_attn_indexes,
            self.window_size,
            self.prompt_dim,
            self.decoder_depth,
            self.decoder_mlp_dim,
            self.num_mask_tokens()
        )
    }
}

/// medim's `LayerNorm3d`: normalises over the channel axis of `[B, C, D, H, W]` with the
/// reference's own arithmetic (mean, mean of squared deviations, `/ sqrt(var + eps)`).
#[derive(Debug)]
pub struct LayerNorm3d {
    pub weight: Tensor,
    pub bias: Tensor,
    eps: f64,
}

impl LayerNorm3d {
    pub fn new(p: &nn::Path, channels: i64) -> Self {
        Self { weight: p.ones("weight", &[channels]), bias: p.zeros("bias", &[channels]), eps: 1e-6 }
    }
}

impl Module for LayerNorm3d {
    fn forward(&self, x: &Tensor) -> Tensor {
        let u = x.mean_dim(1, true, Kind::Float);
        let xc = x - &u;
        let s = xc.pow_tensor_scalar(2).mean_dim(1, true, Kind::Float);
        let x = xc / (s + self.eps).sqrt();
        self.weight.view([-1, 1, 1, 1]) * x + self.bias.view([-1, 1, 1, 1])
    }
}

/// `torch.nn.LayerNorm` over the last axis (weight 1, bias 0 at init).
pub(crate) fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps, ..Default::default() })
}

/// medim's `MLPBlock`: `lin2(act(lin1(x)))`.
#[derive(Debug)]
pub struct MlpBlock {
    pub lin1: Linear,
    pub lin2: Linear,
    /// GELU (erf) in the encoder, ReLU in the two-way transformer.
    gelu: bool,
}

impl MlpBlock {
    pub fn new(p: &nn::Path, dim: i64, hidden: i64, gelu: bool) -> Self {
        Self { lin1: Linear::new(&(p / "lin1"), dim, hidden, true), lin2: Linear::new(&(p / "lin2"), hidden, dim, true), gelu }
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.lin1.forward_t(x, train);
        let h = if self.gelu { h.gelu("none") } else { h.relu() };
        self.lin2.forward_t(&h, train)
    }
}

impl HasLinears for MlpBlock {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        f(&mut self.lin1);
        f(&mut self.lin2);
    }
}

/// The network: image encoder, prompt encoder, mask decoder.
#[derive(Debug)]
pub struct SamMed3d {
    pub config: SamMed3dConfig,
    pub image_encoder: ImageEncoder,
    pub prompt_encoder: PromptEncoder,
    pub mask_decoder: MaskDecoder,
}

fn shape_err(problem: String) -> ModelError {
    ModelError::Shape(format!("SAM-Med3D: {problem}"))
}

impl SamMed3d {
    /// Creates the variables under `p` (`p / "image_encoder"`, `p / "prompt_encoder"`,
    /// `p / "mask_decoder"`: pass the store's root for names equal to the checkpoint keys),
    /// randomly initialised like PyTorch's defaults (load weights to use it). The positional
    /// encoding's Gaussian matrix is a buffer: in the store, not trainable.
    ///
    /// Panics if `cfg.check()` fails (a config is validated when it is read; see
    /// [`SamMed3dConfig::check`]).
    pub fn new(p: &nn::Path, cfg: &SamMed3dConfig) -> Self {
        if let Err(e) = cfg.check() {
            panic!("SamMed3dConfig: {e}");
        }
        Self {
            config: cfg.clone(),
            image_encoder: ImageEncoder::new(&(p / "image_encoder"), cfg),
            prompt_encoder: PromptEncoder::new(&(p / "prompt_encoder"), cfg),
            mask_decoder: MaskDecoder::new(&(p / "mask_decoder"), cfg),
        }
    }

    /// The image embedding `[B, prompt_dim, g, g, g]` (g = `img_size / patch_size`, 8 for the
    /// published model) of `image`: `[B, 1, S, S, S]` float, `S = img_size` (128), already
    /// normalised (SAM-Med3D: z-score of the crop's foreground). Cache it per crop.
    pub fn image_embedding(&self, image: &Tensor) -> Result<Tensor, ModelError> {
        self.image_embedding_t(image, false)
    }

    /// [`SamMed3d::image_embedding`], with `train` for LoRA dropout.
    pub fn image_embedding_t(&self, image: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let s = self.config.img_size;
        let size = image.size();
        if size.len() != 5 || size[1] != 1 || size[2..] != [s, s, s] {
            return Err(shape_err(format!("the image must be [B, 1, {s}, {s}, {s}], got {size:?}")));
        }
        let image = if image.kind() == Kind::Float { image.shallow_clone() } else { image.to_kind(Kind::Float) };
        Ok(self.image_encoder.forward_t(&image, train))
    }

    /// Decodes prompts on an image embedding into low-resolution mask logits
    /// `[B, 1, s, s, s]` (`s = img_size / 4`: 32 for 128³) and the IoU prediction `[B, 1]`
    /// (the first mask token's, the reference's `multimask_output=False`, as SAM-Med3D runs).
    ///
    /// - `embedding`: from [`SamMed3d::image_embedding`], `[B, prompt_dim, g, g, g]`, or
    ///   `[1, …]` shared by `B` prompt sets.
    /// - `points`: `(coords [B, N, 3] float, labels [B, N])`, labels 1 positive, 0 negative,
    ///   -1 not a point (padding). **Coordinate order**: `coords[b, n] = (d, h, w)`, the
    ///   point's index along axes 2, 3, 4 of the image tensor `[B, 1, D, H, W]` given to
    ///   [`SamMed3d::image_embedding`], in voxels of that 128³ input, voxel centres at integers
    ///   (the encoder adds 0.5). That is the order SAM-Med3D was trained with: its click
    ///   generators take `torch.argwhere` of the `[D, H, W]` error mask (`utils/click_method.py`,
    ///   `medim_infer.py`). Do not reverse it into (x, y, z) = (w, h, d). Beware that the
    ///   network itself pairs the first coordinate with the embedding's *second* spatial axis
    ///   in its dense positional encoding (the reference's `x_embed` comes from axis 1); the
    ///   trained weights absorb that, and this port reproduces it exactly (see the tests).
    /// - `mask_prompt`: previous low-resolution logits `[B, 1, s, s, s]` (as returned here),
    ///   or `None` (the learned no-mask embedding).
    ///
    /// Boxes are not supported: medim's prompt encoder indexes point embeddings 2 and 3 that
    /// it never creates, so a box prompt fails in the reference too.
    pub fn decode(&self, embedding: &Tensor, points: Option<(&Tensor, &Tensor)>, mask_prompt: Option<&Tensor>) -> Result<(Tensor, Tensor), ModelError> {
        self.decode_t(embedding, points, mask_prompt, false)
    }

    /// [`SamMed3d::decode`], with `train` for LoRA dropout.
    pub fn decode_t(&self, embedding: &Tensor, points: Option<(&Tensor, &Tensor)>, mask_prompt: Option<&Tensor>, train: bool) -> Result<(Tensor, Tensor), ModelError> {
        let cfg = &self.config;
        let (g, c, low) = (cfg.grid(), cfg.prompt_dim, cfg.low_res_size());
        let es = embedding.size();
        if es.len() != 5 || es[1] != c || es[2..] != [g, g, g] {
            return Err(shape_err(format!("the image embedding must be [B, {c}, {g}, {g}, {g}], got {es:?}")));
        }
        let mut batch = None;
        if let Some((coords, labels)) = points {
            let (cs, ls) = (coords.size(), labels.size());
            if cs.len() != 3 || cs[2] != 3 || ls.len() != 2 || ls[..] != cs[..2] {
                return Err(shape_err(format!("point coordinates must be [B, N, 3] and labels [B, N], got {cs:?} and {ls:?}")));
            }
            batch = Some(cs[0]);
        }
        if let Some(m) = mask_prompt {
            let ms = m.size();
            if ms.len() != 5 || ms[1] != 1 || ms[2..] != [low, low, low] {
                return Err(shape_err(format!("the mask prompt must be [B, 1, {low}, {low}, {low}] (low-resolution logits), got {ms:?}")));
            }
            match batch {
                Some(b) if b != ms[0] => return Err(shape_err(format!("{b} point sets but {} mask prompts", ms[0]))),
                _ => batch = Some(ms[0]),
            }
        }
        let b = batch.unwrap_or(1);
        if es[0] != b && es[0] != 1 {
            return Err(shape_err(format!("{} image embeddings for {b} prompt sets (give one, or one per prompt set)", es[0])));
        }
        let (sparse, dense) = self.prompt_encoder.forward(points, mask_prompt, b);
        let pe = self.prompt_encoder.dense_pe();
        let (masks, iou) = self.mask_decoder.forward_t(embedding, &pe, &sparse, &dense, train);
        Ok((masks.narrow(1, 0, 1), iou.narrow(1, 0, 1)))
    }

    /// Low-resolution logits `[B, C, s, s, s]` → `[B, C, size, size, size]`, trilinear with
    /// `align_corners = false`, as SAM-Med3D's inference does (`medim_infer.py`; medim's own
    /// `postprocess_masks` asks for `bilinear`, which PyTorch refuses on 5-D tensors). The mask
    /// is `logits > 0`.
    pub fn upsample(&self, low_res: &Tensor, size: [i64; 3]) -> Tensor {
        low_res.upsample_trilinear3d(size, false, None, None, None)
    }
}

impl HasLinears for SamMed3d {
    /// The encoder's attention (`qkv`, `proj`) and MLP (`lin1`, `lin2`) linears, then the
    /// decoder's attention (`q_proj`, `k_proj`, `v_proj`, `out_proj`), MLP, hypernetwork and
    /// IoU-head linears.
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        self.image_encoder.visit_linears(f);
        self.mask_decoder.visit_linears(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn shapes_of_store(cfg: &SamMed3dConfig) -> (BTreeMap<String, Vec<i64>>, Vec<String>) {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = SamMed3d::new(&vs.root(), cfg);
        let vars = vs.variables();
        let trainable: Vec<String> = {
            let v = vs.trainable_variables();
            let mut names: Vec<String> = vars.iter().filter(|(_, t)| !v.iter().any(|x| x.data_ptr() == t.data_ptr())).map(|(n, _)| n.clone()).collect();
            names.sort();
            names
        };
        (vars.into_iter().map(|(n, t)| (n, t.size())).collect(), trainable)
    }

    #[test]
    fn sam_med3d_store_names_and_shapes_are_the_expected_ones() {
        for cfg in [SamMed3dConfig::reduced()] {
            let (store, frozen) = shapes_of_store(&cfg);
            let expected: BTreeMap<String, Vec<i64>> = cfg.expected_shapes().into_iter().collect();
            assert_eq!(store, expected);
            assert_eq!(frozen, vec!["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix".to_string()]);
        }
    }

    #[test]
    fn sam_med3d_vit_b_has_the_published_size_and_keys() {
        let cfg = SamMed3dConfig::vit_b();
        let shapes = cfg.expected_shapes();
        let n: i64 = shapes.iter().map(|(_, s)| s.iter().product::<i64>()).sum();
        // medim build_sam3D_vit_b_ori: 100,509,616 values in the state dict (counted with
        // sum(v.numel() for v in state_dict().values())).
        assert_eq!(n, 100_509_616);
        let find = |k: &str| shapes.iter().find(|(n, _)| n == k).map(|(_, s)| s.clone());
        assert_eq!(find("image_encoder.blocks.0.attn.rel_pos_d"), Some(vec![27, 64]));
        assert_eq!(find("image_encoder.blocks.2.attn.rel_pos_d"), Some(vec![15, 64]));
        assert_eq!(find("image_encoder.blocks.11.attn.qkv.weight"), Some(vec![2304, 768]));
        assert_eq!(find("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"), Some(vec![3, 128]));
        assert_eq!(find("mask_decoder.transformer.layers.1.mlp.lin1.weight"), Some(vec![2048, 384]));
        assert_eq!(find("mask_decoder.iou_prediction_head.layers.2.weight"), Some(vec![4, 256]));
    }

    #[test]
    fn sam_med3d_config_from_shapes_round_trips() {
        let mut student = SamMed3dConfig::vit_b();
        student.encoder_depth = 6;
        student.global_attn_indexes = vec![2, 5];
        for cfg in [SamMed3dConfig::vit_b(), SamMed3dConfig::reduced(), student] {
            let shapes: BTreeMap<String, Vec<usize>> =
                cfg.expected_shapes().into_iter().map(|(n, s)| (n, s.into_iter().map(|x| x as usize).collect())).collect();
            assert_eq!(SamMed3dConfig::from_shapes(&shapes).as_ref(), Ok(&cfg), "{}", cfg.describe());
        }
        let mut bad: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        bad.insert("image_encoder.patch_embed.proj.weight".into(), vec![768, 3, 16, 16]);
        bad.insert("image_encoder.pos_embed".into(), vec![1, 8, 8, 8, 768]);
        let e = SamMed3dConfig::from_shapes(&bad).unwrap_err();
        assert!(e.contains("expected 5 dimensions"), "{e}");
        assert!(SamMed3dConfig::from_shapes(&BTreeMap::new()).unwrap_err().contains("not a SAM-Med3D"));
    }

    #[test]
    fn sam_med3d_linears_are_named_for_lora() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = SamMed3d::new(&vs.root(), &SamMed3dConfig::reduced());
        let mut names = Vec::new();
        net.visit_linears(&mut |l| names.push(l.name.clone()));
        for n in [
            "image_encoder.blocks.0.attn.qkv",
            "image_encoder.blocks.5.attn.proj",
            "image_encoder.blocks.2.mlp.lin1",
            "mask_decoder.transformer.layers.0.self_attn.q_proj",
            "mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj",
            "mask_decoder.transformer.layers.1.mlp.lin2",
            "mask_decoder.transformer.final_attn_token_to_image.v_proj",
            "mask_decoder.output_hypernetworks_mlps.3.layers.2",
            "mask_decoder.iou_prediction_head.layers.0",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        // 6 blocks × 4 + 2 layers × 14 + final 4 + 4 hypernetworks × 3 + IoU head 3.
        assert_eq!(names.len(), 6 * 4 + 2 * 14 + 4 + 4 * 3 + 3);
        // Every linear's weight is a store variable under its name.
        let vars = vs.variables();
        assert!(names.iter().all(|n| vars.contains_key(&format!("{n}.weight"))));
    }

    #[test]
    fn sam_med3d_config_check_names_the_problem() {
        let mut c = SamMed3dConfig::reduced();
        c.prompt_dim = 50;
        assert!(c.check().unwrap_err().contains("prompt_dim 50"));
        let mut c = SamMed3dConfig::reduced();
        c.global_attn_indexes = vec![7];
        assert!(c.check().unwrap_err().contains("block 7"));
        assert!(SamMed3dConfig::vit_b().check().is_ok());
    }

    #[test]
    fn sam_med3d_decode_refuses_bad_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SamMed3d::new(&vs.root(), &SamMed3dConfig::reduced());
        let _g = tch::no_grad_guard();
        let emb = Tensor::zeros([1, 48, 8, 8, 8], (Kind::Float, Device::Cpu));
        let pts = Tensor::zeros([1, 2, 2], (Kind::Float, Device::Cpu));
        let lab = Tensor::ones([1, 2], (Kind::Int64, Device::Cpu));
        let e = net.decode(&emb, Some((&pts, &lab)), None).unwrap_err().to_string();
        assert!(e.contains("[B, N, 3]"), "{e}");
        let m = Tensor::zeros([1, 1, 16, 16, 16], (Kind::Float, Device::Cpu));
        let e = net.decode(&emb, None, Some(&m)).unwrap_err().to_string();
        assert!(e.contains("[B, 1, 32, 32, 32]"), "{e}");
        let e = net.image_embedding(&Tensor::zeros([1, 1, 64, 64, 64], (Kind::Float, Device::Cpu))).unwrap_err().to_string();
        assert!(e.contains("[B, 1, 128, 128, 128]"), "{e}");
        let (low, iou) = net.decode(&emb, None, None).expect("decodes without prompts");
        assert_eq!((low.size(), iou.size()), (vec![1, 1, 32, 32, 32], vec![1, 1]));
    }
}
