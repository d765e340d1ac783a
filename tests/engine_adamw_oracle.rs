//! The training loop's AdamW against PyTorch's `torch.optim.AdamW` on five steps
//! (tests/oracle/make_adamw_ref.py wrote the reference): a changing learning rate, one step's
//! gradients scaled (clipping and accumulation), decoupled weight decay on the matrix only.

use sam3d_engine::engine::train::AdamW;
use serde_json::Value;
use tch::{Kind, Tensor};

/// A JSON vector or matrix (rows of numbers) as a float64 tensor of the same shape.
fn tensor(v: &Value) -> Tensor {
    if v.as_array().and_then(|a| a.first()).is_some_and(Value::is_array) {
        let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).expect("matrix");
        let n = rows.len() as i64;
        Tensor::from_slice(&rows.concat()).reshape([n, -1])
    } else {
        let v: Vec<f64> = serde_json::from_value(v.clone()).expect("vector");
        Tensor::from_slice(&v)
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn adamw_matches_pytorch_step_by_step() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/oracle/adamw.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("reference")).expect("json");
    let wd = r["weight_decay"].as_f64().expect("weight decay");
    let w = tensor(&r["start"]["w"]).set_requires_grad(true);
    let b = tensor(&r["start"]["b"]).set_requires_grad(true);
    assert_eq!((w.size(), b.size()), (vec![2, 3], vec![3]));
    let mut opt = AdamW::new(vec![("w".into(), w), ("b".into(), b)]);
    let steps = r["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 5);
    for (n, s) in steps.iter().enumerate() {
        for (i, key) in ["grad_w", "grad_b"].into_iter().enumerate() {
            let g = tensor(&s[key]);
            let mut grad = opt.params[i].grad();
            if grad.defined() {
                grad.copy_(&g);
            } else {
                // The first step: make the gradient by a backward pass of p · g.
                (&opt.params[i] * &g).sum(Kind::Double).backward();
            }
        }
        opt.step(s["lr"].as_f64().expect("lr"), wd, s["scale"].as_f64().expect("scale"));
        let (dw, db) = (max_diff(&opt.params[0], &tensor(&s["w"])), max_diff(&opt.params[1], &tensor(&s["b"])));
        assert!(dw < 1e-12 && db < 1e-12, "step {}: |w - torch| {dw:e}, |b - torch| {db:e}", n + 1);
    }
    // Not a reference that agrees with anything: the parameters moved.
    assert!(max_diff(&opt.params[0], &tensor(&r["start"]["w"])) > 1e-3);
}
