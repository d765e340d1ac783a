//! Where the shipped files are: the default weights, the MR adapter and the demo CT. Each is
//! looked for beside the running binary (an installed tree: `assets/` next to the executables)
//! and then in the source tree the binary was built from (`cargo run`, tests).

use std::path::{Path, PathBuf};

/// Environment variable that overrides where the default weights are looked for (empty: none).
pub const DEFAULT_WEIGHTS_ENV: &str = "SAM3D_DEFAULT_WEIGHTS";

/// Environment variable that overrides where the shipped MR adapter is looked for (empty: none).
pub const MR_ADAPTER_ENV: &str = "SAM3D_MR_ADAPTER";

/// The source tree's `assets/` folder (the workspace root's).
pub fn source_assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

/// The shipped default weights, if this build has them (`SAM3D_DEFAULT_WEIGHTS` overrides the
/// lookup; empty: no default weights).
pub fn default_weights_path() -> Option<PathBuf> {
    overridden(DEFAULT_WEIGHTS_ENV).unwrap_or_else(|| shipped("models/default.safetensors"))
}

/// The shipped MR adapter (LoRA and heads for the shipped weights, trained on MR phantoms:
/// `configs/lora_mr.toml`), if this build has it (`SAM3D_MR_ADAPTER` overrides the lookup;
/// empty: none). A session puts it on for MR scans while no adapter was loaded by hand.
pub fn default_mr_adapter_path() -> Option<PathBuf> {
    overridden(MR_ADAPTER_ENV).unwrap_or_else(|| shipped("models/mr.safetensors"))
}

/// The demo CT shipped in `assets/demo/`.
pub fn demo_volume_path() -> Result<PathBuf, String> {
    shipped("demo/ct.nii.gz").ok_or_else(|| "demo volume assets/demo/ct.nii.gz not found next to the binary or in the source tree".into())
}

/// `Some(answer)` when the variable is set: its path if that exists, `None` when empty or missing.
fn overridden(var: &str) -> Option<Option<PathBuf>> {
    std::env::var_os(var).map(|v| (!v.is_empty()).then(|| PathBuf::from(v)).filter(|p| p.exists()))
}

/// `assets/REL` beside the running binary or in the source tree.
pub fn shipped(rel: &str) -> Option<PathBuf> {
    let installed = std::env::current_exe().ok().and_then(|e| e.parent().map(|p| p.join("assets").join(rel)));
    [installed, Some(source_assets().join(rel))].into_iter().flatten().find(|p| p.exists())
}
