//! The `corral` binary: argument parsing only; everything else lives in the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "corral",
    version,
    about = "A ZooKeeper-compatible coordination service"
)]
struct Cli {
    /// How log lines on stderr look: `text` (default), or `json`: one JSON object
    /// per line (timestamp, level, message, the event's other fields, target).
    #[arg(long, global = true, value_enum, env = "CORRAL_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Log lines go to stderr; RUST_LOG filters them (default `info`). Text is
/// coloured only on a terminal (not in journald or a log file).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.json().flatten_event(true).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a server. Without --config: standalone on 127.0.0.1:2181, data under ./data.
    Server {
        /// A zoo.cfg-style configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Convert an Apache ZooKeeper data dir (version-2/ snapshots and txn logs) into
    /// corral's files beside it, leaving ZooKeeper's untouched. `corral server` does
    /// the same on its first start on such a dir; this does it without serving.
    Import {
        #[command(flatten)]
        dirs: DataDirs,
    },
    /// Write corral's state as an Apache ZooKeeper snapshot (version-2/snapshot.<zxid>,
    /// plus the epoch files in quorum mode) that ZooKeeper 3.8 starts from. Stop the
    /// server first.
    Export {
        #[command(flatten)]
        dirs: DataDirs,
        /// The ZooKeeper dataDir to write into (its version-2/ is created). Default: the
        /// source dataDir, beside corral's files.
        #[arg(long)]
        to: Option<PathBuf>,
    },
}

/// Where the data is: a zoo.cfg's dataDir/dataLogDir, or the dirs themselves.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "data_dir"])))]
struct DataDirs {
    /// A zoo.cfg-style configuration file: its dataDir and dataLogDir.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The dataDir itself.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The dataLogDir (with --data-dir; default: the dataDir).
    #[arg(long, requires = "data_dir")]
    data_log_dir: Option<PathBuf>,
}

impl DataDirs {
    /// (dataDir, dataLogDir or dataDir).
    fn resolve(self) -> Result<(PathBuf, PathBuf), String> {
        match (self.config, self.data_dir) {
            (Some(p), _) => {
                let c = corral::config::Config::load(&p).map_err(|e| e.to_string())?;
                Ok((c.data_dir.clone(), c.log_dir().to_path_buf()))
            }
            (None, Some(d)) => {
                let l = self.data_log_dir.unwrap_or_else(|| d.clone());
                Ok((d, l))
            }
            (None, None) => Err("give --config or --data-dir".into()),
        }
    }
}

/// Runs an import or export and prints what it did.
fn convert(
    dirs: DataDirs,
    run: impl FnOnce(PathBuf, PathBuf) -> Result<String, corral::storage::StorageError>,
) -> ExitCode {
    let (data, log) = match dirs.resolve() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("corral: {e}");
            return ExitCode::from(2);
        }
    };
    match run(data, log) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("corral: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::DefaultConfig => {
            print!("{}", corral::config::EMBEDDED_DEFAULT);
            ExitCode::SUCCESS
        }
        Command::Import { dirs } => convert(dirs, |data, log| {
            corral::storage::zkdir::import(&data, &log).map(|i| i.summary)
        }),
        Command::Export { dirs, to } => convert(dirs, |data, log| {
            let target = match &to {
                Some(t) => corral::storage::zkdir::ZkDataDirs::of(t, t),
                None => corral::storage::zkdir::ZkDataDirs::of(&data, &log),
            };
            corral::storage::zkdir::export(&data, &log, &target).map(|e| e.summary)
        }),
        Command::Server { config } => {
            let cfg = match config {
                Some(p) => corral::config::Config::load(&p),
                None => Ok(corral::config::Config::embedded_default()),
            };
            let cfg = match cfg {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("corral: {e}");
                    return ExitCode::from(2);
                }
            };
            match corral::server::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("corral: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
