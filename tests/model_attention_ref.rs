//! One self-attention block and one cross-attention block against PyTorch with fixed weights
//! (reference written once by tests/oracle/make_attention_ref.py).

use sam3d_engine::model::checkpoint::StFile;
use sam3d_engine::model::layers::{Block, CrossBlock};
use std::path::Path;
use tch::{Device, nn};

fn reference() -> StFile {
    StFile::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/attention_ref.safetensors")).expect("reference file")
}

fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn self_attention_block_matches_pytorch() {
    let f = reference();
    let vs = nn::VarStore::new(Device::Cpu);
    let block = Block::new(&(vs.root() / "block"), 16, 2, 32);
    // Every variable of the Rust block must exist in the reference with the same shape.
    let m = f.compare(&sam3d_engine::model::checkpoint::shapes_of(&vs.variables()), "reference");
    assert!(m.missing.is_empty() && m.misshaped.is_empty(), "{m}");
    f.copy_into(&vs.variables()).expect("copy");
    let x = f.tensor("input.x").expect("x");
    let y = tch::no_grad(|| block.forward_t(&x, false));
    let want = f.tensor("output.block").expect("y");
    let d = max_abs_diff(&y, &want);
    assert!(d < 1e-5, "max |rust − torch| = {d}");
    // And the reference is not trivially reproduced by a wrong block (sanity of the oracle).
    assert!(max_abs_diff(&x, &want) > 0.1);
}

#[test]
fn cross_attention_block_matches_pytorch() {
    let f = reference();
    let vs = nn::VarStore::new(Device::Cpu);
    let block = CrossBlock::new(&(vs.root() / "xblock"), 16, 16, 2, 32);
    let m = f.compare(&sam3d_engine::model::checkpoint::shapes_of(&vs.variables()), "reference");
    assert!(m.missing.is_empty() && m.misshaped.is_empty(), "{m}");
    f.copy_into(&vs.variables()).expect("copy");
    let x = f.tensor("input.x").expect("x");
    let ctx = f.tensor("input.ctx").expect("ctx");
    let y = tch::no_grad(|| block.forward_t(&x, &ctx, false));
    let d = max_abs_diff(&y, &f.tensor("output.xblock").expect("y"));
    assert!(d < 1e-5, "max |rust − torch| = {d}");
}
