//! The SAM3D network for medical volumes:
//! condition encoder (ViT over image+mask patches, `PointPatchEmbed` over the pointmap,
//! optional `volume_context` 3D patches) → structure generator (learned 3D latent tokens,
//! self- and cross-attention to the condition tokens) → shape decoder (transposed 3D
//! convolutions to a per-class SDF on `G³`), and a 2D mask head on the image tokens.
//!
//! Checkpoint names (`nn::Path` segments): `encoder.patch_embed.proj`, `encoder.point_embed.
//! {point_proj, invalid_xyz_token, patch_proj}`, `encoder.context_embed.proj`,
//! `encoder.{pos_embed, point_pos_embed, context_pos_embed}`, `encoder.blocks.N.*`,
//! `encoder.norm`, `mask_head.proj`, `generator.latent_tokens`, `generator.blocks.N.*`,
//! `generator.norm`, `decoder.up.N`, `decoder.out`, and with `volume_context.guide`
//! `decoder.guide.N` (stages before the last) and `decoder.guide_head.{conv, out}`.

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
    /// `[B, 1, G, G, G]` intensities on the output grid, when `volume_context.guide` is on
    /// (given and dropped together with `context`).
    pub guide: Option<Tensor>,
}

impl NetInputs {
    /// The same image, context and guide (shared, not copied) with another 2D mask and the
    /// pointmap masked by it.
    pub fn with_mask(&self, mask: Tensor, pointmap: Tensor) -> NetInputs {
        NetInputs {
            image: self.image.shallow_clone(),
            mask,
            pointmap,
            context: self.context.as_ref().map(|c| c.shallow_clone()),
            guide: self.guide.as_ref().map(|g| g.shallow_clone()),
        }
    }
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
/// convolution to `C` SDF channels (`decoder.out`), added to a prior ball.
///
/// With `volume_context.guide`, the scan on the output grid steers the surface: three guide
/// channels `[I, I − m, |I − m|]` (`I` the normalised intensity at each cell, `m` the mean
/// intensity under the 2D mask on the clicked slice: "looks like what was clicked"), average-
/// pooled to each stage's resolution, are concatenated with the stage's features; every stage but
/// the last adds a 3×3×3 convolution of that to its features (`decoder.guide.N`), and the last
/// adds `guide_head.out(GELU(guide_head.conv(·)))` to the SDF. Every guide branch ends in
/// zero-initialised weights, so a guided decoder starts out computing exactly what the unguided
/// one does (warm start from unguided weights, see `Model::init_from`).
#[derive(Debug)]
pub struct ShapeDecoder {
    pub up: Vec<nn::ConvTranspose3D>,
    pub out: nn::Conv3D,
    pub guide: Vec<nn::Conv3D>,
    pub guide_head: Option<(nn::Conv3D, nn::Conv3D)>,
    res: i64,
    grid: i64,
    /// `[1, 1, G, G, G]` SDF of a ball of radius [`PRIOR_RADIUS`] about the click (the cube's
    /// centre): the decoder predicts a correction to it. A constant, not a weight.
    prior: Tensor,
}

/// Guide channels per cell (`I`, `I − m`, `|I − m|`).
pub const GUIDE_CHANNELS: i64 = 3;
/// Hidden channels of the guide head at full grid resolution (kept small: a 3×3×3 convolution on
/// `G³` cells is the decoder's most expensive operation on a CPU).
const GUIDE_HEAD_CHANNELS: i64 = 8;

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

/// A `k³` convolution (same-size padding) whose weights and bias start at zero.
fn zero_conv(p: nn::Path, c_in: i64, c_out: i64, ksize: i64) -> nn::Conv3D {
    let cfg = nn::ConvConfig { padding: ksize / 2, ws_init: nn::Init::Const(0.0), bs_init: nn::Init::Const(0.0), ..Default::default() };
    nn::conv3d(p, c_in, c_out, ksize, cfg)
}

impl ShapeDecoder {
    pub fn new(p: &nn::Path, cfg: &Config) -> Self {
        let mut c_in = cfg.network.dim as i64;
        let up_p = p / "up";
        let guided = cfg.volume_context.enabled && cfg.volume_context.guide;
        let gp = p / "guide";
        let mut up = Vec::new();
        let mut guide = Vec::new();
        let n = cfg.network.decoder_channels.len();
        for (i, &c) in cfg.network.decoder_channels.iter().enumerate() {
            let c = c as i64;
            up.push(nn::conv_transpose3d(&up_p / i, c_in, c, 2, nn::ConvTransposeConfig { stride: 2, ..Default::default() }));
            if guided && i + 1 < n {
                guide.push(zero_conv(&gp / i, c + GUIDE_CHANNELS, c, 3));
            }
            c_in = c;
        }
        let classes = cfg.output.classes as i64;
        let out = nn::conv3d(p / "out", c_in, classes, 1, Default::default());
        let guide_head = guided.then(|| {
            let hp = p / "guide_head";
            let conv = nn::conv3d(
                &hp / "conv",
                c_in + GUIDE_CHANNELS,
                GUIDE_HEAD_CHANNELS,
                3,
                nn::ConvConfig { padding: 1, ..Default::default() },
            );
            (conv, zero_conv(&hp / "out", GUIDE_HEAD_CHANNELS, classes, 1))
        });
        let grid = cfg.output.grid as i64;
        Self { up, out, guide, guide_head, res: cfg.network.latent_res as i64, grid, prior: prior_ball(grid, p.device()) }
    }

    /// Whether this decoder has guide branches.
    pub fn is_guided(&self) -> bool {
        self.guide_head.is_some()
    }

    /// `[B, r³, D]` → `[B, C, G, G, G]`; `guide` is `[B, GUIDE_CHANNELS, G, G, G]` (see
    /// [`guide_features`]), ignored by an unguided decoder.
    pub fn forward(&self, latent: &Tensor, guide: Option<&Tensor>) -> Tensor {
        let (b, _, d) = latent.size3().unwrap_or((1, 1, 1));
        let r = self.res;
        let mut h = latent.transpose(1, 2).reshape([b, d, r, r, r]);
        let guide = guide.filter(|_| self.is_guided());
        for (i, u) in self.up.iter().enumerate() {
            h = u.forward(&h).gelu("tanh");
            if let (Some(g), Some(conv)) = (guide, self.guide.get(i)) {
                let f = self.grid / h.size()[2];
                let gi = if f > 1 { g.avg_pool3d([f, f, f], [f, f, f], [0, 0, 0], false, true, None) } else { g.shallow_clone() };
                h = &h + conv.forward(&Tensor::cat(&[&h, &gi], 1));
            }
        }
        let sdf = self.out.forward(&h) + &self.prior;
        match (guide, &self.guide_head) {
            (Some(g), Some((conv, out))) => sdf + out.forward(&conv.forward(&Tensor::cat(&[&h, g], 1)).gelu("tanh")),
            _ => sdf,
        }
    }
}

/// The guide channels `[I, I − m, |I − m|]` from the guide cube `[B, 1, G, G, G]`, with `m` the
/// mean of `image` under `mask` (both `[B, 1, S, S]`; an empty mask gives `m = 0`).
pub fn guide_features(guide: &Tensor, image: &Tensor, mask: &Tensor) -> Tensor {
    let dims: &[i64] = &[1, 2, 3];
    let m = (image * mask).sum_dim_intlist(dims, true, Kind::Float) / mask.sum_dim_intlist(dims, true, Kind::Float).clamp_min(1.0);
    let m = m.unsqueeze(-1);
    let diff = guide - m;
    Tensor::cat(&[guide.shallow_clone(), diff.shallow_clone(), diff.abs()], 1)
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
        let guide = x.guide.as_ref().filter(|_| self.decoder.is_guided()).map(|g| guide_features(g, &x.image, &x.mask));
        NetOutputs { mask_logits, sdf: self.decoder.forward(&latent, guide.as_ref()) }
    }
}

impl HasLinears for Sam3dNet {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        self.encoder.visit_linears(f);
        f(&mut self.mask_head.proj);
        self.generator.visit_linears(f);
    }
}
