//! Building blocks named as in SAM 3D Objects / TRELLIS: `to_qkv`, `to_q`, `to_kv`, `to_out`
//! attention linears, `mlp.mlp.0` / `mlp.mlp.2` feed-forward linears, `norm1..3`. A [`Linear`]
//! can carry a LoRA adapter (see [`super::lora`]).

use super::lora::LoraAdapter;
use tch::nn::{self, Module};
use tch::Tensor;

/// A linear layer `y = x Wᵀ + b` that knows its checkpoint name and may carry a LoRA adapter.
#[derive(Debug)]
pub struct Linear {
    /// Full dotted name, e.g. `encoder.blocks.0.attn.to_qkv` (the checkpoint keys are
    /// `{name}.weight`, `{name}.bias`).
    pub name: String,
    pub ws: Tensor,
    pub bs: Option<Tensor>,
    pub in_dim: i64,
    pub out_dim: i64,
    pub(crate) lora: Option<LoraAdapter>,
}

impl Linear {
    /// PyTorch's default init (uniform ±1/√in for weight and bias).
    pub fn new(p: &nn::Path, in_dim: i64, out_dim: i64, bias: bool) -> Self {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let ws = p.var("weight", &[out_dim, in_dim], nn::Init::Uniform { lo: -bound, up: bound });
        let bs = bias.then(|| p.var("bias", &[out_dim], nn::Init::Uniform { lo: -bound, up: bound }));
        Self { name: path_name(p), ws, bs, in_dim, out_dim, lora: None }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.linear(&self.ws, self.bs.as_ref());
        match &self.lora {
            Some(l) if !l.merged => y + l.delta(x, train),
            _ => y,
        }
    }

    pub fn lora(&self) -> Option<&LoraAdapter> {
        self.lora.as_ref()
    }
}

/// The dotted name of an `nn::Path` (its components joined by `.`).
pub fn path_name(p: &nn::Path) -> String {
    p.components().collect::<Vec<_>>().join(".")
}

/// Something holding [`Linear`]s; lets LoRA find them by name.
pub trait HasLinears {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear));
}

impl HasLinears for Linear {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        f(self)
    }
}

pub const LN_EPS: f64 = 1e-6;

pub fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps: LN_EPS, ..Default::default() })
}

/// Multi-head self-attention: `to_qkv` then libtorch's scaled-dot-product attention, `to_out`.
#[derive(Debug)]
pub struct SelfAttention {
    pub to_qkv: Linear,
    pub to_out: Linear,
    heads: i64,
}

impl SelfAttention {
    pub fn new(p: &nn::Path, dim: i64, heads: i64) -> Self {
        Self { to_qkv: Linear::new(&(p / "to_qkv"), dim, 3 * dim, true), to_out: Linear::new(&(p / "to_out"), dim, dim, true), heads }
    }

    /// `x`: `[B, N, D]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, n, d) = x.size3().unwrap_or((1, 1, 1));
        let dh = d / self.heads;
        // [B, N, 3, H, dh] → [3, B, H, N, dh]
        let qkv = self.to_qkv.forward_t(x, train).reshape([b, n, 3, self.heads, dh]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let o = Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, None, false);
        self.to_out.forward_t(&o.transpose(1, 2).reshape([b, n, d]), train)
    }
}

impl HasLinears for SelfAttention {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        f(&mut self.to_qkv);
        f(&mut self.to_out);
    }
}

/// Multi-head cross-attention: queries from `x` (`to_q`), keys and values from the context
/// (`to_kv`), `to_out`.
#[derive(Debug)]
pub struct CrossAttention {
    pub to_q: Linear,
    pub to_kv: Linear,
    pub to_out: Linear,
    heads: i64,
}

impl CrossAttention {
    pub fn new(p: &nn::Path, dim: i64, ctx_dim: i64, heads: i64) -> Self {
        Self {
            to_q: Linear::new(&(p / "to_q"), dim, dim, true),
            to_kv: Linear::new(&(p / "to_kv"), ctx_dim, 2 * dim, true),
            to_out: Linear::new(&(p / "to_out"), dim, dim, true),
            heads,
        }
    }

    /// `x`: `[B, N, D]`, `ctx`: `[B, M, Dc]`.
    pub fn forward_t(&self, x: &Tensor, ctx: &Tensor, train: bool) -> Tensor {
        let (b, n, d) = x.size3().unwrap_or((1, 1, 1));
        let m = ctx.size()[1];
        let dh = d / self.heads;
        let q = self.to_q.forward_t(x, train).reshape([b, n, self.heads, dh]).transpose(1, 2);
        let kv = self.to_kv.forward_t(ctx, train).reshape([b, m, 2, self.heads, dh]).permute([2, 0, 3, 1, 4]);
        let (k, v) = (kv.get(0), kv.get(1));
        let o = Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, None, false);
        self.to_out.forward_t(&o.transpose(1, 2).reshape([b, n, d]), train)
    }
}

impl HasLinears for CrossAttention {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        f(&mut self.to_q);
        f(&mut self.to_kv);
        f(&mut self.to_out);
    }
}

/// TRELLIS's `FeedForwardNet`: `mlp.0` (Linear), GELU (tanh), `mlp.2` (Linear).
#[derive(Debug)]
pub struct FeedForward {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl FeedForward {
    pub fn new(p: &nn::Path, dim: i64, hidden: i64) -> Self {
        let m = p / "mlp";
        Self { fc1: Linear::new(&(&m / "0"), dim, hidden, true), fc2: Linear::new(&(&m / "2"), hidden, dim, true) }
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.fc2.forward_t(&self.fc1.forward_t(x, train).gelu("tanh"), train)
    }
}

impl HasLinears for FeedForward {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        f(&mut self.fc1);
        f(&mut self.fc2);
    }
}

/// Pre-norm transformer block: `x += attn(norm1(x)); x += mlp(norm2(x))`.
#[derive(Debug)]
pub struct Block {
    pub norm1: nn::LayerNorm,
    pub attn: SelfAttention,
    pub norm2: nn::LayerNorm,
    pub mlp: FeedForward,
}

impl Block {
    pub fn new(p: &nn::Path, dim: i64, heads: i64, hidden: i64) -> Self {
        Self {
            norm1: layer_norm(p / "norm1", dim),
            attn: SelfAttention::new(&(p / "attn"), dim, heads),
            norm2: layer_norm(p / "norm2", dim),
            mlp: FeedForward::new(&(p / "mlp"), dim, hidden),
        }
    }
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x + self.attn.forward_t(&self.norm1.forward(x), train);
        &x + self.mlp.forward_t(&self.norm2.forward(&x), train)
    }
}

impl HasLinears for Block {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        self.attn.visit_linears(f);
        self.mlp.visit_linears(f);
    }
}

/// Pre-norm block with cross-attention (TRELLIS's cross block without modulation):
/// `x += self_attn(norm1(x)); x += cross_attn(norm2(x), ctx); x += mlp(norm3(x))`.
#[derive(Debug)]
pub struct CrossBlock {
    pub norm1: nn::LayerNorm,
    pub self_attn: SelfAttention,
    pub norm2: nn::LayerNorm,
    pub cross_attn: CrossAttention,
    pub norm3: nn::LayerNorm,
    pub mlp: FeedForward,
}

impl CrossBlock {
    pub fn new(p: &nn::Path, dim: i64, ctx_dim: i64, heads: i64, hidden: i64) -> Self {
        Self {
            norm1: layer_norm(p / "norm1", dim),
            self_attn: SelfAttention::new(&(p / "self_attn"), dim, heads),
            norm2: layer_norm(p / "norm2", dim),
            cross_attn: CrossAttention::new(&(p / "cross_attn"), dim, ctx_dim, heads),
            norm3: layer_norm(p / "norm3", dim),
            mlp: FeedForward::new(&(p / "mlp"), dim, hidden),
        }
    }
    pub fn forward_t(&self, x: &Tensor, ctx: &Tensor, train: bool) -> Tensor {
        let x = x + self.self_attn.forward_t(&self.norm1.forward(x), train);
        let x = &x + self.cross_attn.forward_t(&self.norm2.forward(&x), ctx, train);
        &x + self.mlp.forward_t(&self.norm3.forward(&x), train)
    }
}

impl HasLinears for CrossBlock {
    fn visit_linears(&mut self, f: &mut dyn FnMut(&mut Linear)) {
        self.self_attn.visit_linears(f);
        self.cross_attn.visit_linears(f);
        self.mlp.visit_linears(f);
    }
}
