//! The `authedge` command line. No logic here: everything is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: Pingora allocates per request (headers, buffers, task state); glibc malloc was about
/// 12% of the proxy's CPU under load, mimalloc roughly halves that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "authedge", version, about = "Authenticating reverse proxy on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file (SIGHUP reloads it).
    Run {
        #[arg(short, long, env = "AUTHEDGE_CONFIG")]
        config: PathBuf,
    },
    /// Load and validate a config exactly as `run` would; print every problem.
    Check {
        #[arg(short, long, env = "AUTHEDGE_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => match authedge::server::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => match authedge::server::check(&config) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in &problems.0 {
                    println!("{p}");
                }
                ExitCode::FAILURE
            }
        },
    }
}
