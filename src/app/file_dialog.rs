//! File dialogs: the system's (rfd: the desktop portal on Linux, the common dialog on Windows)
//! and, where the system has none, an in-app dialog (egui_file) in the window.
//!
//! A desktop without a file-dialog service (a bare X server, a remote session, a minimal
//! hospital image) makes rfd return at once with nothing. A person cannot cancel a dialog in
//! [`NO_DIALOG_WITHIN`]; such an answer is taken to mean "no system dialog", the in-app dialog
//! opens instead, and it is used from then on. `SAM3D_FILE_DIALOG=builtin` chooses it from the
//! start (`system` never falls back).

use super::command::{AppCommand, DialogKind};
use crossbeam_channel::Sender;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An empty answer faster than this comes from a missing dialog service, not from a person.
pub const NO_DIALOG_WITHIN: Duration = Duration::from_millis(400);

/// Which dialog to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The system's, falling back to the in-app one when the system has none.
    Auto,
    System,
    InApp,
}

impl Backend {
    /// From `SAM3D_FILE_DIALOG` (`builtin`/`in-app`, `system`; anything else: auto).
    pub fn from_env() -> Self {
        match std::env::var("SAM3D_FILE_DIALOG").unwrap_or_default().to_ascii_lowercase().as_str() {
            "builtin" | "in-app" | "inapp" => Backend::InApp,
            "system" | "native" => Backend::System,
            _ => Backend::Auto,
        }
    }
}

/// The default file name a save dialog proposes.
const DEFAULT_SAVE_NAME: &str = "labels.nii.gz";
/// The default file name of an export of surfaces.
const DEFAULT_SURFACE_NAME: &str = "surfaces.stl";

/// The command a chosen path becomes.
pub fn command_for(kind: DialogKind, path: PathBuf) -> AppCommand {
    match kind {
        DialogKind::OpenVolume | DialogKind::OpenDicomFolder => AppCommand::OpenVolume { path, labels: None },
        DialogKind::OpenLabels => AppCommand::OpenLabels(path),
        DialogKind::OpenStructures => AppCommand::OpenStructures(path),
        DialogKind::SaveLabels => AppCommand::SaveLabels(path),
        DialogKind::LoadWeights => AppCommand::LoadWeights(path),
        DialogKind::LoadAdapter => AppCommand::LoadAdapter(path),
        DialogKind::OpenReport => AppCommand::OpenReport(path),
        DialogKind::ExportSurfaces => AppCommand::ExportSurfaces(path),
    }
}

fn title(kind: DialogKind) -> &'static str {
    match kind {
        DialogKind::OpenVolume => "Open volume",
        DialogKind::OpenDicomFolder => "Open DICOM folder",
        DialogKind::OpenStructures => "Open RTSTRUCT",
        DialogKind::OpenLabels => "Open label map",
        DialogKind::SaveLabels => "Save label map",
        DialogKind::LoadWeights => "Load weights (SAM3D .safetensors or SAM-Med3D .pth)",
        DialogKind::LoadAdapter => "Load LoRA adapter",
        DialogKind::OpenReport => "Open evaluation report",
        DialogKind::ExportSurfaces => "Export surfaces",
    }
}

/// Extensions a dialog lists (lower case, without the dot; empty: every file).
fn extensions(kind: DialogKind) -> &'static [&'static str] {
    match kind {
        DialogKind::OpenVolume | DialogKind::OpenLabels => &["nii", "gz", "nrrd", "nhdr", "mha", "mhd", "dcm"],
        DialogKind::OpenDicomFolder => &[],
        DialogKind::OpenStructures => &["dcm"],
        DialogKind::SaveLabels => &["nii", "gz", "nrrd", "mha", "dcm"],
        // The project's weights (safetensors) or a published SAM-Med3D checkpoint (torch.save).
        DialogKind::LoadWeights => &["safetensors", "pth", "pt", "ckpt"],
        DialogKind::LoadAdapter => &["safetensors"],
        DialogKind::OpenReport => &["csv"],
        DialogKind::ExportSurfaces => &["stl", "obj", "ply"],
    }
}

/// Whether `path` is listed by a dialog of `kind` (folders always are).
pub fn lists(kind: DialogKind, path: &Path) -> bool {
    let exts = extensions(kind);
    if exts.is_empty() || path.is_dir() {
        return true;
    }
    // A DICOM file often has no extension at all.
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext {
        Some(e) => exts.contains(&e.as_str()),
        None => exts.contains(&"dcm"),
    }
}

/// Runs the system dialog of `kind` on its own thread and sends the command it gives (or
/// [`AppCommand::InAppDialog`] when the system has no dialog, under [`Backend::Auto`]).
pub fn spawn_system(kind: DialogKind, start_dir: Option<PathBuf>, backend: Backend, tx: Sender<AppCommand>, ctx: egui::Context) -> std::io::Result<()> {
    std::thread::Builder::new().name("sam3d-file-dialog".into()).spawn(move || {
        let mut d = rfd::FileDialog::new().set_title(title(kind));
        let exts = extensions(kind);
        if !exts.is_empty() {
            d = d.add_filter(title(kind), exts).add_filter("All files", &["*"]);
        }
        if kind == DialogKind::SaveLabels {
            d = rfd::FileDialog::new()
                .set_title(title(kind))
                .add_filter("NIfTI (+ names in a .tsv)", &["nii.gz", "nii"])
                .add_filter("3D Slicer segmentation", &["seg.nrrd"])
                .add_filter("NRRD (+ names in a .tsv)", &["nrrd"])
                .add_filter("MetaImage (+ names in a .tsv)", &["mha"])
                .add_filter("DICOM SEG (scans read from DICOM)", &["dcm"])
                .set_file_name(DEFAULT_SAVE_NAME);
        }
        if let Some(dir) = start_dir {
            d = d.set_directory(dir);
        }
        let t0 = Instant::now();
        if kind == DialogKind::ExportSurfaces {
            d = d.set_file_name(DEFAULT_SURFACE_NAME);
        }
        let picked = match kind {
            DialogKind::OpenDicomFolder => d.pick_folder(),
            DialogKind::SaveLabels | DialogKind::ExportSurfaces => d.save_file(),
            _ => d.pick_file(),
        };
        let cmd = match picked {
            Some(p) => command_for(kind, p),
            None if backend == Backend::Auto && t0.elapsed() < NO_DIALOG_WITHIN => AppCommand::InAppDialog(kind),
            None => AppCommand::Notice("No file chosen.".into()),
        };
        let _ = tx.send(cmd);
        ctx.request_repaint();
    })?;
    Ok(())
}

/// The in-app dialog while it is open.
pub struct InAppDialog {
    kind: DialogKind,
    dialog: egui_file::FileDialog,
}

impl std::fmt::Debug for InAppDialog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InAppDialog({:?})", self.kind)
    }
}

impl InAppDialog {
    pub fn new(kind: DialogKind, start_dir: Option<PathBuf>) -> Self {
        let mut dialog = match kind {
            DialogKind::OpenDicomFolder => egui_file::FileDialog::select_folder(),
            DialogKind::SaveLabels => egui_file::FileDialog::save_file().default_filename(DEFAULT_SAVE_NAME),
            DialogKind::ExportSurfaces => egui_file::FileDialog::save_file().default_filename(DEFAULT_SURFACE_NAME),
            _ => egui_file::FileDialog::open_file(),
        };
        dialog = dialog.title(title(kind)).show_files_filter(Box::new(move |p: &Path| lists(kind, p))).default_size([640.0, 420.0]);
        if let Some(dir) = start_dir.filter(|d| d.is_dir()).or_else(|| std::env::current_dir().ok()) {
            dialog = dialog.initial_path(dir);
        }
        dialog.open();
        InAppDialog { kind, dialog }
    }

    pub fn kind(&self) -> DialogKind {
        self.kind
    }

    /// Shows the dialog; `Some(Some(cmd))` when a path was chosen, `Some(None)` when cancelled,
    /// `None` while it is open.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Option<AppCommand>> {
        self.dialog.show(ctx);
        match self.dialog.state() {
            egui_file::State::Selected => Some(self.dialog.path().map(|p| command_for(self.kind, p.to_path_buf()))),
            egui_file::State::Cancelled | egui_file::State::Closed => Some(None),
            egui_file::State::Open => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialog_lists_its_files_and_folders() {
        let dir = std::env::temp_dir();
        assert!(lists(DialogKind::OpenReport, &dir), "folders are always listed");
        assert!(lists(DialogKind::OpenVolume, Path::new("ct.nii.gz")));
        assert!(lists(DialogKind::OpenVolume, Path::new("IM0001")), "DICOM files without an extension");
        assert!(!lists(DialogKind::OpenVolume, Path::new("notes.txt")));
        assert!(lists(DialogKind::LoadWeights, Path::new("model.safetensors")));
        assert!(lists(DialogKind::LoadWeights, Path::new("sam_med3d_turbo.pth")));
        assert!(!lists(DialogKind::LoadAdapter, Path::new("sam_med3d_turbo.pth")), "adapters are the project's own");
        assert!(!lists(DialogKind::OpenReport, Path::new("model.safetensors")));
        assert!(matches!(command_for(DialogKind::SaveLabels, "a.seg.nrrd".into()), AppCommand::SaveLabels(p) if p == Path::new("a.seg.nrrd")));
        assert!(matches!(command_for(DialogKind::OpenDicomFolder, "d".into()), AppCommand::OpenVolume { labels: None, .. }));
    }
}
