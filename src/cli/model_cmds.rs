//! `infer`: one click → the organ's mask on the input grid (and mesh), without the GUI.
//!
//! The main binary forwards its whole command line to `sam3d-studio-engine` (see
//! [`super::forward_to_engine`]), which parses the same `Cli` and runs [`run_local`] here.

use crate::engine::{InferRequest, NO_WEIGHTS_HELP, NoHooks, Session};
use crate::geometry::{RasMm, ViewPlane};
use crate::model::{Model, parse_device};
use crate::volume::{Modality, OnGrid, Volume};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `infer`.
#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// Input volume (NIfTI).
    pub volume: PathBuf,
    /// Click position in RAS millimetres: X,Y,Z.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, required = true)]
    pub click_ras: Vec<f64>,
    /// View plane the click was made on.
    #[arg(long, default_value = "axial")]
    pub plane: ViewPlane,
    /// Output mask (NIfTI, on the input's grid).
    #[arg(long)]
    pub out_mask: PathBuf,
    /// Output mesh (STL, OBJ or PLY by extension; RAS mm).
    #[arg(long)]
    pub out_mesh: Option<PathBuf>,
    /// Model checkpoint (.safetensors); default: the shipped weights in assets/models/.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// LoRA adapter (.safetensors) for those weights.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// auto (CUDA when available), cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// ct, mr or auto (guess from the intensities).
    #[arg(long, default_value = "auto")]
    pub modality: Modality,
    /// libtorch threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Print one JSON object (timings per stage, voxel count, volume in ml).
    #[arg(long)]
    pub json: bool,
    /// The model's mask as it is, without the image refinement of its boundary.
    #[arg(long)]
    pub no_refine: bool,
    /// One pass only: do not continue an organ wider than the model's output cube with clicks
    /// toward the faces it reaches.
    #[arg(long)]
    pub no_extend: bool,
    /// How the pass combines the model's shapes from the three planes through the click:
    /// own (the clicked plane only), mean or median of the three signed distances.
    #[arg(long, default_value_t)]
    pub planes: crate::engine::session::PlaneFusion,
    /// Test views: how many small moves of the scan about the click (rotations of 8°, scales
    /// of 0.92–1.08, as in training) the pass also runs the model in, their shapes joining the
    /// planes' per-cell vote (0–4; each adds three forward passes).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub views: u8,
    /// The model's shape alone: do not join region growing from the click where it agrees
    /// with the shape (at most 1.5× its volume, holding 60 % of it).
    #[arg(long)]
    pub no_join: bool,
    /// How far from the model's shape (mm) the part of a grown region that leaked may reach and
    /// still be joined, when it then agrees with the shape; 0: a leaking region is dropped whole.
    #[arg(long, default_value_t = crate::baseline::join::JOIN_NEAR_MM, value_parser = parse_mm)]
    pub join_near_mm: f64,
    /// The base weights on an MR scan too: do not put the shipped MR adapter
    /// (assets/models/mr.safetensors) on the model when the scan is MR and no --adapter is given.
    #[arg(long)]
    pub no_mr_adapter: bool,
}

#[derive(serde::Serialize)]
struct InferJson {
    volume: String,
    out_mask: String,
    out_mesh: Option<String>,
    weights: String,
    adapter: Option<String>,
    preset: String,
    device: String,
    modality: Modality,
    click_ras: [f64; 3],
    plane: ViewPlane,
    class: usize,
    voxel_count: usize,
    volume_ml: f64,
    timings: crate::engine::Timings,
    load_secs: f64,
    /// Triangles in the written mesh (when `--out-mesh`).
    mesh_triangles: Option<usize>,
}

/// A distance in mm: finite and not negative (0: off where the option says so).
pub fn parse_mm(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("`{s}` is not a distance in mm (a number ≥ 0)")),
    }
}

/// Environment variable that overrides where the default weights are looked for (empty: none).
pub const DEFAULT_WEIGHTS_ENV: &str = "SAM3D_DEFAULT_WEIGHTS";

/// The shipped default weights, if this build has them.
pub fn default_weights_path() -> Option<PathBuf> {
    // `SAM3D_DEFAULT_WEIGHTS` overrides the lookup (empty: no default weights).
    if let Some(v) = std::env::var_os(DEFAULT_WEIGHTS_ENV) {
        return (!v.is_empty()).then(|| PathBuf::from(v)).filter(|p| p.exists());
    }
    beside_the_binary("assets/models/default.safetensors")
}

/// Environment variable that overrides where the shipped MR adapter is looked for (empty: none).
pub const MR_ADAPTER_ENV: &str = "SAM3D_MR_ADAPTER";

/// The shipped MR adapter (LoRA and heads for the shipped weights, trained on MR phantoms:
/// `configs/lora_mr.toml`), if this build has it. A session puts it on for MR scans while no
/// adapter was loaded by hand ([`crate::engine::Session::set_mr_adapter`]).
pub fn default_mr_adapter_path() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os(MR_ADAPTER_ENV) {
        return (!v.is_empty()).then(|| PathBuf::from(v)).filter(|p| p.exists());
    }
    beside_the_binary("assets/models/mr.safetensors")
}

/// `rel` beside the running binary (an installed tree) or in the source tree it was built from.
fn beside_the_binary(rel: &str) -> Option<PathBuf> {
    [
        std::env::current_exe().ok().and_then(|e| e.parent().map(|p| p.join(rel))),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.exists())
}

/// Runs a model command in this process (the engine binary, which links libtorch).
pub fn run_local(cmd: &super::Command) -> Result<()> {
    match cmd {
        super::Command::Infer(a) => run_infer(a),
        super::Command::Train(a) => super::train_cmds::run_train(a),
        super::Command::Eval(a) => super::train_cmds::run_eval(a),
        _ => bail!("not a model command"),
    }
}

/// Inference in this process (links libtorch).
pub fn run_infer(a: &InferArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let click = match a.click_ras.as_slice() {
        [x, y, z] if [x, y, z].iter().all(|v| v.is_finite()) => RasMm::new(*x, *y, *z),
        other => bail!("--click-ras takes three finite numbers X,Y,Z in RAS mm, got {other:?}"),
    };
    if let Some(m) = &a.out_mesh {
        crate::shape::MeshFormat::from_path(m)?;
        check_writable(m)?;
    }
    check_writable(&a.out_mask)?;
    let weights = match (&a.weights, default_weights_path()) {
        (Some(w), _) => w.clone(),
        (None, Some(d)) => d,
        (None, None) => bail!("{NO_WEIGHTS_HELP}"),
    };
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
    if let Some(n) = a.threads {
        tch::set_num_threads(n);
    }
    let volume = Arc::new(Volume::load(&a.volume)?);
    // Fail on a click outside the volume before loading any weights.
    let voxel_from_ras = volume.voxel_from_ras();
    if !volume.shape().contains(voxel_from_ras.apply(click)) {
        let v = voxel_from_ras.apply(click);
        bail!(
            "{}: click at RAS ({:.1}, {:.1}, {:.1}) mm is outside the volume (voxel ({:.1}, {:.1}, {:.1}) of a {} grid)",
            a.volume.display(),
            click.x(),
            click.y(),
            click.z(),
            v.x(),
            v.y(),
            v.z(),
            volume.shape()
        );
    }
    let model = Model::from_checkpoint(&weights, device)?;
    let mut session = Session::new();
    if a.no_refine {
        session.set_refine(None);
    }
    session.set_extend(!a.no_extend);
    session.set_fusion(a.planes);
    session.set_views(a.views as usize);
    session.set_join(!a.no_join);
    session.set_join_near((a.join_near_mm > 0.0).then_some(a.join_near_mm));
    let info = session.set_model(model)?;
    if let Some(ad) = &a.adapter {
        session.load_adapter(ad)?;
    }
    if !a.no_mr_adapter {
        session.set_mr_adapter(default_mr_adapter_path())?;
    }
    let modality = session.set_volume(volume.clone(), Some(a.modality))?;
    if let Some(e) = session.mr_adapter_error() {
        eprintln!("warning: the MR adapter was not used: {e}");
    }
    let load_secs = t0.elapsed().as_secs_f64();
    let result = session
        .infer(&InferRequest { click, plane: a.plane, mask2d: None }, &mut NoHooks)
        .with_context(|| format!("{}: inference failed", a.volume.display()))?;
    result.mask.save(&a.out_mask)?;
    let mut mesh_triangles = None;
    if let Some(path) = &a.out_mesh {
        let empty = crate::shape::Mesh::default();
        let mesh = result.mesh.as_ref().unwrap_or(&empty);
        let obj = crate::shape::MeshObject { label: 1, name: "organ", mesh };
        crate::shape::write_mesh(path, &[obj], crate::shape::MeshSpace::Ras)?;
        mesh_triangles = Some(mesh.triangles.len());
    }
    let out = InferJson {
        volume: a.volume.display().to_string(),
        out_mask: a.out_mask.display().to_string(),
        out_mesh: a.out_mesh.as_ref().map(|p| p.display().to_string()),
        weights: weights.display().to_string(),
        adapter: result.adapter.as_ref().map(|p| p.display().to_string()),
        preset: info.preset,
        device: info.device,
        modality,
        click_ras: click.to_array(),
        plane: a.plane,
        class: result.class,
        voxel_count: result.voxel_count,
        volume_ml: result.volume_ml,
        timings: result.timings.clone(),
        load_secs,
        mesh_triangles,
    };
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        let t = &result.timings;
        println!("mask      {} ({} voxels, {:.2} ml)", out.out_mask, out.voxel_count, out.volume_ml);
        println!(
            "timings   preprocess {:.3} s, 2D mask {:.3} s, 3D shape {:.3} s, postprocess {:.3} s, total {:.3} s (+ {:.2} s loading)",
            t.preprocess_secs, t.mask2d_secs, t.shape_secs, t.postprocess_secs, t.total_secs, load_secs
        );
        if let Some(j) = t.join {
            println!("grow      region growing from the click: {}", serde_json::to_string(&j)?.trim_matches('"').replace('_', " "));
        }
    }
    Ok(())
}

/// The output's directory must exist (checked before the work, so nothing is half-done).
fn check_writable(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{}: output directory {} does not exist", path.display(), dir.display());
    }
    Ok(())
}
