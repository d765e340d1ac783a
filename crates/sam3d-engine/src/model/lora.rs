//! LoRA with PEFT semantics: `out = base(x) + (alpha / r) · B(A(dropout(x)))`, `A: [r, in]`
//! Kaiming-uniform, `B: [out, r]` zero-initialised (so a fresh adapter changes nothing), base
//! frozen. Adapter tensors live in their own `VarStore` under `{linear}.lora_A.weight` and
//! `{linear}.lora_B.weight`.

use tch::{Tensor, nn};

pub use crate::train_config::{LoraConfig, pattern_matches};

/// One adapter on one linear.
#[derive(Debug)]
pub struct LoraAdapter {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    pub scale: f64,
    pub dropout: f64,
    /// When merged, the base weight already holds `scale · B·A` and the forward skips the adapter.
    pub merged: bool,
}

impl LoraAdapter {
    /// Creates `lora_A` (Kaiming-uniform, as PEFT) and `lora_B` (zeros) under `p`.
    pub fn new(p: &nn::Path, in_dim: i64, out_dim: i64, cfg: &LoraConfig) -> Self {
        let r = cfg.rank as i64;
        // PEFT: kaiming_uniform_(a=√5) → bound = 1/√in.
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a = (p / "lora_A").var("weight", &[r, in_dim], nn::Init::Uniform { lo: -bound, up: bound });
        let b = (p / "lora_B").var("weight", &[out_dim, r], nn::Init::Const(0.0));
        Self { a, b, scale: cfg.scale(), dropout: cfg.dropout, merged: false }
    }

    /// `scale · B(A(dropout(x)))`.
    pub fn delta(&self, x: &Tensor, train: bool) -> Tensor {
        let x = if train && self.dropout > 0.0 { x.dropout(self.dropout, true) } else { x.shallow_clone() };
        x.matmul(&self.a.tr()).matmul(&self.b.tr()) * self.scale
    }

    /// `scale · B·A`, shaped like the base weight.
    pub fn weight_delta(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scale
    }
}
