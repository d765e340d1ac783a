//! Typed commands: UI code sends these and the app applies the queue once per frame.

use super::slice_image::OverlayMode;
use crate::geometry::{DisplayConvention, RasMm, ViewPlane};
use crate::volume::intensity::{Preset, Window};
use std::path::PathBuf;

/// A cell of the 2×2 layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ViewCell {
    Slice(ViewPlane),
    ThreeD,
}

impl ViewCell {
    /// Grid order: axial, coronal (top row), sagittal, 3D (bottom row).
    pub const ALL: [ViewCell; 4] =
        [ViewCell::Slice(ViewPlane::Axial), ViewCell::Slice(ViewPlane::Coronal), ViewCell::Slice(ViewPlane::Sagittal), ViewCell::ThreeD];

    pub fn title(&self) -> &'static str {
        match self {
            ViewCell::Slice(ViewPlane::Axial) => "Axial",
            ViewCell::Slice(ViewPlane::Coronal) => "Coronal",
            ViewCell::Slice(ViewPlane::Sagittal) => "Sagittal",
            ViewCell::ThreeD => "3D view",
        }
    }
}

/// Which file dialog to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogKind {
    OpenVolume,
    OpenDicomFolder,
    OpenStructures,
    OpenLabels,
    SaveLabels,
    LoadWeights,
    LoadAdapter,
    OpenReport,
    ExportSurfaces,
}

/// What a recent-files entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FileKind {
    Volume,
    Labels,
}

/// Everything the UI can ask the app to change.
#[derive(Clone, Debug)]
pub enum AppCommand {
    /// Open a volume (and optionally a label map on its grid) on the loader thread.
    OpenVolume { path: PathBuf, labels: Option<PathBuf> },
    /// Open one DICOM series of a folder that holds several (the series picker's answer).
    OpenSeries { path: PathBuf, labels: Option<PathBuf>, series: crate::volume::dicom::SeriesChoice },
    /// Draw a DICOM RTSTRUCT's structures on the current DICOM series as a label map (names and
    /// colours from the structure set).
    OpenStructures(PathBuf),
    /// Open a label map for the current volume on the loader thread (its grid is checked).
    OpenLabels(PathBuf),
    /// Write the current label map on the volume's grid (atomic write), in the format the name
    /// asks: NIfTI or NRRD or MetaImage (names in a `.tsv` beside it), or a Slicer `.seg.nrrd`.
    SaveLabels(PathBuf),
    /// Show a native file dialog on its own thread; its answer comes back as another command.
    ShowDialog(DialogKind),
    /// Move the crosshair (the linked cursor) to a RAS point; all views follow.
    SetCrosshair(RasMm),
    /// Move a view by `steps` slices; positive is towards S (axial), A (coronal), R (sagittal).
    StepSlice { plane: ViewPlane, steps: i32 },
    /// Multiply a view's zoom by `factor`, keeping the point under `about` (screen px) fixed.
    Zoom { plane: ViewPlane, factor: f32, about: egui::Pos2 },
    /// Shift a view by a screen-pixel delta.
    Pan { plane: ViewPlane, delta: egui::Vec2 },
    /// Fit every slice view to its cell again (zoom 1, no pan).
    ResetViews,
    /// Set the display window (level and width, in the volume's units).
    SetWindow(Window),
    /// Set the window to a named CT preset.
    ApplyPreset(Preset),
    /// Window from the 1st to the 99th percentile (the MR default).
    AutoWindow,
    /// Maximise a cell, or restore the grid if it already is maximised.
    ToggleMaximise(ViewCell),
    /// Back to the 2×2 grid.
    RestoreLayout,
    /// Radiological (patient left on screen right) or neurological display.
    SetConvention(DisplayConvention),
    /// Show or hide one label.
    SetLabelVisible { id: u16, visible: bool },
    /// Show or hide every label.
    SetAllLabelsVisible(bool),
    /// Change a label's colour (sRGB).
    SetLabelColour { id: u16, colour: [u8; 3] },
    /// Fill opacity of the label overlay, 0..=1.
    SetOverlayOpacity(f32),
    /// Filled or outlined labels.
    SetOverlayMode(OverlayMode),
    /// Linear (smooth) or nearest-neighbour display of voxels.
    SetSmooth(bool),
    /// Show or hide the side panel.
    ToggleSidePanel,
    /// Show an informational note in the message area (not an error).
    Notice(String),
    /// Remove one message from the message area.
    DismissMessage(usize),
    /// The system has no file dialog: open this one in the window.
    InAppDialog(DialogKind),
    /// Dismisses every message shown.
    DismissAllMessages,
    /// Opens View > Messages (the session's log).
    ShowMessageLog,
    /// Forget the recent-files list.
    ClearRecent,
    /// Arm or disarm the "3D from click" tool (armed: a plain click runs it).
    SetClickTool(bool),
    /// The tool of the slice views' left button.
    SetTool(super::tools::Tool),
    SetBrush(super::tools::brush::BrushSettings),
    /// Grows (positive) or shrinks the brush by wheel notches.
    ResizeBrush(f32),
    /// A brush segment ending at `at` (`first`: a new stroke starts there).
    BrushAt { plane: ViewPlane, at: RasMm, first: bool },
    /// Fill the closed region of the slice under `at`.
    FillAt { plane: ViewPlane, at: RasMm },
    /// Keep only the piece of the label under `at`.
    KeepIslandAt(RasMm),
    /// Erase the pieces of the active label (all labels when none) smaller than this.
    RemoveSmallIslands { min_ml: f64 },
    /// Fill the enclosed holes of the active label.
    FillHoles,
    /// How "3D from click" segments.
    SetClickMethod(super::ClickMethod),
    /// Refine the model's masks by the image (from the next click on).
    SetRefineMasks(bool),
    /// Continue organs wider than the model's output cube with more passes.
    SetExtendMasks(bool),
    /// Run the model in all three planes through the click and take their majority.
    SetFusePlanes(bool),
    /// Join region growing from the click where it agrees with the model's shape.
    SetJoinGrowing(bool),
    /// See a small object's pass magnified about the click (the scale that follows the object).
    SetZoomSmall(bool),
    /// Let the engine put its MR adapter on for MR scans.
    SetMrAdapter(bool),
    /// Correct a result's points with the learned corrector.
    SetLearnedCorrections(bool),
    /// Run "3D from click" at a RAS point (on a background thread).
    ClickAt(RasMm),
    /// A click of the 3D tool: refines the model's result on screen (`negative`: Ctrl+click,
    /// removes what is under it), or starts a new one.
    PromptAt { at: RasMm, negative: bool },
    /// A box dragged with the 3D tool on a slice (`first`: it starts at `at`).
    BoxDrag { plane: ViewPlane, at: RasMm, first: bool },
    /// The box drag ended: the box bounds the result (or starts one).
    BoxDone,
    /// Label written on Accept (`None`: a new label id).
    SetClickTarget(Option<u16>),
    /// Opens File → Export surfaces….
    ShowExport,
    /// Writes label surfaces to this file (STL, OBJ or PLY).
    ExportSurfaces(PathBuf),
    /// Opens the name prompt for a label.
    PromptLabelName(u16),
    RenameLabel { id: u16, name: String },
    /// Erases a label's voxels and takes its row away (undoable).
    DeleteLabel(u16),
    /// Adds an empty label and makes it the active one.
    NewLabel,
    /// Which labels Accept and the brush may replace.
    SetOverwrite(crate::label_edit::Overwrite),
    /// Write the candidate into the label map (undoable).
    AcceptCandidate,
    /// Drop the candidate.
    RejectCandidate,
    /// Cancel the running "3D from click" job (its result, if it still comes, is dropped).
    CancelClick,
    /// Load SAM3D weights in the engine process (started if needed).
    LoadWeights(PathBuf),
    /// Read an `eval` report (CSV) into the case browser, on a thread of its own.
    OpenReport(PathBuf),
    /// Open row N of the case browser's report: its scan and labels, and "3D from click" at its click.
    OpenCaseRow(usize),
    /// Show Model → Connect to engine….
    ShowConnect,
    /// Run the model on a remote engine from now on (`None`: on this computer).
    ConnectEngine(Option<super::remote_http::RemoteSettings>),
    /// Show the fine-tuning panel (a fresh run folder for the open scan unless a run is going on).
    OpenFineTune,
    /// Load a LoRA adapter onto the loaded weights.
    LoadAdapter(PathBuf),
    /// Undo the last accepted result.
    Undo,
    /// Redo the last undone result.
    Redo,
    /// Close the window.
    Quit,
}
