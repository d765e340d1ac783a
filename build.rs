//! The viewer and command line (this package) never link libtorch. Only its integration tests
//! do (they drive the engine crate in-process): they get an rpath to libtorch's `lib`
//! directory (found through `LIBTORCH`, set by `packaging/linux/env.sh`), as the engine binary
//! does, so they run without `LD_LIBRARY_PATH`.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(lib) = std::env::var_os("LIBTORCH").map(|p| std::path::PathBuf::from(p).join("lib")) else {
        return;
    };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{}", lib.display());
    }
}
