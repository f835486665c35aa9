//! The `authedge` command line. No logic here: everything is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: Pingora allocates per request (headers, buffers, task state); glibc malloc was about
/// 12% of the proxy's CPU under load, mimalloc roughly halves that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "authedge",
    version,
    about = "Authenticating reverse proxy on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file (SIGHUP reloads it). Without one, ooproxy's environment variables
    /// (PROVIDER_URL, UPSTREAM_URL, ...) describe a one-route config.
    Run {
        #[arg(short, long, env = "AUTHEDGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Load and validate a config exactly as `run` would; print every problem.
    Check {
        #[arg(short, long, env = "AUTHEDGE_CONFIG")]
        config: PathBuf,
    },
    /// Read a password from stdin; print its Argon2id PHC string (opaque realm `password_hash`).
    HashPassword {
        /// Argon2 memory cost in KiB (default: the argon2 crate's, 19456).
        #[arg(long)]
        m_cost: Option<u32>,
        /// Argon2 iterations (default 2).
        #[arg(long)]
        t_cost: Option<u32>,
        /// Argon2 parallelism (default 1).
        #[arg(long)]
        p_cost: Option<u32>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let run = authedge::compat::resolve_config(config)
                .map_err(authedge::server::RunError::from)
                .and_then(authedge::server::run);
            match run {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
        Command::HashPassword {
            m_cost,
            t_cost,
            p_cost,
        } => {
            let stdin = std::io::stdin().lock();
            match authedge::auth::opaque::hash_password_from_reader(stdin, m_cost, t_cost, p_cost) {
                Ok(phc) => {
                    println!("{phc}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
