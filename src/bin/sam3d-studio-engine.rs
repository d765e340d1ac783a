//! sam3d-studio-engine: the process that owns libtorch (model, tensors, CUDA). The main
//! `sam3d-studio` binary starts it when model work is asked for, so libtorch's start-up cost
//! and any crash inside it never reach the GUI or the plain CLI commands.
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--device-info") | None => {
            let cuda = tch::Cuda::is_available();
            let n = if cuda { tch::Cuda::device_count() } else { 0 };
            println!(
                "{{\"cuda\":{cuda},\"cuda_devices\":{n},\"cudnn\":{},\"threads\":{}}}",
                tch::Cuda::cudnn_is_available(),
                tch::get_num_threads()
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("error: unknown engine command '{other}'");
            ExitCode::FAILURE
        }
    }
}
