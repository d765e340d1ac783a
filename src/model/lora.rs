//! LoRA with PEFT semantics: `out = base(x) + (alpha / r) · B(A(dropout(x)))`, `A: [r, in]`
//! Kaiming-uniform, `B: [out, r]` zero-initialised (so a fresh adapter changes nothing), base
//! frozen. Adapter tensors live in their own `VarStore` under `{linear}.lora_A.weight` and
//! `{linear}.lora_B.weight`.

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

/// Which linears get adapters, and how big.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    /// Name patterns, as PEFT's `target_modules`: a pattern matches a linear whose dotted name
    /// equals it or ends with `.pattern` (`to_qkv` matches `encoder.blocks.0.attn.to_qkv`);
    /// `*` matches any run of characters (`generator.*.to_q`).
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    /// The fine-tuning plan's default: r = 8, alpha = 16 on every attention linear.
    fn default() -> Self {
        Self { rank: 8, alpha: 16.0, dropout: 0.0, targets: vec!["to_qkv".into(), "to_q".into(), "to_kv".into(), "to_out".into()] }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Problems with the numbers themselves (field-named).
    pub fn check(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("lora.rank: must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("lora.alpha: must be positive, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("lora.dropout: must be in [0, 1), got {}", self.dropout));
        }
        if self.targets.is_empty() {
            return Err("lora.targets: at least one name pattern is needed".into());
        }
        Ok(())
    }

    pub fn matches(&self, name: &str) -> bool {
        self.targets.iter().any(|p| pattern_matches(p, name))
    }
}

/// PEFT-style suffix match with `*` wildcards.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    if pattern.contains('*') {
        return glob(pattern.as_bytes(), name.as_bytes());
    }
    name == pattern || name.ends_with(&format!(".{pattern}"))
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.split_first().is_some_and(|(d, srest)| c == d && glob(rest, srest)),
    }
}

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
