use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = emailin::cli::Cli::parse();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(emailin::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The event loop of SMTP sessions, the HTTP API, IMAP pollers and the
/// processor. The intake writer and every database connection run on
/// threads of their own, and under load they are the busiest, so the loop
/// gets one thread fewer than there are cores (at least one): on two cores,
/// a second loop thread only competes with them. `TOKIO_WORKER_THREADS`
/// overrides the count.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    builder.enable_all().build()
}
