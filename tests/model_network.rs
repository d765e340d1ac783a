//! Network shapes, `volume_context` tokens, checkpoint key names, and an end-to-end session
//! with volume context on.

use sam3d_engine::model::{Config, Model, NetInputs};
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
        guide: None,
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
fn tiny_forward_and_backward_reach_every_parameter() {
    // A batch of 4 forward and backward: the output has the configured grid, and the loss's
    // gradient reaches every parameter of the network, finite (a layer left out of the graph,
    // or a NaN, fails here). Not a timed assert: speed is benchmarked elsewhere.
    tch::manual_seed(2);
    let cfg = Config::tiny();
    let m = Model::new(cfg.clone(), Device::Cpu);
    let s = cfg.input.image_size as i64;
    let o = (Kind::Float, Device::Cpu);
    let x = NetInputs { image: Tensor::randn([4, 1, s, s], o), mask: Tensor::ones([4, 1, s, s], o), pointmap: Tensor::randn([4, 3, s, s], o), context: None, guide: None };
    let out = m.forward_t(&x, true);
    (out.sdf.abs().mean(Kind::Float) + out.mask_logits.mean(Kind::Float)).backward();
    assert_eq!(out.sdf.size(), vec![4, 1, 16, 16, 16]);
    let vars = m.base_vs().variables();
    assert!(vars.len() > 20, "{} parameters", vars.len());
    let mut without = Vec::new();
    for (name, t) in &vars {
        let g = t.grad();
        if !g.defined() {
            without.push(name.clone());
            continue;
        }
        assert!(g.isfinite().all().int64_value(&[]) == 1, "{name}: a non-finite gradient");
    }
    without.sort();
    assert!(without.is_empty(), "no gradient reaches {without:?}");
}

#[test]
fn context_switch_drops_the_context_tokens() {
    use sam3d_engine::model::{Model, NetInputs};
    use tch::{Device, Kind, Tensor};
    tch::manual_seed(5);
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml")).expect("tiny");
    let text = text.replace("[volume_context]\nenabled = false", "[volume_context]\nenabled = true");
    let cfg = sam3d_engine::model::Config::from_toml_str(&text, "tiny+ctx").expect("config");
    let mut m = Model::new(cfg, Device::Cpu);
    let s = 32;
    let x = NetInputs {
        image: Tensor::rand([1, 1, s, s], (Kind::Float, Device::Cpu)),
        mask: Tensor::ones([1, 1, s, s], (Kind::Float, Device::Cpu)),
        pointmap: Tensor::rand([1, 3, s, s], (Kind::Float, Device::Cpu)),
        context: Some(Tensor::rand([1, 1, 16, 16, 16], (Kind::Float, Device::Cpu))),
        guide: None,
    };
    let no_ctx = NetInputs { image: x.image.shallow_clone(), mask: x.mask.shallow_clone(), pointmap: x.pointmap.shallow_clone(), context: None, guide: None };
    let with = m.forward_t(&x, false).sdf;
    let without = m.forward_t(&no_ctx, false).sdf;
    assert!((&with - &without).abs().max().double_value(&[]) > 1e-6, "the context changes nothing");
    m.set_use_context(false);
    assert!(!m.uses_context());
    let switched = m.forward_t(&x, false).sdf;
    assert_eq!((&switched - &without).abs().max().double_value(&[]), 0.0);
}

fn tiny_guided() -> Config {
    let mut f = tiny_with_context().into_file();
    f.volume_context.guide = true;
    f.name = "tiny-guided".into();
    f.validate().expect("valid")
}

fn with_guide(cfg: &Config, x: &NetInputs, guide: Tensor) -> NetInputs {
    let g = cfg.output.grid as i64;
    NetInputs {
        image: x.image.shallow_clone(),
        mask: x.mask.shallow_clone(),
        pointmap: x.pointmap.shallow_clone(),
        context: x.context.as_ref().map(|c| c.shallow_clone()),
        guide: Some(guide.reshape([1, 1, g, g, g])),
    }
}

#[test]
fn guided_decoder_warm_starts_from_unguided_weights_and_then_follows_the_scan() {
    tch::manual_seed(11);
    let dir = tempfile::tempdir().expect("tmp");
    let plain_path = dir.path().join("plain.safetensors");
    let mut plain = Model::new(tiny_with_context(), Device::Cpu);
    plain.save_weights(&plain_path).expect("save");
    let cfg = tiny_guided();
    let mut guided = Model::new(cfg.clone(), Device::Cpu);
    guided.init_from(&plain_path).expect("warm start");
    let names: Vec<String> = guided.base_vs().variables().into_keys().collect();
    for want in ["decoder.guide.0.weight", "decoder.guide_head.conv.weight", "decoder.guide_head.out.weight"] {
        assert!(names.iter().any(|n| n == want), "missing {want}: {names:?}");
    }
    let g = cfg.output.grid as i64;
    let x = inputs(&cfg, true);
    let scan = Tensor::rand([g, g, g], (Kind::Float, Device::Cpu));
    let xg = with_guide(&cfg, &x, scan.copy());
    let _ng = tch::no_grad_guard();
    let want = plain.forward_t(&x, false).sdf;
    let got = guided.forward_t(&xg, false).sdf;
    let d = (&want - &got).abs().max().double_value(&[]);
    assert!(d < 1e-6, "a warm-started guided decoder must start as the unguided one (differs by {d})");

    // Once its last weights move, the scan under the cube changes the shape; without a guide
    // cube (single-slice mode) the decoder is the unguided one.
    for (n, mut t) in guided.base_vs().variables() {
        if n.starts_with("decoder.guide") {
            t.copy_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.1));
        }
    }
    let a = guided.forward_t(&xg, false).sdf;
    let b = guided.forward_t(&with_guide(&cfg, &x, scan.flip([0])), false).sdf;
    assert!((&a - &b).abs().max().double_value(&[]) > 1e-4, "the guide cube must matter");
    let none = NetInputs { guide: None, ..with_guide(&cfg, &x, scan) };
    let c = guided.forward_t(&none, false).sdf;
    assert!((&c - &want).abs().max().double_value(&[]) < 1e-6);
    guided.set_use_context(false);
    let single = guided.forward_t(&xg, false).sdf;
    let plain_single = {
        plain.set_use_context(false);
        plain.forward_t(&x, false).sdf
    };
    assert!((&single - &plain_single).abs().max().double_value(&[]) < 1e-6, "context off drops the guide too");
}

#[test]
fn warm_start_refuses_a_checkpoint_of_another_architecture() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("other.safetensors");
    Model::new(Config::tiny(), Device::Cpu).save_weights(&p).expect("save");
    let mut guided = Model::new(tiny_guided(), Device::Cpu);
    let e = guided.init_from(&p).expect_err("no context embedding in the file").to_string();
    assert!(e.contains("other.safetensors"), "{e}");
    assert!(e.contains("encoder.context_embed.proj.weight"), "{e}");
    assert!(!e.contains("decoder.guide"), "the guide branches are expected to be new: {e}");
}
