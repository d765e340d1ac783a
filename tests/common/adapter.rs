//! A fine-tuned LoRA adapter for a test's weights, shared by the engine tests.
//! Include with `#[path = "common/adapter.rs"] mod adapter;`.

#![allow(dead_code)]

use sam3d_engine::model::{LoraConfig, Model, is_head};
use std::path::Path;
use tch::{Device, Tensor};

/// An adapter for the weights at `base` as a fine-tuning run leaves it (its LoRA B and the
/// heads moved away from the base by seeded noise), saved to `out`.
pub fn tuned_adapter(base: &Path, out: &Path, seed: i64) {
    let mut m = Model::from_checkpoint(base, Device::Cpu).expect("base");
    m.attach_lora(&LoraConfig { rank: 2, alpha: 4.0, dropout: 0.0, targets: vec!["to_qkv".into()] }).expect("attach");
    tch::manual_seed(seed);
    {
        let _g = tch::no_grad_guard();
        for (_, v) in m.adapter_vs().expect("adapter").variables() {
            let _ = v.shallow_clone().f_add_(&(Tensor::randn_like(&v) * 0.5)).expect("move");
        }
        for (n, v) in m.base_vs().variables() {
            if is_head(&n) {
                let _ = v.shallow_clone().f_add_(&(Tensor::randn_like(&v) * 0.5)).expect("move");
            }
        }
    }
    m.save_adapter(out).expect("save adapter");
}
