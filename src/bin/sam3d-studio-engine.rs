//! sam3d-studio-engine: the process that owns libtorch (model, tensors, CUDA). The main
//! `sam3d-studio` binary starts it for model work (`infer`, and the GUI's inference worker), so
//! libtorch's start-up cost and any crash inside it never reach the GUI or the plain CLI.
//! It accepts the same command line as `sam3d-studio`, plus `--device-info` and `serve` (the
//! JSON-lines protocol of `sam3d_studio::engine::serve`, for the GUI).
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if std::env::args().nth(1).as_deref() == Some("--device-info") {
        let cuda = tch::Cuda::is_available();
        let n = if cuda { tch::Cuda::device_count() } else { 0 };
        println!(
            "{{\"cuda\":{cuda},\"cuda_devices\":{n},\"cudnn\":{},\"threads\":{}}}",
            tch::Cuda::cudnn_is_available(),
            tch::get_num_threads()
        );
        return ExitCode::SUCCESS;
    }
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return match sam3d_studio::engine::serve::serve(sam3d_studio::engine::EngineOptions {
            mr_adapter: sam3d_studio::cli::model_cmds::default_mr_adapter_path(),
            ..Default::default()
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sam3d-studio-engine serve: {e}");
                ExitCode::FAILURE
            }
        };
    }
    sam3d_studio::cli::main_with(sam3d_studio::cli::model_cmds::run_local)
}
