//! Dynamic reconfiguration (`reconfigEnabled=true`) on real multi-process
//! ensembles: three participants and a fourth server started with a config that
//! lists the three plus itself as an observer (an operator's joiner). A super user
//! adds it as an observer with an incremental reconfig: it then observes (`srvr`
//! says so) and sees writes, and `/zookeeper/config` on every member shows the new
//! config and its version; a second reconfig removes it and the others keep
//! serving. Around that: a client that is not the super user gets NoAuth, a stale
//! `curConfigId` BadVersion, and an ensemble without reconfigEnabled answers
//! ReconfigDisabled.
//!
//! The scenario runs on corral members only, on ZooKeeper only (the reference: it
//! proves the expectations), and mixed: a ZooKeeper leader adding a corral observer,
//! and a corral leader adding a ZooKeeper observer.
//!
//! One ensemble at a time (the harness's lock), driven from the test thread with
//! blocking raw clients; every wait is a bounded poll.

mod common;

use common::ensemble::{Ensemble, Mode, Role, POLL_MS};
use common::{digest_id, Kind, RawClient};
use corral::proto::{CreateMode, ErrorCode, Reader, ReconfigRequest, Request, Stat};
use std::time::Duration;

/// The super user's password (its digest goes in every zoo.cfg).
const SUPER_PASSWORD: &str = "reconfig-test";
/// Polls for a config, a mode or a write to show on a member.
const WAIT_POLLS_MAX: u32 = 600;
/// The joiner: a fourth server outside the others' config.
const JOINER: u64 = 4;

fn reconfig_cfg() -> String {
    format!(
        "reconfigEnabled=true\nDigestAuthenticationProvider.superDigest={}\n",
        digest_id("super", SUPER_PASSWORD)
    )
}

/// A reconfig request and its answer: the new config's text and the Stat of
/// `/zookeeper/config`, or the error.
fn reconfig(
    c: &mut RawClient,
    joining: Option<String>,
    leaving: Option<&str>,
    cur_config_id: i64,
) -> Result<(String, Stat), ErrorCode> {
    let req = Request::Reconfig(ReconfigRequest {
        joining,
        leaving: leaving.map(str::to_string),
        new_members: None,
        cur_config_id,
    });
    let reply = c.call(&req).expect("a reconfig reply");
    if reply.err != 0 {
        return Err(ErrorCode::from_code(reply.err).expect("a known error code"));
    }
    let mut r = Reader::new(&reply.body);
    let data = r.bytes().expect("the config");
    let stat = Stat::decode(&mut r).expect("its Stat");
    Ok((String::from_utf8(data).expect("UTF-8"), stat))
}

/// `/zookeeper/config` on a member, after a sync (a new session each time, so a
/// member that restarts its role is simply asked again).
fn config_on(ens: &Ensemble, sid: u64) -> Option<(String, Stat)> {
    let addr = ens.client_addr(sid);
    let mut c = common::ensemble::open_session(&addr).ok()?;
    let sync = Request::Sync {
        path: "/zookeeper/config".into(),
    };
    if c.call(&sync).ok()?.err != 0 {
        return None;
    }
    let get = Request::GetData {
        path: "/zookeeper/config".into(),
        watch: false,
    };
    let reply = c.call(&get).ok()?;
    let _ = c.close_session();
    if reply.err != 0 {
        return None;
    }
    let mut r = Reader::new(&reply.body);
    let data = r.bytes().ok()?;
    let stat = Stat::decode(&mut r).ok()?;
    Some((String::from_utf8(data).ok()?, stat))
}

/// Waits (bounded) until the member's `/zookeeper/config` satisfies `ok`.
fn wait_config(ens: &Ensemble, sid: u64, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut last = None;
    for _ in 0..WAIT_POLLS_MAX {
        if let Some((text, _)) = config_on(ens, sid) {
            if ok(&text) {
                return text;
            }
            last = Some(text);
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    panic!(
        "member {sid}'s /zookeeper/config never became {what}; last {last:?}\n{}",
        ens.report()
    )
}

/// The hex `version=` of a config text.
fn version_of(text: &str) -> i64 {
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("version="))
        .unwrap_or_else(|| panic!("no version line in {text:?}"));
    i64::from_str_radix(v, 16).unwrap_or_else(|_| panic!("bad version in {text:?}"))
}

fn wait_mode(ens: &Ensemble, sid: u64, mode: Mode) {
    for _ in 0..WAIT_POLLS_MAX {
        if ens.mode(sid) == Some(mode) {
            return;
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    panic!(
        "member {sid} never said Mode: {mode:?} (now {:?})\n{}",
        ens.mode(sid),
        ens.report()
    )
}

/// A super-user session on a member.
fn super_session(ens: &Ensemble, sid: u64) -> RawClient {
    let mut c = ens.connect(sid);
    assert_eq!(c.add_digest_auth("super", SUPER_PASSWORD), 0, "super auth");
    c
}

/// Creates `path` through `sid` and waits until `reader` has it (after a sync).
fn write_and_see(ens: &Ensemble, sid: u64, reader: u64, path: &str) {
    let mut c = ens.connect(sid);
    let create = common::ensemble::create_req(path, b"x", CreateMode::Persistent);
    let reply = c.call(&create).expect("create reply");
    assert_eq!(reply.err, 0, "create {path} through member {sid}");
    let _ = c.close_session();
    for _ in 0..WAIT_POLLS_MAX {
        let mut r = ens.connect(reader);
        let sync = Request::Sync { path: path.into() };
        let seen = r.call(&sync).is_ok_and(|s| s.err == 0)
            && r.call(&Request::Exists {
                path: path.into(),
                watch: false,
            })
            .is_ok_and(|e| e.err == 0);
        let _ = r.close_session();
        if seen {
            return;
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    panic!("member {reader} never saw {path}\n{}", ens.report())
}

/// Members 1..=3 (participants, listing only each other) started with reconfig
/// on; member 4 configured as a joiner (lists all four, itself an observer), not
/// started. Sid 3 leads (handed over to it when a slow start let another win).
fn start(kinds: [Kind; 4]) -> Option<Ensemble> {
    if !Ensemble::can_start(&kinds) {
        return None;
    }
    let members = [
        (kinds[0], Role::Participant),
        (kinds[1], Role::Participant),
        (kinds[2], Role::Participant),
        (kinds[3], Role::Observer),
    ];
    let mut ens = Ensemble::configure(&members, &reconfig_cfg());
    eprintln!("[reconfig] {}", ens.describe());
    for sid in 1..=3 {
        ens.list_in_config(sid, &[1, 2, 3]);
    }
    ens.launch_and_wait(&[1, 2, 3]);
    ens.lead_by(3);
    Some(ens)
}

/// The whole scenario: the first leader's config version, the refusals, adding
/// the joiner as an observer, then removing it.
fn add_and_remove_an_observer(kinds: [Kind; 4]) {
    let Some(mut ens) = start(kinds) else {
        return;
    };
    // The first leader made its NEWLEADER zxid the version of the initial config
    // (a new epoch: low 32 bits 0), everywhere.
    let initial = wait_config(&ens, 3, "versioned", |t| version_of(t) != 0);
    let v1 = version_of(&initial);
    assert_eq!(v1 & 0xffff_ffff, 0, "an epoch's start: {initial:?}");
    assert!(!initial.contains("server.4="), "{initial}");
    for sid in 1..=2 {
        wait_config(&ens, sid, "the leader's", |t| t == initial);
    }
    eprintln!("[reconfig] config version {v1:x} everywhere; starting the joiner");

    // The joiner starts outside the config; it serves (without a vote).
    ens.launch_member(JOINER);
    ens.wait_serving(JOINER);

    let joining = format!("server.{JOINER}={}", ens.server_spec(JOINER));
    let mut anonymous = ens.connect(1);
    assert_eq!(
        reconfig(&mut anonymous, Some(joining.clone()), None, -1),
        Err(ErrorCode::NoAuth),
        "world may only read /zookeeper/config"
    );
    let mut root = super_session(&ens, 1);
    assert_eq!(
        reconfig(&mut root, Some(joining.clone()), None, v1 + 1),
        Err(ErrorCode::BadVersion),
        "a curConfigId that is not the last seen"
    );

    // Add it as an observer.
    eprintln!("[reconfig] NoAuth and BadVersion as expected; adding {JOINER}");
    let (added, stat) = reconfig(&mut root, Some(joining), None, v1)
        .unwrap_or_else(|e| panic!("reconfig adding {JOINER}: {e:?}\n{}", ens.report()));
    let v2 = version_of(&added);
    assert_eq!(v2, stat.mzxid, "the new version is the reconfig's zxid");
    assert!(
        added.contains(&format!("server.{JOINER}={}", ens.server_spec(JOINER))),
        "{added}"
    );
    wait_mode(&ens, JOINER, Mode::Observer);
    write_and_see(&ens, 1, JOINER, "/after-join");
    for sid in 1..=JOINER {
        wait_config(&ens, sid, "the added config", |t| t == added);
    }
    check_files(&ens, v2, &added);
    // A member restarted from the files it wrote comes back in the new config.
    let _ = root.close_session();
    ens.restart(1);
    ens.wait_serving(1);
    wait_config(&ens, 1, "the added config after a restart", |t| t == added);
    let mut root = super_session(&ens, 1);
    eprintln!("[reconfig] {JOINER} observes config {v2:x}; removing it");

    // Remove it: the others agree and keep serving.
    let (removed, stat) = reconfig(&mut root, None, Some("4"), v2)
        .unwrap_or_else(|e| panic!("reconfig removing {JOINER}: {e:?}\n{}", ens.report()));
    assert_eq!(version_of(&removed), stat.mzxid);
    assert!(!removed.contains("server.4="), "{removed}");
    for sid in 1..=3 {
        wait_config(&ens, sid, "the config without 4", |t| t == removed);
    }
    let _ = root.close_session();
    write_and_see(&ens, 2, 3, "/after-leave");
    assert_eq!(ens.wait_leader(), 3, "{}", ens.report());
    // Let the member that left be stopped: the three serve on.
    ens.stop(JOINER);
    write_and_see(&ens, 3, 1, "/after-stop");
    eprintln!(
        "[reconfig] {JOINER} removed; the others serve on ({:?})",
        ens.age()
    );
}

/// The files the reference writes (zoo.cfg.dynamic.<version>, zoo.cfg pointing at
/// it, zoo.cfg.bak of the original) on every member, as each wrote them.
fn check_files(ens: &Ensemble, version: i64, text: &str) {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("version="))
        .collect();
    lines.sort_unstable();
    let want = lines.join("\n");
    for sid in 1..=JOINER {
        let dir = ens.member_dir(sid);
        let dynamic = dir.join(format!("zoo.cfg.dynamic.{version:x}"));
        let mut got = None;
        for _ in 0..WAIT_POLLS_MAX {
            got = std::fs::read_to_string(&dynamic).ok();
            if got.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
        assert_eq!(
            got.as_deref(),
            Some(want.as_str()),
            "member {sid}: {}",
            dynamic.display()
        );
        let cfg = ens.config(sid);
        assert!(
            cfg.contains("dynamicConfigFile=") && !cfg.contains("server."),
            "member {sid}'s zoo.cfg: {cfg}"
        );
        assert!(
            dir.join("zoo.cfg.bak").exists(),
            "member {sid}: zoo.cfg.bak"
        );
    }
}

#[test]
fn corral() {
    add_and_remove_an_observer([Kind::Corral; 4]);
}

#[test]
fn zookeeper() {
    add_and_remove_an_observer([Kind::Reference; 4]);
}

/// A ZooKeeper leader (sid 3) adds a corral observer (corral followers 1, 2).
#[test]
fn zookeeper_leader_adds_a_corral_observer() {
    add_and_remove_an_observer([Kind::Corral, Kind::Corral, Kind::Reference, Kind::Corral]);
}

/// A corral leader (sid 3) adds a ZooKeeper observer (ZooKeeper followers 1, 2).
#[test]
fn corral_leader_adds_a_zookeeper_observer() {
    add_and_remove_an_observer([
        Kind::Reference,
        Kind::Reference,
        Kind::Corral,
        Kind::Reference,
    ]);
}

/// Without reconfigEnabled a reconfig is refused, even for the super user.
#[test]
fn reconfig_disabled_without_reconfig_enabled() {
    let kinds = [Kind::Corral; 3];
    let extra = format!(
        "DigestAuthenticationProvider.superDigest={}\n",
        digest_id("super", SUPER_PASSWORD)
    );
    let members: Vec<(Kind, Role)> = kinds.iter().map(|&k| (k, Role::Participant)).collect();
    let ens = Ensemble::start_cfg(&members, &extra);
    for sid in [1, 3] {
        let mut root = super_session(&ens, sid);
        let joining = Some("server.9=127.0.0.1:1:2:observer;127.0.0.1:3".to_string());
        assert_eq!(
            reconfig(&mut root, joining, None, -1),
            Err(ErrorCode::ReconfigDisabled),
            "member {sid}"
        );
    }
    // The config keeps version 0.
    let (text, _) = config_on(&ens, 2).expect("/zookeeper/config");
    assert_eq!(version_of(&text), 0, "{text}");
}
