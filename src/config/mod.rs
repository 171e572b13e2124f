//! zoo.cfg parsing and validation. Owns the `Config` every core reads at start-up
//! (read-only afterwards; each core gets a clone). Runs once on the main thread.
//!
//! Syntax is the reference's: `key=value` lines, `#` comments, blank lines. The
//! reference's keys keep their names and defaults; corral's own keys start with
//! `corral.`. An unknown key or a bad value is an error naming the line and the key.
//!
//! ```text
//!  text ─ lex::zoo_cfg ─► entries ─ Config::apply ─┬─ key groups (timing, client,
//!                                                  │  storage, snapshots, security,
//!                                                  │  sasl, corral.*) ─► Config fields
//!                                                  ├─ ensemble::Staged (quorum keys)
//!                                                  └─ keys::no_effect ─► one warning
//!  check_session_timeouts ─► load_jaas (the JAAS file via ConfigFiles) ─► Config::sasl
//!  ensemble::build (myid, dynamic file via ConfigFiles) ─► Config::quorum
//! ```
//!
//! Parsing is pure: the files zoo.cfg points at (`dataDir/myid`, the dynamic config,
//! the JAAS file of SASL logins) come in through `ConfigFiles`, which `Config::load`
//! backs with the disk.

mod admin;
pub mod dynamic;
mod ensemble;
mod keys;
mod lex;
pub mod quorum;
mod quorum_sasl;
mod quorum_tls;
mod tls;

pub use admin::{AdminConfig, MetricsConfig, PROMETHEUS_PROVIDER_CLASS};
pub use quorum::{
    HostPort, PeerRole, QuorumConfig, QuorumServer, QuorumTextError, QuorumVerifier,
    ServerLineError, QV_TEXT_BYTES_MAX,
};
pub use quorum_sasl::QuorumSaslConfig;
pub use quorum_tls::QuorumTlsConfig;
pub use tls::{ClientAuth, PemStore, Secret, TlsConfig, TlsProtocol, TlsSuite};

use lex::Entry;

/// The keys settled only once every line is in: the client port's TLS, quorum TLS
/// and quorum SASL, staged while the lines are read.
#[derive(Default)]
struct StagedSecurity {
    client: tls::Staged,
    quorum: quorum_tls::QuorumStaged,
    quorum_sasl: quorum_sasl::SaslStaged,
}
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
    #[error("config line {line}: `{key}`: {why}")]
    Misplaced {
        line: usize,
        key: String,
        why: String,
    },
    #[error("config: `{key}` is not set: {why}")]
    Missing { key: String, why: String },
    #[error("dynamic config file {path} line {line}: {why}")]
    Dynamic {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("myid file {path} {why}")]
    MyId { path: PathBuf, why: String },
    #[error("JAAS file {path} (java.security.auth.login.config) {why}")]
    JaasFile { path: PathBuf, why: String },
    #[error("JAAS file {path} (java.security.auth.login.config) {source}")]
    Jaas {
        path: PathBuf,
        source: crate::auth::JaasError,
    },
}

/// Everything the server is configured with. Defaults are the reference's where the
/// reference has the key.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// tickTime. corral's default is 2000 ms; the reference's is 3000
    /// (`ZooKeeperServer.DEFAULT_TICK_TIME`), though its sample zoo.cfg sets 2000.
    pub tick_time_ms: u32,
    /// initLimit / syncLimit in ticks. A distributed config must set both (see
    /// `QuorumConfig`); these defaults only fill a standalone Config.
    pub init_limit_ticks: u32,
    pub sync_limit_ticks: u32,
    pub data_dir: PathBuf,
    pub data_log_dir: Option<PathBuf>,
    pub client_port: u16,
    pub client_port_address: IpAddr,
    /// Whether the plaintext client port is served. As in the reference, a config
    /// with secureClientPort and no clientPort (nor a client address on this
    /// server's `server.N` line) serves TLS only.
    pub client_port_enabled: bool,
    /// secureClientPort and its ssl.* keys; `None` when there is no TLS port.
    pub tls: Option<TlsConfig>,
    /// sslQuorum / portUnification and the ssl.quorum.* keys: TLS on the peer links;
    /// `None` when they speak plaintext only (and on a standalone server).
    pub quorum_tls: Option<QuorumTlsConfig>,
    /// quorum.auth.*: SASL DIGEST-MD5 on the peer links; `None` when off (and on a
    /// standalone server).
    pub quorum_sasl: Option<QuorumSaslConfig>,
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
    /// enforceQuota (the reference's zookeeper.enforceQuota): creates and setDatas
    /// past a quota's hard limit fail with QuotaExceeded.
    pub enforce_quota: bool,
    /// clientPortListenBacklog: the listen backlog of the client (and TLS) port;
    /// `None` (unset, zero or less) keeps corral's 1024 (the reference's JVM: 50).
    pub client_port_listen_backlog: Option<u32>,
    /// readonlymode.enabled (the reference's system property of that name): an
    /// ensemble member that has looked for a leader for max(2 s, tickTime) serves
    /// read-only sessions until it rejoins a quorum (`server::read_only`).
    pub read_only_mode: bool,
    /// localSessionsEnabled (ensemble members): new sessions are local to the
    /// member that takes them (`session::local`); as leader, writes forwarded by
    /// other members for their local sessions are taken, ephemeral creates
    /// excepted (the reference's LeaderSessionTracker).
    pub local_sessions_enabled: bool,
    /// localSessionsUpgradingEnabled: an ephemeral create of a local session
    /// upgrades it to a global one first; off, it fails with
    /// EphemeralOnLocalSession.
    pub local_sessions_upgrading_enabled: bool,
    /// clientTcpKeepAlive (the reference's zookeeper.clientTcpKeepAlive): TCP
    /// keepalive on every accepted client connection.
    pub client_tcp_keep_alive: bool,
    /// tcpKeepAlive (the reference's zookeeper.tcpKeepAlive): TCP keepalive on the
    /// election links between members.
    pub tcp_keep_alive: bool,
    pub force_sync: bool,
    /// fsync.warningthresholdms: a log sync slower than this (whole milliseconds,
    /// as the reference truncates) counts in `fsync_threshold_exceed_count`.
    pub fsync_warning_threshold_ms: u64,
    /// `user:base64(sha1(user:password))` of the super user.
    pub super_digest: Option<String>,
    /// DigestAuthenticationProvider.digestAlg: the hash of digest ids (SHA1).
    pub digest_alg: crate::tree::DigestAlg,
    /// DigestAuthenticationProvider.enabled: false, the digest scheme is gone (no
    /// `addauth digest`, no digest ACL, no superDigest login), as on the reference.
    pub digest_auth_enabled: bool,
    /// skipACL=yes (the reference's zookeeper.skipACL): no ACL is checked; every
    /// session may do what the super user may.
    pub skip_acl: bool,
    /// enforce.auth.enabled with enforce.auth.schemes, or sessionRequireClientSASLAuth
    /// (the scheme `sasl`): a connection must hold an id of one of these schemes
    /// before any request but auth and SASL, or it is answered
    /// SessionClosedRequireSaslAuth and closed. Empty: not enforced.
    pub enforce_auth_schemes: Vec<String>,
    /// The three keys as read, until `check_enforce_auth` turns them into
    /// `enforce_auth_schemes`.
    enforce_auth: EnforceAuthKeys,
    pub snap_count: u64,
    /// snapSizeLimitInKb: also snapshot after this many KiB of log (0 = off).
    pub snap_size_limit_kb: u64,
    pub autopurge_snap_retain_count: u32,
    /// Hours between purges; 0 or negative: no purging (the reference's default).
    pub autopurge_purge_interval_hours: i64,
    pub pre_alloc_size_kb: u64,
    /// The ensemble (`server.N` lines, myid, quorum keys); `None` when zoo.cfg names
    /// none. Even when `Some`, the server runs standalone unless `is_distributed()`.
    pub quorum: Option<QuorumConfig>,
    /// Every warning parsing logged (keys accepted without effect, clamped values,
    /// ensemble advice), in order.
    pub warnings: Vec<String>,
    /// corral.shardCores: executors that accept connections and serve reads.
    pub shard_cores: usize,
    /// corral.sequencerCore: where the standalone sequencer runs, on an executor of
    /// its own or beside shard 0 (`sequencer_placement` says where it runs).
    pub sequencer_core: SequencerCore,
    /// corral.inlineSyncMaxMicros: the smoothed log-sync time up to which a
    /// standalone sequencer that shares an executor syncs inline (an ensemble
    /// member's quorum core always syncs on a blocking thread).
    pub inline_sync_max_us: u64,
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
    /// SASL DIGEST-MD5 logins: the JAAS file and its users, the `sasl` provider and
    /// the reference's SASL system properties.
    pub sasl: crate::auth::SaslSettings,
    /// The HTTP AdminServer (admin.*).
    pub admin: AdminConfig,
    /// The Prometheus endpoint (metricsProvider.*).
    pub metrics: MetricsConfig,
    /// The zoo.cfg text this config was parsed from (the AdminServer's
    /// `initial_configuration`).
    pub initial_text: String,
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
            client_port_enabled: true,
            tls: None,
            quorum_tls: None,
            quorum_sasl: None,
            local_sessions_enabled: false,
            local_sessions_upgrading_enabled: false,
            max_client_cnxns: 60,
            min_session_timeout_ms: None,
            max_session_timeout_ms: None,
            four_letter_whitelist: FourLetterWhitelist::Only(vec!["srvr".into()]),
            jute_max_buffer_bytes: 0xfffff,
            extended_types_enabled: false,
            enforce_quota: false,
            client_port_listen_backlog: None,
            read_only_mode: false,
            client_tcp_keep_alive: false,
            tcp_keep_alive: false,
            force_sync: true,
            fsync_warning_threshold_ms: 1000,
            super_digest: None,
            digest_alg: crate::tree::DigestAlg::Sha1,
            digest_auth_enabled: true,
            skip_acl: false,
            enforce_auth_schemes: Vec::new(),
            enforce_auth: EnforceAuthKeys::default(),
            snap_count: 100_000,
            snap_size_limit_kb: 4 * 1024 * 1024,
            autopurge_snap_retain_count: 3,
            autopurge_purge_interval_hours: 0,
            pre_alloc_size_kb: 65536,
            quorum: None,
            warnings: Vec::new(),
            shard_cores: default_shard_cores(),
            sequencer_core: SequencerCore::default_for(cpus()),
            inline_sync_max_us: 250,
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
            sasl: crate::auth::SaslSettings::default(),
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            initial_text: String::new(),
        }
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// One executor thread per core: the sequencer has a core of its own and the
/// shards the others (one shard on one or two cores; standalone on up to 2 CPUs the
/// sequencer then shares that shard's executor: `SequencerCore`). Measured on 2 cores
/// (PERF.md, "One executor per core"): two shards beside the sequencer, three busy
/// threads on two cores, cost 40-75 % more CPU per read and per 4 × 1 write
/// than one shard, in context switches and the wake-ups between them.
fn default_shard_cores() -> usize {
    cpus().saturating_sub(1).clamp(1, 64)
}

impl Config {
    /// Where the sequencer runs: as `corral.sequencerCore` says when standalone; an
    /// ensemble member's quorum core always has its own executor. Its peer links
    /// (election and quorum ports, links to the other members) are tasks of its
    /// executor and close when that executor ends on a stop, so the others elect at
    /// once; beside shard 0 they would live on until that shard has flushed its
    /// clients (up to 2 s).
    pub fn sequencer_placement(&self) -> SequencerCore {
        if self.is_distributed() {
            SequencerCore::Own
        } else {
            self.sequencer_core
        }
    }

    /// Executor threads the server runs: one per shard, plus the sequencer's when it
    /// has its own.
    pub fn executor_threads(&self) -> usize {
        self.shard_cores + usize::from(self.sequencer_placement() == SequencerCore::Own)
    }
}

/// Where the standalone sequencer runs (`corral.sequencerCore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequencerCore {
    /// `own`: an executor thread of its own; every write crosses to it and back.
    Own,
    /// `shard`: a task on shard 0's executor; that shard's writes reach it with no
    /// cross-thread wake-up, and a log sync on that executor holds the shard's
    /// connections for its length (so slow syncs go to the blocking pool:
    /// `server::sync_place`).
    Shard,
}

impl SequencerCore {
    /// Beside shard 0 on machines of up to 2 CPUs, where a thread of its own shares
    /// a CPU with the shard or the clients anyway: measured on 2 CPUs (PERF.md,
    /// "The sequencer beside shard 0"), 4 × 1 writes +46 % and 40 % less CPU per
    /// write. Its own core above that, where it has a CPU to itself (not measured
    /// here: this box has 2).
    pub fn default_for(cpus: usize) -> SequencerCore {
        if cpus <= 2 {
            SequencerCore::Shard
        } else {
            SequencerCore::Own
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SequencerCore::Own => "own",
            SequencerCore::Shard => "shard",
        }
    }
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
# the AdminServer (on by default, as the reference's) on loopback too
admin.serverAddress=127.0.0.1
";

/// The files a zoo.cfg points at: `dataDir/myid`, `dynamicConfigFile` and
/// `<config file>.dynamic.next`. `Config::load` reads them from disk (`DiskFiles`),
/// `Config::parse` has none (`NoFiles`), tests hand in text.
pub trait ConfigFiles {
    /// The text of the regular file at `path`; `Ok(None)` when there is none.
    fn read(&self, path: &Path) -> std::io::Result<Option<String>>;
}

/// Side files from the file system.
pub struct DiskFiles;

impl ConfigFiles for DiskFiles {
    fn read(&self, path: &Path) -> std::io::Result<Option<String>> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => std::fs::read_to_string(path).map(Some),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// No side files at all.
pub struct NoFiles;

impl ConfigFiles for NoFiles {
    fn read(&self, _path: &Path) -> std::io::Result<Option<String>> {
        Ok(None)
    }
}

/// Value readers for one zoo.cfg line; their errors name the line, key and value.
impl Entry {
    fn bad(&self, why: &str) -> ConfigError {
        ConfigError::BadValue {
            line: self.line,
            key: self.key.clone(),
            value: self.value.clone(),
            why: why.to_string(),
        }
    }

    fn num<T: std::str::FromStr>(&self, why: &str) -> Result<T, ConfigError> {
        self.value.parse().map_err(|_| self.bad(why))
    }

    /// A number that must also pass `ok`.
    fn num_where<T: std::str::FromStr>(
        &self,
        ok: impl Fn(&T) -> bool,
        why: &str,
    ) -> Result<T, ConfigError> {
        self.value
            .parse()
            .ok()
            .filter(|v| ok(v))
            .ok_or_else(|| self.bad(why))
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value.to_ascii_lowercase().as_str() {
            "true" | "yes" => Ok(true),
            "false" | "no" => Ok(false),
            _ => Err(self.bad("expected true/false or yes/no")),
        }
    }

    /// A key QuorumPeerConfig reads with its own `parseBoolean`: `true` or `false`
    /// in any case, and the reference refuses to start on anything else.
    pub(super) fn parse_boolean(&self) -> Result<bool, ConfigError> {
        match self.value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.bad("expected true or false (the reference refuses any other value)")),
        }
    }

    /// A key the reference reads with `Boolean.parseBoolean`, where `yes` (or any
    /// text but `true`) means false: only `true` and `false` are taken, so that no
    /// value means one thing here and another there.
    fn true_false(&self) -> Result<bool, ConfigError> {
        match self.value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => {
                Err(self
                    .bad("expected true or false (the reference reads anything but true as false)"))
            }
        }
    }
}

/// enforce.auth.enabled, enforce.auth.schemes and sessionRequireClientSASLAuth as
/// read, before `Config::check_enforce_auth` settles them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct EnforceAuthKeys {
    require_sasl: bool,
    enabled: bool,
    schemes: Vec<String>,
}

impl Config {
    /// Reads zoo.cfg at `path`, and the files it points at, from disk.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse_with(&text, Some(path), &DiskFiles)
    }

    pub fn embedded_default() -> Config {
        Config::parse(EMBEDDED_DEFAULT).expect("the embedded default config parses")
    }

    /// zoo.cfg text alone, with no side files (so a distributed config lacks its
    /// myid; use `parse_with` to hand one in).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, None, &NoFiles)
    }

    /// zoo.cfg text; `config_path` names the file (for `<config>.dynamic.next`), and
    /// the files it points at come from `files`.
    pub fn parse_with(
        text: &str,
        config_path: Option<&Path>,
        files: &dyn ConfigFiles,
    ) -> Result<Config, ConfigError> {
        let entries = lex::zoo_cfg(text)?;
        let mut c = Config {
            initial_text: redact_passwords(text),
            ..Config::default()
        };
        let mut staged = ensemble::Staged::default();
        let mut security = StagedSecurity::default();
        for e in &entries {
            c.apply(&mut staged, &mut security, e)?;
        }
        c.check_session_timeouts()?;
        let queued_set = entries
            .iter()
            .any(|e| e.key == "corral.maxQueuedBytesPerConnection");
        c.check_client_bounds(queued_set)?;
        let jaas = c.load_jaas(files)?;
        staged.client_port_set = entries.iter().any(|e| e.key == "clientPort");
        staged.client_port_address_set = entries.iter().any(|e| e.key == "clientPortAddress");
        let client_port_set = staged.client_port_set;
        c.quorum = ensemble::build(&mut c, staged, config_path, files)?;
        c.apply_tls(security.client, client_port_set)?;
        c.apply_quorum_tls(security.quorum)?;
        c.apply_quorum_sasl(security.quorum_sasl, jaas.as_ref())?;
        c.note_local_sessions();
        c.check_enforce_auth()?;
        Ok(c)
    }

    /// The schemes a connection must authenticate with, as the reference's
    /// AuthenticationHelper settles them: sessionRequireClientSASLAuth=true means
    /// `sasl` alone (whatever enforce.auth.* say); enforce.auth.enabled=true needs
    /// enforce.auth.schemes, each one a scheme this server can authenticate (the
    /// reference refuses to start otherwise, as here).
    fn check_enforce_auth(&mut self) -> Result<(), ConfigError> {
        let keys = std::mem::take(&mut self.enforce_auth);
        let schemes = if keys.require_sasl {
            vec!["sasl".to_string()]
        } else if keys.enabled {
            if keys.schemes.is_empty() {
                return Err(ConfigError::Invalid(
                    "enforce.auth.enabled is true: enforce.auth.schemes must be set".into(),
                ));
            }
            keys.schemes
        } else {
            return Ok(());
        };
        for scheme in &schemes {
            let available = match scheme.as_str() {
                "ip" => true,
                "digest" => self.digest_auth_enabled,
                "sasl" => self.sasl.provider_enabled,
                "x509" => self.tls.is_some(),
                _ => false,
            };
            if !available {
                return Err(ConfigError::Invalid(format!(
                    "authentication scheme `{scheme}` is not available to enforce (ip is; \
                     digest unless DigestAuthenticationProvider.enabled=false; sasl needs \
                     authProvider.N={}; x509 needs TLS)",
                    crate::auth::SASL_PROVIDER_CLASS
                )));
            }
        }
        self.enforce_auth_schemes = schemes;
        Ok(())
    }

    /// The TLS port, once every line is read (its default address is the client
    /// port's, which a `server.N` line may have set); without clientPort it is the
    /// only port, as in the reference.
    fn apply_tls(&mut self, tls: tls::Staged, client_port_set: bool) -> Result<(), ConfigError> {
        let mut warnings = Vec::new();
        let built = tls.build(self.client_port_address, &mut warnings);
        for w in warnings {
            self.warn(w);
        }
        self.tls = built?;
        let line_has_client = self
            .quorum
            .as_ref()
            .and_then(|q| q.me())
            .is_some_and(|me| me.client.is_some());
        let tls_port = self.tls.as_ref().is_some_and(|t| t.addr.is_some());
        self.client_port_enabled = !tls_port || client_port_set || line_has_client;
        Ok(())
    }

    /// Quorum TLS, once every line is read (it acts only on a distributed config).
    fn apply_quorum_tls(&mut self, staged: quorum_tls::QuorumStaged) -> Result<(), ConfigError> {
        let mut warnings = Vec::new();
        let built = staged.build(self.is_distributed(), &mut warnings);
        for w in warnings {
            self.warn(w);
        }
        self.quorum_tls = built?;
        Ok(())
    }

    /// What localSessionsEnabled does here, said once: nothing on a standalone
    /// server (as the reference).
    fn note_local_sessions(&mut self) {
        if self.local_sessions_enabled && !self.is_distributed() {
            self.warn(
                "localSessionsEnabled has no effect on a standalone server (as the reference)"
                    .into(),
            );
        }
    }

    /// Quorum SASL, once every line and the JAAS file are read.
    fn apply_quorum_sasl(
        &mut self,
        staged: quorum_sasl::SaslStaged,
        jaas: Option<&(PathBuf, String)>,
    ) -> Result<(), ConfigError> {
        let mut warnings = Vec::new();
        let jaas = jaas.map(|(p, t)| (p.as_path(), t.as_str()));
        let built = staged.build(self.is_distributed(), jaas, &mut warnings);
        for w in warnings {
            self.warn(w);
        }
        self.quorum_sasl = built?;
        Ok(())
    }

    /// The reference's `isDistributed`: the config names an ensemble and either
    /// standaloneEnabled=false or it has more than one participant. Otherwise the
    /// server runs standalone (also with a single participant `server.N` line).
    pub fn is_distributed(&self) -> bool {
        self.quorum.as_ref().is_some_and(|q| q.is_distributed())
    }

    /// Logs a warning and keeps it in `warnings`.
    fn warn(&mut self, msg: String) {
        tracing::warn!("{msg}");
        self.warnings.push(msg);
    }

    /// One zoo.cfg line: the first key group that owns the key takes it; a 3.8 key
    /// corral does not act on is accepted with a warning; anything else is refused.
    fn apply(
        &mut self,
        staged: &mut ensemble::Staged,
        security: &mut StagedSecurity,
        e: &Entry,
    ) -> Result<(), ConfigError> {
        let owned = self.apply_timing(e)?
            || self.apply_client(e)?
            || self.apply_storage(e)?
            || self.apply_snapshots(e)?
            || self.apply_security(e)?
            || self.apply_sasl(e)?
            || self.apply_corral(e)?
            || admin::apply_admin(&mut self.admin, e)?
            || admin::apply_metrics(&mut self.metrics, e)?
            || self.apply_staged_security(security, e)?
            || staged.apply(e)?;
        if owned {
            return Ok(());
        }
        match keys::no_effect(e.line, &e.key) {
            Some(warning) => {
                self.warn(warning);
                Ok(())
            }
            None => Err(ConfigError::UnknownKey {
                line: e.line,
                key: e.key.clone(),
            }),
        }
    }

    /// secureClientPort, sslQuorum, the ssl.* and the quorum.auth.* keys, staged
    /// until every line is read; their warnings are logged in line order.
    fn apply_staged_security(
        &mut self,
        s: &mut StagedSecurity,
        e: &Entry,
    ) -> Result<bool, ConfigError> {
        let owned = s.client.apply(e)? || s.quorum.apply(e)? || s.quorum_sasl.apply(e)?;
        let warnings = [s.client.take_warnings(), s.quorum.take_warnings()];
        for w in warnings.into_iter().flatten() {
            self.warn(w);
        }
        Ok(owned)
    }

    /// tickTime and the session timeout bounds.
    fn apply_timing(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        match e.key.as_str() {
            "tickTime" => {
                self.tick_time_ms = e.num_where(
                    |&t: &u32| t > 0,
                    "expected a positive number of milliseconds",
                )?
            }
            "minSessionTimeout" => {
                self.min_session_timeout_ms = Some(e.num("expected milliseconds")?)
            }
            "maxSessionTimeout" => {
                self.max_session_timeout_ms = Some(e.num("expected milliseconds")?)
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Where clients connect and what they may send.
    fn apply_client(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        match e.key.as_str() {
            "clientPort" => self.client_port = e.num("expected a port 0-65535")?,
            "clientPortAddress" => {
                self.client_port_address = e.num("expected an IP address such as 127.0.0.1")?
            }
            "maxClientCnxns" => self.max_client_cnxns = e.num("expected a count")?,
            "clientPortListenBacklog" => {
                let n: i64 = e.num("expected a connection count")?;
                self.client_port_listen_backlog = u32::try_from(n).ok().filter(|&n| n > 0);
            }
            // The reference reads the unprefixed system property only
            // (`-Dreadonlymode.enabled=true`); corral takes it from zoo.cfg.
            "readonlymode.enabled" | "zookeeper.readonlymode.enabled" => {
                self.read_only_mode = e.true_false()?
            }
            "localSessionsEnabled" => self.local_sessions_enabled = e.parse_boolean()?,
            "localSessionsUpgradingEnabled" => {
                self.local_sessions_upgrading_enabled = e.parse_boolean()?
            }
            "4lw.commands.whitelist" => self.four_letter_whitelist = four_letter_words(e)?,
            "jute.maxbuffer" => {
                self.jute_max_buffer_bytes = e.num_where(
                    |n: &usize| (1024..=1 << 30).contains(n),
                    "expected bytes between 1024 and 1073741824",
                )?
            }
            "extendedTypesEnabled" => self.extended_types_enabled = e.boolean()?,
            // The reference reads the system property zookeeper.enforceQuota, which
            // zoo.cfg spells without the prefix; both are taken.
            "enforceQuota" | "zookeeper.enforceQuota" => self.enforce_quota = e.true_false()?,
            // System properties of the reference too (NIOServerCnxn, QuorumCnxManager).
            "clientTcpKeepAlive" | "zookeeper.clientTcpKeepAlive" => {
                self.client_tcp_keep_alive = e.true_false()?
            }
            "tcpKeepAlive" | "zookeeper.tcpKeepAlive" => self.tcp_keep_alive = e.true_false()?,
            "maxCnxns" => self.max_cnxns = e.num("expected a count")?,
            "globalOutstandingLimit" => {
                self.global_outstanding_limit = e.num("expected a count")?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Data directories and the transaction log.
    fn apply_storage(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        match e.key.as_str() {
            "dataDir" => self.data_dir = directory(e)?,
            "dataLogDir" => self.data_log_dir = Some(directory(e)?),
            "forceSync" => self.force_sync = e.boolean()?,
            // A system property of the reference's FileTxnLog; zoo.cfg spells it
            // without the prefix, both are taken.
            "fsync.warningthresholdms" | "zookeeper.fsync.warningthresholdms" => {
                self.fsync_warning_threshold_ms = e.num("expected milliseconds")?
            }
            "preAllocSize" => self.pre_alloc_size_kb = e.num("expected kilobytes")?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// When to snapshot and what to purge.
    fn apply_snapshots(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        match e.key.as_str() {
            "snapCount" => {
                self.snap_count =
                    e.num_where(|&n: &u64| n >= 2, "expected a count of at least 2")?
            }
            "snapSizeLimitInKb" => self.snap_size_limit_kb = e.num("expected kilobytes")?,
            "autopurge.snapRetainCount" => {
                let n: i64 = e.num("expected a count")?;
                // As the reference: fewer than 3 is raised to 3, with a warning.
                if n < 3 {
                    self.warn(format!(
                        "line {}: autopurge.snapRetainCount={n} is below the minimum; using 3",
                        e.line
                    ));
                }
                self.autopurge_snap_retain_count = n.clamp(3, u32::MAX as i64) as u32;
            }
            // Hours; 0 or negative turns purging off (the reference's default).
            "autopurge.purgeInterval" => {
                self.autopurge_purge_interval_hours = e.num("expected hours")?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The super user, and skipACL.
    fn apply_security(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        match e.key.as_str() {
            "DigestAuthenticationProvider.enabled"
            | "zookeeper.DigestAuthenticationProvider.enabled" => {
                self.digest_auth_enabled = e.true_false()?
            }
            // Read once by the reference's DigestAuthenticationProvider, which stops
            // start-up on a name its JVM lacks.
            "DigestAuthenticationProvider.digestAlg"
            | "zookeeper.DigestAuthenticationProvider.digestAlg" => {
                self.digest_alg = crate::tree::DigestAlg::from_java_name(e.value.trim())
                    .ok_or_else(|| {
                        e.bad(
                            "expected a Java MessageDigest name: SHA1 (the default), MD5, \
                             SHA-224, SHA-256, SHA-384, SHA-512, SHA-512/224, SHA-512/256, \
                             SHA3-224, SHA3-256, SHA3-384 or SHA3-512 (or an alias or OID \
                             of one; corral lacks MD2)",
                        )
                    })?
            }
            // The reference's AuthenticationHelper reads these system properties.
            "sessionRequireClientSASLAuth" | "zookeeper.sessionRequireClientSASLAuth" => {
                self.enforce_auth.require_sasl = e.true_false()?
            }
            "enforce.auth.enabled" | "zookeeper.enforce.auth.enabled" => {
                self.enforce_auth.enabled = e.true_false()?
            }
            // Split as Java's String.split(","): trailing empty pieces dropped; an
            // empty one inside is a scheme no server has (checked when enforced).
            "enforce.auth.schemes" | "zookeeper.enforce.auth.schemes" => {
                let mut pieces: Vec<&str> = e.value.split(',').collect();
                while pieces.last().is_some_and(|p| p.is_empty()) {
                    pieces.pop();
                }
                self.enforce_auth.schemes = pieces.iter().map(|p| p.trim().to_string()).collect();
            }
            // The reference skips ACL checks only for the exact value `yes`
            // (`System.getProperty("zookeeper.skipACL", "no").equals("yes")`).
            "zookeeper.skipACL" | "skipACL" => {
                self.skip_acl = e.value == "yes";
                if self.skip_acl {
                    self.warn(format!(
                        "line {}: {}=yes: no ACL is checked, every client may read, change \
                         and delete every znode",
                        e.line, e.key
                    ));
                } else if e.value != "no" {
                    self.warn(format!(
                        "line {}: {}={}: ACLs are still checked (as on the reference, only \
                         `yes` turns them off)",
                        e.line, e.key, e.value
                    ));
                }
            }
            // The reference reads the system property zookeeper.<key>, so zoo.cfg
            // spells it without the prefix; corral has always taken both.
            "zookeeper.DigestAuthenticationProvider.superDigest"
            | "DigestAuthenticationProvider.superDigest" => {
                let why = "expected user:base64(sha1(user:password))";
                match e.value.split_once(':') {
                    Some((user, hash)) if !user.is_empty() && !hash.is_empty() => {
                        self.super_digest = Some(e.value.clone())
                    }
                    _ => return Err(e.bad(why)),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// SASL logins. The reference reads these as system properties: the JVM's own
    /// `java.security.auth.login.config` (a config key here) and `zookeeper.*` ones,
    /// which its zoo.cfg spells without the prefix; both spellings are taken.
    /// `authProvider.N` owns only the SASL provider class: any other class is left
    /// to the keys without effect.
    fn apply_sasl(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        let key = e.key.strip_prefix("zookeeper.").unwrap_or(&e.key);
        match key {
            "java.security.auth.login.config" if e.key == key => {
                if e.value.is_empty() {
                    return Err(e.bad("expected the path of a JAAS file"));
                }
                self.sasl.jaas_path = Some(PathBuf::from(&e.value));
            }
            k if k.starts_with("authProvider.") && k.len() > "authProvider.".len() => {
                if e.value.trim() != crate::auth::SASL_PROVIDER_CLASS {
                    return Ok(false);
                }
                self.sasl.provider_enabled = true;
            }
            "allowSaslFailedClients" => self.sasl.allow_failed_clients = e.boolean()?,
            k if k == "superUser"
                || k.strip_prefix("superUser.").is_some_and(|r| !r.is_empty()) =>
            {
                if !e.value.is_empty() {
                    self.sasl.super_users.push(e.value.clone());
                }
            }
            // Never echoed back: a bad value error would print the password.
            "SASLAuthenticationProvider.superPassword" => {
                self.sasl.super_password = Some(crate::auth::Secret::new(e.value.clone()))
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Reads the JAAS file's `Server` section, as the reference does at start-up: a
    /// file that cannot be read or parsed stops start-up; a file without the
    /// section leaves SASL logins off (with a warning here, silently there).
    /// Returns the file's path and text (quorum SASL reads its own sections).
    fn load_jaas(
        &mut self,
        files: &dyn ConfigFiles,
    ) -> Result<Option<(PathBuf, String)>, ConfigError> {
        let Some(path) = self.sasl.jaas_path.clone() else {
            if self.sasl.provider_enabled {
                self.warn(format!(
                    "authProvider names {}, but java.security.auth.login.config is not set: \
                     the sasl ACL scheme works, yet no SASL login can succeed",
                    crate::auth::SASL_PROVIDER_CLASS
                ));
            }
            return Ok(None);
        };
        let text = match files.read(&path) {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(ConfigError::JaasFile {
                    path,
                    why: "does not exist or is not a file".into(),
                })
            }
            Err(e) => {
                return Err(ConfigError::JaasFile {
                    path,
                    why: format!("cannot be read: {e}"),
                })
            }
        };
        let users = crate::auth::jaas::server_users(&text, crate::auth::jaas::SERVER_SECTION)
            .map_err(|source| ConfigError::Jaas {
                path: path.clone(),
                source,
            })?;
        if users.is_none() {
            self.warn(format!(
                "JAAS file {} has no `{}` section with a login module: client SASL \
                 logins are off",
                path.display(),
                crate::auth::jaas::SERVER_SECTION
            ));
        }
        self.sasl.users = users;
        Ok(Some((path, text)))
    }

    /// corral's own keys.
    fn apply_corral(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        let positive = "expected a positive count";
        match e.key.as_str() {
            "corral.shardCores" => {
                self.shard_cores =
                    e.num_where(|n: &usize| (1..=64).contains(n), "expected 1 to 64")?
            }
            "corral.sequencerCore" => {
                self.sequencer_core = match e.value.as_str() {
                    "own" => SequencerCore::Own,
                    "shard" => SequencerCore::Shard,
                    _ => return Err(e.bad("expected `own` or `shard`")),
                }
            }
            "corral.inlineSyncMaxMicros" => {
                self.inline_sync_max_us = e.num("expected microseconds")?
            }
            "corral.cpuPinning" => self.cpu_pinning = e.boolean()?,
            "corral.ioMemoryBytes" => {
                self.io_memory_bytes = e.num_where(
                    |&n: &usize| n >= 64 * 1024,
                    "expected bytes, at least 65536",
                )?
            }
            "corral.spinBeforeParkMicros" => {
                self.spin_before_park_us = e.num("expected microseconds")?
            }
            "corral.batchRequestsMax" => {
                self.batch_requests_max = e.num_where(|&n: &usize| n >= 1, positive)?
            }
            "corral.maxOutstandingPerConnection" => {
                self.max_outstanding_per_connection = e.num_where(|&n: &usize| n >= 1, positive)?
            }
            "corral.maxWatchesPerConnection" => {
                self.max_watches_per_connection = e.num_where(|&n: &usize| n >= 1, positive)?
            }
            "corral.containerCheckIntervalMs" => {
                self.container_check_interval_ms =
                    e.num_where(|&n: &u64| n >= 1, "expected positive milliseconds")?
            }
            "corral.logSegmentBytes" => {
                self.log_segment_bytes =
                    e.num_where(|&n: &u64| n >= 1 << 20, "expected bytes, at least 1048576")?
            }
            "corral.maxQueuedReplyBytesPerConnection" => {
                self.max_queued_reply_bytes_per_connection = e.num_where(
                    |&n: &usize| n >= 64 * 1024,
                    "expected bytes, at least 65536",
                )?
            }
            "corral.maxQueuedBytesPerConnection" => {
                self.max_queued_bytes_per_connection = e.num_where(
                    |&n: &usize| n >= 64 * 1024,
                    "expected bytes, at least 65536",
                )?
            }
            "corral.maxSessions" => self.max_sessions = e.num("expected a count")?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The cross-key check of the standalone keys.
    fn check_session_timeouts(&self) -> Result<(), ConfigError> {
        let (min, max) = (self.min_session_timeout(), self.max_session_timeout());
        if min > max {
            return Err(ConfigError::Invalid(format!(
                "minSessionTimeout ({min} ms) is greater than maxSessionTimeout ({max} ms)"
            )));
        }
        Ok(())
    }

    /// A connection paused at the soft reply limit may hold one more maximal reply.
    /// The default hard limit grows with a large jute.maxbuffer; a set one must fit.
    fn check_client_bounds(&mut self, queued_set: bool) -> Result<(), ConfigError> {
        let soft_and_one_reply = self
            .max_queued_reply_bytes_per_connection
            .saturating_add(self.jute_max_buffer_bytes);
        if !queued_set {
            self.max_queued_bytes_per_connection = self
                .max_queued_bytes_per_connection
                .max(soft_and_one_reply.saturating_add(self.jute_max_buffer_bytes));
        }
        if self.max_queued_bytes_per_connection <= soft_and_one_reply {
            return Err(ConfigError::Invalid(format!(
                "corral.maxQueuedBytesPerConnection ({}) must be above \
                 corral.maxQueuedReplyBytesPerConnection + jute.maxbuffer ({soft_and_one_reply}): \
                 reading pauses at the second, which one more reply may pass, and the \
                 connection is closed at the first",
                self.max_queued_bytes_per_connection
            )));
        }
        Ok(())
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

/// zoo.cfg text with the value of every password key (`...password...`,
/// `...passwd...`, any case) replaced by `********`: the text is shown back to
/// operators (`initial_configuration`) and may be logged with the Config.
fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.split_once('=') {
            Some((k, _))
                if {
                    let k = k.to_ascii_lowercase();
                    k.contains("password") || k.contains("passwd")
                } =>
            {
                out.push_str(k);
                out.push_str("=********");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn directory(e: &Entry) -> Result<PathBuf, ConfigError> {
    if e.value.is_empty() {
        return Err(e.bad("expected a directory"));
    }
    Ok(PathBuf::from(&e.value))
}

/// `*` (every word) or a comma-separated list of the words corral knows.
fn four_letter_words(e: &Entry) -> Result<FourLetterWhitelist, ConfigError> {
    let cmds: Vec<String> = e
        .value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if cmds.iter().any(|s| s == "*") {
        return Ok(FourLetterWhitelist::All);
    }
    if let Some(cmd) = cmds
        .iter()
        .find(|c| !FOUR_LETTER_WORDS.contains(&c.as_str()))
    {
        return Err(e.bad(&format!("unknown four-letter word `{cmd}`")));
    }
    Ok(FourLetterWhitelist::Only(cmds))
}

#[cfg(test)]
mod tests;
