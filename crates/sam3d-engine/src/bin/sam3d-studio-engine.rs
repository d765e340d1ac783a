//! sam3d-studio-engine: the process that owns libtorch (model, tensors, CUDA). The front binary
//! `sam3d-studio` starts it for model work (`infer`, `train`, `eval`, and `serve` for the
//! viewer), so libtorch's start-up cost and any crash inside it never reach the GUI or the
//! plain command line.
use std::process::ExitCode;

fn main() -> ExitCode {
    sam3d_engine::progress::exit_quietly_on_broken_pipe();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    sam3d_engine::cli::main()
}
