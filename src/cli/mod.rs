//! Command-line subcommands (README, "Command line"). Each prints a one-line reason on stderr
//! and exits non-zero on failure; `--json` prints exactly one JSON object on stdout.

mod convert_cmd;
mod shape_cmds;

use crate::data::phantom::PhantomSpec;
use crate::geometry::{SpacingIjk, axcodes};
use crate::volume::dicom::SeriesChoice;
use crate::volume::{DataType, Format, Interp, OnGrid, SlabResampler, read_info, save_volume_by_slices};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub mod data_cmds;
pub mod train_cmds;

#[derive(Parser, Debug)]
#[command(name = "sam3d-studio", version, about = "One click on one slice → the organ's 3D shape", args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Volume to open in the viewer (the demo CT when omitted).
    pub file: Option<PathBuf>,
    /// Label map to overlay (on the volume's grid).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Put the crosshair at this point (RAS millimetres: X,Y,Z) once the volume is open, e.g. a
    /// click from an `eval` report.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_name = "X,Y,Z")]
    pub at: Option<Vec<f64>>,
    /// Run "3D from click" at --at on this plane once the volume (and the model) are ready: an
    /// `eval` row's click as the viewer gives it, measured against the label under it.
    #[arg(long, requires = "at", value_name = "PLANE")]
    pub click: Option<crate::geometry::ViewPlane>,
    /// Open an `eval` report (REPORT.csv) in the case browser: its clicks worst first, each one
    /// click from a look.
    #[arg(long, value_name = "REPORT.csv")]
    pub report: Option<PathBuf>,
}

/// `--at X,Y,Z` as a point: three finite numbers.
pub fn parse_at(at: Option<&[f64]>) -> Result<Option<crate::geometry::RasMm>> {
    match at {
        None => Ok(None),
        Some([x, y, z]) if [x, y, z].iter().all(|v| v.is_finite()) => Ok(Some(crate::geometry::RasMm::new(*x, *y, *z))),
        Some(other) => bail!("--at takes three finite numbers X,Y,Z in RAS mm, got {other:?}"),
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Shape, spacing, affine (RAS), orientation, datatype and intensity range of a volume
    /// (NIfTI, NRRD, MetaImage, a DICOM folder or file); a folder of several DICOM series is
    /// listed (patient, date, series, description, modality, size, spacing, orientation).
    Info {
        file: PathBuf,
        /// The DICOM series to describe: its SeriesNumber, SeriesInstanceUID or #index in the listing.
        #[arg(long, value_name = "N|UID|#INDEX")]
        series: Option<SeriesChoice>,
        #[arg(long)]
        json: bool,
    },
    /// Resample to isotropic spacing over the same physical extent.
    Resample {
        input: PathBuf,
        /// The DICOM series to read when INPUT holds several.
        #[arg(long, value_name = "N|UID|#INDEX")]
        series: Option<SeriesChoice>,
        output: PathBuf,
        /// Target spacing in mm (one value: isotropic; or three: i,j,k).
        #[arg(long, value_delimiter = ',')]
        spacing: Vec<f64>,
        #[arg(long, default_value = "linear")]
        interp: Interp,
    },
    /// Any volume or label map into any writable format, chosen by OUTPUT's name (.nii,
    /// .nii.gz, .nrrd, .seg.nrrd, .mha), atomically; label names and colours kept.
    Convert(convert_cmd::ConvertArgs),
    /// Time the viewer's slice path: extraction + window/level + label overlay, and texture upload.
    BenchSlice {
        volume: PathBuf,
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Passes over every slice of each plane.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    /// Write synthetic labelled phantoms (CT-like or MR-like) for tests, demos and training.
    Phantom {
        outdir: PathBuf,
        #[arg(long, default_value_t = 4)]
        cases: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "ct")]
        modality: crate::volume::Modality,
        /// Small, coarse cases (about 2–4.5 mm voxels) instead of realistic sizes.
        #[arg(long, conflicts_with = "medium")]
        small: bool,
        /// Adult-sized organs on a coarse grid (1.5–2.5 mm in-plane, 3–5 mm slices): the
        /// shipped model's training and evaluation phantoms.
        #[arg(long)]
        medium: bool,
        /// What the cases hold: organs (seven abdominal organs, the shipped model's phantoms),
        /// chest (lungs with airways and vessels, heart, aorta with its arch and branches,
        /// thoracic vertebrae, lung nodules), abdomen (organs, aorta with its branches, IVC,
        /// lumbar vertebrae, liver lesions) or head (skull, brain, a tumour).
        #[arg(long, default_value = "organs")]
        scene: crate::data::scenes::Scene,
    },
    /// Signed distance in mm (negative inside) of a label, as float NIfTI on the same grid.
    Sdf {
        labels: PathBuf,
        output: PathBuf,
        /// Label id (default: every non-zero label together).
        #[arg(long)]
        label: Option<u16>,
    },
    /// Watertight surface mesh of a label map (STL, OBJ or PLY by extension).
    Mesh {
        labels: PathBuf,
        output: PathBuf,
        /// Label id (default: every label; merged in STL, one object per label in OBJ/PLY).
        #[arg(long)]
        label: Option<u16>,
        /// Write LPS coordinates (what 3D Slicer expects) instead of RAS.
        #[arg(long)]
        lps: bool,
        /// Taubin smoothing iterations.
        #[arg(long, default_value_t = 0)]
        smooth: usize,
        /// Keep about this fraction of the triangles (quadric decimation, stays watertight).
        #[arg(long)]
        decimate: Option<f64>,
    },
    /// Per-label Dice, IoU, HD95, ASSD and Chamfer (mm) of a prediction against ground truth.
    Metrics {
        pred: PathBuf,
        gt: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One click → the organ's 3D mask on the input grid (SAM3D model).
    Infer(crate::commands::InferArgs),
    /// Preprocess a dataset into a training cache (isotropic volumes, per-class SDF, sample index).
    Preprocess(train_cmds::PreprocessArgs),
    /// Train or fine-tune (LoRA) the model from a TOML config.
    Train(crate::commands::TrainArgs),
    /// Train the corrector (the learned step of refinement prompts) with simulated corrections.
    TrainCorrector(crate::commands::TrainCorrectorArgs),
    /// One-click evaluation (model and region-growing baseline) → CSV + summary JSON.
    Eval(crate::commands::EvalArgs),
}

/// A model command ran in the engine process, which already reported any error itself.
#[derive(Debug, thiserror::Error)]
#[error("engine exited with code {0}")]
pub struct ForwardedExit(pub i32);

/// Entry point of `sam3d-studio`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ForwardedExit(code)) = e.downcast_ref::<ForwardedExit>() {
                return ExitCode::from((*code).clamp(1, 255) as u8);
            }
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Path of the engine binary: beside this executable (installed layouts and `target/…`;
/// `assets::engine_binary`).
pub fn engine_binary() -> Result<PathBuf> {
    crate::assets::engine_binary().with_context(|| {
        let exe = std::env::current_exe().map(|e| e.display().to_string()).unwrap_or_else(|_| "this program".into());
        format!("sam3d-studio-engine not found beside {exe} (it ships with sam3d-studio; rebuild or reinstall)")
    })
}

/// Runs this invocation's arguments in the engine process, passing stdio through. The model
/// commands (`infer`, `train`, `eval`) go this way: their arguments were already checked here
/// (the same [`crate::commands`] structs the engine parses), and this binary never links
/// libtorch, so it starts in milliseconds.
pub fn forward_to_engine() -> Result<()> {
    let engine = engine_binary()?;
    let mut child = std::process::Command::new(&engine);
    // libtorch's OpenMP spin-waits between ops unless told otherwise, which makes the many small
    // ops of inference 5–25× slower on a busy 2-core machine; it reads this only at load time.
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        child.env("OMP_WAIT_POLICY", "PASSIVE");
    }
    let status = child
        .args(std::env::args_os().skip(1))
        .status()
        .with_context(|| format!("cannot start {}", engine.display()))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(ForwardedExit(c).into()),
        None => bail!("{} was killed by a signal (crash inside libtorch?)", engine.display()),
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Info { file, series, json }) => info(&file, series.as_ref(), json),
        Some(Command::Resample { input, series, output, spacing, interp }) => resample(&input, series.as_ref(), &output, &spacing, interp),
        Some(Command::BenchSlice { volume, labels, rounds, json }) => {
            let r = crate::app::bench::bench_slice(&volume, labels.as_deref(), rounds)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                crate::app::bench::print_report(&r);
            }
            Ok(())
        }
        Some(Command::Phantom { outdir, cases, seed, modality, small, medium, scene }) => {
            let spec = match (small, medium) {
                (true, _) => PhantomSpec::small(modality),
                (_, true) => PhantomSpec::medium(modality),
                _ => PhantomSpec::realistic(modality),
            };
            data_cmds::phantom(&outdir, cases, seed, &spec, scene)
        }
        Some(Command::Convert(a)) => convert_cmd::convert(&a),
        Some(Command::Sdf { labels, output, label }) => shape_cmds::sdf(&labels, &output, label),
        Some(Command::Mesh { labels, output, label, lps, smooth, decimate }) => {
            shape_cmds::mesh(&labels, &output, label, lps, smooth, decimate)
        }
        Some(Command::Metrics { pred, gt, json }) => shape_cmds::metrics(&pred, &gt, json),
        Some(Command::Infer(_) | Command::Train(_) | Command::TrainCorrector(_) | Command::Eval(_)) => forward_to_engine(),
        Some(Command::Preprocess(a)) => train_cmds::preprocess(&a),
        None => {
            let (file, labels) = match cli.file {
                Some(f) => (Some(f), cli.labels),
                None => match crate::assets::demo_volume_path() {
                    Ok(ct) => {
                        let labels = ct.with_file_name("labels.nii.gz");
                        (Some(ct), cli.labels.or(labels.exists().then_some(labels)))
                    }
                    Err(e) => {
                        log::warn!("{e}");
                        (None, None)
                    }
                },
            };
            let at = parse_at(cli.at.as_deref())?.map(|p| (p, cli.click));
            crate::app::run(file, labels, crate::assets::default_weights_path(), at, cli.report)
        }
    }
}

#[derive(serde::Serialize)]
struct InfoJson {
    file: String,
    nifti: String,
    shape: [usize; 3],
    frames: u64,
    spacing: [f64; 3],
    affine: [[f64; 4]; 4],
    affine_source: String,
    qform_code: i32,
    sform_code: i32,
    axcodes: String,
    dtype: String,
    scl_slope: Option<f64>,
    scl_inter: Option<f64>,
    min: f64,
    max: f64,
    mean: f64,
    nan_count: usize,
}

fn info(path: &Path, series: Option<&SeriesChoice>, json: bool) -> Result<()> {
    match crate::volume::detect(path)? {
        Format::Nifti if series.is_none() => nifti_info(path, json),
        Format::Dicom => dicom_info(path, series, json),
        format => volume_info(path, &format!("{format:?}"), &crate::volume::open_with(path, series)?, None, json),
    }
}

/// What `info --json` prints for any volume that is not a NIfTI file.
#[derive(serde::Serialize)]
struct VolumeInfoJson {
    file: String,
    format: String,
    shape: [usize; 3],
    spacing: [f64; 3],
    affine: [[f64; 4]; 4],
    axcodes: String,
    dtype: Option<String>,
    /// The display window the file suggests (centre, width).
    window: Option<(f64, f64)>,
    min: f64,
    max: f64,
    mean: f64,
    nan_count: usize,
    /// The DICOM series read.
    series: Option<crate::volume::dicom::SeriesInfo>,
}

fn volume_info(path: &Path, format: &str, v: &crate::volume::Volume, series: Option<crate::volume::dicom::SeriesInfo>, json: bool) -> Result<()> {
    let st = v.stats();
    let out = VolumeInfoJson {
        file: path.display().to_string(),
        format: format.to_string(),
        shape: v.shape().ijk(),
        spacing: v.spacing_mm(),
        affine: v.ras_from_voxel.rows(),
        axcodes: axcodes(&v.ras_from_voxel).iter().collect(),
        dtype: v.meta.dtype.map(|d| d.name().to_string()),
        window: v.meta.window,
        min: st.min,
        max: st.max,
        mean: st.mean,
        nan_count: st.nan_count,
        series,
    };
    if json {
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    println!("file      {}", out.file);
    println!("format    {}{}", out.format, out.dtype.as_deref().map(|d| format!(", {d}")).unwrap_or_default());
    if let Some(s) = &out.series {
        println!("series    {}", s.label());
        println!("patient   {} ({}), study date {}, {}", s.patient_name, s.patient_id, s.study_date, s.modality);
        for w in &s.warnings {
            println!("warning   {w}");
        }
    }
    println!("shape     {} voxels (i×j×k)", v.shape());
    println!("spacing   {:.4} × {:.4} × {:.4} mm", out.spacing[0], out.spacing[1], out.spacing[2]);
    println!("axcodes   {}", out.axcodes);
    for r in &out.affine {
        println!("          [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]", r[0], r[1], r[2], r[3]);
    }
    if let Some((c, w)) = out.window {
        println!("window    centre {c} width {w}");
    }
    println!("range     min {:.4}  max {:.4}  mean {:.4}{}", st.min, st.max, st.mean, if st.nan_count > 0 { format!("  ({} NaN voxels)", st.nan_count) } else { String::new() });
    Ok(())
}

/// A DICOM folder or file: the series it holds, or the one chosen (or the only one) described.
fn dicom_info(path: &Path, series: Option<&SeriesChoice>, json: bool) -> Result<()> {
    use crate::volume::dicom::{self, SeriesKind};
    let list = dicom::list_series(path)?;
    let openable = list.iter().filter(|s| s.kind == SeriesKind::Image && s.problem.is_none()).count();
    if series.is_none() && (openable != 1 || (path.is_dir() && list.len() > 1 && json)) {
        if json {
            println!("{}", serde_json::json!({ "file": path.display().to_string(), "format": "Dicom", "series": list }));
        } else {
            println!("{}: {} series ({openable} image series that can be opened)", path.display(), list.len());
            for s in &list {
                println!("  {s}");
            }
            if openable > 1 {
                println!("open one with --series NUMBER, --series UID or --series '#INDEX'");
            }
        }
        return Ok(());
    }
    let choice = series.cloned().unwrap_or_default();
    let v = dicom::open_series(path, &choice)?;
    let chosen = match &choice {
        SeriesChoice::Index(i) => list.iter().find(|s| s.index == *i),
        SeriesChoice::Number(n) => list.iter().find(|s| s.series_number == Some(*n) && s.kind == SeriesKind::Image),
        SeriesChoice::Uid(u) => list.iter().find(|s| &s.series_uid == u && s.kind == SeriesKind::Image),
        SeriesChoice::Only => list.iter().find(|s| s.kind == SeriesKind::Image && s.problem.is_none()),
    };
    volume_info(path, "Dicom", &v, chosen.cloned(), json)
}

fn nifti_info(path: &Path, json: bool) -> Result<()> {
    let info = read_info(path)?;
    let st = info.stream_stats()?;
    let codes: String = axcodes(&info.ras_from_voxel).iter().collect();
    let out = InfoJson {
        file: path.display().to_string(),
        nifti: format!("{:?}", info.header.version),
        shape: info.shape.ijk(),
        frames: info.frames,
        spacing: info.spacing_mm(),
        affine: info.ras_from_voxel.rows(),
        affine_source: info.affine_source.name().into(),
        qform_code: info.header.qform_code,
        sform_code: info.header.sform_code,
        axcodes: codes.clone(),
        dtype: info.dtype.name().into(),
        scl_slope: info.scaling.map(|s| s.0),
        scl_inter: info.scaling.map(|s| s.1),
        min: st.min,
        max: st.max,
        mean: st.mean,
        nan_count: st.nan_count,
    };
    if json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("file      {}", out.file);
        println!("format    {} ({}), {}", out.nifti, if info.gzipped { "gzip" } else { "uncompressed" }, out.dtype);
        println!("shape     {} voxels (i×j×k)", info.shape);
        println!("spacing   {:.4} × {:.4} × {:.4} mm", out.spacing[0], out.spacing[1], out.spacing[2]);
        println!("axcodes   {codes}   (affine from {}, qform_code {}, sform_code {})", out.affine_source, out.qform_code, out.sform_code);
        for r in &out.affine {
            println!("          [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]", r[0], r[1], r[2], r[3]);
        }
        println!("range     min {:.4}  max {:.4}  mean {:.4}{}", st.min, st.max, st.mean,
            if st.nan_count > 0 { format!("  ({} NaN voxels)", st.nan_count) } else { String::new() });
    }
    Ok(())
}

fn resample(input: &Path, series: Option<&SeriesChoice>, output: &Path, spacing: &[f64], interp: Interp) -> Result<()> {
    let sp = match spacing {
        [s] => [*s; 3],
        [a, b, c] => [*a, *b, *c],
        _ => bail!("--spacing takes one value (isotropic) or three (i,j,k), got {}", spacing.len()),
    };
    let t0 = std::time::Instant::now();
    let vol = crate::volume::open_with(input, series)?;
    log::info!("read {:.3} s", t0.elapsed().as_secs_f64());
    let t1 = std::time::Instant::now();
    let r = SlabResampler::to_spacing(&vol, SpacingIjk(sp), interp).with_context(|| format!("{}: cannot resample", input.display()))?;
    let dtype = match interp {
        Interp::Nearest => vol.meta.dtype,
        Interp::Linear => vol.meta.dtype.filter(|d| *d != DataType::Uint8 && *d != DataType::Int8),
    };
    // Each slab of output slices is resampled and compressed together, in parallel.
    save_volume_by_slices(output, r.shape(), r.ras_from_voxel(), dtype.unwrap_or(DataType::Float32), |k0, out| r.fill_slices(k0, out))?;
    log::info!("resample and write {:.3} s", t1.elapsed().as_secs_f64());
    log::info!("resampled {} → {} ({})", vol.shape(), r.shape(), output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{RasMm, ViewPlane};
    use clap::Parser;

    #[test]
    fn the_viewer_takes_a_start_up_point_and_click() {
        let c = Cli::try_parse_from(["sam3d-studio", "ct.nii.gz", "--at=-10.5,20,30", "--click", "sagittal"]).expect("parses");
        assert_eq!(parse_at(c.at.as_deref()).expect("a point"), Some(RasMm::new(-10.5, 20.0, 30.0)));
        assert_eq!(c.click, Some(ViewPlane::Sagittal));
        assert!(Cli::try_parse_from(["sam3d-studio", "--click", "axial"]).is_err(), "--click needs --at");
        let c = Cli::try_parse_from(["sam3d-studio", "--at", "1,2"]).expect("parses");
        let e = parse_at(c.at.as_deref()).expect_err("two numbers").to_string();
        assert!(e.contains("three finite numbers"), "{e}");
        assert_eq!(parse_at(None).expect("none"), None);
    }
}
