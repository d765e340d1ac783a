//! Where the shipped files are: the default weights, the MR adapter, the demo CT and the
//! engine binary. Each is looked for from the running binary's folder, in the layouts the
//! installers make (`packaging/`), and then in the source tree the binary was built from
//! (`cargo run`, tests):
//!
//! | layout | binaries | assets |
//! |---|---|---|
//! | Windows installer, a plain folder | `DIR/` | `DIR/assets/` |
//! | `.deb`, Linux tarball (a prefix) | `PREFIX/bin/` | `PREFIX/share/sam3d-studio/assets/` |
//! | `cargo build` | `target/<profile>/` (tests: `…/deps/`) | the source tree's `assets/` |

use std::path::{Path, PathBuf};

/// Environment variable that overrides where the default weights are looked for (empty: none).
pub const DEFAULT_WEIGHTS_ENV: &str = "SAM3D_DEFAULT_WEIGHTS";

/// Environment variable that overrides where the shipped MR adapter is looked for (empty: none).
pub const MR_ADAPTER_ENV: &str = "SAM3D_MR_ADAPTER";
/// Overrides where the corrector is looked for (empty: none).
pub const CORRECTOR_ENV: &str = "SAM3D_CORRECTOR";

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

/// The shipped corrector (the learned step of refinement prompts, `train-corrector`), if this
/// build has it (`SAM3D_CORRECTOR` overrides the lookup; empty: none). Every session loads it.
pub fn default_corrector_path() -> Option<PathBuf> {
    overridden(CORRECTOR_ENV).unwrap_or_else(|| shipped("models/corrector.safetensors"))
}

/// The demo CT shipped in `assets/demo/`.
pub fn demo_volume_path() -> Result<PathBuf, String> {
    shipped("demo/ct.nii.gz").ok_or_else(|| "demo volume assets/demo/ct.nii.gz not found next to the binary or in the source tree".into())
}

/// `Some(answer)` when the variable is set: its path if that exists, `None` when empty or missing.
fn overridden(var: &str) -> Option<Option<PathBuf>> {
    std::env::var_os(var).map(|v| (!v.is_empty()).then(|| PathBuf::from(v)).filter(|p| p.exists()))
}

/// The folder of the running executable (on Linux `/proc/self/exe`: symbolic links resolved).
fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe().ok()?.parent().map(Path::to_path_buf)
}

/// The installed `assets/` folders for binaries in `exe_dir`, in the order they are tried:
/// beside the binaries (Windows, a plain folder), then `PREFIX/share/sam3d-studio/assets`
/// for binaries in `PREFIX/bin` (the `.deb` and the Linux tarball).
pub fn installed_assets(exe_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![exe_dir.join("assets")];
    if let Some(prefix) = exe_dir.parent() {
        dirs.push(prefix.join("share").join("sam3d-studio").join("assets"));
    }
    dirs
}

/// `REL` in the first installed `assets/` folder for binaries in `exe_dir` that has it.
pub fn shipped_from(exe_dir: &Path, rel: &str) -> Option<PathBuf> {
    installed_assets(exe_dir).into_iter().map(|d| d.join(rel)).find(|p| p.exists())
}

/// `assets/REL` where this program was installed, or in the source tree.
pub fn shipped(rel: &str) -> Option<PathBuf> {
    exe_dir().and_then(|d| shipped_from(&d, rel)).or_else(|| Some(source_assets().join(rel)).filter(|p| p.exists()))
}

/// The engine binary (`sam3d-studio-engine`, `.exe` on Windows) for binaries in `exe_dir`:
/// beside them, or one folder up (test binaries live in `target/<profile>/deps`).
pub fn engine_binary_from(exe_dir: &Path) -> Option<PathBuf> {
    let name = format!("sam3d-studio-engine{}", std::env::consts::EXE_SUFFIX);
    [Some(exe_dir.join(&name)), exe_dir.parent().map(|d| d.join(&name))].into_iter().flatten().find(|p| p.is_file())
}

/// The engine binary that ships with the running program (see [`engine_binary_from`]).
pub fn engine_binary() -> Option<PathBuf> {
    exe_dir().and_then(|d| engine_binary_from(&d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, b"x").expect("write");
    }

    #[test]
    fn prefix_layout_finds_share_assets_and_the_engine_beside() {
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("usr/bin");
        let engine = bin.join(format!("sam3d-studio-engine{}", std::env::consts::EXE_SUFFIX));
        touch(&engine);
        let ct = root.path().join("usr/share/sam3d-studio/assets/demo/ct.nii.gz");
        touch(&ct);
        assert_eq!(shipped_from(&bin, "demo/ct.nii.gz"), Some(ct));
        assert_eq!(shipped_from(&bin, "models/default.safetensors"), None);
        assert_eq!(engine_binary_from(&bin), Some(engine));
    }

    #[test]
    fn assets_beside_the_binaries_come_first() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("app");
        let beside = dir.join("assets/models/default.safetensors");
        touch(&beside);
        touch(&root.path().join("share/sam3d-studio/assets/models/default.safetensors"));
        assert_eq!(shipped_from(&dir, "models/default.safetensors"), Some(beside));
    }

    #[test]
    fn engine_one_folder_up_for_test_binaries() {
        let root = tempfile::tempdir().expect("tempdir");
        let engine = root.path().join(format!("sam3d-studio-engine{}", std::env::consts::EXE_SUFFIX));
        touch(&engine);
        assert_eq!(engine_binary_from(&root.path().join("deps")), Some(engine));
        assert_eq!(engine_binary_from(&root.path().join("elsewhere/deps")), None);
    }
}
