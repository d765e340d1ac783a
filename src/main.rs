//! sam3d-studio: set up logging, hand over to [`cli`](sam3d_studio::cli). Model commands are
//! forwarded to the `sam3d-studio-engine` process; this binary does not link libtorch (the
//! workspace keeps the engine crate out of its dependencies).
use std::process::ExitCode;

fn main() -> ExitCode {
    sam3d_studio::progress::exit_quietly_on_broken_pipe();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    sam3d_studio::cli::main()
}
