//! sam3d-studio: parse arguments, set up logging and the panic hook, hand over to [`cli`].
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    sam3d_studio::cli::main()
}
