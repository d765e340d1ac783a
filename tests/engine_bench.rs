//! Benchmark (not a test; run explicitly):
//!   cargo test --release --test engine_bench -- --ignored --nocapture --test-threads=1
//! Click → mask + mesh with the `small` preset on 2 CPU threads, the volume already
//! prepared (cached) in the session; random weights (speed does not depend on their values).
//! Prints per-stage medians and the process's peak memory (VmHWM).
//! Source `packaging/linux/env.sh` first: it sets `OMP_WAIT_POLICY=PASSIVE` (as the engine
//! process gets it from the app). Without it idle libtorch threads spin while rayon does the
//! postprocess, and both stages slow down several-fold on 2 cores.

use sam3d_engine::engine::{InferRequest, NoHooks, Session};
use sam3d_studio::geometry::ViewPlane;
use sam3d_engine::model::{Config, Model};
use sam3d_studio::volume::OnGrid;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::Device;

#[path = "common/bench.rs"]
mod bench;
use bench::{centroid, median, vm};

fn cpu_secs() -> f64 {
    bench::cpu_secs_of("self")
}

/// (volume, labels) pairs to click on: the demo CT, and the 512×512×224 CT when present.
fn bench_cases() -> Vec<(PathBuf, PathBuf)> {
    let big = Path::new("/tmp/peerdata/big_ct.nii.gz");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/ct.nii.gz");
    let mut cases = vec![(demo.clone(), demo.with_file_name("labels.nii.gz"))];
    if big.exists() {
        cases.push((big.to_path_buf(), big.with_file_name("big_labels.nii.gz")));
    }
    cases
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn click_to_mask_small_preset_two_threads() {
    if std::env::var("OMP_WAIT_POLICY").map_or(true, |v| !v.eq_ignore_ascii_case("passive")) {
        println!("note: OMP_WAIT_POLICY is not PASSIVE (source packaging/linux/env.sh): timings will be pessimistic");
    }
    tch::set_num_threads(2);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
    let cases = bench_cases();
    for preset in ["small", "tiny"] {
        tch::manual_seed(0);
        let model = Model::new(Config::preset(preset).expect("preset"), Device::Cpu);
        let params = model.info().parameters;
        let mut session = Session::new();
        session.set_model(model).expect("model");
        for (vol_path, lab_path) in &cases {
            // The click: the liver's centroid (label 5), computed before measuring memory.
            let liver = sam3d_studio::volume::open_labels(lab_path).ok().and_then(|l| centroid(&l, 5));
            let t = Instant::now();
            let vol = Arc::new(sam3d_studio::volume::open(vol_path).expect("volume"));
            let load = t.elapsed().as_secs_f64();
            // Reset the peak-RSS mark (Linux: "5" clears VmHWM) so it covers prepare + clicks.
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            let t = Instant::now();
            session.set_volume(vol.clone(), None).expect("prepare");
            let prep = t.elapsed().as_secs_f64();
            let click = liver.unwrap_or_else(|| {
                let s = vol.shape();
                vol.ras_from_voxel.apply(sam3d_studio::geometry::VoxelIjk::new(s.ni as f64 / 2.0, s.nj as f64 / 2.0, s.nk as f64 / 2.0))
            });
            let (mut pre, mut m2, mut sh, mut post, mut tot) = (vec![], vec![], vec![], vec![], vec![]);
            let (mut mesh, mut vox) = (vec![], vec![]);
            let mut wall = vec![];
            let mut cpu0 = 0.0;
            for rep in 0..8 {
                if rep == 1 {
                    cpu0 = cpu_secs();
                }
                let plane = ViewPlane::ALL[rep % 3];
                let t = Instant::now();
                let r = session.infer(&InferRequest::click(click, plane), &mut NoHooks).expect("infer");
                wall.push(t.elapsed().as_secs_f64());
                if rep == 0 {
                    continue; // warm-up
                }
                pre.push(r.timings.preprocess_secs);
                m2.push(r.timings.mask2d_secs);
                sh.push(r.timings.shape_secs);
                post.push(r.timings.postprocess_secs);
                tot.push(r.timings.total_secs);
                mesh.push(r.timings.mesh_secs.unwrap_or(0.0));
                vox.push(r.voxel_count as f64);
            }
            println!(
                "{preset:5} ({params} params) {} {}: load {load:.2} s, prepare (cached once) {prep:.3} s | per click median: preprocess {:.4} s, 2D mask {:.4} s, 3D shape {:.4} s, postprocess {:.4} s, mesh {:.4} s, total {:.4} s (first click {:.3} s; mask ≈ {:.0} voxels)",
                vol_path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                vol.shape(),
                median(pre),
                median(m2),
                median(sh),
                median(post),
                median(mesh),
                median(tot),
                wall[0],
                median(vox),
            );
            println!("        CPU time per click (all threads, load-independent): {:.3} s", (cpu_secs() - cpu0) / 7.0);
            println!("        peak RSS during prepare + clicks (VmHWM) {}, volume itself {} MB", vm("VmHWM:"), vol.data.len() * 4 / 1_000_000);
        }
    }
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn small_forward_per_block() {
    tch::set_num_threads(2);
    tch::manual_seed(0);
    let cfg = Config::small();
    let m = Model::new(cfg.clone(), Device::Cpu);
    let s = cfg.input.image_size as i64;
    let opts = (tch::Kind::Float, Device::Cpu);
    let x = sam3d_engine::model::NetInputs {
        image: tch::Tensor::randn([1, 1, s, s], opts),
        mask: tch::Tensor::ones([1, 1, s, s], opts),
        pointmap: tch::Tensor::randn([1, 3, s, s], opts),
        context: None,
        guide: None,
    };
    let _g = tch::no_grad_guard();
    let net = m.net();
    for rep in 0..3 {
        let t = Instant::now();
        let pe = net.encoder.point_embed.forward_t(&x.pointmap, false);
        let t_pe = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let cond = net.encoder.forward_t(&x, false);
        let t_enc = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let lat = net.generator.forward_t(&cond, false);
        let t_gen = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let sdf = net.decoder.forward(&lat, None);
        let t_dec = t.elapsed().as_secs_f64();
        println!("rep {rep}: point_embed {t_pe:.4} s, encoder (incl.) {t_enc:.4} s, generator {t_gen:.4} s, decoder {t_dec:.4} s {:?} {:?}", pe.size(), sdf.size());
    }
}

/// The postprocess and mesh stages alone on the big CT, for two SDF cubes around the liver's
/// centroid: the `small` preset's random-weights output (a noisy blob, the worst case for the
/// mesh) and a liver-like one (the liver label's SDF on the cube, what trained weights aim
/// at). Wall-clock medians and process CPU seconds per repetition.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn postprocess_and_mesh_stages() {
    use sam3d_studio::data::click::{PreparedVolume, click_prior_mask, prepare_click};
    use sam3d_studio::shape::click_mesh::mesh_of_component;
    use sam3d_engine::model::convert::{array_from, inputs_for};
    use sam3d_studio::shape::sdf_component_on_grid;
    tch::set_num_threads(2);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
    let cases = bench_cases();
    tch::manual_seed(0);
    let cfg = Config::preset("small").expect("preset");
    let model = Model::new(cfg.clone(), Device::Cpu);
    let _g = tch::no_grad_guard();
    for (vol_path, lab_path) in &cases {
        let labels = sam3d_studio::volume::open_labels(lab_path).expect("labels");
        let click = centroid(&labels, 5).expect("a liver");
        let vol = Arc::new(sam3d_studio::volume::open(vol_path).expect("volume"));
        let click_idx = vol.ras_from_voxel.try_inverse().ok().and_then(|v| vol.shape().array_index(v.apply(click)));
        let pv = PreparedVolume::new(vol.clone(), None, cfg.input.ct_window_hu).expect("prepare");
        let sample = prepare_click(&pv, click, ViewPlane::Axial, &cfg.click_params()).expect("click");
        let prior = click_prior_mask(cfg.input.image_size, cfg.input.prior_radius_px);
        let out = model.forward_t(&inputs_for(&sample, &prior, Device::Cpu), false);
        let g = cfg.output.grid;
        let random = array_from(&out.sdf.get(0).get(0)).expect("sdf").into_shape_with_order((g, g, g)).expect("g³");
        // The liver label on the cube (nearest voxel), then its SDF in mm on the cube.
        let inv = labels.ras_from_voxel.try_inverse().expect("affine");
        let on_cube = ndarray::Array3::from_shape_fn((g, g, g), |(z, y, x)| {
            let p = sample.ras_from_grid.apply(sam3d_studio::geometry::Point3::new(x as f64, y as f64, z as f64));
            labels.shape().array_index(inv.apply(p)).is_some_and(|a| labels.data[a.as_kji()] == 5)
        });
        let h = cfg.output.cube_mm / g as f64;
        let liver = sam3d_studio::shape::sdf(on_cube.view(), sam3d_studio::geometry::SpacingIjk::isotropic(h));
        for (what, sdf) in [("random weights", random), ("liver-like", liver)] {
            let (mut post, mut mesh, mut refine) = (vec![], vec![], vec![]);
            let (mut cpu_post, mut cpu_mesh) = (0.0, 0.0);
            let floor = sam3d_studio::baseline::refine::intensity_floor(&vol);
            let mut info = String::new();
            let reps = 5;
            for _ in 0..reps {
                let c0 = cpu_secs();
                let t = Instant::now();
                let comp = sdf_component_on_grid(sdf.view(), &sample.ras_from_grid, vol.shape(), &vol.ras_from_voxel, click).expect("a component");
                let labels_out = comp.to_labels(vol.shape(), 1);
                post.push(t.elapsed().as_secs_f64());
                // The image refinement that follows by default (timed apart: it is optional).
                let t = Instant::now();
                let refined = sam3d_studio::baseline::refine::refine_component(&vol, &comp, &Default::default(), floor, click_idx);
                refine.push((t.elapsed().as_secs_f64(), refined.voxel_count));
                let c1 = cpu_secs();
                let t = Instant::now();
                let m = mesh_of_component(&comp, vol.shape(), &vol.ras_from_voxel).expect("a mesh");
                mesh.push(t.elapsed().as_secs_f64());
                cpu_post += c1 - c0;
                cpu_mesh += cpu_secs() - c1;
                let voxel_ml = vol.ras_from_voxel.determinant().abs() / 1000.0;
                info = format!(
                    "{} voxels ({:.0} ml) in a {:?} box; mesh {} triangles, {:.0} ml",
                    comp.voxel_count,
                    comp.voxel_count as f64 * voxel_ml,
                    comp.mask.dim(),
                    m.triangles.len(),
                    m.volume_mm3() / 1000.0
                );
                drop(labels_out);
            }
            let refined_voxels = refine.last().map_or(0, |r| r.1);
            println!(
                "{} {what:15}: postprocess {:.4} s ({:.3} CPU s), refinement {:.4} s (→ {refined_voxels} voxels), mesh {:.4} s ({:.3} CPU s); {info}",
                vol_path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                median(post),
                cpu_post / reps as f64,
                median(refine.iter().map(|r| r.0).collect()),
                median(mesh),
                cpu_mesh / reps as f64,
            );
        }
    }
}
