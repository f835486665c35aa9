//! The `authedge` command line. No logic here: everything is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: Pingora allocates per request (headers, buffers, task state); glibc malloc was about
/// 12% of the proxy's CPU under load, mimalloc roughly halves that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc (v3) keeps what a thread freed until that thread allocates again and a second has
/// passed. For a proxy that builds a large config on one thread and then serves on others, that
/// is memory held for nothing: with 10,000 routes loaded the process held 60 MB
/// (`scripts/scale.py`). Freed pages now go back at once: 38 MB. Requests/s and CPU per request
/// did not change measurably (A/B over 3 pairs of 4 s wrk runs). Arenas made from here on are
/// committed on demand; the first one is made before `main` runs, so
/// `MIMALLOC_ARENA_EAGER_COMMIT=0` in the environment saves more (25 MB at 10,000 routes).
/// Each option is set only while it still has mimalloc's documented default, so a `MIMALLOC_*`
/// variable set by the operator wins, and a renumbered option list changes nothing.
fn tune_allocator() {
    use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};
    // Positions in `mi_option_e` of the vendored v3 `mimalloc.h` (libmimalloc-sys 0.1.49), with
    // their defaults.
    const ARENA_EAGER_COMMIT: (mi_option_t, i64) = (4, 2);
    const PURGE_DELAY: (mi_option_t, i64) = (15, 1000);
    for (option, default) in [ARENA_EAGER_COMMIT, PURGE_DELAY] {
        // SAFETY: reading and setting an allocator option has no memory-safety precondition;
        // an unknown option id is ignored by mimalloc (it checks the range).
        unsafe {
            if i64::from(mi_option_get(option)) == default {
                mi_option_set(option, 0);
            }
        }
    }
}

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
    tune_allocator();
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
