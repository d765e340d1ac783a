//! The SAM3D network for medical volumes (DESIGN.md, "The model"):
//! condition encoder (ViT over image+mask patches, `PointPatchEmbed` over the pointmap,
//! optional `volume_context` 3D patches) → structure generator (learned 3D latent tokens,
//! self- and cross-attention to the condition tokens) → shape decoder (transposed 3D
//! convolutions to a per-class SDF on `G³`), and a 2D mask head on the image tokens.
//!
//! Checkpoint names (`nn::Path` segments): `encoder.patch_embed.proj`, `encoder.point_embed.
//! {point_proj, invalid_xyz_token, patch_proj}`, `encoder.context_embed.proj`,
//! `encoder.{pos_embed, point_pos_embed, context_pos_embed}`, `encoder.blocks.N.*`,
//! `encoder.norm`, `mask_head.proj`, `generator.latent_tokens`, `generator.blocks.N.*`,
//! `generator.norm`, `decoder.up.N`, `decoder.out`.

use super::config::Config;
use super::layers::{Block, CrossBlock, HasLinears, Linear, layer_norm};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Network inputs (a batch of `B` clicks).
#[derive(Debug)]
pub struct NetInputs {
    /// `[B, 1, S, S]` normalised intensities.
    pub image: Tensor,
    /// `[B, 1, S, S]` 0/1.
    pub mask: Tensor,
    /// `[B, 3, S, S]`, NaN outside the mask.
    pub pointmap: Tensor,
    /// `[B, 1, c, c, c]` when `volume_context` is on.
    pub context: Option<Tensor>,
}

/// Network outputs.
#[derive(Debug)]
pub struct NetOutputs {
    /// `[B, 1, S, S]` 2D mask logits.
    pub mask_logits: Tensor,
    /// `[B, C, G, G, G]` signed distance in units of the cube's half-size (negative inside),
    /// array order `[gk, gj, gi]`.
    pub sdf: Tensor,
}

/// `PointPatchEmbed`: each pixel's (x, y, z) → `point_proj` → GELU; pixels whose point is NaN
/// take the learned `invalid_xyz_token` instead (NaN is zeroed *before* the matmul, so it never
/// reaches it, nor its gradient); mean over each patch → `patch_proj`. A patch with no valid point
/// is thus exactly the (projected) invalid token. (SAM 3D Objects runs a small attention inside
/// each window; the mean keeps CPU training cheap.)
#[derive(Debug)]
pub struct PointPatchEmbed {
    pub point_proj: Linear,
    pub invalid_xyz_token: Tensor,
    pub patch_proj: Linear,
    patch: i64,
}

impl PointPatchEmbed {
    pub fn new(p: &nn::Path, dim: i64, patch: i64) -> Self {
        Self {
            point_proj: Linear::new(&(p / "point_proj"), 3, dim, true),
            invalid_xyz_token: p.var("invalid_xyz_token", &[dim], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            patch_proj: Linear::new(&(p / "patch_proj"), dim, dim, true),
            patch,
        }
    }

    /// `pm`: `[B, 3, S, S]` → `[B, (S/p)², D]`.
    pub fn forward_t(&self, pm: &Tensor, train: bool) -> Tensor {
        let (b, _, s, _) = pm.size4().unwrap_or((1, 3, 1, 1));
        let valid = pm.isfinite().all_dims(Some([1i64].as_slice()), true).permute([0, 2, 3, 1]); // [B,S,S,1]
        let xyz = pm.permute([0, 2, 3, 1]).where_self(&valid, &Tensor::zeros([1], (pm.kind(), pm.device())));
        let h = self.point_proj.forward_t(&xyz, train).gelu("tanh");
        let h = h.where_self(&valid, &self.invalid_xyz_token);
        let n = s / self.patch;
        let d = h.size()[3];
        let pooled = h.reshape([b, n, self.patch, n, self.patch, d]).mean_dim(Some([2i64, 4].as_slice()), false, Kind::Float);
        self.patch_proj.forward_t(&pooled.reshape([b, n * n, d]), train)
    }
}

impl HasLinears for PointPatchEmbed {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        f(&mut self.point_proj);
        f(&mut self.patch_proj);
    }
}

/// Condition encoder: tokens from image+mask patches, pointmap patches and (optionally) the
/// context cube, each with its learned position embedding, through ViT blocks.
#[derive(Debug)]
pub struct ConditionEncoder {
    pub patch_embed: nn::Conv2D,
    pub point_embed: PointPatchEmbed,
    pub context_embed: Option<nn::Conv3D>,
    pub pos_embed: Tensor,
    pub point_pos_embed: Tensor,
    pub context_pos_embed: Option<Tensor>,
    pub blocks: Vec<Block>,
    pub norm: nn::LayerNorm,
    image_tokens: i64,
}

impl ConditionEncoder {
    pub fn new(p: &nn::Path, cfg: &Config) -> Self {
        let d = cfg.network.dim as i64;
        let patch = cfg.network.patch_size as i64;
        let np = cfg.image_tokens() as i64;
        let pos = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let conv = |stride| nn::ConvConfig { stride, ..Default::default() };
        let pe = p / "patch_embed";
        let patch_embed = nn::conv2d(&pe / "proj", 2, d, patch, conv(patch));
        let (context_embed, context_pos_embed) = if cfg.volume_context.enabled {
            let cp = cfg.volume_context.patch_size as i64;
            let ce = p / "context_embed";
            (
                Some(nn::conv3d(&ce / "proj", 1, d, cp, conv(cp))),
                Some(p.var("context_pos_embed", &[1, cfg.context_tokens() as i64, d], pos)),
            )
        } else {
            (None, None)
        };
        let hidden = cfg.mlp_hidden() as i64;
        let heads = cfg.network.heads as i64;
        let bp = p / "blocks";
        Self {
            patch_embed,
            point_embed: PointPatchEmbed::new(&(p / "point_embed"), d, patch),
            context_embed,
            pos_embed: p.var("pos_embed", &[1, np, d], pos),
            point_pos_embed: p.var("point_pos_embed", &[1, np, d], pos),
            context_pos_embed,
            blocks: (0..cfg.network.encoder_depth).map(|i| Block::new(&(&bp / i), d, heads, hidden)).collect(),
            norm: layer_norm(p / "norm", d),
            image_tokens: np,
        }
    }

    /// Condition tokens `[B, 2·Np (+ Nc), D]`; the first `Np` are the image tokens.
    pub fn forward_t(&self, x: &NetInputs, train: bool) -> Tensor {
        let im = Tensor::cat(&[&x.image, &x.mask], 1);
        let img_tok = self.patch_embed.forward(&im).flatten(2, 3).transpose(1, 2) + &self.pos_embed;
        let pt_tok = self.point_embed.forward_t(&x.pointmap, train) + &self.point_pos_embed;
        let mut toks = vec![img_tok, pt_tok];
        if let (Some(ce), Some(cpos), Some(ctx)) = (&self.context_embed, &self.context_pos_embed, &x.context) {
            toks.push(ce.forward(ctx).flatten(2, 4).transpose(1, 2) + cpos);
        }
        let mut h = Tensor::cat(&toks, 1);
        for b in &self.blocks {
            h = b.forward_t(&h, train);
        }
        self.norm.forward(&h)
    }

    pub fn image_tokens(&self) -> i64 {
        self.image_tokens
    }
}

impl HasLinears for ConditionEncoder {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        self.point_embed.visit_linears(f);
        for b in &mut self.blocks {
            b.visit_linears(f);
        }
    }
}

/// 2D mask head: each image token → its patch's `p×p` logits (`mask_head.proj`).
#[derive(Debug)]
pub struct MaskHead {
    pub proj: Linear,
    patch: i64,
}

impl MaskHead {
    pub fn new(p: &nn::Path, dim: i64, patch: i64) -> Self {
        Self { proj: Linear::new(&(p / "proj"), dim, patch * patch, true), patch }
    }
    /// Image tokens `[B, Np, D]` → logits `[B, 1, S, S]`.
    pub fn forward_t(&self, img_tokens: &Tensor, train: bool) -> Tensor {
        let (b, np, _) = img_tokens.size3().unwrap_or((1, 1, 1));
        let n = (np as f64).sqrt().round() as i64;
        let p = self.patch;
        self.proj.forward_t(img_tokens, train).reshape([b, n, n, p, p]).permute([0, 1, 3, 2, 4]).reshape([b, 1, n * p, n * p])
    }
}

/// Structure generator: learned latent tokens (`latent_res³`) with self-attention and
/// cross-attention to the condition tokens.
#[derive(Debug)]
pub struct StructureGenerator {
    pub latent_tokens: Tensor,
    pub blocks: Vec<CrossBlock>,
    pub norm: nn::LayerNorm,
}

impl StructureGenerator {
    pub fn new(p: &nn::Path, cfg: &Config) -> Self {
        let d = cfg.network.dim as i64;
        let bp = p / "blocks";
        Self {
            latent_tokens: p.var("latent_tokens", &[1, cfg.latent_tokens() as i64, d], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            blocks: (0..cfg.network.generator_depth)
                .map(|i| CrossBlock::new(&(&bp / i), d, d, cfg.network.heads as i64, cfg.mlp_hidden() as i64))
                .collect(),
            norm: layer_norm(p / "norm", d),
        }
    }
    /// Condition `[B, M, D]` → latent `[B, r³, D]`.
    pub fn forward_t(&self, cond: &Tensor, train: bool) -> Tensor {
        let b = cond.size()[0];
        let mut h = self.latent_tokens.expand([b, -1, -1], false);
        for blk in &self.blocks {
            h = blk.forward_t(&h, cond, train);
        }
        self.norm.forward(&h)
    }
}

impl HasLinears for StructureGenerator {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        for b in &mut self.blocks {
            b.visit_linears(f);
        }
    }
}

/// Shape decoder: latent tokens as a `D×r³` volume (token `t = (k·r + j)·r + i`), then per
/// stage a ×2 transposed convolution (kernel 2) and GELU (`decoder.up.N`), then a 1×1×1
/// convolution to `C` SDF channels (`decoder.out`).
#[derive(Debug)]
pub struct ShapeDecoder {
    pub up: Vec<nn::ConvTranspose3D>,
    pub out: nn::Conv3D,
    res: i64,
    /// `[1, 1, G, G, G]` SDF of a ball of radius [`PRIOR_RADIUS`] about the click (the cube's
    /// centre): the decoder predicts a correction to it. A constant, not a weight.
    prior: Tensor,
}

/// Radius of the decoder's prior ball, in units of the cube's half-size (0.2 × 96 mm ≈ 19 mm
/// for the 192 mm presets): a small organ-sized start that puts the surface — and the
/// gradients of the surface terms — near the click from the first step, where a zero start
/// lets the far background's majority pull the whole cube outside.
pub const PRIOR_RADIUS: f64 = 0.2;

/// The prior ball's SDF on a `g³` grid of cell centres (units of half the cube's side).
fn prior_ball(g: i64, device: tch::Device) -> Tensor {
    let x = (Tensor::arange(g, (tch::Kind::Float, device)) - (g as f64 - 1.0) / 2.0) * (2.0 / g as f64);
    let sq = x.square();
    let r2 = sq.view([g, 1, 1]) + sq.view([1, g, 1]) + sq.view([1, 1, g]);
    (r2.sqrt() - PRIOR_RADIUS).view([1, 1, g, g, g])
}

impl ShapeDecoder {
    pub fn new(p: &nn::Path, cfg: &Config) -> Self {
        let mut c_in = cfg.network.dim as i64;
        let up_p = p / "up";
        let mut up = Vec::new();
        for (i, &c) in cfg.network.decoder_channels.iter().enumerate() {
            let c = c as i64;
            up.push(nn::conv_transpose3d(&up_p / i, c_in, c, 2, nn::ConvTransposeConfig { stride: 2, ..Default::default() }));
            c_in = c;
        }
        let out = nn::conv3d(p / "out", c_in, cfg.output.classes as i64, 1, Default::default());
        Self { up, out, res: cfg.network.latent_res as i64, prior: prior_ball(cfg.output.grid as i64, p.device()) }
    }
    /// `[B, r³, D]` → `[B, C, G, G, G]`.
    pub fn forward(&self, latent: &Tensor) -> Tensor {
        let (b, _, d) = latent.size3().unwrap_or((1, 1, 1));
        let r = self.res;
        let mut h = latent.transpose(1, 2).reshape([b, d, r, r, r]);
        for u in &self.up {
            h = u.forward(&h).gelu("tanh");
        }
        self.out.forward(&h) + &self.prior
    }
}

/// The whole network.
#[derive(Debug)]
pub struct Sam3dNet {
    pub encoder: ConditionEncoder,
    pub mask_head: MaskHead,
    pub generator: StructureGenerator,
    pub decoder: ShapeDecoder,
}

impl Sam3dNet {
    pub fn new(p: &nn::Path, cfg: &Config) -> Self {
        Self {
            encoder: ConditionEncoder::new(&(p / "encoder"), cfg),
            mask_head: MaskHead::new(&(p / "mask_head"), cfg.network.dim as i64, cfg.network.patch_size as i64),
            generator: StructureGenerator::new(&(p / "generator"), cfg),
            decoder: ShapeDecoder::new(&(p / "decoder"), cfg),
        }
    }

    /// 2D mask logits only (the click → 2D mask step; skips the 3D stages).
    pub fn forward_mask(&self, x: &NetInputs, train: bool) -> Tensor {
        let cond = self.encoder.forward_t(x, train);
        self.mask_head.forward_t(&cond.narrow(1, 0, self.encoder.image_tokens()), train)
    }

    pub fn forward_t(&self, x: &NetInputs, train: bool) -> NetOutputs {
        let cond = self.encoder.forward_t(x, train);
        let mask_logits = self.mask_head.forward_t(&cond.narrow(1, 0, self.encoder.image_tokens()), train);
        let latent = self.generator.forward_t(&cond, train);
        NetOutputs { mask_logits, sdf: self.decoder.forward(&latent) }
    }
}

impl HasLinears for Sam3dNet {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        self.encoder.visit_linears(f);
        f(&mut self.mask_head.proj);
        self.generator.visit_linears(f);
    }
}
