//! sam3d-studio: set up logging, hand over to [`cli`]. Model commands are forwarded to the
//! `sam3d-studio-engine` process, so this binary does not link libtorch.
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    sam3d_studio::cli::main_with(sam3d_studio::cli::forward_to_engine)
}
