//! The image encoder (`image_encoder.*`): medim's `ImageEncoderViT3D`.
//!
//! `patch_embed.proj` (Conv3d, kernel = stride = patch) → `+ pos_embed` `[1, g, g, g, W]` →
//! `blocks.N` → `neck` (1×1×1 conv, `LayerNorm3d`, 3×3×3 conv, `LayerNorm3d`) →
//! `[B, prompt_dim, g, g, g]`. Tokens are kept as `[B, D, H, W, C]` between blocks, as the
//! reference does.

use super::{LayerNorm3d, MlpBlock, SamMed3dConfig, layer_norm};
use crate::model::layers::{HasLinears, Linear};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Relative-position table for query/key extents `q` and `k` (the reference's `get_rel_pos`):
/// `[q, k, C]`, rows of `table` picked by the scaled offset `q_i - k_j`; a table of another
/// length than `2·max(q, k) − 1` is first resized linearly (align_corners = false).
pub fn rel_pos_table(q: i64, k: i64, table: &Tensor) -> Tensor {
    let max_dist = 2 * q.max(k) - 1;
    let len = table.size()[0];
    let resized = if len != max_dist {
        // [L, C] → [1, C, L] → linear → [C, max] → [max, C]
        table.reshape([1, len, -1]).permute([0, 2, 1]).upsample_linear1d([max_dist], false, None).reshape([-1, max_dist]).permute([1, 0])
    } else {
        table.shallow_clone()
    };
    let (qf, kf) = (q as f64, k as f64);
    let (sq, sk) = ((kf / qf).max(1.0), (qf / kf).max(1.0));
    let idx: Vec<i64> = (0..q).flat_map(|i| (0..k).map(move |j| ((i as f64 * sq - j as f64 * sk) + (kf - 1.0) * sk) as i64)).collect();
    let idx = Tensor::from_slice(&idx).to_device(table.device());
    resized.index_select(0, &idx).reshape([q, k, -1])
}

/// Attention scores computed at once, at most (floats): 64 MB.
const ATTN_CHUNK_FLOATS: i64 = 16 << 20;

/// Multi-head attention over a `[B, D, H, W, C]` block of tokens with decomposed relative
/// positions (medim's `Attention`): `qkv`, `(q·scale)·kᵀ + rel_d + rel_h + rel_w`, softmax, `proj`.
#[derive(Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub rel_pos_d: Tensor,
    pub rel_pos_h: Tensor,
    pub rel_pos_w: Tensor,
    heads: i64,
}

impl Attention {
    /// `span`: the token extent the relative tables are sized for (window or grid).
    pub fn new(p: &nn::Path, dim: i64, heads: i64, span: i64) -> Self {
        let hd = dim / heads;
        Self {
            qkv: Linear::new(&(p / "qkv"), dim, 3 * dim, true),
            proj: Linear::new(&(p / "proj"), dim, dim, true),
            rel_pos_d: p.zeros("rel_pos_d", &[2 * span - 1, hd]),
            rel_pos_h: p.zeros("rel_pos_h", &[2 * span - 1, hd]),
            rel_pos_w: p.zeros("rel_pos_w", &[2 * span - 1, hd]),
            heads,
        }
    }

    /// `x`: `[B, D, H, W, C]` → same shape.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let s = x.size();
        let (b, d, h, w) = (s[0], s[1], s[2], s[3]);
        let n = d * h * w;
        let qkv = self.qkv.forward_t(x, train).reshape([b, n, 3, self.heads, -1]).permute([2, 0, 3, 1, 4]).reshape([3, b * self.heads, n, -1]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let hd = q.size()[2];
        let scale = (hd as f64).powf(-0.5);
        // The same arithmetic as the reference, a few heads at a time: each head's scores are
        // computed independently, and a 14³ window's are 2744² floats (30 MB) per head, so
        // chunks keep the working set small and avoid faulting in fresh pages for every step.
        let bh = b * self.heads;
        let chunk = (ATTN_CHUNK_FLOATS / (n * n)).clamp(1, bh);
        let mut outs = Vec::with_capacity(((bh + chunk - 1) / chunk) as usize);
        let mut start = 0;
        while start < bh {
            let len = chunk.min(bh - start);
            let (q, k, v) = (q.narrow(0, start, len), k.narrow(0, start, len), v.narrow(0, start, len));
            let attn = (&q * scale).matmul(&k.transpose(-2, -1));
            let attn = self.add_rel_pos(attn, &q, [d, h, w]);
            outs.push(attn.softmax(-1, Kind::Float).matmul(&v));
            start += len;
        }
        let o = if outs.len() == 1 { outs.remove(0) } else { Tensor::cat(&outs, 0) };
        let o = o.view([b, self.heads, d, h, w, -1]).permute([0, 2, 3, 4, 1, 5]).reshape([b, d, h, w, -1]);
        self.proj.forward_t(&o, train)
    }

    /// The reference's `add_decomposed_rel_pos` (queries and keys of the same cubic extent),
    /// with its broadcasting exactly (see the comment inside: it is not the textbook MViTv2
    /// decomposition).
    fn add_rel_pos(&self, attn: Tensor, q: &Tensor, [d, h, w]: [i64; 3]) -> Tensor {
        let rd = rel_pos_table(d, d, &self.rel_pos_d);
        let rh = rel_pos_table(h, h, &self.rel_pos_h);
        let rw = rel_pos_table(w, w, &self.rel_pos_w);
        let bh = q.size()[0];
        let rq = q.reshape([bh, d, h, w, -1]);
        let rel_d = Tensor::einsum("bdhwc,dkc->bdhwk", &[&rq, &rd], None::<i64>);
        let rel_h = Tensor::einsum("bdhwc,hkc->bdhwk", &[&rq, &rh], None::<i64>);
        let rel_w = Tensor::einsum("bdhwc,wkc->bdhwk", &[&rq, &rw], None::<i64>);
        // The reference adds `rel_d[:, :, :, :, None, None]`, `rel_h[:, :, :, None, :, None]` and
        // `rel_w[:, :, :, None, None, :]` to the [B, qd, qh, qw, kd, kh, kw] scores: on 5-D
        // tensors these put the new axes before the last one(s), so the terms do not land
        // where the names say. For query (qd, qh, qw) and key (kd, kh, kw) it adds
        //   rel_d[qd, qh, qw → kw],  rel_h[qd, qh, qw := kd → kw],  rel_w[qd, qh, qw := kh → kw]
        // (`x → k`: the table's key index). The published weights were trained with this, so
        // the port reproduces the broadcasting exactly (it needs the cubic extents it always
        // has: d = h = w).
        // In place, in the reference's order ((attn + rel_d) + rel_h) + rel_w.
        let mut a = attn.view([bh, d, h, w, d, h, w].as_slice());
        let _ = a.g_add_(&rel_d.unsqueeze(4).unsqueeze(4)); // [B, qd, qh, qw, 1, 1, kd]
        let _ = a.g_add_(&rel_h.unsqueeze(3).unsqueeze(5)); // [B, qd, qh, 1, qw, 1, kh]
        let _ = a.g_add_(&rel_w.unsqueeze(3).unsqueeze(3)); // [B, qd, qh, 1, 1, qw, kw]
        a.view([bh, d * h * w, d * h * w])
    }
}

/// Splits `[B, D, H, W, C]` into `[B·n, ws, ws, ws, C]` windows after zero-padding each spatial
/// axis at its end to a multiple of `ws` (the reference's `window_partition3D`: no mask, the
/// padded tokens take part in the attention). Returns the windows and the padded extents.
pub fn window_partition(x: &Tensor, ws: i64) -> (Tensor, [i64; 3]) {
    let s = x.size();
    let (b, d, h, w, c) = (s[0], s[1], s[2], s[3], s[4]);
    let pad = |n: i64| (ws - n % ws) % ws;
    let (pd, ph, pw) = (pad(d), pad(h), pad(w));
    let x = if pd > 0 || ph > 0 || pw > 0 { x.constant_pad_nd([0, 0, 0, pw, 0, ph, 0, pd]) } else { x.shallow_clone() };
    let (dp, hp, wp) = (d + pd, h + ph, w + pw);
    let win = x.view([b, dp / ws, ws, hp / ws, ws, wp / ws, ws, c].as_slice()).permute([0, 1, 3, 5, 2, 4, 6, 7]).contiguous().view([-1, ws, ws, ws, c]);
    (win, [dp, hp, wp])
}

/// Inverse of [`window_partition`], cropping the padding away.
pub fn window_unpartition(win: &Tensor, ws: i64, [dp, hp, wp]: [i64; 3], [d, h, w]: [i64; 3]) -> Tensor {
    let b = win.size()[0] / (dp * hp * wp / ws / ws / ws);
    let x = win.view([b, dp / ws, hp / ws, wp / ws, ws, ws, ws, -1].as_slice()).permute([0, 1, 4, 2, 5, 3, 6, 7]).contiguous().view([b, dp, hp, wp, -1]);
    if dp > d || hp > h || wp > w { x.narrow(1, 0, d).narrow(2, 0, h).narrow(3, 0, w).contiguous() } else { x }
}

/// medim's `Block3D`: `x + attn(window(norm1(x)))`, then `x + mlp(norm2(x))`.
#[derive(Debug)]
pub struct Block {
    pub norm1: nn::LayerNorm,
    pub attn: Attention,
    pub norm2: nn::LayerNorm,
    pub mlp: MlpBlock,
    /// 0: global attention.
    window: i64,
}

impl Block {
    pub fn new(p: &nn::Path, cfg: &SamMed3dConfig, global: bool) -> Self {
        let dim = cfg.encoder_width;
        let window = if global { 0 } else { cfg.window_size };
        let span = if global { cfg.grid() } else { window };
        Self {
            norm1: layer_norm(p / "norm1", dim, 1e-6),
            attn: Attention::new(&(p / "attn"), dim, cfg.encoder_heads, span),
            norm2: layer_norm(p / "norm2", dim, 1e-6),
            mlp: MlpBlock::new(&(p / "mlp"), dim, dim * cfg.mlp_ratio, true),
            window,
        }
    }

    /// Whether this block attends within windows (else globally).
    pub fn windowed(&self) -> bool {
        self.window > 0
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.norm1.forward(x);
        let y = if self.window > 0 {
            let s = x.size();
            let (win, padded) = window_partition(&y, self.window);
            window_unpartition(&self.attn.forward_t(&win, train), self.window, padded, [s[1], s[2], s[3]])
        } else {
            self.attn.forward_t(&y, train)
        };
        let x = x + y;
        &x + self.mlp.forward_t(&self.norm2.forward(&x), train)
    }
}

impl HasLinears for Block {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        f(&mut self.attn.qkv);
        f(&mut self.attn.proj);
        self.mlp.visit_linears(f);
    }
}

/// The 3D ViT image encoder.
#[derive(Debug)]
pub struct ImageEncoder {
    pub patch_embed: nn::Conv3D,
    pub pos_embed: Tensor,
    pub blocks: Vec<Block>,
    pub neck0: nn::Conv3D,
    pub neck1: LayerNorm3d,
    pub neck2: nn::Conv3D,
    pub neck3: LayerNorm3d,
}

impl ImageEncoder {
    pub fn new(p: &nn::Path, cfg: &SamMed3dConfig) -> Self {
        let (w, g, c) = (cfg.encoder_width, cfg.grid(), cfg.prompt_dim);
        let conv = |stride: i64, padding: i64, bias: bool| nn::ConvConfig { stride, padding, bias, ..Default::default() };
        let blocks = (0..cfg.encoder_depth).map(|i| Block::new(&(p / "blocks" / i), cfg, cfg.global_attn_indexes.contains(&i))).collect();
        let neck = p / "neck";
        Self {
            patch_embed: nn::conv3d(p / "patch_embed" / "proj", 1, w, cfg.patch_size, conv(cfg.patch_size, 0, true)),
            pos_embed: p.zeros("pos_embed", &[1, g, g, g, w]),
            blocks,
            neck0: nn::conv3d(&neck / "0", w, c, 1, conv(1, 0, false)),
            neck1: LayerNorm3d::new(&(&neck / "1"), c),
            neck2: nn::conv3d(&neck / "2", c, c, 3, conv(1, 1, false)),
            neck3: LayerNorm3d::new(&(&neck / "3"), c),
        }
    }

    /// `[B, 1, S, S, S]` → `[B, prompt_dim, g, g, g]` (shapes checked by the caller).
    pub fn forward_t(&self, image: &Tensor, train: bool) -> Tensor {
        let mut x = self.patch_embed.forward(image).permute([0, 2, 3, 4, 1]) + &self.pos_embed;
        for blk in &self.blocks {
            x = blk.forward_t(&x, train);
        }
        let x = x.permute([0, 4, 1, 2, 3]);
        self.neck3.forward(&self.neck2.forward(&self.neck1.forward(&self.neck0.forward(&x))))
    }
}

impl HasLinears for ImageEncoder {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        for b in &mut self.blocks {
            b.visit_linears(f);
        }
    }
}
