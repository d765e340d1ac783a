//! LoRA (PEFT semantics) and checkpoint fitting, on the tiny preset.

use sam3d_engine::model::{Config, LoraConfig, Model, ModelError, NetInputs, NetOutputs};
use tch::{Device, Kind, Tensor, nn::OptimizerConfig};

fn inputs(cfg: &Config, seed: i64) -> NetInputs {
    tch::manual_seed(seed);
    let s = cfg.input.image_size as i64;
    let image = Tensor::randn([2, 1, s, s], (Kind::Float, Device::Cpu));
    // A square mask; the pointmap is NaN outside it (as the preprocessing makes it).
    let mask = Tensor::zeros([2, 1, s, s], (Kind::Float, Device::Cpu));
    let _ = mask.narrow(2, s / 4, s / 2).narrow(3, s / 4, s / 2).fill_(1.0);
    let pm = Tensor::randn([2, 3, s, s], (Kind::Float, Device::Cpu)) * 0.3;
    let pointmap = pm.where_self(&mask.gt(0.5).expand([2, 3, s, s], false), &Tensor::from(f32::NAN));
    NetInputs { image, mask, pointmap, context: None, guide: None }
}

fn forward(m: &Model, x: &NetInputs) -> NetOutputs {
    tch::no_grad(|| m.forward_t(x, false))
}

fn same(a: &NetOutputs, b: &NetOutputs) -> bool {
    a.sdf.equal(&b.sdf) && a.mask_logits.equal(&b.mask_logits)
}

fn max_diff(a: &NetOutputs, b: &NetOutputs) -> f64 {
    let d1 = (&a.sdf - &b.sdf).abs().max().double_value(&[]);
    let d2 = (&a.mask_logits - &b.mask_logits).abs().max().double_value(&[]);
    d1.max(d2)
}

fn model(seed: i64) -> Model {
    tch::manual_seed(seed);
    Model::new(Config::tiny(), Device::Cpu)
}

fn lora(rank: usize, targets: &[&str]) -> LoraConfig {
    LoraConfig { rank, alpha: 2.0 * rank as f64, dropout: 0.0, targets: targets.iter().map(|s| s.to_string()).collect() }
}

/// A few optimiser steps on the adapter only, so B (and then A) move away from their init.
fn train_adapter(m: &Model, x: &NetInputs, steps: usize) {
    let mut opt = tch::nn::Adam::default().build(m.adapter_vs().expect("adapter"), 1e-2).expect("optimiser");
    for _ in 0..steps {
        let out = m.forward_t(x, true);
        let loss = out.sdf.square().mean(Kind::Float) + out.mask_logits.sigmoid().mean(Kind::Float);
        opt.backward_step(&loss);
    }
}

#[test]
fn output_is_finite_despite_nan_pointmap_and_backward_works() {
    let m = model(1);
    let x = inputs(m.config(), 2);
    let out = m.forward_t(&x, true);
    assert_eq!(out.sdf.size(), vec![2, 1, 16, 16, 16]);
    assert_eq!(out.mask_logits.size(), vec![2, 1, 32, 32]);
    let loss = out.sdf.mean(Kind::Float) + out.mask_logits.mean(Kind::Float);
    loss.backward();
    for (name, v) in m.base_vs().variables() {
        let g = v.grad();
        assert!(g.defined(), "{name} has no gradient");
        assert!(g.isfinite().all().int64_value(&[]) == 1, "{name}: NaN/Inf gradient (NaN reached a matmul)");
    }
    // The invalid-point token matters: an all-NaN pointmap gives a different output.
    let mut y = inputs(m.config(), 2);
    y.pointmap = Tensor::full_like(&y.pointmap, f64::NAN);
    let o2 = forward(&m, &y);
    assert!(o2.sdf.isfinite().all().int64_value(&[]) == 1);
}

#[test]
fn fresh_adapter_changes_nothing_and_only_adapters_train() {
    let mut m = model(3);
    let x = inputs(m.config(), 4);
    let before = forward(&m, &x);
    let n = m.attach_lora(&lora(4, &["to_qkv", "to_out", "to_q", "to_kv"])).expect("attach");
    // tiny: 1 encoder block (to_qkv, to_out) + 1 generator block (self: 2, cross: 3) = 7.
    assert_eq!(n, 7, "{:?}", m.lora_targets());
    let after = forward(&m, &x);
    assert!(same(&before, &after), "a fresh adapter (B = 0) must leave outputs bit-identical");

    for (name, v) in m.base_vs().variables() {
        assert!(!v.requires_grad(), "base {name} must be frozen");
    }
    let adapter = m.adapter_vs().expect("adapter").variables();
    assert_eq!(adapter.len(), 2 * n);
    for (name, v) in &adapter {
        assert!(v.requires_grad(), "adapter {name} must be trainable");
        assert!(name.ends_with("lora_A.weight") || name.ends_with("lora_B.weight"), "{name}");
    }
    let base_copy: Vec<(String, Tensor)> = m.base_vs().variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
    let adapter_copy: Vec<(String, Tensor)> = adapter.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
    train_adapter(&m, &x, 2);
    let base_now = m.base_vs().variables();
    for (k, v) in &base_copy {
        assert!(base_now[k].equal(v), "base {k} changed");
    }
    let ad_now = m.adapter_vs().expect("adapter").variables();
    for (k, v) in &adapter_copy {
        assert!(!ad_now[k].equal(v), "adapter {k} did not change");
    }
    assert!(!same(&before, &forward(&m, &x)), "a trained adapter changes the output");
}

#[test]
fn save_load_merge_unmerge() {
    let dir = tempfile::tempdir().expect("tmp");
    let base_path = dir.path().join("base.safetensors");
    let ad_path = dir.path().join("adapter.safetensors");
    let mut m = model(5);
    let x = inputs(m.config(), 6);
    let base_out = forward(&m, &x);
    m.save_weights(&base_path).expect("save base");
    m.attach_lora(&lora(4, &["to_qkv", "encoder.*.to_out"])).expect("attach");
    train_adapter(&m, &x, 3);
    let adapted = forward(&m, &x);
    m.save_adapter(&ad_path).expect("save adapter");

    // Load both into a fresh model: identical outputs.
    let mut m2 = Model::from_checkpoint(&base_path, Device::Cpu).expect("load base");
    assert!(same(&forward(&m2, &x), &base_out), "checkpoint round trip");
    m2.load_adapter(&ad_path).expect("load adapter");
    assert_eq!(m2.lora_targets(), m.lora_targets());
    assert!(same(&forward(&m2, &x), &adapted), "adapter round trip");

    // Merge: same outputs within 1e-5; unmerge: back to the base within 1e-5.
    assert!(m2.merge_lora());
    let merged = forward(&m2, &x);
    let d = max_diff(&merged, &adapted);
    assert!(d < 1e-5, "merged vs adapter forward: {d}");
    assert!(m2.unmerge_lora());
    let d = max_diff(&forward(&m2, &x), &adapted);
    assert!(d < 1e-5, "unmerged vs adapter forward: {d}");
    m2.detach_lora();
    let d = max_diff(&forward(&m2, &x), &base_out);
    assert!(d < 1e-5, "detached vs base: {d}");
}

#[test]
fn mismatched_adapters_and_checkpoints_give_one_readable_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let base_path = dir.path().join("base.safetensors");
    let other_base = dir.path().join("other.safetensors");
    let ad_path = dir.path().join("adapter.safetensors");
    let mut m = model(7);
    m.save_weights(&base_path).expect("save");
    m.attach_lora(&lora(4, &["to_qkv"])).expect("attach");
    m.save_adapter(&ad_path).expect("save adapter");

    // Rank and target mismatch against an attached adapter.
    let mut m2 = Model::from_checkpoint(&base_path, Device::Cpu).expect("load");
    m2.attach_lora(&lora(8, &["to_qkv", "to_out"])).expect("attach");
    let e = m2.load_adapter_weights(&ad_path).expect_err("mismatch");
    let msg = e.to_string();
    assert!(matches!(e, ModelError::Mismatch(_)), "{msg}");
    assert!(msg.contains("adapter.safetensors"), "{msg}");
    assert!(msg.contains("rank 4 in the file, 8 attached"), "{msg}");
    assert!(msg.contains("missing: ") && msg.contains("encoder.blocks.0.attn.to_out.lora_A.weight"), "{msg}");
    assert!(msg.contains("mis-shaped: ") && msg.contains("encoder.blocks.0.attn.to_qkv.lora_A.weight (file [4, 32], model [8, 32])"), "{msg}");

    // Another base: the SHA-256 check refuses it, and nothing is attached.
    let mut other = model(8);
    other.save_weights(&other_base).expect("save");
    let e = other.load_adapter(&ad_path).expect_err("other base");
    assert!(e.to_string().contains("SHA-256"), "{e}");
    assert!(other.adapter_vs().is_none(), "a failed load must not attach anything");

    // A tiny checkpoint into a small model: every problem listed, no panic.
    let mut small = Model::new(Config::small(), Device::Cpu);
    let e = small.load_weights(&base_path).expect_err("tiny into small");
    let msg = e.to_string();
    assert!(msg.contains("mis-shaped") && msg.contains("missing") && msg.contains("config 'tiny'"), "{msg}");
    assert!(msg.contains("encoder.blocks.1.attn.to_qkv.weight"), "small has 4 encoder blocks: {msg}");

    // Not a safetensors file.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"definitely not a checkpoint").expect("write");
    let e = Model::from_checkpoint(&junk, Device::Cpu).expect_err("junk");
    assert!(e.to_string().starts_with(&junk.display().to_string()), "{e}");

    // Target patterns that match nothing: the error lists the real names.
    let e = m2.attach_lora(&lora(2, &["q_proj"])).expect_err("no match");
    assert!(e.to_string().contains("encoder.blocks.0.attn.to_qkv"), "{e}");
}

/// Adds noise to the base's task heads, as a fine-tuning run trains them.
fn move_heads(m: &Model) -> usize {
    let _g = tch::no_grad_guard();
    let mut n = 0;
    for (name, v) in m.base_vs().variables() {
        if sam3d_engine::model::is_head(&name) {
            let _ = v.shallow_clone().f_add_(&(Tensor::randn_like(&v) * 0.05)).expect("add");
            n += 1;
        }
    }
    n
}

#[test]
fn an_adapter_file_carries_its_heads_and_detaching_puts_the_base_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let base_path = dir.path().join("base.safetensors");
    let ad_path = dir.path().join("adapter.safetensors");
    let mut m = model(11);
    let x = inputs(m.config(), 12);
    let base_out = forward(&m, &x);
    m.save_weights(&base_path).expect("save base");
    m.attach_lora(&lora(4, &["to_qkv"])).expect("attach");
    train_adapter(&m, &x, 2);
    assert!(move_heads(&m) > 0, "the tiny preset has heads");
    let tuned = forward(&m, &x);
    // Saving the fine-tuned base elsewhere (as a run does) does not change what the adapter names.
    m.save_weights(&dir.path().join("tuned.safetensors")).expect("save tuned");
    m.save_adapter(&ad_path).expect("save adapter");

    let f = sam3d_engine::model::checkpoint::StFile::read(&ad_path).expect("read");
    let heads = f.shapes().keys().filter(|k| k.starts_with("head/")).count();
    assert!(heads > 0 && f.shapes().keys().any(|k| k.starts_with("head/decoder.")) && f.shapes().keys().any(|k| k.starts_with("head/mask_head.")), "{:?}", f.shapes().keys());
    assert_eq!(f.metadata.get("format").map(String::as_str), Some(sam3d_engine::model::ADAPTER_FORMAT));

    // The shipped base plus the file alone give the fine-tuned outputs …
    let mut m2 = Model::from_checkpoint(&base_path, Device::Cpu).expect("load base");
    m2.load_adapter(&ad_path).expect("load adapter onto the original base");
    assert!(same(&forward(&m2, &x), &tuned), "base + adapter file = the fine-tuned model");
    // … and detaching gives the base back exactly (its heads restored).
    m2.detach_lora();
    assert!(same(&forward(&m2, &x), &base_out), "detached: the base's own heads");
    // Loading twice and then detaching still restores the base's heads, not the first file's.
    m2.load_adapter(&ad_path).expect("load");
    m2.load_adapter(&ad_path).expect("load again");
    m2.detach_lora();
    assert!(same(&forward(&m2, &x), &base_out), "detached after two loads");

    // A merged model saves the whole fine-tuned network.
    m2.load_adapter(&ad_path).expect("load");
    assert!(m2.merge_lora());
    let merged_path = dir.path().join("merged.safetensors");
    m2.save_weights(&merged_path).expect("save merged");
    let m3 = Model::from_checkpoint(&merged_path, Device::Cpu).expect("load merged");
    let d = max_diff(&forward(&m3, &x), &tuned);
    assert!(d < 1e-5, "merged checkpoint vs fine-tuned: {d}");
}

#[test]
fn an_adapter_whose_heads_do_not_fit_is_refused_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let base_path = dir.path().join("base.safetensors");
    let ad_path = dir.path().join("adapter.safetensors");
    let bad_path = dir.path().join("bad.safetensors");
    let mut m = model(13);
    m.save_weights(&base_path).expect("save base");
    m.attach_lora(&lora(2, &["to_qkv"])).expect("attach");
    m.save_adapter(&ad_path).expect("save adapter");
    // Rewrite the file with one head mis-shaped and one tensor that is no head of the model.
    let f = sam3d_engine::model::checkpoint::StFile::read(&ad_path).expect("read");
    let mut tensors = std::collections::HashMap::new();
    let mut bent = String::new();
    for name in f.shapes().keys() {
        let mut t = f.tensor(name).expect("tensor");
        if bent.is_empty() && name.starts_with("head/") && t.dim() == 2 {
            bent = name.clone();
            t = t.narrow(0, 0, 1);
        }
        tensors.insert(name.clone(), t);
    }
    tensors.insert("head/encoder.blocks.0.attn.to_qkv.weight".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
    sam3d_engine::model::checkpoint::write(&bad_path, &tensors, f.metadata.clone()).expect("write");

    let mut m2 = Model::from_checkpoint(&base_path, Device::Cpu).expect("load base");
    let x = inputs(m2.config(), 14);
    let before = forward(&m2, &x);
    let e = m2.load_adapter(&bad_path).expect_err("bad heads");
    let msg = e.to_string();
    assert!(msg.contains("bad.safetensors") && msg.contains(&bent) && msg.contains("head/encoder.blocks.0.attn.to_qkv.weight"), "{msg}");
    assert!(m2.adapter_vs().is_none(), "nothing attached");
    assert!(same(&forward(&m2, &x), &before), "the base is untouched");
}
