//! zoo.cfg parsing and validation. Owns the `Config` every core reads at start-up
//! (read-only afterwards; each core gets a clone). Runs once on the main thread.
//!
//! Syntax is the reference's: `key=value` lines, `#` comments, blank lines. The
//! reference's keys keep their names and defaults; corral's own keys start with
//! `corral.`. An unknown key or a bad value is an error naming the line and the key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config line {line}: unknown key `{key}`")]
    UnknownKey { line: usize, key: String },
    #[error("config line {line}: `{key}` has a bad value `{value}`: {why}")]
    BadValue {
        line: usize,
        key: String,
        value: String,
        why: String,
    },
    #[error("config line {line}: expected `key=value`, got `{text}`")]
    Syntax { line: usize, text: String },
    #[error("config: {0}")]
    Invalid(String),
}

/// Everything the server is configured with. Defaults are the reference's where the
/// reference has the key.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub tick_time_ms: u32,
    pub init_limit_ticks: u32,
    pub sync_limit_ticks: u32,
    pub data_dir: PathBuf,
    pub data_log_dir: Option<PathBuf>,
    pub client_port: u16,
    pub client_port_address: IpAddr,
    /// Per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    pub min_session_timeout_ms: Option<u32>,
    pub max_session_timeout_ms: Option<u32>,
    /// `None` = every command; the reference's default whitelist is `srvr` only
    /// when the key is absent, we keep that.
    pub four_letter_whitelist: FourLetterWhitelist,
    /// jute.maxbuffer: largest frame and znode data in bytes.
    pub jute_max_buffer_bytes: usize,
    pub extended_types_enabled: bool,
    pub force_sync: bool,
    /// `user:base64(sha1(user:password))` of the super user.
    pub super_digest: Option<String>,
    pub snap_count: u64,
    /// snapSizeLimitInKb: also snapshot after this many KiB of log (0 = off).
    pub snap_size_limit_kb: u64,
    pub autopurge_snap_retain_count: u32,
    /// Hours between purges; 0 or negative: no purging (the reference's default).
    pub autopurge_purge_interval_hours: i64,
    pub pre_alloc_size_kb: u64,
    /// Ensemble members (`server.N=host:peer:election`), parsed for later; standalone
    /// when empty.
    pub servers: Vec<(u64, String)>,
    /// corral.shardCores: executors that accept connections and serve reads.
    pub shard_cores: usize,
    /// corral.cpuPinning: pin each executor to a CPU.
    pub cpu_pinning: bool,
    /// corral.ioMemoryBytes: glommio's io_memory per executor (pinned once per ring).
    pub io_memory_bytes: usize,
    /// corral.spinBeforeParkMicros: busy-spin before sleeping (0 = off).
    pub spin_before_park_us: u64,
    /// corral.batchRequestsMax: writes the sequencer takes into one commit batch.
    pub batch_requests_max: usize,
    /// corral.maxOutstandingPerConnection: requests in flight per connection before
    /// the shard stops reading from it.
    pub max_outstanding_per_connection: usize,
    /// corral.maxWatchesPerConnection.
    pub max_watches_per_connection: usize,
    /// corral.containerCheckIntervalMs: how often empty containers and expired TTL
    /// nodes are looked for (the reference's znode.container.checkIntervalMs).
    pub container_check_interval_ms: u64,
    /// corral.logSegmentBytes: size each log segment is preallocated to.
    pub log_segment_bytes: u64,
    // ---- what one client may hold (bounds; see README's table) ----
    /// maxCnxns: connections in total over every shard; 0 = unlimited (the reference's
    /// zookeeper.maxCnxns, also read from zoo.cfg there).
    pub max_cnxns: u32,
    /// globalOutstandingLimit: requests in process server-wide above which a connection
    /// with requests of its own in process is not read (the reference's
    /// zookeeper.globalOutstandingLimit).
    pub global_outstanding_limit: u64,
    /// corral.maxQueuedReplyBytesPerConnection: unsent reply bytes at which a
    /// connection's requests stop being read and decoded (soft: resumes below it).
    pub max_queued_reply_bytes_per_connection: usize,
    /// corral.maxQueuedBytesPerConnection: unsent bytes (events and write replies
    /// included, which cannot be refused) above which the connection is closed.
    pub max_queued_bytes_per_connection: usize,
    /// corral.maxSessions: live sessions; a new session over it is refused; 0 = unlimited.
    pub max_sessions: usize,
}

/// Which four-letter words answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FourLetterWhitelist {
    All,
    Only(Vec<String>),
}

impl FourLetterWhitelist {
    pub fn allows(&self, cmd: &str) -> bool {
        match self {
            FourLetterWhitelist::All => true,
            FourLetterWhitelist::Only(v) => v.iter().any(|c| c == cmd),
        }
    }
}

/// The four-letter words corral knows.
pub const FOUR_LETTER_WORDS: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "ruok", "srvr", "srst", "stat", "wchc", "wchp",
    "wchs", "mntr", "isro", "hash",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            tick_time_ms: 2000,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            data_dir: PathBuf::from("./data"),
            data_log_dir: None,
            client_port: 2181,
            client_port_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            max_client_cnxns: 60,
            min_session_timeout_ms: None,
            max_session_timeout_ms: None,
            four_letter_whitelist: FourLetterWhitelist::Only(vec!["srvr".into()]),
            jute_max_buffer_bytes: 0xfffff,
            extended_types_enabled: false,
            force_sync: true,
            super_digest: None,
            snap_count: 100_000,
            snap_size_limit_kb: 4 * 1024 * 1024,
            autopurge_snap_retain_count: 3,
            autopurge_purge_interval_hours: 0,
            pre_alloc_size_kb: 65536,
            servers: Vec::new(),
            shard_cores: default_shard_cores(),
            cpu_pinning: false,
            io_memory_bytes: 512 * 1024,
            spin_before_park_us: 0,
            batch_requests_max: 4096,
            max_outstanding_per_connection: 1000,
            max_watches_per_connection: 100_000,
            container_check_interval_ms: 60_000,
            log_segment_bytes: 64 * 1024 * 1024,
            max_cnxns: 0,
            global_outstanding_limit: 1000,
            max_queued_reply_bytes_per_connection: 4 * 1024 * 1024,
            max_queued_bytes_per_connection: 64 * 1024 * 1024,
            max_sessions: 100_000,
        }
    }
}

/// One shard per core, the sequencer sharing a core with shard 0 when there are
/// only one or two: the sequencer is mostly idle between batches.
fn default_shard_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 64)
}

/// The configuration `corral server` runs with when no file is given: standalone,
/// 127.0.0.1:2181, data under ./data, every four-letter word enabled.
pub const EMBEDDED_DEFAULT: &str = "\
# corral's embedded default: standalone on loopback
tickTime=2000
dataDir=./data
clientPort=2181
clientPortAddress=127.0.0.1
4lw.commands.whitelist=*
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
";

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text)
    }

    pub fn embedded_default() -> Config {
        Config::parse(EMBEDDED_DEFAULT).expect("the embedded default config parses")
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut queued_bytes_max_set = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let Some((k, v)) = t.split_once('=') else {
                return Err(ConfigError::Syntax {
                    line,
                    text: t.to_string(),
                });
            };
            let (key, value) = (k.trim(), v.trim());
            let bad = |why: &str| ConfigError::BadValue {
                line,
                key: key.to_string(),
                value: value.to_string(),
                why: why.to_string(),
            };
            fn num<T: std::str::FromStr>(v: &str) -> Option<T> {
                v.parse().ok()
            }
            let boolean = |v: &str| match v.to_ascii_lowercase().as_str() {
                "true" | "yes" => Ok(true),
                "false" | "no" => Ok(false),
                _ => Err(bad("expected true/false or yes/no")),
            };
            match key {
                "tickTime" => {
                    c.tick_time_ms = num(value)
                        .filter(|&t: &u32| t > 0)
                        .ok_or_else(|| bad("expected a positive number of milliseconds"))?
                }
                "initLimit" => {
                    c.init_limit_ticks = num(value).ok_or_else(|| bad("expected ticks"))?
                }
                "syncLimit" => {
                    c.sync_limit_ticks = num(value).ok_or_else(|| bad("expected ticks"))?
                }
                "dataDir" => {
                    if value.is_empty() {
                        return Err(bad("expected a directory"));
                    }
                    c.data_dir = PathBuf::from(value)
                }
                "dataLogDir" => {
                    if value.is_empty() {
                        return Err(bad("expected a directory"));
                    }
                    c.data_log_dir = Some(PathBuf::from(value))
                }
                "clientPort" => {
                    c.client_port = num(value).ok_or_else(|| bad("expected a port 0-65535"))?
                }
                "clientPortAddress" => {
                    c.client_port_address = value
                        .parse()
                        .map_err(|_| bad("expected an IP address such as 127.0.0.1"))?
                }
                "maxClientCnxns" => {
                    c.max_client_cnxns = num(value).ok_or_else(|| bad("expected a count"))?
                }
                "minSessionTimeout" => {
                    c.min_session_timeout_ms =
                        Some(num(value).ok_or_else(|| bad("expected milliseconds"))?)
                }
                "maxSessionTimeout" => {
                    c.max_session_timeout_ms =
                        Some(num(value).ok_or_else(|| bad("expected milliseconds"))?)
                }
                "4lw.commands.whitelist" => {
                    let cmds: Vec<String> = value
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if cmds.iter().any(|s| s == "*") {
                        c.four_letter_whitelist = FourLetterWhitelist::All;
                    } else {
                        for cmd in &cmds {
                            if !FOUR_LETTER_WORDS.contains(&cmd.as_str()) {
                                return Err(bad(&format!("unknown four-letter word `{cmd}`")));
                            }
                        }
                        c.four_letter_whitelist = FourLetterWhitelist::Only(cmds);
                    }
                }
                "jute.maxbuffer" => {
                    c.jute_max_buffer_bytes = num(value)
                        .filter(|&n: &usize| (1024..=1 << 30).contains(&n))
                        .ok_or_else(|| bad("expected bytes between 1024 and 1073741824"))?
                }
                "extendedTypesEnabled" => c.extended_types_enabled = boolean(value)?,
                "forceSync" => c.force_sync = boolean(value)?,
                "zookeeper.DigestAuthenticationProvider.superDigest" => {
                    let Some((user, hash)) = value.split_once(':') else {
                        return Err(bad("expected user:base64(sha1(user:password))"));
                    };
                    if user.is_empty() || hash.is_empty() {
                        return Err(bad("expected user:base64(sha1(user:password))"));
                    }
                    c.super_digest = Some(value.to_string())
                }
                "snapCount" => {
                    c.snap_count = num(value)
                        .filter(|&n: &u64| n >= 2)
                        .ok_or_else(|| bad("expected a count of at least 2"))?
                }
                "snapSizeLimitInKb" => {
                    c.snap_size_limit_kb = num(value).ok_or_else(|| bad("expected kilobytes"))?
                }
                "autopurge.snapRetainCount" => {
                    let n: i64 = num(value).ok_or_else(|| bad("expected a count"))?;
                    // As the reference: fewer than 3 is raised to 3, with a warning.
                    if n < 3 {
                        tracing::warn!(
                            "line {line}: autopurge.snapRetainCount={n} is below the minimum; using 3"
                        );
                    }
                    c.autopurge_snap_retain_count = n.clamp(3, u32::MAX as i64) as u32;
                }
                "autopurge.purgeInterval" => {
                    // Hours; 0 or negative turns purging off (the reference's default).
                    c.autopurge_purge_interval_hours =
                        num(value).ok_or_else(|| bad("expected hours"))?
                }
                "preAllocSize" => {
                    c.pre_alloc_size_kb = num(value).ok_or_else(|| bad("expected kilobytes"))?
                }
                "admin.enableServer" => {
                    if boolean(value)? {
                        tracing::warn!(
                            "admin.enableServer=true: corral has no HTTP AdminServer yet; \
                             use the four-letter words on the client port"
                        );
                    }
                }
                k if k.starts_with("server.") => {
                    let id: u64 = k["server.".len()..]
                        .parse()
                        .map_err(|_| bad("expected server.<id> with a numeric id"))?;
                    c.servers.push((id, value.to_string()));
                }
                "corral.shardCores" => {
                    c.shard_cores = num(value)
                        .filter(|&n: &usize| (1..=64).contains(&n))
                        .ok_or_else(|| bad("expected 1 to 64"))?
                }
                "corral.cpuPinning" => c.cpu_pinning = boolean(value)?,
                "corral.ioMemoryBytes" => {
                    c.io_memory_bytes = num(value)
                        .filter(|&n: &usize| n >= 64 * 1024)
                        .ok_or_else(|| bad("expected bytes, at least 65536"))?
                }
                "corral.spinBeforeParkMicros" => {
                    c.spin_before_park_us =
                        num(value).ok_or_else(|| bad("expected microseconds"))?
                }
                "corral.batchRequestsMax" => {
                    c.batch_requests_max = num(value)
                        .filter(|&n: &usize| n >= 1)
                        .ok_or_else(|| bad("expected a positive count"))?
                }
                "corral.maxOutstandingPerConnection" => {
                    c.max_outstanding_per_connection = num(value)
                        .filter(|&n: &usize| n >= 1)
                        .ok_or_else(|| bad("expected a positive count"))?
                }
                "corral.maxWatchesPerConnection" => {
                    c.max_watches_per_connection = num(value)
                        .filter(|&n: &usize| n >= 1)
                        .ok_or_else(|| bad("expected a positive count"))?
                }
                "corral.containerCheckIntervalMs" => {
                    c.container_check_interval_ms = num(value)
                        .filter(|&n: &u64| n >= 1)
                        .ok_or_else(|| bad("expected positive milliseconds"))?
                }
                "corral.logSegmentBytes" => {
                    c.log_segment_bytes = num(value)
                        .filter(|&n: &u64| n >= 1 << 20)
                        .ok_or_else(|| bad("expected bytes, at least 1048576"))?
                }
                "maxCnxns" => c.max_cnxns = num(value).ok_or_else(|| bad("expected a count"))?,
                "globalOutstandingLimit" => {
                    c.global_outstanding_limit =
                        num(value).ok_or_else(|| bad("expected a count"))?
                }
                "corral.maxQueuedReplyBytesPerConnection" => {
                    c.max_queued_reply_bytes_per_connection = num(value)
                        .filter(|&n: &usize| n >= 64 * 1024)
                        .ok_or_else(|| bad("expected bytes, at least 65536"))?
                }
                "corral.maxQueuedBytesPerConnection" => {
                    queued_bytes_max_set = true;
                    c.max_queued_bytes_per_connection = num(value)
                        .filter(|&n: &usize| n >= 64 * 1024)
                        .ok_or_else(|| bad("expected bytes, at least 65536"))?
                }
                "corral.maxSessions" => {
                    c.max_sessions = num(value).ok_or_else(|| bad("expected a count"))?
                }
                _ => {
                    return Err(ConfigError::UnknownKey {
                        line,
                        key: key.to_string(),
                    })
                }
            }
        }
        let (min, max) = (c.min_session_timeout(), c.max_session_timeout());
        if min > max {
            return Err(ConfigError::Invalid(format!(
                "minSessionTimeout ({min} ms) is greater than maxSessionTimeout ({max} ms)"
            )));
        }
        // A connection paused at the soft limit may hold one more maximal reply. The
        // default hard limit grows with a large jute.maxbuffer; a set one must fit.
        let soft_and_one_reply = c
            .max_queued_reply_bytes_per_connection
            .saturating_add(c.jute_max_buffer_bytes);
        if !queued_bytes_max_set {
            c.max_queued_bytes_per_connection = c
                .max_queued_bytes_per_connection
                .max(soft_and_one_reply.saturating_add(c.jute_max_buffer_bytes));
        }
        if c.max_queued_bytes_per_connection <= soft_and_one_reply {
            return Err(ConfigError::Invalid(format!(
                "corral.maxQueuedBytesPerConnection ({}) must be above \
                 corral.maxQueuedReplyBytesPerConnection + jute.maxbuffer ({soft_and_one_reply}): \
                 reading pauses at the second, which one more reply may pass, and the \
                 connection is closed at the first",
                c.max_queued_bytes_per_connection
            )));
        }
        if !c.servers.is_empty() {
            return Err(ConfigError::Invalid(
                "server.N lines found: quorum mode is not wired into the server yet; \
                 corral runs standalone only (remove the server.N lines)"
                    .into(),
            ));
        }
        Ok(c)
    }

    /// The smallest session timeout granted (default 2 × tickTime).
    pub fn min_session_timeout(&self) -> u32 {
        self.min_session_timeout_ms.unwrap_or(self.tick_time_ms * 2)
    }

    /// The largest session timeout granted (default 20 × tickTime).
    pub fn max_session_timeout(&self) -> u32 {
        self.max_session_timeout_ms
            .unwrap_or(self.tick_time_ms * 20)
    }

    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::new(self.client_port_address, self.client_port)
    }

    /// Where the transaction log lives (dataLogDir, else dataDir).
    pub fn log_dir(&self) -> &Path {
        self.data_log_dir.as_deref().unwrap_or(&self.data_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_standalone_on_loopback() {
        let c = Config::embedded_default();
        assert_eq!(c.client_addr().to_string(), "127.0.0.1:2181");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.min_session_timeout(), 4000);
        assert_eq!(c.max_session_timeout(), 40000);
        assert!(c.four_letter_whitelist.allows("mntr"));
        assert_eq!(
            c.autopurge_purge_interval_hours, 1,
            "purging is on by default"
        );
        assert_eq!(c.autopurge_snap_retain_count, 3);
    }

    #[test]
    fn autopurge_keys_read_as_the_reference_reads_them() {
        // Off unless a positive interval is given; negative is off, not an error.
        assert_eq!(Config::parse("").unwrap().autopurge_purge_interval_hours, 0);
        let c = Config::parse("autopurge.purgeInterval=-1\n").unwrap();
        assert_eq!(c.autopurge_purge_interval_hours, -1);
        let c = Config::parse("autopurge.purgeInterval=24\nautopurge.snapRetainCount=7\n").unwrap();
        let purge = (
            c.autopurge_purge_interval_hours,
            c.autopurge_snap_retain_count,
        );
        assert_eq!(purge, (24, 7));
        // Fewer than 3 retained snapshots is raised to 3 (with a warning), as there.
        let c = Config::parse("autopurge.snapRetainCount=1\n").unwrap();
        assert_eq!(c.autopurge_snap_retain_count, 3);
        let e = Config::parse("autopurge.purgeInterval=daily\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config line 1: `autopurge.purgeInterval` has a bad value `daily`: expected hours"
        );
    }

    #[test]
    fn reference_keys_parse() {
        let c = Config::parse(
            "tickTime=500\n# comment\n\ndataDir=/tmp/x\nclientPort=3000\n\
             maxSessionTimeout=9000\n4lw.commands.whitelist=ruok, srvr\njute.maxbuffer=2048\n\
             extendedTypesEnabled=true\nforceSync=no\ncorral.shardCores=1\n",
        )
        .unwrap();
        assert_eq!(c.tick_time_ms, 500);
        assert_eq!(c.client_port, 3000);
        assert_eq!(c.min_session_timeout(), 1000);
        assert_eq!(c.max_session_timeout(), 9000);
        assert!(c.four_letter_whitelist.allows("ruok"));
        assert!(!c.four_letter_whitelist.allows("mntr"));
        assert!(c.extended_types_enabled && !c.force_sync);
        assert_eq!(c.shard_cores, 1);
    }

    #[test]
    fn client_bound_keys_parse_and_are_checked() {
        let d = Config::default();
        assert_eq!((d.max_cnxns, d.global_outstanding_limit), (0, 1000));
        let c = Config::parse(
            "maxCnxns=10\nglobalOutstandingLimit=5\ncorral.maxSessions=7\n\
             corral.maxQueuedReplyBytesPerConnection=65536\n\
             corral.maxQueuedBytesPerConnection=2097152\n",
        )
        .unwrap();
        assert_eq!(
            (c.max_cnxns, c.global_outstanding_limit, c.max_sessions),
            (10, 5, 7)
        );
        assert_eq!(c.max_queued_reply_bytes_per_connection, 65536);
        assert_eq!(c.max_queued_bytes_per_connection, 2097152);
        // The hard limit leaves room for one maximal reply past the soft one.
        let e = Config::parse(
            "corral.maxQueuedReplyBytesPerConnection=65536\n\
             corral.maxQueuedBytesPerConnection=1048576\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("+ jute.maxbuffer (1114111)"), "{e}");
        // Unset, it makes room for a large jute.maxbuffer by itself.
        let c = Config::parse("jute.maxbuffer=104857600\n").unwrap();
        assert_eq!(c.max_queued_bytes_per_connection, (4 << 20) + 2 * 104857600);
        let e = Config::parse("corral.maxQueuedReplyBytesPerConnection=100\n").unwrap_err();
        assert!(e.to_string().contains("at least 65536"), "{e}");
        let e = Config::parse("corral.maxQueuedBytesPerConnection=4194304\n").unwrap_err();
        assert!(e.to_string().contains("must be above"), "{e}");
        let e = Config::parse("maxCnxns=-1\n").unwrap_err();
        assert!(e.to_string().contains("`maxCnxns`"), "{e}");
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = Config::parse("tickTime=2000\nbogusKey=1\n").unwrap_err();
        assert_eq!(e.to_string(), "config line 2: unknown key `bogusKey`");
        let e = Config::parse("clientPort=99999\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config line 1: `clientPort` has a bad value `99999`: expected a port 0-65535"
        );
        let e = Config::parse("just words\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config line 1: expected `key=value`, got `just words`"
        );
        let e = Config::parse("minSessionTimeout=5000\nmaxSessionTimeout=4000\n").unwrap_err();
        assert!(e.to_string().contains("greater than maxSessionTimeout"));
        let e = Config::parse("4lw.commands.whitelist=ruok,nope\n").unwrap_err();
        assert!(e.to_string().contains("unknown four-letter word `nope`"));
    }
}
