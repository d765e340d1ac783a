//! Link-time set-up for libtorch (found through `LIBTORCH`, set by `packaging/linux/env.sh`):
//! - an rpath to libtorch's `lib` directory, so the binary runs without `LD_LIBRARY_PATH`;
//! - `libtorch_cuda` linked with `--no-as-needed` when present, so CUDA is really detected at
//!   run time (otherwise the linker drops it and `Cuda::is_available()` is always false) —
//!   only into `sam3d-studio-engine`, the process that owns the model. The front binary (GUI
//!   and CLI) is another crate that does not depend on this one, so libtorch never reaches it
//!   and its start-up stays in milliseconds instead of the ~0.7 s libtorch's initialisers take.
//!
//! Two switches for installers (`packaging/linux/build-*.sh`); unset, the development build is
//! as described above:
//! - `SAM3D_ENGINE_CUDA=0`: never link `libtorch_cuda` / `libc10_cuda`, so the engine runs
//!   with libtorch's CPU libraries alone (`1` or unset: link them when `LIBTORCH` has them);
//! - `SAM3D_ENGINE_RPATH=DIR`: the rpath the binaries carry instead of `LIBTORCH`'s `lib`
//!   (e.g. `$ORIGIN/../lib/sam3d-studio`, the installed layout).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=SAM3D_ENGINE_CUDA");
    println!("cargo:rerun-if-env-changed=SAM3D_ENGINE_RPATH");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(lib) = std::env::var_os("LIBTORCH").map(|p| PathBuf::from(p).join("lib")) else {
        return;
    };
    let target = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target == "linux" {
        let rpath = std::env::var("SAM3D_ENGINE_RPATH").ok().filter(|r| !r.is_empty());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", rpath.unwrap_or_else(|| lib.display().to_string()));
        println!("cargo:rustc-link-search=native={}", lib.display());
        let cuda = std::env::var("SAM3D_ENGINE_CUDA").map_or(true, |v| v != "0");
        if cuda && lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg-bin=sam3d-studio-engine=-Wl,--no-as-needed,-ltorch_cuda,-lc10_cuda,--as-needed");
        }
    }
}
