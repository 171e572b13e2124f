//! Shared helpers for corral's integration tests: a launcher for a real server
//! process (corral itself, or Apache ZooKeeper from the Debian package as the
//! reference), the skip rule for a missing reference, and a raw blocking wire
//! client built on `corral::proto` for tests where the exact reply bytes matter.
//!
//! Runs on the test thread (no executor): a [`Server`] owns one child process on a
//! free 127.0.0.1 port with its own temp data dir and log file; tests talk to it
//! over loopback TCP with [`RawClient`] (blocking std sockets, bounded timeouts) or
//! with the `zookeeper-client` crate. Replies flow back as [`Reply`] frames, watch
//! notifications (xid −1) are set aside in [`RawClient::events`], and
//! [`decode_body`] turns a reply body into a typed [`Response`]. [`Normalizer`]
//! maps zxids, times and session ids to server-independent values so replies of
//! two different servers can be compared for equality. [`ensemble`] runs
//! several members as one ensemble on top of [`Server::launch`].
#![allow(dead_code)]

pub mod ensemble;
pub mod peer_security;
pub mod pki;
pub mod stall;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral::proto::{
    op, xid, Acl, ConnectRequest, ConnectResponse, DecodeError, ErrorCode, JuteWrite, OpResult,
    Reader, ReplyHeader, Request, RequestHeader, Response, Stat,
};

/// How long a server may take from spawn to answering `ruok` with `imok`.
pub const SERVER_READY_TIMEOUT_MS: u64 = 60_000;
/// How long a raw client waits for one frame, or for a call's reply, before
/// calling it a timeout (unless the test sets another read timeout).
pub const RAW_READ_TIMEOUT_MS: u64 = 5_000;
/// Silence after which a raw client waiting for a call's reply pings, as a real
/// client pings when idle (the Java client after a third of its session
/// timeout). The reference's 3.8.0 needs it: its CommitProcessor can miss a
/// wake-up (ZOOKEEPER-4537, fixed in 3.8.1) and then holds a committed write
/// until the next request reaches it, so a client that sends nothing more waits
/// for good.
pub const IDLE_PING_MS: u64 = 1_000;
/// Largest frame the raw client accepts from a server (a sanity bound, not the protocol's).
pub const RAW_FRAME_BYTES_MAX: usize = 16 << 20;
/// Lines of a server's log printed when a test fails.
pub const LOG_TAIL_LINES_MAX: usize = 150;
/// How often [`Server::terminate`] looks whether the process has exited.
const TERMINATE_POLL_MS: u64 = 50;

/// Where the Debian package puts its jars.
const JAVA_LIB_DIR: &str = "/usr/share/java";
/// Jars the standalone reference server needs (the rest of the package is optional).
const REFERENCE_JARS: &[&str] = &[
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-api.jar",
    "slf4j-simple.jar",
    "netty-handler.jar",
    "netty-common.jar",
    "netty-buffer.jar",
    "netty-transport.jar",
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-transport-native-epoll.jar",
    "netty-transport-native-unix-common.jar",
    "metrics-core.jar",
    "commons-cli.jar",
    "commons-io.jar",
    "snappy-java.jar",
];

/// Which server a [`Server`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reference,
    Corral,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Reference => "reference",
            Kind::Corral => "corral",
        })
    }
}

fn java_binary() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let p = Path::new(&home).join("bin/java");
        if p.exists() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("java"))
        .find(|p| p.exists())
}

/// True when the reference server (java + the Debian zookeeper jars) is installed.
pub fn reference_available() -> bool {
    java_binary().is_some() && Path::new(JAVA_LIB_DIR).join("zookeeper.jar").exists()
}

/// The skip rule: returns true when the reference is installed. Otherwise prints a
/// loud SKIPPED line and returns false, except under CI (`CI` set), where a missing
/// reference fails the test.
pub fn require_reference() -> bool {
    if reference_available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("Apache ZooKeeper (java + {JAVA_LIB_DIR}/zookeeper.jar) is required under CI");
    }
    eprintln!();
    eprintln!("==============================================================");
    eprintln!("SKIPPED: Apache ZooKeeper not installed");
    eprintln!("         (need java and {JAVA_LIB_DIR}/zookeeper.jar)");
    eprintln!("==============================================================");
    false
}

/// True when `python3` can import kazoo with its SASL support (pure-sasl).
pub fn kazoo_available() -> bool {
    Command::new("python3")
        .args(["-c", "import kazoo.client, puresasl.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The skip rule for kazoo-driven tests: true when python3 + kazoo + pure-sasl are
/// installed; otherwise a loud SKIPPED line, or a failure under CI (`CI` set),
/// whose .ci/run installs them.
pub fn require_kazoo() -> bool {
    if kazoo_available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "python3 with kazoo and pure-sasl is required under CI (pip install kazoo pure-sasl)"
        );
    }
    eprintln!();
    eprintln!("==============================================================");
    eprintln!("SKIPPED: python3 with kazoo and pure-sasl not installed");
    eprintln!("         (pip install kazoo pure-sasl)");
    eprintln!("==============================================================");
    false
}

/// How long a client program driven by a test (kazoo script, zkCli) may run.
pub const CLIENT_PROGRAM_TIMEOUT_MS: u64 = 120_000;

/// What a client program printed.
pub struct ProgramOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with `stdin_text` on its standard input and returns what it printed;
/// killed (and the test failed) after [`CLIENT_PROGRAM_TIMEOUT_MS`].
pub fn run_client_program(mut cmd: Command, stdin_text: &str) -> ProgramOutput {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    cmd.stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot start {cmd:?}: {e}"),
    };
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(stdin_text.as_bytes());
    drop(stdin);
    let deadline = Instant::now() + Duration::from_millis(CLIENT_PROGRAM_TIMEOUT_MS);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {CLIENT_PROGRAM_TIMEOUT_MS} ms; output:\n{}{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ProgramOutput {
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// The reference's command-line client (`ZooKeeperMain`, zkCli) against `addr`,
/// with JVM system properties `sysprops` (`-Dkey=value`), reading commands from
/// standard input. Its loggers print warnings and errors only.
pub fn zookeeper_cli_command(addr: &str, sysprops: &[String]) -> Command {
    let java = java_binary().expect("java not found; call require_reference() first");
    let cp: Vec<String> = REFERENCE_JARS
        .iter()
        .map(|j| Path::new(JAVA_LIB_DIR).join(j))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    let mut cmd = Command::new(java);
    cmd.args(sysprops)
        .arg("-Xmx256m")
        .arg("-XX:+UseSerialGC")
        .arg("-XX:TieredStopAtLevel=1")
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-cp")
        .arg(cp.join(":"))
        .arg("org.apache.zookeeper.ZooKeeperMain")
        .arg("-server")
        .arg(addr);
    cmd
}

/// Only one reference JVM at a time per test binary: the box has two cores.
static REFERENCE_LOCK: Mutex<()> = Mutex::new(());

/// Takes the one-reference-at-a-time lock for a whole group of processes (an
/// ensemble holds it for all its members, so ensemble tests run one at a time).
pub fn reference_serial() -> MutexGuard<'static, ()> {
    REFERENCE_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The command that runs Apache ZooKeeper (`QuorumPeerMain`) on `cfg_path`,
/// with `sysprops` (`-Dkey=value`) before the class path.
pub fn reference_command(cfg_path: &Path, sysprops: &[String]) -> Command {
    let mut cmd = reference_java(sysprops);
    cmd.arg("-Dzookeeper.admin.enableServer=false")
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(cfg_path);
    cmd
}

/// `java` with the reference's class path and `sysprops`, ready for a main class
/// and its arguments (the server, or a client such as `ZooKeeperMain`).
pub fn reference_java(sysprops: &[String]) -> Command {
    let java = java_binary().expect("java not found; call require_reference() first");
    let cp: Vec<String> = REFERENCE_JARS
        .iter()
        .map(|j| Path::new(JAVA_LIB_DIR).join(j))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    let mut cmd = Command::new(java);
    cmd.args(sysprops);
    cmd.arg("-Xmx512m")
        .arg("-XX:+UseSerialGC")
        .arg("-XX:TieredStopAtLevel=1")
        .arg("-cp")
        .arg(cp.join(":"));
    cmd
}

/// Jars the reference's AdminServer needs on top of [`REFERENCE_JARS`]
/// (/work/shared/PROTOCOL.md, "Optional features of the reference").
const REFERENCE_ADMIN_JARS: &[&str] = &[
    "jetty9-server.jar",
    "jetty9-servlet.jar",
    "jetty9-http.jar",
    "jetty9-io.jar",
    "jetty9-util.jar",
    "jetty9-security.jar",
    "servlet-api.jar",
    "jackson-databind.jar",
    "jackson-core.jar",
    "jackson-annotations.jar",
];

impl Server {
    /// Apache ZooKeeper standalone with its AdminServer on 127.0.0.1:`admin_port`
    /// (the jetty and jackson jars added to its class path). `cfg_extra` is appended
    /// to zoo.cfg. Call [`require_reference`] first.
    pub fn reference_with_admin(admin_port: u16, cfg_extra: &str) -> Server {
        let serial = reference_serial();
        let dir = tempfile::Builder::new()
            .prefix("corral-ref-admin-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut cfg = Self::base_cfg(port, dir.path());
        cfg.push_str(cfg_extra);
        let cfg_path = dir.path().join("zoo.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let jars: Vec<String> = REFERENCE_JARS
            .iter()
            .chain(REFERENCE_ADMIN_JARS)
            .map(|j| Path::new(JAVA_LIB_DIR).join(j))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        let mut cmd = Command::new(java_binary().expect("java not found"));
        cmd.arg("-Xmx512m")
            .arg("-XX:+UseSerialGC")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-Dzookeeper.admin.enableServer=true")
            .arg("-Dzookeeper.admin.serverAddress=127.0.0.1")
            .arg(format!("-Dzookeeper.admin.serverPort={admin_port}"))
            .arg("-cp")
            .arg(jars.join(":"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg_path);
        Self::spawn(Kind::Reference, cmd, port, dir, Some(serial))
    }
}

/// Two shard cores whatever the machine's CPU count (the default is CPUs − 1), so
/// the paths between shards (a write taken on one shard, its watch or session on
/// another) are covered on any machine, and the standalone sequencer beside shard 0
/// (the default only up to 2 CPUs), so both kinds of path to it are: local from
/// shard 0, cross-thread from shard 1 (ensemble members' quorum cores keep their
/// own executor whatever this says). A test's own `cfg_extra`, written after, may say
/// otherwise (client.rs runs its suite on one shard, and with the sequencer on an
/// executor of its own, too).
pub const SHARD_CORES_CFG: &str = "corral.shardCores=2\ncorral.sequencerCore=shard\n";

/// The command that runs corral (`corral server --config FILE`).
pub fn corral_command(cfg_path: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.arg("server").arg("--config").arg(cfg_path);
    cmd
}

/// The last `lines` lines of a text file (empty when it cannot be read).
pub fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

/// Picks a free loopback port: bind port 0, read the port, release it.
///
/// Never the same port twice in one test binary: tests run in parallel threads, and a
/// port a stopped member will restart on must not be handed to another test's server
/// meanwhile (a reconfig test's member once restarted onto a port a parallel test had
/// just been given: "client port ... is already in use").
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(Default::default).insert(port) {
            return port;
        }
    }
    panic!("no port not handed out before in 1000 tries");
}

/// One running server process, killed and reaped on drop. Its log is printed
/// when it is dropped while the thread panics (a failing test).
pub struct Server {
    pub kind: Kind,
    pub port: u16,
    child: Mutex<Option<Child>>,
    /// The temp dir this server owns; `None` when its owner (an ensemble) keeps
    /// the files and does the post-mortem printing itself.
    dir: Option<tempfile::TempDir>,
    /// Where its data/, datalog/ and server.log live.
    home: PathBuf,
    log_path: PathBuf,
    _serial: Option<MutexGuard<'static, ()>>,
}

impl Server {
    /// Settings both server kinds share. `tickTime` 500 ms so session expiry tests
    /// take about a second; everything binds 127.0.0.1.
    fn base_cfg(port: u16, dir: &Path) -> String {
        format!(
            "tickTime=500\n\
             dataDir={d}/data\n\
             dataLogDir={d}/datalog\n\
             clientPort={port}\n\
             clientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\n\
             minSessionTimeout=1000\n\
             maxSessionTimeout=30000\n\
             4lw.commands.whitelist=*\n",
            d = dir.display()
        )
    }

    /// Starts Apache ZooKeeper standalone. `cfg_extra` is appended to zoo.cfg.
    /// Call [`require_reference`] first.
    pub fn reference(cfg_extra: &str) -> Server {
        Self::start_with_env(Kind::Reference, cfg_extra, &[])
    }

    /// A second reference JVM beside one this thread already holds (harness
    /// self-checks only: it does not take the one-JVM-at-a-time lock).
    pub fn reference_second(cfg_extra: &str) -> Server {
        Self::reference_with(cfg_extra, None, &[])
    }

    fn reference_with(
        cfg_extra: &str,
        serial: Option<MutexGuard<'static, ()>>,
        env: &[(&str, &str)],
    ) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("corral-ref-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut cfg = Self::base_cfg(port, dir.path());
        cfg.push_str("admin.enableServer=false\n");
        // Keys the reference reads as Java system properties, not from zoo.cfg:
        // `zookeeper.*` (e.g. the super digest), `znode.*` (the container manager's
        // settings), `jute.maxbuffer`, and the JVM's own `java.*` ones (the JAAS file
        // of SASL logins, `java.security.auth.login.config`, which corral takes as a
        // config key).
        let mut sysprops = Vec::new();
        for line in cfg_extra.lines() {
            match line.split_once('=') {
                Some((k, v))
                    if k.trim().starts_with("zookeeper.")
                        || k.trim().starts_with("znode.")
                        || k.trim().starts_with("java.")
                        || k.trim() == "jute.maxbuffer" =>
                {
                    sysprops.push(format!("-D{}={}", k.trim(), v.trim()))
                }
                _ => {
                    cfg.push_str(line);
                    cfg.push('\n');
                }
            }
        }
        let cfg_path = dir.path().join("zoo.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let mut cmd = reference_command(&cfg_path, &sysprops);
        cmd.envs(env.iter().copied());
        Self::spawn(Kind::Reference, cmd, port, dir, serial)
    }

    /// Starts corral (`corral server --config FILE`). `cfg_extra` is appended to the config.
    pub fn corral(cfg_extra: &str) -> Server {
        Self::start_with_env(Kind::Corral, cfg_extra, &[])
    }

    /// Starts corral in `dir` on a fresh port, with the base config plus
    /// `cfg_extra` and `env` added to its environment.
    fn spawn_corral(dir: tempfile::TempDir, cfg_extra: &str, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cfg = Self::base_cfg(port, dir.path());
        // As for the reference: no AdminServer on the shared port 8080 unless a
        // test asks for one (on a free port) in `cfg_extra`.
        cfg.push_str("admin.enableServer=false\n");
        cfg.push_str(SHARD_CORES_CFG);
        cfg.push_str(cfg_extra);
        let cfg_path = dir.path().join("corral.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let mut cmd = corral_command(&cfg_path);
        cmd.envs(env.iter().copied());
        Self::spawn(Kind::Corral, cmd, port, dir, None)
    }

    /// Stops this corral (SIGKILL) and starts a new process on the same data dirs,
    /// with the base config plus `cfg_extra`, on a fresh port (the killed process's
    /// orphaned connections can hold the old one for a while). Its output is appended
    /// to the same log.
    pub fn restart_corral(mut self, cfg_extra: &str) -> Server {
        assert_eq!(
            self.kind,
            Kind::Corral,
            "restart_corral on a {} server",
            self.kind
        );
        if let Some(mut child) = self.child.get_mut().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Self::spawn_corral(self.dir.take().expect("the server's dir"), cfg_extra, &[])
    }

    /// Starts a server of the given kind.
    pub fn start(kind: Kind, cfg_extra: &str) -> Server {
        Self::start_with_env(kind, cfg_extra, &[])
    }

    /// As [`start`](Self::start), with `env` added to the server process's
    /// environment (e.g. an `LD_PRELOAD` shim; the reference's JVM gets it too).
    pub fn start_with_env(kind: Kind, cfg_extra: &str, env: &[(&str, &str)]) -> Server {
        match kind {
            Kind::Reference => {
                let serial = REFERENCE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                Self::reference_with(cfg_extra, Some(serial), env)
            }
            Kind::Corral => {
                let dir = tempfile::Builder::new()
                    .prefix("corral-it-")
                    .tempdir()
                    .unwrap();
                Self::spawn_corral(dir, cfg_extra, env)
            }
        }
    }

    fn spawn(
        kind: Kind,
        cmd: Command,
        port: u16,
        dir: tempfile::TempDir,
        serial: Option<MutexGuard<'static, ()>>,
    ) -> Server {
        let mut server = Self::launch(kind, cmd, port, dir.path());
        server.dir = Some(dir);
        server._serial = serial;
        server.wait_ready();
        server
    }

    /// Starts `cmd` in `home` (creating data/ and datalog/ there), its output
    /// appended to `home/server.log`, without waiting for it to serve: an
    /// ensemble member serves only once a quorum is up. The caller owns `home`
    /// and prints the log when a test fails.
    pub fn launch(kind: Kind, mut cmd: Command, port: u16, home: &Path) -> Server {
        std::fs::create_dir_all(home.join("data")).unwrap();
        std::fs::create_dir_all(home.join("datalog")).unwrap();
        let log_path = home.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .current_dir(home);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start the {kind} server ({cmd:?}): {e}"),
        };
        Server {
            kind,
            port,
            child: Mutex::new(Some(child)),
            dir: None,
            home: home.to_path_buf(),
            log_path,
            _serial: None,
        }
    }

    /// Waits (bounded) until the server answers `ruok` and serves; panics with its log
    /// if it exits or does not come up.
    pub fn wait_ready(&mut self) {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(SERVER_READY_TIMEOUT_MS);
        loop {
            if let Some(status) = self.exit_status() {
                panic!(
                    "the {} server exited during start-up ({status}); log:\n{}",
                    self.kind,
                    self.log_tail()
                );
            }
            if four_letter_word(&self.addr(), "ruok").ok().as_deref() == Some("imok")
                && self.serving()
            {
                eprintln!(
                    "[{} server on {} ready after {} ms]",
                    self.kind,
                    self.addr(),
                    started.elapsed().as_millis()
                );
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the {} server did not answer ruok within {SERVER_READY_TIMEOUT_MS} ms; log:\n{}",
                    self.kind,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The reference answers `ruok` before it serves sessions; its `srvr` says
    /// when it does not serve yet. corral is ready once it answers `ruok`.
    fn serving(&self) -> bool {
        match self.kind {
            Kind::Corral => true,
            Kind::Reference => four_letter_word(&self.addr(), "srvr")
                .map(|s| s.contains("Zookeeper version") && !s.contains("not currently serving"))
                .unwrap_or(false),
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.home.join("data")
    }

    /// The last [`LOG_TAIL_LINES_MAX`] lines of the server's stdout+stderr.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log_path, LOG_TAIL_LINES_MAX)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The process's exit status once it has exited.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded by `within`) for the process to exit (after a signal the
    /// test sent); its status, or `None` if it still runs.
    pub fn wait_exit(&self, within: Duration) -> Option<std::process::ExitStatus> {
        let polls = within.as_millis() / TERMINATE_POLL_MS as u128 + 1;
        for _ in 0..polls {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(TERMINATE_POLL_MS));
        }
        None
    }

    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// The server process's id while it runs (the JVM itself for the reference).
    pub fn pid(&self) -> Option<u32> {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_ref().map(|c| c.id())
    }

    /// Kills the process (SIGKILL) and reaps it, keeping its files for inspection
    /// until the `Server` is dropped. What it acknowledged is on disk: both servers
    /// reply to a write only after syncing it.
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to the process if it has not been
    /// reaped yet (so the pid cannot belong to another process). True when sent.
    pub fn signal(&self, signal: i32) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = child.as_mut() else {
            return false;
        };
        if !matches!(c.try_wait(), Ok(None)) {
            return false;
        }
        // SAFETY: kill(2) on our own unreaped child; no memory is touched.
        unsafe { libc::kill(c.id() as libc::pid_t, signal) == 0 }
    }

    /// Asks the process to exit (SIGTERM), waits up to `grace` for it, then
    /// kills it (SIGKILL); reaps it either way. True when it exited by itself.
    pub fn terminate(&self, grace: Duration) -> bool {
        self.signal(libc::SIGCONT); // a paused process cannot handle SIGTERM
        if !self.signal(libc::SIGTERM) {
            return self.exit_status().is_some();
        }
        if self.wait_exit(grace).is_some() {
            return true;
        }
        self.stop();
        false
    }

    /// Where the server writes its txn log (`dataLogDir`).
    pub fn data_log_dir(&self) -> PathBuf {
        self.home.join("datalog")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A server whose files belong to someone else leaves the post-mortem to them.
        if std::thread::panicking() && self.dir.is_some() {
            // Keep the data dir and the full log for a post-mortem.
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!("[{} server files kept in {}]", self.kind, kept.display());
            }
            eprintln!(
                "----- {} server log ({}), last {LOG_TAIL_LINES_MAX} lines -----\n{}\n----- end of {} server log -----",
                self.kind,
                self.log_path.display(),
                self.log_tail(),
                self.kind
            );
        }
    }
}

/// Largest HTTP response the test client reads.
pub const RESPONSE_BYTES_MAX: u64 = 4 << 20;

/// Sends `raw` to `addr` and returns (status code, body); `None` when the server
/// closed without an HTTP answer.
pub fn http_raw(addr: &str, raw: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.take(RESPONSE_BYTES_MAX).read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// GET `path` over HTTP/1.0 (never chunked): (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    http_raw(addr, req.as_bytes()).unwrap_or_else(|| panic!("no HTTP answer to GET {path}"))
}

/// Sends a four-letter word on a fresh connection and returns the whole answer.
pub fn four_letter_word(addr: &str, word: &str) -> io::Result<String> {
    let sa = addr.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_millis(2000)))?;
    s.write_all(word.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A reply frame: header plus the undecoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: Vec<u8>,
}

/// A watch notification as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub zxid: i64,
    pub event_type: i32,
    pub state: i32,
    pub path: String,
}

/// How a read from a raw connection ended when it did not yield a frame.
#[derive(Debug)]
pub enum ReadEnd {
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived within the timeout.
    Timeout,
    /// A frame that does not parse.
    Garbled(String),
}

/// What a [`RawClient`] talks over: plain TCP, or TLS (rustls) over TCP.
pub enum Transport {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Tcp(s) => s,
            Transport::Tls(t) => &t.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.flush(),
            Transport::Tls(t) => t.flush(),
        }
    }
}

/// A blocking ZooKeeper wire client over one TCP (or TLS) connection.
pub struct RawClient {
    stream: Transport,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub timeout_ms: i32,
    next_xid: i32,
    /// Watch notifications received so far and not yet taken.
    pub events: VecDeque<Event>,
    /// Highest zxid seen in any reply header.
    pub last_zxid: i64,
    /// The read timeout the test set (RAW_READ_TIMEOUT_MS unless changed).
    read_timeout: Duration,
    /// Pings [`RawClient::wait_reply`] sent on its own and whose replies have not
    /// come yet: `recv_reply` skips that many ping replies.
    idle_pings: u32,
    /// The start of a frame a read timeout cut (length prefix, part of the body):
    /// the next `read_frame` goes on from there.
    partial: Vec<u8>,
}

impl RawClient {
    /// Opens a TCP connection without handshaking.
    pub fn connect_tcp(addr: &str) -> io::Result<TcpStream> {
        let sa = addr.parse().unwrap();
        let s = TcpStream::connect_timeout(&sa, Duration::from_millis(2000))?;
        s.set_read_timeout(Some(Duration::from_millis(RAW_READ_TIMEOUT_MS)))?;
        s.set_write_timeout(Some(Duration::from_millis(RAW_READ_TIMEOUT_MS)))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Wraps a TCP connection on which no handshake has been done (or one done by hand).
    pub fn from_stream(stream: TcpStream) -> RawClient {
        Self::from_transport(Transport::Tcp(stream))
    }

    /// Opens a TLS connection to `addr` (server name `localhost`) and completes the
    /// TLS handshake, without a ZooKeeper handshake.
    pub fn connect_tls(
        addr: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> io::Result<RawClient> {
        let tcp = Self::connect_tcp(addr)?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Self::from_transport(Transport::Tls(Box::new(tls))))
    }

    /// [`RawClient::connect_tls`], then a new session with the given timeout.
    pub fn connect_tls_session(
        addr: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
        timeout_ms: i32,
    ) -> io::Result<RawClient> {
        let mut c = Self::connect_tls(addr, config)?;
        let resp = c.zk_handshake(&ConnectRequest::new_session(timeout_ms))?;
        if resp.session_id == 0 {
            return Err(io::Error::other("the server refused a new session"));
        }
        Ok(c)
    }

    fn from_transport(stream: Transport) -> RawClient {
        RawClient {
            stream,
            session_id: 0,
            passwd: Vec::new(),
            timeout_ms: 0,
            next_xid: 1,
            events: VecDeque::new(),
            last_zxid: 0,
            read_timeout: Duration::from_millis(RAW_READ_TIMEOUT_MS),
            idle_pings: 0,
            partial: Vec::new(),
        }
    }

    /// Connects and creates a new session with the given timeout.
    pub fn connect(addr: &str, timeout_ms: i32) -> RawClient {
        let req = ConnectRequest::new_session(timeout_ms);
        let (c, resp) = RawClient::handshake(addr, &req).expect("handshake");
        assert_ne!(resp.session_id, 0, "server refused a new session: {resp:?}");
        c
    }

    /// Connects with an explicit ConnectRequest; returns the client and the server's answer.
    pub fn handshake(addr: &str, req: &ConnectRequest) -> io::Result<(RawClient, ConnectResponse)> {
        let mut c = RawClient::from_stream(RawClient::connect_tcp(addr)?);
        let resp = c.zk_handshake(req)?;
        Ok((c, resp))
    }

    /// Sends `req` on this connection and reads the ConnectResponse.
    pub fn zk_handshake(&mut self, req: &ConnectRequest) -> io::Result<ConnectResponse> {
        let c = self;
        let mut body = Vec::new();
        req.encode(&mut body);
        c.send_frame(&body)?;
        let frame = match c.read_frame() {
            Ok(f) => f,
            Err(ReadEnd::Closed) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "closed during handshake",
                ))
            }
            Err(e) => return Err(io::Error::other(format!("handshake: {e:?}"))),
        };
        let resp = ConnectResponse::decode(&mut Reader::new(&frame))
            .map_err(|e| io::Error::other(format!("bad ConnectResponse: {e}")))?;
        c.session_id = resp.session_id;
        c.passwd = resp.passwd.clone();
        c.timeout_ms = resp.timeout_ms;
        Ok(resp)
    }

    /// Sends raw bytes as they are (no framing).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends one length-prefixed frame.
    pub fn send_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(payload.len() + 4);
        buf.put_i32(payload.len() as i32);
        buf.extend_from_slice(payload);
        self.stream.write_all(&buf)
    }

    /// The xid the next request gets.
    pub fn next_xid(&self) -> i32 {
        self.next_xid
    }

    /// Continues a session's xids on a new connection (a client's xid counter
    /// outlives its connections: a reference server matches a session's requests
    /// by xid, and one reused while an earlier request with it is pending there
    /// gets answered with the other's data).
    pub fn set_next_xid(&mut self, xid: i32) {
        self.next_xid = xid;
    }

    /// Sends a request under the next xid and returns that xid.
    pub fn send(&mut self, req: &Request) -> io::Result<i32> {
        let x = self.next_xid;
        self.next_xid += 1;
        self.send_with_xid(x, req)?;
        Ok(x)
    }

    /// Sends a request under the given xid.
    pub fn send_with_xid(&mut self, x: i32, req: &Request) -> io::Result<i32> {
        self.send_opcode(x, req.opcode(), req)
    }

    /// Sends a request's body under an arbitrary opcode (for unknown-opcode tests).
    pub fn send_opcode(&mut self, x: i32, opcode: i32, req: &Request) -> io::Result<i32> {
        let mut payload = Vec::new();
        RequestHeader { xid: x, opcode }.encode(&mut payload);
        req.encode_body(&mut payload);
        self.send_frame(&payload)?;
        Ok(x)
    }

    /// The read timeout from now on: each read of a frame, and a call's wait in all.
    pub fn set_read_timeout(&mut self, d: Duration) {
        self.read_timeout = d;
        self.set_socket_timeout(d);
    }

    /// The socket's read timeout for one wait, leaving the test's own as it is.
    fn set_socket_timeout(&mut self, d: Duration) {
        self.stream.socket().set_read_timeout(Some(d)).unwrap();
    }

    /// Back to the test's read timeout after a wait of its own.
    fn restore_socket_timeout(&mut self) {
        self.set_socket_timeout(self.read_timeout);
    }

    /// Half-closes the sending side.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.socket().shutdown(Shutdown::Write);
    }

    /// The client's own port of this connection.
    pub fn local_port(&self) -> u16 {
        self.stream
            .socket()
            .local_addr()
            .expect("a connected socket")
            .port()
    }

    /// Reads one frame's payload. A timeout keeps what came of the frame so far,
    /// so waiting again (`wait_reply` after a ping) does not lose the stream's place.
    pub fn read_frame(&mut self) -> Result<Vec<u8>, ReadEnd> {
        fill_to(&mut self.stream, &mut self.partial, 4)?;
        let n = i32::from_be_bytes(self.partial[..4].try_into().unwrap());
        if n < 0 || n as usize > RAW_FRAME_BYTES_MAX {
            self.partial.clear();
            return Err(ReadEnd::Garbled(format!("frame length {n}")));
        }
        fill_to(&mut self.stream, &mut self.partial, 4 + n as usize)?;
        let frame = self.partial[4..].to_vec();
        self.partial.clear();
        Ok(frame)
    }

    /// Reads frames until a reply (xid ≠ −1) arrives; notifications go to `events`,
    /// and the replies to `wait_reply`'s own pings are skipped.
    pub fn recv_reply(&mut self) -> Result<Reply, ReadEnd> {
        loop {
            let frame = self.read_frame()?;
            let mut r = Reader::new(&frame);
            let h = ReplyHeader::decode(&mut r).map_err(|e| ReadEnd::Garbled(e.to_string()))?;
            if h.xid == xid::PING && self.idle_pings > 0 {
                self.idle_pings -= 1;
                continue;
            }
            if h.xid == xid::NOTIFICATION {
                let ev = Event {
                    zxid: h.zxid,
                    event_type: r.i32().map_err(|e| ReadEnd::Garbled(e.to_string()))?,
                    state: r.i32().map_err(|e| ReadEnd::Garbled(e.to_string()))?,
                    path: r.string().map_err(|e| ReadEnd::Garbled(e.to_string()))?,
                };
                self.events.push_back(ev);
                continue;
            }
            if h.zxid > self.last_zxid {
                self.last_zxid = h.zxid;
            }
            return Ok(Reply {
                xid: h.xid,
                zxid: h.zxid,
                err: h.err,
                body: frame[r.position()..].to_vec(),
            });
        }
    }

    /// Sends `req` under its fixed xid (ping, auth, setWatches) or the next one;
    /// returns that xid.
    pub fn send_request(&mut self, req: &Request) -> io::Result<i32> {
        match req {
            Request::Ping => self.send_with_xid(xid::PING, req),
            Request::Auth { .. } => self.send_with_xid(xid::AUTH, req),
            Request::SetWatches(_) => self.send_with_xid(xid::SET_WATCHES, req),
            _ => self.send(req),
        }
    }

    /// Sends `req` and waits for its reply (`wait_reply`: pings while the server
    /// is silent); panics when the reply's xid is not the request's.
    pub fn call(&mut self, req: &Request) -> Result<Reply, ReadEnd> {
        let x = self.send_request(req).map_err(|_| ReadEnd::Closed)?;
        let reply = self.wait_reply()?;
        assert_eq!(
            reply.xid, x,
            "reply xid does not match the request's ({req:?})"
        );
        Ok(reply)
    }

    /// The next reply, as a client waits for one: within the read timeout in all,
    /// with a ping after each IDLE_PING_MS of silence (see there why).
    pub fn wait_reply(&mut self) -> Result<Reply, ReadEnd> {
        let start = Instant::now();
        let idle = Duration::from_millis(IDLE_PING_MS);
        let got = loop {
            let left = self.read_timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                break Err(ReadEnd::Timeout);
            }
            self.set_socket_timeout(left.min(idle));
            match self.recv_reply() {
                Err(ReadEnd::Timeout) if left > idle => {
                    if self.send_with_xid(xid::PING, &Request::Ping).is_err() {
                        break Err(ReadEnd::Closed);
                    }
                    self.idle_pings += 1;
                }
                got => break got,
            }
        };
        self.restore_socket_timeout();
        got
    }

    /// `call` and decode.
    pub fn call_decoded(&mut self, req: &Request) -> Result<Decoded, ReadEnd> {
        let reply = self.call(req)?;
        Ok(decode_reply(req.opcode(), &reply))
    }

    /// Waits until a watch event is available (or the timeout passes) and takes it.
    pub fn wait_event(&mut self, timeout: Duration) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.set_socket_timeout(timeout);
        let got = self.read_frame();
        self.restore_socket_timeout();
        let frame = got.ok()?;
        let mut r = Reader::new(&frame);
        let h = ReplyHeader::decode(&mut r).ok()?;
        assert_eq!(
            h.xid,
            xid::NOTIFICATION,
            "expected an event, got a reply {h:?}"
        );
        Some(Event {
            zxid: h.zxid,
            event_type: r.i32().ok()?,
            state: r.i32().ok()?,
            path: r.string().ok()?,
        })
    }

    /// Waits up to `timeout` for the server to close this connection; returns
    /// the frames that arrived before the close, or `Err` with how it ended.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<Vec<Vec<u8>>, ReadEnd> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadEnd::Timeout);
            }
            self.set_socket_timeout(left);
            match self.read_frame() {
                Ok(f) => frames.push(f),
                Err(ReadEnd::Closed) => return Ok(frames),
                Err(ReadEnd::Garbled(_)) => {
                    // Keep draining until the close.
                }
                Err(ReadEnd::Timeout) => return Err(ReadEnd::Timeout),
            }
        }
    }

    /// Raw bytes until the server closes (a four-letter word's answer), bounded by
    /// `timeout` and RAW_FRAME_BYTES_MAX.
    pub fn read_until_closed(&mut self, timeout: Duration) -> Result<Vec<u8>, ReadEnd> {
        let deadline = Instant::now() + timeout;
        let mut out = std::mem::take(&mut self.partial);
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || out.len() > RAW_FRAME_BYTES_MAX {
                return Err(ReadEnd::Timeout);
            }
            self.set_socket_timeout(left);
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Err(ReadEnd::Timeout)
                }
                Err(_) => return Ok(out),
            }
        }
    }

    /// Sends closeSession and waits for its reply.
    pub fn close_session(&mut self) -> Result<Reply, ReadEnd> {
        self.call(&Request::CloseSession)
    }

    /// Authenticates with `digest user:password`; returns the reply's error code.
    pub fn add_digest_auth(&mut self, user: &str, password: &str) -> i32 {
        let req = Request::Auth {
            auth_type: 0,
            scheme: "digest".into(),
            auth: format!("{user}:{password}").into_bytes(),
        };
        self.call(&req).expect("auth reply").err
    }
}

/// Reads from `s` onto `buf` until it holds `len` bytes (never past them); on a
/// timeout what was read stays in `buf`.
fn fill_to(s: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> Result<(), ReadEnd> {
    let mut chunk = [0u8; 16 * 1024];
    while buf.len() < len {
        let want = (len - buf.len()).min(chunk.len());
        match s.read(&mut chunk[..want]) {
            Ok(0) => return Err(ReadEnd::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(ReadEnd::Timeout)
            }
            Err(_) => return Err(ReadEnd::Closed),
        }
    }
    Ok(())
}

/// A reply, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// err 0 and a body that decodes completely for the request's opcode.
    Ok(Response),
    /// err ≠ 0, with whatever body came along (the reference sends none, mostly).
    Err(i32, Vec<u8>),
    /// err 0 but the body does not decode, or has bytes left over.
    Bad(String),
}

/// A Debug rendering cut to a readable length (replies can carry a megabyte).
pub fn short(v: &impl std::fmt::Debug) -> String {
    let s = format!("{v:?}");
    if s.len() > 400 {
        format!("{}… ({} chars)", &s[..400], s.len())
    } else {
        s
    }
}

/// Decodes a reply to a request with `opcode`.
pub fn decode_reply(opcode: i32, reply: &Reply) -> Decoded {
    if reply.err != 0 {
        return Decoded::Err(reply.err, reply.body.clone());
    }
    let mut r = Reader::new(&reply.body);
    match decode_body(opcode, &mut r) {
        Ok(resp) if r.is_empty() => Decoded::Ok(resp),
        Ok(resp) => Decoded::Bad(format!(
            "{} bytes left after {resp:?}: {:02x?}",
            r.remaining(),
            &reply.body[r.position()..]
        )),
        Err(e) => Decoded::Bad(format!("{e}; body {:02x?}", reply.body)),
    }
}

/// Decodes the body of a successful reply to a request with `opcode`.
pub fn decode_body(opcode: i32, r: &mut Reader<'_>) -> Result<Response, DecodeError> {
    Ok(match opcode {
        op::CREATE => Response::Create { path: r.string()? },
        op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => Response::Create2 {
            path: r.string()?,
            stat: Stat::decode(r)?,
        },
        op::EXISTS | op::SET_DATA | op::SET_ACL => Response::Stat(Stat::decode(r)?),
        op::GET_DATA => Response::Data {
            data: r.opt_bytes()?,
            stat: Stat::decode(r)?,
        },
        op::GET_ACL => Response::Acl {
            acl: Acl::decode_list(r)?,
            stat: Stat::decode(r)?,
        },
        op::GET_CHILDREN => Response::Children(r.strings()?),
        op::GET_CHILDREN2 => Response::Children2 {
            children: r.strings()?,
            stat: Stat::decode(r)?,
        },
        op::SYNC => Response::Sync { path: r.string()? },
        op::GET_EPHEMERALS => Response::Ephemerals(r.strings()?),
        op::GET_ALL_CHILDREN_NUMBER => Response::AllChildrenNumber(r.i32()?),
        // addWatch answers an ErrorResponse{err = 0}: a 4-byte body.
        op::ADD_WATCH => match r.i32()? {
            0 => Response::Empty,
            other => {
                return Err(DecodeError::BadEnum {
                    what: "addWatch reply code",
                    value: other,
                })
            }
        },
        op::WHO_AM_I => Response::WhoAmI(r.vec(|r| Ok((r.string()?, r.string()?)))?),
        op::MULTI | op::MULTI_READ => {
            let mut results = Vec::new();
            loop {
                let t = r.i32()?;
                let done = r.bool()?;
                let err = r.i32()?;
                if done {
                    break;
                }
                if t == op::ERROR {
                    let code = r.i32()?;
                    let _ = err;
                    results.push(OpResult::Err(ErrorCode::from_code(code).ok_or(
                        DecodeError::BadEnum {
                            what: "error code",
                            value: code,
                        },
                    )?));
                } else {
                    results.push(OpResult::Ok(t, decode_body(t, r)?));
                }
            }
            Response::Multi(results)
        }
        _ => Response::Empty,
    })
}

/// The current wall clock in ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Plausibility window for znode times: within this many ms of the test's clock.
pub const TIME_SLACK_MS: i64 = 10 * 60 * 1000;

/// Maps server-specific values (zxids, times, session ids) to comparable ones:
/// zxids to their order of first appearance, times to 0 once checked plausible,
/// session ids to the order in which the test registered them.
#[derive(Default)]
pub struct Normalizer {
    zxids: HashMap<i64, i64>,
    sessions: HashMap<i64, i64>,
}

impl Normalizer {
    /// Registers a session id; ephemeralOwner values of it normalise to `index`.
    pub fn register_session(&mut self, session_id: i64, index: i64) {
        self.sessions.insert(session_id, index);
    }

    pub fn zxid(&mut self, z: i64) -> i64 {
        if z <= 0 {
            return z;
        }
        let n = self.zxids.len() as i64 + 1;
        *self.zxids.entry(z).or_insert(n)
    }

    fn time(&self, t: i64, zxid: i64) -> i64 {
        let now = now_ms();
        if zxid == 0 && t == 0 {
            return 0;
        }
        if (now - TIME_SLACK_MS..=now + TIME_SLACK_MS).contains(&t) {
            0
        } else {
            t // implausible: keep it so the comparison shows it
        }
    }

    pub fn stat(&mut self, s: &Stat) -> Stat {
        let czxid = self.zxid(s.czxid);
        let mzxid = self.zxid(s.mzxid);
        let pzxid = self.zxid(s.pzxid);
        let mut ctime = self.time(s.ctime, s.czxid);
        let mut mtime = self.time(s.mtime, s.mzxid);
        if s.mtime < s.ctime {
            // mtime before ctime: show both raw values.
            ctime = s.ctime;
            mtime = s.mtime;
        }
        if s.czxid == s.mzxid && s.ctime != s.mtime {
            ctime = s.ctime;
            mtime = s.mtime;
        }
        let ephemeral_owner = if s.ephemeral_owner == 0 {
            0
        } else {
            match self.sessions.get(&s.ephemeral_owner) {
                Some(i) => 1000 + i,
                None => s.ephemeral_owner, // unknown owner: raw, so it shows
            }
        };
        Stat {
            czxid,
            mzxid,
            ctime,
            mtime,
            ephemeral_owner,
            pzxid,
            ..*s
        }
    }

    /// Normalises a response; children and ephemeral lists are sorted.
    pub fn response(&mut self, r: &Response) -> Response {
        match r {
            Response::Empty => Response::Empty,
            Response::AddWatch => Response::AddWatch,
            Response::Create { path } => Response::Create { path: path.clone() },
            Response::Create2 { path, stat } => Response::Create2 {
                path: path.clone(),
                stat: self.stat(stat),
            },
            Response::Stat(s) => Response::Stat(self.stat(s)),
            Response::Data { data, stat } => Response::Data {
                data: data.clone(),
                stat: self.stat(stat),
            },
            Response::Acl { acl, stat } => Response::Acl {
                acl: acl.clone(),
                stat: self.stat(stat),
            },
            Response::Children(c) => Response::Children(sorted(c)),
            Response::Children2 { children, stat } => Response::Children2 {
                children: sorted(children),
                stat: self.stat(stat),
            },
            Response::Sync { path } => Response::Sync { path: path.clone() },
            Response::Ephemerals(c) => Response::Ephemerals(sorted(c)),
            Response::AllChildrenNumber(n) => Response::AllChildrenNumber(*n),
            Response::WhoAmI(ids) => {
                let mut v = ids.clone();
                v.sort();
                Response::WhoAmI(v)
            }
            Response::Multi(results) => Response::Multi(
                results
                    .iter()
                    .map(|o| match o {
                        OpResult::Ok(t, resp) => OpResult::Ok(*t, self.response(resp)),
                        OpResult::Err(e) => OpResult::Err(*e),
                    })
                    .collect(),
            ),
        }
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// The digest ACL id for `user:password`: `user:base64(sha1("user:password"))`.
pub fn digest_id(user: &str, password: &str) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// Runs named test cases one after another, catching each one's panic, and
/// panics at the end listing every case that failed. Lets one server process
/// (the reference JVM takes seconds to start) serve many independent cases.
pub struct Suite<'a> {
    pub name: String,
    failures: Vec<(String, String)>,
    passed: usize,
    server: Option<&'a Server>,
}

impl<'a> Suite<'a> {
    pub fn new(name: impl Into<String>) -> Suite<'a> {
        Suite {
            name: name.into(),
            failures: Vec::new(),
            passed: 0,
            server: None,
        }
    }

    /// A suite whose cases fail at once, without running, after `server` exits.
    pub fn for_server(name: impl Into<String>, server: &'a Server) -> Suite<'a> {
        Suite {
            server: Some(server),
            ..Suite::new(name)
        }
    }

    pub fn case(&mut self, name: &str, f: impl FnOnce()) {
        if let Some(status) = self.server.and_then(|s| s.exit_status()) {
            let msg = format!(
                "not run: the {} server has exited ({status})",
                self.server.unwrap().kind
            );
            eprintln!("[{}] FAIL {name}: {msg}", self.name);
            self.failures.push((name.to_string(), msg));
            return;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(()) => {
                self.passed += 1;
                eprintln!(
                    "[{}] ok   {name} ({} ms)",
                    self.name,
                    started.elapsed().as_millis()
                );
            }
            Err(p) => {
                let msg = if let Some(s) = p.downcast_ref::<String>() {
                    s.clone()
                } else if let Some(s) = p.downcast_ref::<&str>() {
                    s.to_string()
                } else {
                    "panic".to_string()
                };
                eprintln!("[{}] FAIL {name}: {msg}", self.name);
                self.failures.push((name.to_string(), msg));
            }
        }
    }

    /// Panics if any case failed.
    pub fn finish(self) {
        if self.failures.is_empty() {
            eprintln!("[{}] all {} cases passed", self.name, self.passed);
            return;
        }
        let mut msg = format!(
            "{}: {} of {} cases failed:\n",
            self.name,
            self.failures.len(),
            self.failures.len() + self.passed
        );
        for (n, m) in &self.failures {
            msg.push_str(&format!("  - {n}: {m}\n"));
        }
        panic!("{msg}");
    }
}

/// A loopback TCP forwarder in front of a server, so a test can cut a client's
/// connection (the client reconnects to the same session) or refuse connections
/// for a while (the session expires). Threads: one acceptor, two copiers per
/// connection; all stop when the proxy is dropped.
pub struct Proxy {
    pub port: u16,
    state: std::sync::Arc<ProxyState>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

struct ProxyState {
    target: String,
    conns: Mutex<Vec<TcpStream>>,
    blocked: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
}

impl Proxy {
    pub fn new(target: &str) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(ProxyState {
            target: target.to_string(),
            conns: Mutex::new(Vec::new()),
            blocked: Default::default(),
            stop: Default::default(),
        });
        let st = state.clone();
        let acceptor = std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = incoming else { continue };
                if st.blocked.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(&st.target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                {
                    let mut conns = st.conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(upstream.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            port,
            state,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the proxy.
    pub fn cut(&self) {
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// While blocked, new connections are closed at once.
    pub fn set_blocked(&self, blocked: bool) {
        self.state
            .blocked
            .store(blocked, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// How long a test waits for corral to write a snapshot, and how often it looks.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);
pub const SNAPSHOT_POLL: Duration = Duration::from_millis(50);

/// The newest of corral's snapshot files (named `snapshot.<zxid hex>`), by zxid.
pub fn newest_snapshot_zxid(dir: &Path) -> Option<i64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            let hex = name.strip_prefix("snapshot.")?;
            (!hex.ends_with(".tmp"))
                .then(|| u64::from_str_radix(hex, 16).ok())
                .flatten()
        })
        .map(|z| z as i64)
        .max()
}

impl Server {
    /// mntr's `zk_approximate_data_size`.
    pub fn approximate_data_size(&self) -> String {
        let text = four_letter_word(&self.addr(), "mntr").expect("mntr");
        text.lines()
            .find_map(|l| l.strip_prefix("zk_approximate_data_size\t"))
            .unwrap_or_else(|| panic!("no zk_approximate_data_size in mntr:\n{text}"))
            .trim()
            .to_string()
    }

    /// Waits (bounded) until corral has written a snapshot at or past `zxid`.
    pub fn wait_for_snapshot_past(&self, zxid: i64) {
        let deadline = Instant::now() + SNAPSHOT_WAIT;
        while newest_snapshot_zxid(&self.data_dir()).is_none_or(|z| z < zxid) {
            assert!(
                Instant::now() < deadline,
                "no snapshot past {zxid:#x}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(SNAPSHOT_POLL);
        }
    }

    /// The snapshot named by corral's last "recovered to zxid" log line ("none"
    /// for a log-only recovery).
    pub fn recovered_from(&self) -> String {
        let log = self.log();
        let line = log
            .lines()
            .rfind(|l| l.contains("recovered to zxid"))
            .unwrap_or_else(|| panic!("no recovery line; log:\n{}", self.log_tail()))
            .to_string();
        line.split("snapshot ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("no snapshot in {line:?}"))
            .to_string()
    }
}

// ---- what a client sees of a tree (zk_snapshot, zk_data_dir) --------------------------

/// What a client can see of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `None`: null data, which both servers must keep apart from empty.
    pub data: Option<Vec<u8>>,
    pub stat: corral::proto::Stat,
    pub acl: Vec<corral::proto::Acl>,
    pub children: Vec<String>,
}

/// The reply of a request that must succeed.
pub fn ok_reply(c: &mut RawClient, req: Request) -> Response {
    match c.call_decoded(&req).expect("reply") {
        Decoded::Ok(r) => r,
        other => panic!("{req:?}: {other:?}"),
    }
}

/// Data, Stat, ACL and sorted children of `path`.
pub fn see(c: &mut RawClient, path: &str) -> Seen {
    let (data, stat) = match ok_reply(
        c,
        Request::GetData {
            path: path.into(),
            watch: false,
        },
    ) {
        Response::Data { data, stat } => (data, stat),
        r => panic!("getData {path}: {r:?}"),
    };
    let acl = match ok_reply(c, Request::GetAcl { path: path.into() }) {
        Response::Acl { acl, .. } => acl,
        r => panic!("getACL {path}: {r:?}"),
    };
    let mut children = match ok_reply(
        c,
        Request::GetChildren {
            path: path.into(),
            watch: false,
        },
    ) {
        Response::Children(v) => v,
        r => panic!("getChildren {path}: {r:?}"),
    };
    children.sort();
    Seen {
        data,
        stat,
        acl,
        children,
    }
}

/// The path of `child` under `parent`.
pub fn child_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Every node the server holds, read through the client.
pub fn walk_nodes(c: &mut RawClient) -> std::collections::BTreeMap<String, Seen> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec!["/".to_string()];
    while let Some(p) = todo.pop() {
        let s = see(c, &p);
        todo.extend(s.children.iter().map(|k| child_path(&p, k)));
        out.insert(p, s);
    }
    out
}

/// Two trees hold the same paths, and every node the same Stat, data, ACL and
/// children.
pub fn assert_same_nodes(
    want: &std::collections::BTreeMap<String, Seen>,
    got: &std::collections::BTreeMap<String, Seen>,
    what: &str,
) {
    let wk: Vec<&String> = want.keys().collect();
    let gk: Vec<&String> = got.keys().collect();
    assert_eq!(wk, gk, "{what}: node paths");
    let show = |d: &Option<Vec<u8>>| {
        d.as_ref()
            .map_or("null".into(), |d| format!("{} bytes", d.len()))
    };
    for (p, w) in want {
        let g = &got[p];
        assert_eq!(w.stat, g.stat, "{what}: {p} Stat");
        assert!(
            w.data == g.data,
            "{what}: {p} data ({} vs {})",
            show(&w.data),
            show(&g.data)
        );
        assert_eq!(w.acl, g.acl, "{what}: {p} ACL");
        assert_eq!(w.children, g.children, "{what}: {p} children");
    }
}
