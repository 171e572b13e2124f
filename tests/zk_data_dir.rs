//! corral started on an Apache ZooKeeper data directory, and back (issue 12).
//!
//! The reference (Debian ZooKeeper 3.8.0, standalone, `snapCount=10` so it rolls
//! snapshots often) builds a tree: sequential, ACL'd, null-data, empty and container
//! nodes, an ephemeral of a session still live when it is killed, and log entries
//! after its newest snapshot. Then corral starts on the same zoo.cfg and must serve
//! every node with the same data, Stat and ACL, the same last zxid and the session
//! (whose ephemeral goes when the session expires), without changing a byte of the
//! reference's files; restarted, it serves from its own files; `corral export` writes
//! a snapshot the reference starts from and serves the same tree again; and once the
//! reference writes after that, corral refuses to start on the dir, saying why.
//! Corrupt and truncated reference files are checked on copies, with the library:
//! the exact error names the file and byte offset, a torn last entry is dropped as
//! the reference drops it, and a bad newest snapshot falls back to an older one.
//!
//! Skips with a loud SKIPPED line without java and the jar, fails under CI.

mod common;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    assert_same_nodes, digest_id, four_letter_word, free_port, ok_reply, reference_command,
    require_reference, walk_nodes, Kind, RawClient, Seen, Server,
};
use corral::proto::{perms, Acl, ConnectRequest, CreateKind, CreateRequest, Request, Response};
use corral::storage::zkdir::{self, ZkDataDirs};

const SUPER_PASSWORD: &str = "zkdata";
const MAIN_TIMEOUT_MS: i32 = 30_000;
/// The live session whose ephemeral must survive the move, then expire.
const LIVE_TIMEOUT_MS: i32 = 8_000;
/// Bound on the extra writes that make the reference roll a snapshot.
const PAD_WRITES_COUNT_MAX: usize = 300;
/// Bound on waiting for the live session to expire on corral.
const EXPIRY_WAIT_MS: u64 = 60_000;

/// A home dir with one zoo.cfg both servers run on (only the port changes).
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn data(&self) -> PathBuf {
        self.path().join("data")
    }
    fn datalog(&self) -> PathBuf {
        self.path().join("datalog")
    }
    fn cfg_path(&self) -> PathBuf {
        self.path().join("zoo.cfg")
    }

    /// Writes zoo.cfg for `port`.
    fn write_cfg(&self, port: u16) {
        let cfg = format!(
            "tickTime=500\ndataDir={}\ndataLogDir={}\nclientPort={port}\n\
             clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nminSessionTimeout=1000\n\
             maxSessionTimeout=30000\n4lw.commands.whitelist=*\nadmin.enableServer=false\n\
             snapCount=10\nzookeeper.DigestAuthenticationProvider.superDigest={}\n",
            self.data().display(),
            self.datalog().display(),
            digest_id("super", SUPER_PASSWORD)
        );
        std::fs::write(self.cfg_path(), cfg).unwrap();
    }

    fn start(&self, kind: Kind) -> Server {
        let port = free_port();
        self.write_cfg(port);
        let cmd = match kind {
            Kind::Reference => {
                let prop = format!(
                    "-Dzookeeper.DigestAuthenticationProvider.superDigest={}",
                    digest_id("super", SUPER_PASSWORD)
                );
                reference_command(&self.cfg_path(), &[prop])
            }
            Kind::Corral => common::corral_command(&self.cfg_path()),
        };
        let mut s = Server::launch(kind, cmd, port, self.path());
        s.wait_ready();
        s
    }
}

fn create(c: &mut RawClient, path: &str, data: Option<&[u8]>, flags: i32, acl: Vec<Acl>) -> String {
    let kind = if flags == 4 {
        CreateKind::Container
    } else {
        CreateKind::Create
    };
    match ok_reply(
        c,
        Request::Create(CreateRequest {
            kind,
            path: path.into(),
            data: data.map(<[u8]>::to_vec),
            acl,
            flags,
            ttl: -1,
        }),
    ) {
        Response::Create { path } | Response::Create2 { path, .. } => path,
        r => panic!("create {path}: {r:?}"),
    }
}

fn set(c: &mut RawClient, path: &str, data: &[u8]) {
    ok_reply(
        c,
        Request::SetData {
            path: path.into(),
            data: Some(data.to_vec()),
            version: -1,
        },
    );
}

fn walk(addr: &str) -> BTreeMap<String, Seen> {
    let mut c = RawClient::connect(addr, MAIN_TIMEOUT_MS);
    assert_eq!(c.add_digest_auth("super", SUPER_PASSWORD), 0);
    let out = walk_nodes(&mut c);
    let _ = c.close_session();
    out
}

/// `Zxid: 0x…` of `srvr`.
fn srvr_zxid(addr: &str) -> i64 {
    let s = four_letter_word(addr, "srvr").unwrap();
    let hex = s
        .lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x"))
        .unwrap_or_else(|| panic!("no Zxid in srvr: {s}"));
    i64::from_str_radix(hex.trim(), 16).unwrap()
}

/// `prefix.<hex>` files of `dir`, (zxid, path) ascending.
fn zk_files(dir: &Path, prefix: &str) -> Vec<(i64, PathBuf)> {
    let mut v: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| {
                let p = e.ok()?.path();
                let name = p.file_name()?.to_str()?.to_string();
                let z = i64::from_str_radix(name.strip_prefix(&format!("{prefix}."))?, 16).ok()?;
                Some((z, p))
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// path → (length, hash of the bytes) of every file under the two version-2 dirs.
fn fingerprint(home: &Home) -> BTreeMap<PathBuf, (u64, u64)> {
    let mut out = BTreeMap::new();
    for d in [home.data(), home.datalog()] {
        let Ok(rd) = std::fs::read_dir(d.join("version-2")) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            b.hash(&mut h);
            out.insert(p, (b.len() as u64, h.finish()));
        }
    }
    out
}

/// Builds the tree on the reference; returns the live session's id (still open).
fn build(addr: &str) -> (i64, RawClient, RawClient) {
    let mut c = RawClient::connect(addr, MAIN_TIMEOUT_MS);
    assert_eq!(c.add_digest_auth("u", "p"), 0);
    let open = Acl::open();
    create(&mut c, "/app", Some(b"hello"), 0, open.clone());
    for _ in 0..3 {
        create(&mut c, "/app/seq-", Some(b"s"), 2, open.clone());
    }
    create(
        &mut c,
        "/acl",
        Some(b"secret"),
        0,
        vec![Acl::new(perms::ALL, "auth", "")],
    );
    create(
        &mut c,
        "/ro",
        Some(b"r"),
        0,
        vec![Acl::new(perms::READ, "world", "anyone")],
    );
    create(&mut c, "/null", None, 0, open.clone());
    create(&mut c, "/empty", Some(b""), 0, open.clone());
    create(&mut c, "/cont", Some(b"c"), 4, open.clone());
    create(&mut c, "/cont/k", Some(b"k"), 0, open.clone());
    let req = ConnectRequest::new_session(LIVE_TIMEOUT_MS);
    let (mut live, resp) = RawClient::handshake(addr, &req).unwrap();
    create(&mut live, "/app/eph-live", Some(b"e"), 1, open.clone());
    for i in 0..3 {
        set(&mut c, "/app", format!("v{i}").as_bytes());
    }
    ok_reply(
        &mut c,
        Request::SetAcl {
            path: "/empty".into(),
            acl: vec![Acl::new(perms::READ | perms::WRITE, "world", "anyone")],
            version: -1,
        },
    );
    ok_reply(
        &mut c,
        Request::Delete {
            path: "/app/seq-0000000001".into(),
            version: -1,
        },
    );
    (resp.session_id, c, live)
}

/// Writes after the newest snapshot until it exists past snapshot.0 and the log
/// holds entries after it.
fn pad_until_log_after_snapshot(c: &mut RawClient, home: &Home, addr: &str) {
    let snap_dir = home.data().join("version-2");
    for i in 0..PAD_WRITES_COUNT_MAX {
        create(c, &format!("/pad-{i}"), Some(b"p"), 0, Acl::open());
        // A txn after the snapshot that is not a create: the log replays a setData.
        set(c, "/app/seq-0000000002", format!("after {i}").as_bytes());
        let last = srvr_zxid(addr);
        let newest = zk_files(&snap_dir, "snapshot").last().map_or(0, |s| s.0);
        if i >= 3 && newest > 0 && newest < last - 1 {
            return;
        }
    }
    panic!("the reference took no snapshot within {PAD_WRITES_COUNT_MAX} writes");
}

#[test]
fn corral_serves_a_reference_data_dir_and_exports_it_back() {
    if !require_reference() {
        return;
    }
    let _serial = common::reference_serial();
    let home = Home {
        dir: tempfile::Builder::new()
            .prefix("corral-zkdata-")
            .tempdir()
            .unwrap(),
    };

    // The reference builds the tree.
    let reference = home.start(Kind::Reference);
    let (live_id, mut main, _live) = build(&reference.addr());
    pad_until_log_after_snapshot(&mut main, &home, &reference.addr());
    let want = walk(&reference.addr());
    let last = srvr_zxid(&reference.addr());
    assert_eq!(want["/app/eph-live"].stat.ephemeral_owner, live_id);
    assert_eq!(want["/null"].data, None);
    assert_eq!(want["/empty"].data, Some(vec![]));
    reference.stop();
    let theirs = fingerprint(&home);
    let pristine = tempfile::tempdir().unwrap();
    copy_version2(&home, pristine.path());

    // corral on the same zoo.cfg: the same tree, zxid and sessions.
    let corral = home.start(Kind::Corral);
    assert_eq!(srvr_zxid(&corral.addr()), last, "last zxid");
    let got = walk(&corral.addr());
    assert_same_nodes(&want, &got, "corral on the reference's dir");
    let line = corral
        .log()
        .lines()
        .find(|l| l.contains("imported Apache ZooKeeper data"))
        .expect("an import line")
        .to_string();
    eprintln!("{line}");
    // From the newest snapshot (not snapshot.0), with log entries after it.
    let replayed: u64 = line
        .split(" log entr")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(replayed > 0 && !line.contains("snapshot.0,"), "{line}");
    assert_eq!(fingerprint(&home), theirs, "the reference's files changed");
    // The live session came along; without its client it expires, and its ephemeral goes.
    wait_gone(&corral.addr(), "/app/eph-live");
    let mut c = RawClient::connect(&corral.addr(), MAIN_TIMEOUT_MS);
    create(&mut c, "/after-import", Some(b"corral"), 0, Acl::open());
    let _ = c.close_session();
    let before_restart = walk(&corral.addr());
    corral.stop();

    // Restarted: corral's own files, no second import.
    let corral = home.start(Kind::Corral);
    // (server.log collects every start's output: only the first one imported.)
    assert_eq!(
        corral
            .log()
            .matches("imported Apache ZooKeeper data")
            .count(),
        1
    );
    let after_restart = walk(&corral.addr());
    assert_same_nodes(&before_restart, &after_restart, "corral restarted");
    corral.stop();
    assert_eq!(fingerprint(&home), theirs, "the reference's files changed");

    // Export, and the reference starts from it.
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("export")
        .arg("--config")
        .arg(home.cfg_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = fingerprint(&home);
    for (p, f) in &theirs {
        assert_eq!(now.get(p), Some(f), "{} changed by the export", p.display());
    }
    let added: Vec<&PathBuf> = now.keys().filter(|p| !theirs.contains_key(*p)).collect();
    assert_eq!(added.len(), 1, "{added:?}");
    let name = added[0].file_name().unwrap().to_str().unwrap();
    let corral_zxid = i64::from_str_radix(name.strip_prefix("snapshot.").unwrap(), 16).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(name),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let reference = home.start(Kind::Reference);
    assert_eq!(srvr_zxid(&reference.addr()), corral_zxid);
    let back = walk(&reference.addr());
    assert_same_nodes(&after_restart, &back, "the reference on corral's export");

    // The reference writes on: corral's files are now behind, and it says so.
    let mut c = RawClient::connect(&reference.addr(), MAIN_TIMEOUT_MS);
    create(&mut c, "/zk-again", Some(b"z"), 0, Acl::open());
    let zk_last = srvr_zxid(&reference.addr());
    reference.stop();
    let err = zkdir::adopt(&home.data(), &home.datalog())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}: Apache ZooKeeper wrote up to zxid {zk_last:#x} in {} after corral imported it \
             at zxid {last:#x}; corral's own files would ignore those writes. To serve \
             ZooKeeper's state, move corral's snapshot.*, log.*, zookeeper-import (and epoch \
             files) out of the data dir and start again (it is imported afresh); to keep \
             corral's state, move version-2/ out of the data dir",
            home.data().display(),
            home.data().join("version-2").display()
        )
    );

    faulty_files(pristine.path(), &want, last);
}

fn wait_gone(addr: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_millis(EXPIRY_WAIT_MS);
    let mut c = RawClient::connect(addr, MAIN_TIMEOUT_MS);
    loop {
        let r = c
            .call(&Request::Exists {
                path: path.into(),
                watch: false,
            })
            .unwrap();
        if r.err != 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still there after {EXPIRY_WAIT_MS} ms"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Copies both version-2 dirs of `home` under `to` (as `to/data`, `to/datalog`).
fn copy_version2(home: &Home, to: &Path) {
    for (from, name) in [(home.data(), "data"), (home.datalog(), "datalog")] {
        let dst = to.join(name).join("version-2");
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(from.join("version-2")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// A fresh copy of the pristine reference files: (data, datalog, its TempDir).
fn copy_of(pristine: &Path) -> (PathBuf, PathBuf, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    for name in ["data", "datalog"] {
        let dst = d.path().join(name).join("version-2");
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(pristine.join(name).join("version-2")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
    (d.path().join("data"), d.path().join("datalog"), d)
}

/// (offset, length) of every entry frame of a reference log file.
fn frames(path: &Path) -> Vec<(usize, usize)> {
    let b = std::fs::read(path).unwrap();
    let mut at = 16;
    let mut out = Vec::new();
    while at + 12 <= b.len() {
        let len = i32::from_be_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push((at, len));
        at += 12 + len + 1;
    }
    out
}

fn faulty_files(pristine: &Path, want: &BTreeMap<String, Seen>, last: i64) {
    let snaps = |data: &Path| zk_files(&data.join("version-2"), "snapshot");
    let newest_log = |log: &Path| zk_files(&log.join("version-2"), "log").pop().unwrap().1;

    // The pristine copy imports to the reference's zxid.
    let (data, log, _d) = copy_of(pristine);
    let state = zkdir::read_zk_state(&ZkDataDirs::of(&data, &log)).unwrap();
    assert_eq!(state.last_zxid(), last);
    assert_eq!(state.tree.distinct_node_count(), want.len());

    // A flipped byte inside a log entry: the CRC check fails, naming file and offset.
    let (data, log, _d) = copy_of(pristine);
    let file = newest_log(&log);
    let (at, len) = frames(&file)[0];
    let mut b = std::fs::read(&file).unwrap();
    b[at + 12 + len / 2] ^= 0x01;
    let stored = i64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let computed = adler2::adler32_slice(&b[at + 12..at + 12 + len]);
    std::fs::write(&file, &b).unwrap();
    let err = zkdir::import(&data, &log).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: corrupt at byte offset {at}: CRC check failed: stored {stored:#x}, computed \
             {computed:#x} over {len} bytes",
            file.display()
        )
    );
    assert!(!data.join(zkdir::IMPORT_MARKER_FILE_NAME).exists());

    // A negative entry length.
    let (data, log, _d) = copy_of(pristine);
    let file = newest_log(&log);
    let (at, _) = *frames(&file).last().unwrap();
    let mut b = std::fs::read(&file).unwrap();
    b[at + 8..at + 12].copy_from_slice(&(-7i32).to_be_bytes());
    std::fs::write(&file, &b).unwrap();
    let err = zkdir::import(&data, &log).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: corrupt at byte offset {at}: txn entry length -7 is negative",
            file.display()
        )
    );

    // The last entry torn (the file cut inside it): dropped, as the reference drops
    // "a partial transaction"; the state ends one txn earlier.
    let (data, log, _d) = copy_of(pristine);
    let file = newest_log(&log);
    let all = frames(&file);
    let (at, len) = *all.last().unwrap();
    let b = std::fs::read(&file).unwrap();
    std::fs::write(&file, &b[..at + 12 + len / 2]).unwrap();
    let state = zkdir::read_zk_state(&ZkDataDirs::of(&data, &log)).unwrap();
    assert_eq!(state.last_zxid(), last - 1);
    assert_eq!(
        state.torn,
        vec![format!(
            "{} at byte offset {at} (missing the txn entry)",
            file.display()
        )]
    );

    // A bad newest snapshot: the reference falls back to the one before, and the log
    // brings the same state.
    let (data, log, _d) = copy_of(pristine);
    let all = snaps(&data);
    assert!(all.len() >= 2, "{all:?}");
    let (_, newest) = all.last().unwrap();
    let mut b = std::fs::read(newest).unwrap();
    b[20] ^= 0x01;
    std::fs::write(newest, &b).unwrap();
    let state = zkdir::read_zk_state(&ZkDataDirs::of(&data, &log)).unwrap();
    assert_eq!(state.last_zxid(), last);
    assert_eq!(state.tree.distinct_node_count(), want.len());
    // The newest snapshot that verifies, older than the corrupt one. Usually the
    // one just before it; a snapshot the reference was still writing when it was
    // killed is torn and passed over too (seen on a loaded CI box).
    let chosen = state.snapshot.clone().expect("an older snapshot");
    let chosen_at = (all.iter().position(|(_, p)| *p == chosen))
        .unwrap_or_else(|| panic!("{} is not one of {all:?}", chosen.display()));
    assert!(chosen_at + 1 < all.len(), "older than the corrupt newest");
    // Those between were torn: the reference's snapshot ends with its seal (the
    // string "/" after the checksum), which a file cut short lacks.
    for (_, p) in &all[chosen_at + 1..all.len() - 1] {
        let b = std::fs::read(p).unwrap();
        assert!(
            !b.ends_with(&[0, 0, 0, 1, b'/']),
            "{} is sealed, yet passed over: {:?}",
            p.display(),
            state.passed_over
        );
    }
    assert_eq!(
        state.passed_over.len(),
        all.len() - 1 - chosen_at,
        "each newer snapshot passed over: {:?}",
        state.passed_over
    );
    assert!(
        state.passed_over[0].starts_with(&format!("{}: corrupt at byte offset ", newest.display())),
        "{:?}",
        state.passed_over
    );

    // Every snapshot bad: no state, and the error names each file and offset.
    let (data, log, _d) = copy_of(pristine);
    let mut details = Vec::new();
    for (_, p) in snaps(&data).iter().rev() {
        let mut b = std::fs::read(p).unwrap();
        b[0] = 0;
        std::fs::write(p, &b).unwrap();
        details.push(format!(
            "{}: corrupt at byte offset 0: file magic 0x004b534e, expected 0x5a4b534e (ZKSN)",
            p.display()
        ));
    }
    let err = zkdir::import(&data, &log).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: Not able to find valid snapshots: {}",
            data.join("version-2").display(),
            details.join("; ")
        )
    );

    // A truncated newest snapshot fails the reference's quick check and is passed
    // over; the message names where the file ends.
    let (data, log, _d) = copy_of(pristine);
    let (_, newest) = snaps(&data).pop().unwrap();
    let b = std::fs::read(&newest).unwrap();
    let cut = b.len() / 2;
    std::fs::write(&newest, &b[..cut]).unwrap();
    let state = zkdir::read_zk_state(&ZkDataDirs::of(&data, &log)).unwrap();
    assert_eq!(state.last_zxid(), last);
    assert!(
        state.passed_over[0].starts_with(&format!(
            "{}: corrupt at byte offset {cut}: file ends inside ",
            newest.display()
        )),
        "{:?}",
        state.passed_over
    );
}
