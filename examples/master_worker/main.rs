//! The ZooKeeper book's master–worker application, one role per process:
//! `master`, `worker` or `client` (see `--help`). The roles and the znodes they
//! share live in `app.rs`; this file parses flags, sets up logging to stderr and
//! runs one role on a tokio runtime on the main thread until it ends (a client
//! when its tasks are done; masters and workers when killed).
//!
//!     cargo run --example master_worker -- master --id master-1
//!     cargo run --example master_worker -- worker --id worker-1
//!     cargo run --example master_worker -- client --tasks 1000

mod app;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "master_worker",
    about = "The ZooKeeper book's master-worker example: masters elect one of them through \
             /master, workers register under /workers and run what is assigned under \
             /assign/<worker>, clients submit /tasks and watch /status"
)]
struct Cli {
    /// Ensemble members, comma separated host:port.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183"
    )]
    servers: String,
    /// Session timeout asked for, in milliseconds (the server clamps it into
    /// its min/max, 2 to 20 ticks).
    #[arg(long, global = true, default_value_t = 10_000)]
    session_timeout_ms: u64,
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Run for master; while a backup, take over when /master vanishes.
    Master {
        /// This master's id (the data of /master while it is active).
        #[arg(long)]
        id: String,
    },
    /// Register under /workers and run the tasks assigned under /assign/<id>.
    Worker {
        /// This worker's id (its znode under /workers and /assign).
        #[arg(long)]
        id: String,
        /// Time one task takes to "execute", in milliseconds.
        #[arg(long, default_value_t = 100)]
        work_ms: u64,
    },
    /// Submit tasks under /tasks and wait for each one's /status.
    Client {
        /// How many tasks to submit.
        #[arg(long, default_value_t = 10)]
        tasks: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,zookeeper_client=warn".into()),
        )
        .init();
    let settings = app::Settings {
        servers: cli.servers.clone(),
        session_timeout: Duration::from_millis(cli.session_timeout_ms),
        detached: false,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("master_worker: cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match &cli.role {
            Role::Master { id } => app::run_master(&settings, id).await,
            Role::Worker { id, work_ms } => {
                app::run_worker(&settings, id, Duration::from_millis(*work_ms)).await
            }
            Role::Client { tasks } => app::run_client(&settings, *tasks).await.map(|_| ()),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("master_worker: {e}");
            ExitCode::FAILURE
        }
    }
}
