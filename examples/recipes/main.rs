//! The ZooKeeper recipes as small demos (see `recipes.rs`): `lock`,
//! `election`, `barrier`, `queue`. Each runs its participants (one session
//! each) as tasks of one tokio runtime on this process and logs what they do
//! to stderr.
//!
//!     cargo run --example recipes -- lock --participants 3 --rounds 10

mod recipes;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "recipes",
    about = "The ZooKeeper recipes: a herd-free lock, leader election, a double barrier, a queue"
)]
struct Cli {
    /// Ensemble members, comma separated host:port.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183"
    )]
    servers: String,
    /// The recipe's parent znode.
    #[arg(long, global = true, default_value = "/recipes")]
    root: String,
    #[command(subcommand)]
    recipe: Recipe,
}

#[derive(Subcommand, Debug)]
enum Recipe {
    /// Participants increment a counter under a sequential-ephemeral lock.
    Lock {
        #[arg(long, default_value_t = 3)]
        participants: usize,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
    },
    /// Candidates lead one after another, each taking over when the one before resigns.
    Election {
        #[arg(long, default_value_t = 3)]
        candidates: usize,
    },
    /// Participants enter a double barrier together and leave together.
    Barrier {
        #[arg(long, default_value_t = 3)]
        participants: usize,
    },
    /// Producers enqueue items that consumers take, each item once.
    Queue {
        #[arg(long, default_value_t = 2)]
        producers: usize,
        #[arg(long, default_value_t = 2)]
        consumers: usize,
        #[arg(long, default_value_t = 20)]
        items: usize,
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("recipes: cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let servers = cli.servers.as_str();
    let outcome = runtime.block_on(async {
        let setup = recipes::connect(servers).await?;
        recipes::ensure_path(&setup, &cli.root).await?;
        match &cli.recipe {
            Recipe::Lock {
                participants,
                rounds,
            } => {
                let dir = format!("{}/lock", cli.root);
                let count = recipes::lock_demo(servers, &dir, *participants, *rounds).await?;
                Ok(format!("lock: counter is {count}"))
            }
            Recipe::Election { candidates } => {
                let dir = format!("{}/election", cli.root);
                let order = recipes::election_demo(servers, &dir, *candidates).await?;
                Ok(format!("election: leaders in order {order:?}"))
            }
            Recipe::Barrier { participants } => {
                let dir = format!("{}/barrier", cli.root);
                let seen = recipes::barrier_demo(servers, &dir, *participants).await?;
                Ok(format!(
                    "barrier: arrivals seen by each on entering {seen:?}"
                ))
            }
            Recipe::Queue {
                producers,
                consumers,
                items,
            } => {
                let dir = format!("{}/queue", cli.root);
                let taken =
                    recipes::queue_demo(servers, &dir, *producers, *consumers, *items).await?;
                Ok(format!("queue: {} items taken", taken.len()))
            }
        }
    });
    match outcome {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let e: zookeeper_client::Error = e;
            eprintln!("recipes: {e}");
            ExitCode::FAILURE
        }
    }
}
