//! Disk-full test for corral's log: the data and log dirs live on a small tmpfs
//! (as root; otherwise the test prints a loud `SKIPPED:` line and passes, or fails
//! under CI, which runs as root) and
//! `corral.logSegmentBytes` is larger than the space left after the first
//! segment, so preallocating the next segment fails. Writes must then fail with
//! an error reply (SystemError, −1) instead of hanging or being acknowledged;
//! reads must keep working; after a SIGKILL, the tmpfs grown and a restart, every
//! acknowledged write must be there and no write answered with an error may be.
//!
//! Runs on the test thread: one blocking raw client ([`common::RawClient`]) keeps
//! [`PIPELINE_DEPTH`] version-checked setData requests in flight over
//! [`KEYS`] keys with 1 KiB values and keeps a model of every acknowledged value.
//! The tmpfs is mounted and always unmounted by a Drop guard ([`TmpfsMount`]).

mod common;

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{decode_reply, four_letter_word, free_port, Decoded, RawClient, ReadEnd};
use corral::proto::{
    op, Acl, ConnectRequest, ConnectResponse, CreateKind, CreateRequest, ErrorCode, Reader,
    Request, Response,
};

/// Size of the tmpfs the server starts on.
const TMPFS_SMALL: &str = "8m";
/// Size it is grown to for the restart.
const TMPFS_BIG: &str = "64m";
/// Log segment size: the first segment fits the small tmpfs, a second does not.
const LOG_SEGMENT_BYTES: u64 = 5 << 20;
/// Keys written round-robin.
const KEYS: usize = 32;
/// Value size of each write.
const VALUE_BYTES: usize = 1024;
/// setData requests kept in flight.
const PIPELINE_DEPTH: usize = 8;
/// Writes sent before giving up on seeing the disk fill (≈ 3 segments' worth).
const WRITES_MAX: usize = 3 * (LOG_SEGMENT_BYTES as usize / VALUE_BYTES);
/// Writes sent after the first failure; each must be answered, none acknowledged.
const WRITES_AFTER_FULL: usize = 50;
/// How long a reply may take before the server counts as hung.
const REPLY_TIMEOUT_MS: u64 = 30_000;
/// Start-up bound, spawn to serving.
const START_TIMEOUT_MS: u64 = 60_000;

/// A tmpfs mounted on a fresh temp dir; unmounted (lazily if busy) on drop.
struct TmpfsMount {
    dir: Option<tempfile::TempDir>,
}

impl TmpfsMount {
    fn mount(size: &str) -> Result<TmpfsMount, String> {
        let dir = tempfile::Builder::new()
            .prefix("corral-diskfull-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TmpfsMount { dir: Some(dir) })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let path = self.path().to_path_buf();
        let ok = Command::new("umount")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("[umount {} failed; detaching it lazily]", path.display());
            let _ = Command::new("umount").arg("-l").arg(&path).status();
        }
        // The now empty mount point goes with the TempDir.
        drop(self.dir.take());
    }
}

/// True when running as root; otherwise prints the loud SKIPPED line, or fails
/// under CI (`CI` set), which runs as root.
fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("the disk-full test needs root (mount -t tmpfs), and CI runs as root");
    }
    eprintln!("\n==============================================================");
    eprintln!("SKIPPED: disk-full test needs root (mount -t tmpfs)");
    eprintln!("==============================================================");
    false
}

/// A corral process on given data and log dirs, restartable; killed on drop.
struct Corral {
    files: tempfile::TempDir,
    port: u16,
    cfg_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Corral {
    fn new(data: &Path, datalog: &Path, cfg_extra: &str) -> Corral {
        std::fs::create_dir_all(data).unwrap();
        std::fs::create_dir_all(datalog).unwrap();
        let files = tempfile::Builder::new()
            .prefix("corral-diskfull-cfg-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let cfg = format!(
            "tickTime=500\ndataDir={}\ndataLogDir={}\nclientPort={port}\n\
             clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nminSessionTimeout=1000\n\
             maxSessionTimeout=30000\n4lw.commands.whitelist=*\n{cfg_extra}\n",
            data.display(),
            datalog.display()
        );
        let cfg_path = files.path().join("corral.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log_path = files.path().join("server.log");
        Corral {
            files,
            port,
            cfg_path,
            log_path,
            child: None,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts and waits until the sequencer answers a session request (a reattach
    /// of a session that does not exist: no txn); retries while the port is held.
    fn start(&mut self) {
        for _attempt in 0..50 {
            let mut log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .unwrap();
            writeln!(log, "===== test: start =====").unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_corral"))
                .arg("server")
                .arg("--config")
                .arg(&self.cfg_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .current_dir(self.files.path())
                .spawn()
                .expect("spawn corral");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
            loop {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    self.child = None;
                    let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
                    let last = log.rsplit("===== test: start =====").next().unwrap_or("");
                    if last.contains("in use") {
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                    panic!("corral exited during start-up ({status}):\n{last}");
                }
                if four_letter_word(&self.addr(), "ruok").ok().as_deref() == Some("imok")
                    && probe(&self.addr(), deadline)
                {
                    return;
                }
                assert!(Instant::now() < deadline, "corral did not start in time");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("corral could not bind its port");
    }

    fn kill(&mut self) {
        let mut child = self.child.take().expect("not running");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("corral died on its own ({status}):\n{}", self.log());
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "----- corral log, last 60 lines -----\n{}\n----- end -----",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

/// A session request the sequencer answers without a txn: true once it does.
fn probe(addr: &str, deadline: Instant) -> bool {
    let req = ConnectRequest {
        session_id: 0x7eee_eeee_eeee_eeee,
        ..ConnectRequest::new_session(30_000)
    };
    let Ok(stream) = RawClient::connect_tcp(addr) else {
        return false;
    };
    let mut c = RawClient::from_stream(stream);
    let mut body = Vec::new();
    req.encode(&mut body);
    if c.send_frame(&body).is_err() {
        return false;
    }
    c.set_read_timeout(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    );
    match c.read_frame() {
        Ok(frame) => ConnectResponse::decode(&mut Reader::new(&frame)).is_ok(),
        Err(_) => false,
    }
}

fn key_path(k: usize) -> String {
    format!("/full/k{k:02}")
}

/// What each key holds: the last acknowledged (data, version).
type Model = Vec<(Vec<u8>, i32)>;

fn verify(c: &mut RawClient, model: &Model, context: &str) {
    for (k, (data, version)) in model.iter().enumerate() {
        let req = Request::GetData {
            path: key_path(k),
            watch: false,
        };
        match c.call_decoded(&req).expect("getData reply") {
            Decoded::Ok(Response::Data { data: d, stat }) => {
                let d = d.expect("this test never writes null data");
                assert!(
                    &d == data && stat.version == *version,
                    "DURABILITY FAILURE ({context}): {} acknowledged version {version} with {} \
                 bytes ({:?}…), found version {} with {} bytes ({:?}…)",
                    key_path(k),
                    data.len(),
                    String::from_utf8_lossy(&data[..data.len().min(16)]),
                    stat.version,
                    d.len(),
                    String::from_utf8_lossy(&d[..d.len().min(16)]),
                )
            }
            other => panic!("({context}) getData {}: {other:?}", key_path(k)),
        }
    }
}

#[test]
fn writes_fail_cleanly_when_the_log_disk_is_full() {
    if !require_root() {
        return;
    }
    let mount = match TmpfsMount::mount(TMPFS_SMALL) {
        Ok(m) => m,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("cannot mount a tmpfs for the disk-full test under CI: {e}")
        }
        Err(e) => {
            eprintln!("\n==============================================================");
            eprintln!("SKIPPED: cannot mount a tmpfs for the disk-full test: {e}");
            eprintln!("==============================================================");
            return;
        }
    };
    // Declared after the mount so it is dropped (killed) before the unmount.
    let mut server = Corral::new(
        &mount.path().join("data"),
        &mount.path().join("datalog"),
        &format!("corral.logSegmentBytes={LOG_SEGMENT_BYTES}\n"),
    );
    server.start();
    let addr = server.addr();
    let mut c = RawClient::connect(&addr, 30_000);
    c.set_read_timeout(Duration::from_millis(REPLY_TIMEOUT_MS));

    let mut model: Model = Vec::with_capacity(KEYS);
    for path in std::iter::once("/full".to_string()).chain((0..KEYS).map(key_path)) {
        let req = Request::Create(CreateRequest {
            kind: CreateKind::Create2,
            path: path.clone(),
            data: Some(Vec::new()),
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        });
        let r = c.call(&req).expect("create reply");
        assert_eq!(r.err, 0, "create {path}: {r:?}");
        if path != "/full" {
            model.push((Vec::new(), 0));
        }
    }

    // Load until the first error reply, then WRITES_AFTER_FULL more.
    let mut in_flight: VecDeque<(i32, usize, Vec<u8>, i32)> = VecDeque::new();
    let mut key_busy = [false; KEYS];
    let (mut sent, mut acked, mut failed) = (0usize, 0usize, 0usize);
    let mut acked_after_failure = 0usize;
    let mut first_failure_at: Option<usize> = None;
    let mut next_key = 0;
    loop {
        let limit = match first_failure_at {
            Some(at) => at + WRITES_AFTER_FULL,
            None => WRITES_MAX,
        };
        while sent < limit && in_flight.len() < PIPELINE_DEPTH && !key_busy[next_key] {
            let k = next_key;
            next_key = (next_key + 1) % KEYS;
            let mut data = format!("{}#{sent}:", key_path(k)).into_bytes();
            data.resize(VALUE_BYTES, b'v');
            let version = model[k].1;
            let req = Request::SetData {
                path: key_path(k),
                data: Some(data.clone()),
                version,
            };
            let xid = c.send(&req).expect("send setData");
            in_flight.push_back((xid, k, data, version + 1));
            key_busy[k] = true;
            sent += 1;
        }
        let Some((xid, k, data, new_version)) = in_flight.pop_front() else {
            break;
        };
        let reply = match c.recv_reply() {
            Ok(r) => r,
            Err(ReadEnd::Timeout) => panic!(
                "the server hung: no reply within {REPLY_TIMEOUT_MS} ms after {sent} writes \
                 ({acked} acknowledged, {failed} failed)\n{}",
                server.log()
            ),
            Err(e) => panic!(
                "connection lost after {sent} writes: {e:?}\n{}",
                server.log()
            ),
        };
        assert_eq!(reply.xid, xid, "reply out of order");
        key_busy[k] = false;
        match decode_reply(op::SET_DATA, &reply) {
            Decoded::Ok(Response::Stat(stat)) => {
                if first_failure_at.is_some() {
                    acked_after_failure += 1;
                }
                assert_eq!(stat.version, new_version, "setData {}", key_path(k));
                model[k] = (data, new_version);
                acked += 1;
            }
            Decoded::Err(e, _) => {
                assert_eq!(
                    e,
                    ErrorCode::SystemError.code(),
                    "a write on a full disk failed with {e}, not SystemError (-1) (BadVersion, \
                     -103, would mean a write answered with an error was applied after all)"
                );
                failed += 1;
                first_failure_at.get_or_insert(sent);
            }
            other => panic!("setData {}: {other:?}", key_path(k)),
        }
    }
    assert!(
        first_failure_at.is_some(),
        "{sent} writes of {VALUE_BYTES} bytes on a {TMPFS_SMALL} tmpfs with \
         {LOG_SEGMENT_BYTES}-byte segments and none failed"
    );
    eprintln!(
        "[disk_full] {sent} writes sent: {acked} acknowledged, {failed} failed with SystemError \
         (first failure after {} writes; {acked_after_failure} acknowledged after it)",
        first_failure_at.unwrap()
    );

    // Reads still work and show exactly the acknowledged state.
    verify(&mut c, &model, "reads on the full disk");
    drop(c);

    server.kill();
    mount.resize(TMPFS_BIG);
    server.start();
    let mut c = RawClient::connect(&addr, 30_000);
    c.set_read_timeout(Duration::from_millis(REPLY_TIMEOUT_MS));
    verify(&mut c, &model, "after restart with room");
    // And writing works again.
    let mut data = b"after the disk was grown".to_vec();
    data.resize(VALUE_BYTES, b'w');
    let req = Request::SetData {
        path: key_path(0),
        data: Some(data),
        version: model[0].1,
    };
    match c.call_decoded(&req).expect("setData reply") {
        Decoded::Ok(Response::Stat(stat)) => assert_eq!(stat.version, model[0].1 + 1),
        other => panic!("a write after the restart with room failed: {other:?}"),
    }
    drop(c);
    server.kill();
    drop(server);
    drop(mount);
}
