//! Network shapes, `volume_context` tokens, checkpoint key names, and an end-to-end session
//! with volume context on.

use sam3d_studio::model::{Config, Model, NetInputs};
use tch::{Device, Kind, Tensor};

fn tiny_with_context() -> Config {
    let mut f = Config::tiny().into_file();
    f.volume_context.enabled = true;
    f.validate().expect("valid")
}

fn inputs(cfg: &Config, context: bool) -> NetInputs {
    let s = cfg.input.image_size as i64;
    let c = cfg.volume_context.size as i64;
    let o = (Kind::Float, Device::Cpu);
    NetInputs {
        image: Tensor::randn([1, 1, s, s], o),
        mask: Tensor::ones([1, 1, s, s], o),
        pointmap: Tensor::randn([1, 3, s, s], o),
        context: context.then(|| Tensor::randn([1, 1, c, c, c], o)),
    }
}

#[test]
fn volume_context_adds_tokens_that_change_the_shape() {
    tch::manual_seed(1);
    let cfg = tiny_with_context();
    assert_eq!(cfg.context_tokens(), 8, "16³ cube in 8³ patches");
    let m = Model::new(cfg.clone(), Device::Cpu);
    let x = inputs(&cfg, true);
    let cond = tch::no_grad(|| m.net().encoder.forward_t(&x, false));
    assert_eq!(cond.size(), vec![1, 16 + 16 + 8, 32]);
    let a = tch::no_grad(|| m.forward_t(&x, false));
    let mut y = inputs(&cfg, true);
    y.image = x.image.copy();
    y.pointmap = x.pointmap.copy();
    let b = tch::no_grad(|| m.forward_t(&y, false));
    assert!(!a.sdf.allclose(&b.sdf, 1e-6, 1e-6, false), "the context cube must matter");
    let names: Vec<String> = m.base_vs().variables().into_keys().collect();
    for want in ["encoder.context_embed.proj.weight", "encoder.context_pos_embed", "encoder.point_embed.invalid_xyz_token",
        "encoder.point_embed.point_proj.weight", "encoder.blocks.0.attn.to_qkv.weight", "encoder.blocks.0.mlp.mlp.0.weight",
        "generator.blocks.0.cross_attn.to_kv.weight", "generator.latent_tokens", "decoder.up.1.weight", "decoder.out.weight",
        "mask_head.proj.weight"] {
        assert!(names.iter().any(|n| n == want), "missing {want}: {names:?}");
    }
}

#[test]
fn tiny_forward_and_backward_is_fast_enough_for_tests() {
    // Not a timed assert: this just runs forward + backward on a batch of 4 so regressions that
    // make the tiny preset heavy show up in the test's wall time.
    tch::manual_seed(2);
    let cfg = Config::tiny();
    let m = Model::new(cfg.clone(), Device::Cpu);
    let s = cfg.input.image_size as i64;
    let o = (Kind::Float, Device::Cpu);
    let x = NetInputs { image: Tensor::randn([4, 1, s, s], o), mask: Tensor::ones([4, 1, s, s], o), pointmap: Tensor::randn([4, 3, s, s], o), context: None };
    let out = m.forward_t(&x, true);
    (out.sdf.abs().mean(Kind::Float) + out.mask_logits.mean(Kind::Float)).backward();
    assert_eq!(out.sdf.size(), vec![4, 1, 16, 16, 16]);
}

#[test]
fn context_switch_drops_the_context_tokens() {
    use sam3d_studio::model::{Model, NetInputs};
    use tch::{Device, Kind, Tensor};
    tch::manual_seed(5);
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml")).expect("tiny");
    let text = text.replace("[volume_context]\nenabled = false", "[volume_context]\nenabled = true");
    let cfg = sam3d_studio::model::Config::from_toml_str(&text, "tiny+ctx").expect("config");
    let mut m = Model::new(cfg, Device::Cpu);
    let s = 32;
    let x = NetInputs {
        image: Tensor::rand([1, 1, s, s], (Kind::Float, Device::Cpu)),
        mask: Tensor::ones([1, 1, s, s], (Kind::Float, Device::Cpu)),
        pointmap: Tensor::rand([1, 3, s, s], (Kind::Float, Device::Cpu)),
        context: Some(Tensor::rand([1, 1, 16, 16, 16], (Kind::Float, Device::Cpu))),
    };
    let no_ctx = NetInputs { image: x.image.shallow_clone(), mask: x.mask.shallow_clone(), pointmap: x.pointmap.shallow_clone(), context: None };
    let with = m.forward_t(&x, false).sdf;
    let without = m.forward_t(&no_ctx, false).sdf;
    assert!((&with - &without).abs().max().double_value(&[]) > 1e-6, "the context changes nothing");
    m.set_use_context(false);
    assert!(!m.uses_context());
    let switched = m.forward_t(&x, false).sdf;
    assert_eq!((&switched - &without).abs().max().double_value(&[]), 0.0);
}
