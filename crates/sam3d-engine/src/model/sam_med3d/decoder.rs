//! The mask decoder (`mask_decoder.*`): medim's `MaskDecoder3D` with its `TwoWayTransformer3D`.
//!
//! Tokens = `[iou_token, mask_tokens…, sparse prompts…]`; image tokens = embedding + dense
//! prompt; `transformer.layers.N` (self-attention of the tokens, tokens → image, MLP (ReLU),
//! image → tokens; post-norms `norm1..4`), `final_attn_token_to_image`, `norm_final_attn`;
//! `output_upscaling` (two 2× transposed convs, `LayerNorm3d`, GELU) to 4g³; per mask token a
//! hypernetwork MLP gives the weights of a dot product with the up-scaled features; the IoU
//! head reads the IoU token.

use super::{LayerNorm3d, MlpBlock, SamMed3dConfig, layer_norm};
use crate::model::layers::{HasLinears, Linear};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Decoder layer norms are PyTorch's default.
const LN_EPS: f64 = 1e-5;

/// medim's `DownscaleAttention`: projections to `dim / downsample`, heads, `softmax(q·kᵀ/√c)·v`,
/// `out_proj`.
#[derive(Debug)]
pub struct DownscaleAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    heads: i64,
}

impl DownscaleAttention {
    pub fn new(p: &nn::Path, dim: i64, heads: i64, downsample: i64) -> Self {
        let internal = dim / downsample;
        Self {
            q_proj: Linear::new(&(p / "q_proj"), dim, internal, true),
            k_proj: Linear::new(&(p / "k_proj"), dim, internal, true),
            v_proj: Linear::new(&(p / "v_proj"), dim, internal, true),
            out_proj: Linear::new(&(p / "out_proj"), internal, dim, true),
            heads,
        }
    }

    fn heads(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        x.reshape([s[0], s[1], self.heads, s[2] / self.heads]).transpose(1, 2)
    }

    pub fn forward_t(&self, q: &Tensor, k: &Tensor, v: &Tensor, train: bool) -> Tensor {
        let q = self.heads(&self.q_proj.forward_t(q, train));
        let k = self.heads(&self.k_proj.forward_t(k, train));
        let v = self.heads(&self.v_proj.forward_t(v, train));
        let c = q.size()[3];
        let attn = (q.matmul(&k.permute([0, 1, 3, 2])) / (c as f64).sqrt()).softmax(-1, Kind::Float);
        let o = attn.matmul(&v).transpose(1, 2);
        let s = o.size();
        self.out_proj.forward_t(&o.reshape([s[0], s[1], s[2] * s[3]]), train)
    }
}

impl HasLinears for DownscaleAttention {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        f(&mut self.q_proj);
        f(&mut self.k_proj);
        f(&mut self.v_proj);
        f(&mut self.out_proj);
    }
}

/// medim's `TwoWayAttentionBlock3D`.
#[derive(Debug)]
pub struct TwoWayBlock {
    pub self_attn: DownscaleAttention,
    pub norm1: nn::LayerNorm,
    pub cross_attn_token_to_image: DownscaleAttention,
    pub norm2: nn::LayerNorm,
    pub mlp: MlpBlock,
    pub norm3: nn::LayerNorm,
    pub norm4: nn::LayerNorm,
    pub cross_attn_image_to_token: DownscaleAttention,
    skip_first_layer_pe: bool,
}

impl TwoWayBlock {
    pub fn new(p: &nn::Path, cfg: &SamMed3dConfig, skip_first_layer_pe: bool) -> Self {
        let (c, h) = (cfg.prompt_dim, cfg.decoder_heads);
        Self {
            self_attn: DownscaleAttention::new(&(p / "self_attn"), c, h, 1),
            norm1: layer_norm(p / "norm1", c, LN_EPS),
            cross_attn_token_to_image: DownscaleAttention::new(&(p / "cross_attn_token_to_image"), c, h, 2),
            norm2: layer_norm(p / "norm2", c, LN_EPS),
            mlp: MlpBlock::new(&(p / "mlp"), c, cfg.decoder_mlp_dim, false),
            norm3: layer_norm(p / "norm3", c, LN_EPS),
            norm4: layer_norm(p / "norm4", c, LN_EPS),
            cross_attn_image_to_token: DownscaleAttention::new(&(p / "cross_attn_image_to_token"), c, h, 2),
            skip_first_layer_pe,
        }
    }

    pub fn forward_t(&self, queries: &Tensor, keys: &Tensor, query_pe: &Tensor, key_pe: &Tensor, train: bool) -> (Tensor, Tensor) {
        let queries = if self.skip_first_layer_pe {
            self.self_attn.forward_t(queries, queries, queries, train)
        } else {
            let q = queries + query_pe;
            queries + self.self_attn.forward_t(&q, &q, queries, train)
        };
        let queries = self.norm1.forward(&queries);
        let q = &queries + query_pe;
        let k = keys + key_pe;
        let queries = self.norm2.forward(&(&queries + self.cross_attn_token_to_image.forward_t(&q, &k, keys, train)));
        let queries = self.norm3.forward(&(&queries + self.mlp.forward_t(&queries, train)));
        let q = &queries + query_pe;
        let k = keys + key_pe;
        let keys = self.norm4.forward(&(keys + self.cross_attn_image_to_token.forward_t(&k, &q, &queries, train)));
        (queries, keys)
    }
}

impl HasLinears for TwoWayBlock {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        self.self_attn.visit_linears(f);
        self.cross_attn_token_to_image.visit_linears(f);
        self.mlp.visit_linears(f);
        self.cross_attn_image_to_token.visit_linears(f);
    }
}

/// medim's `MLP` (`layers.N`, ReLU between).
#[derive(Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
}

impl Mlp {
    pub fn new(p: &nn::Path, dims: &[i64]) -> Self {
        Self { layers: dims.windows(2).enumerate().map(|(i, io)| Linear::new(&(p / "layers" / i), io[0], io[1], true)).collect() }
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let n = self.layers.len();
        let mut x = x.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward_t(&x, train);
            if i + 1 < n {
                x = x.relu();
            }
        }
        x
    }
}

impl HasLinears for Mlp {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        for l in &mut self.layers {
            f(l);
        }
    }
}

#[derive(Debug)]
pub struct MaskDecoder {
    pub layers: Vec<TwoWayBlock>,
    pub final_attn_token_to_image: DownscaleAttention,
    pub norm_final_attn: nn::LayerNorm,
    pub iou_token: Tensor,
    pub mask_tokens: Tensor,
    pub up0: nn::ConvTranspose3D,
    pub up1: LayerNorm3d,
    pub up3: nn::ConvTranspose3D,
    pub hypernetworks: Vec<Mlp>,
    pub iou_head: Mlp,
}

impl MaskDecoder {
    pub fn new(p: &nn::Path, cfg: &SamMed3dConfig) -> Self {
        let c = cfg.prompt_dim;
        let t = p / "transformer";
        let nm = cfg.num_mask_tokens();
        let up = p / "output_upscaling";
        let tconv = nn::ConvTransposeConfig { stride: 2, ..Default::default() };
        let mut iou_dims = vec![c];
        iou_dims.extend(std::iter::repeat_n(cfg.iou_head_hidden_dim, (cfg.iou_head_depth - 1).max(0) as usize));
        iou_dims.push(nm);
        let randn = nn::Init::Randn { mean: 0.0, stdev: 1.0 };
        Self {
            layers: (0..cfg.decoder_depth).map(|i| TwoWayBlock::new(&(&t / "layers" / i), cfg, i == 0)).collect(),
            final_attn_token_to_image: DownscaleAttention::new(&(&t / "final_attn_token_to_image"), c, cfg.decoder_heads, 2),
            norm_final_attn: layer_norm(&t / "norm_final_attn", c, LN_EPS),
            iou_token: (p / "iou_token").var("weight", &[1, c], randn),
            mask_tokens: (p / "mask_tokens").var("weight", &[nm, c], randn),
            up0: nn::conv_transpose3d(&up / "0", c, c / 4, 2, tconv),
            up1: LayerNorm3d::new(&(&up / "1"), c / 4),
            up3: nn::conv_transpose3d(&up / "3", c / 4, c / 8, 2, tconv),
            hypernetworks: (0..nm).map(|i| Mlp::new(&(p / "output_hypernetworks_mlps" / i), &[c, c, c, c / 8])).collect(),
            iou_head: Mlp::new(&(p / "iou_prediction_head"), &iou_dims),
        }
    }

    /// All mask logits `[B, n_masks, 4g, 4g, 4g]` and IoU predictions `[B, n_masks]`.
    /// `embedding [1 or B, C, g, g, g]`, `image_pe [1, C, g, g, g]`, `sparse [B, N, C]`,
    /// `dense [B, C, g, g, g]`.
    pub fn forward_t(&self, embedding: &Tensor, image_pe: &Tensor, sparse: &Tensor, dense: &Tensor, train: bool) -> (Tensor, Tensor) {
        let b = sparse.size()[0];
        let out = Tensor::cat(&[&self.iou_token, &self.mask_tokens], 0);
        let out = out.unsqueeze(0).expand([b, -1, -1], false);
        let tokens = Tensor::cat(&[out, sparse.shallow_clone()], 1);
        let src = if embedding.size()[0] != b { embedding.repeat_interleave_self_int(b, 0, None) } else { embedding.shallow_clone() };
        let src = src + dense;
        let pos = if image_pe.size()[0] != b { image_pe.repeat_interleave_self_int(b, 0, None) } else { image_pe.shallow_clone() };
        let s = src.size();
        let (c, x, y, z) = (s[1], s[2], s[3], s[4]);

        // Two-way transformer on [B, N, C] tokens.
        let keys0 = src.flatten(2, -1).permute([0, 2, 1]);
        let key_pe = pos.flatten(2, -1).permute([0, 2, 1]);
        let (mut queries, mut keys) = (tokens.shallow_clone(), keys0);
        for l in &self.layers {
            (queries, keys) = l.forward_t(&queries, &keys, &tokens, &key_pe, train);
        }
        let q = &queries + &tokens;
        let k = &keys + &key_pe;
        let queries = self.norm_final_attn.forward(&(&queries + self.final_attn_token_to_image.forward_t(&q, &k, &keys, train)));

        let nm = self.hypernetworks.len() as i64;
        let iou_out = queries.select(1, 0);
        let src = keys.transpose(1, 2).view([b, c, x, y, z]);
        let up = self.up3.forward(&self.up1.forward(&self.up0.forward(&src)).gelu("none")).gelu("none");
        let hyper: Vec<Tensor> = self.hypernetworks.iter().enumerate().map(|(i, m)| m.forward_t(&queries.select(1, 1 + i as i64), train)).collect();
        let hyper = Tensor::stack(&hyper, 1);
        let us = up.size();
        let masks = hyper.matmul(&up.view([b, us[1], us[2] * us[3] * us[4]])).view([b, nm, us[2], us[3], us[4]]);
        let iou = self.iou_head.forward_t(&iou_out, train);
        (masks, iou)
    }
}

impl HasLinears for MaskDecoder {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        for l in &mut self.layers {
            l.visit_linears(f);
        }
        self.final_attn_token_to_image.visit_linears(f);
        for m in &mut self.hypernetworks {
            m.visit_linears(f);
        }
        self.iou_head.visit_linears(f);
    }
}
