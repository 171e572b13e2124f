//! Starts a real server on a free 127.0.0.1 port for loadgen's integration tests,
//! and runs the loadgen binary with a hard time limit (a hang fails the test).
//!
//! Which server: `LOADGEN_TEST_SERVER=corral|zookeeper`, default [`DEFAULT_SERVER`].
//! A server that cannot be started here (binary not buildable, Java or the
//! ZooKeeper jars missing) makes the test return early with a loud message, or
//! fail under CI (`CI` set).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const DEFAULT_SERVER: &str = "corral";
/// How long a server may take to answer `ruok`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ServerProc {
    child: Child,
    pub addr: String,
    pub kind: &'static str,
    _dir: tempfile::TempDir,
}

impl ServerProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().unwrap().port()
}

fn write_cfg(dir: &Path, port: u16) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=*\nforceSync=yes\nmaxClientCnxns=0\n",
            data.display()
        ),
    )
    .unwrap();
    cfg
}

/// Starts the server chosen by `LOADGEN_TEST_SERVER`, or returns `None` (after
/// printing why) when it cannot run on this machine.
pub fn start_server() -> Option<ServerProc> {
    let kind = std::env::var("LOADGEN_TEST_SERVER").unwrap_or_else(|_| DEFAULT_SERVER.into());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_cfg(dir.path(), port);
    let (kind, mut cmd): (&'static str, Command) = match kind.as_str() {
        "corral" => {
            let bin = corral_binary()?;
            let mut c = Command::new(bin);
            c.arg("server").arg("--config").arg(&cfg);
            ("corral", c)
        }
        "zookeeper" => {
            let Some(cp) = zookeeper_classpath() else {
                skip("Apache ZooKeeper jars or java not found (apt-get install zookeeper)");
                return None;
            };
            let mut c = Command::new("java");
            c.args([
                "-Xmx512m",
                "-cp",
                &cp,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            ])
            .arg(&cfg);
            ("zookeeper", c)
        }
        other => panic!("LOADGEN_TEST_SERVER={other}: expected corral or zookeeper"),
    };
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {kind}: {e}"));
    let mut srv = ServerProc {
        child,
        addr: format!("127.0.0.1:{port}"),
        kind,
        _dir: dir,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        // ruok says the process is up; ZooKeeper answers it before it accepts
        // sessions, so also wait for a handshake to succeed.
        if let Ok(answer) = loadgen::setup::four_letter(&srv.addr, "ruok", Duration::from_secs(2)) {
            if answer == "imok" {
                if let Ok(c) =
                    loadgen::setup::SyncClient::connect(&srv.addr, Duration::from_secs(2))
                {
                    let _ = c.close();
                    return Some(srv);
                }
            }
        }
        if let Ok(Some(st)) = srv.child.try_wait() {
            let log =
                std::fs::read_to_string(srv._dir.path().join("server.log")).unwrap_or_default();
            panic!("{kind} exited with {st} before serving; log:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "{kind} did not answer ruok within {READY_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A prerequisite is missing: a loud SKIPPED line, or a failure under CI.
fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why} (required under CI)");
    }
    eprintln!("!!!!! SKIPPED: {why}");
}

fn zookeeper_classpath() -> Option<String> {
    let jars = [
        "zookeeper.jar",
        "zookeeper-jute.jar",
        "slf4j-api.jar",
        "slf4j-simple.jar",
        "metrics-core.jar",
        "commons-cli.jar",
        "snappy-java.jar",
        "jackson-databind.jar",
        "jackson-core.jar",
        "jackson-annotations.jar",
        "netty-handler.jar",
        "netty-common.jar",
        "netty-buffer.jar",
        "netty-transport.jar",
        "netty-codec.jar",
        "netty-resolver.jar",
        "netty-transport-native-epoll.jar",
        "netty-transport-native-unix-common.jar",
    ];
    let dir = Path::new("/usr/share/java");
    if !dir.join("zookeeper.jar").exists() || Command::new("java").arg("-version").output().is_err()
    {
        return None;
    }
    let cp: Vec<String> = jars
        .iter()
        .map(|j| dir.join(j))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    Some(cp.join(":"))
}

/// The corral binary beside loadgen's in cargo's target dir, always brought up to
/// date first (cargo does nothing when it already is), so a test never runs a stale
/// server.
fn corral_binary() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_loadgen"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = dir.join("corral");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--quiet", "-p", "corral", "--bin", "corral"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok || !bin.exists() {
        skip(&format!(
            "the corral binary could not be built at {}",
            bin.display()
        ));
        return None;
    }
    Some(bin)
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs loadgen with `args`; fails the test if it runs longer than `limit`.
pub fn loadgen(args: &[&str], limit: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let err_path = dir.path().join("err");
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .arg("--no-progress")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn loadgen");
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loadgen {args:?} still running after {limit:?} (hang); stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
        elapsed: t.elapsed(),
    }
}

/// A root path no other test (or earlier run) uses.
pub fn unique_root(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("/lgtest-{name}-{}-{nanos}", std::process::id())
}
