//! The clean stop (SIGTERM) and the service's log format, on real corral processes.
//!
//! Standalone: acknowledged writes, SIGTERM, the process exits 0, an open client
//! sees its socket closed, a restart on the same data serves every acknowledged
//! write; the same while a pipelined write load runs (and the restart's recovery
//! finds no torn record: the stop synced what it appended). Quorum: SIGTERM the
//! leader of a three-member corral ensemble; it exits 0, the other two elect and
//! serve. `--log-format json`: every start-up line on stderr is a JSON object with
//! a level and a message.
//!
//! Runs on the test thread (blocking std IO); the load runs on one writer thread.
//! Every wait is bounded; nothing asserts on a duration.

mod common;

use common::ensemble::{create_req, dump_tree_at, open_session, pipeline, Ensemble, Tree};
use common::{corral_command, free_port, Kind, RawClient, ReadEnd, Server};
use corral::proto::{CreateMode, Request};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a test waits for a process to exit after SIGTERM (the server's own
/// bound, `shutdown::STOP_WAIT`, is 10 s; the rest is slack for a loaded machine).
const EXIT_WAIT: Duration = Duration::from_secs(60);
/// How long an idle client waits to see its connection closed.
const CLOSE_WAIT: Duration = Duration::from_secs(30);
/// Writes acknowledged one by one before the stop.
const ACKED_WRITES_COUNT: usize = 50;
/// Creates the pipelined load keeps in flight per window.
const LOAD_WINDOW_COUNT: usize = 32;
/// Acknowledged load writes the stop waits for before it is sent.
const LOAD_ACKED_BEFORE_STOP: usize = 200;
/// Polls (of 50 ms) for the load to reach LOAD_ACKED_BEFORE_STOP.
const LOAD_POLLS_MAX: u32 = 1_200;

/// Waits (bounded) for the process to exit; its status, or a panic with its log.
fn wait_exit(server: &Server) -> std::process::ExitStatus {
    server.wait_exit(EXIT_WAIT).unwrap_or_else(|| {
        panic!(
            "corral did not exit within {EXIT_WAIT:?} of SIGTERM; log:\n{}",
            server.log_tail()
        )
    })
}

/// SIGTERM, then the exit: it must be 0 and the log must say the stop was clean.
fn terminate_cleanly(server: &Server) {
    assert!(server.signal(libc::SIGTERM), "corral is not running");
    let status = wait_exit(server);
    assert_eq!(
        status.code(),
        Some(0),
        "corral exited with {status} on SIGTERM; log:\n{}",
        server.log_tail()
    );
    assert!(
        server.log().contains("stopped cleanly"),
        "no clean-stop line; log:\n{}",
        server.log_tail()
    );
}

/// Every (path, data) is in the tree dumped from `addr`.
fn assert_holds(addr: &str, acked: &[(String, Vec<u8>)], log: impl Fn() -> String) {
    let tree: Tree = dump_tree_at(addr, None).unwrap_or_else(|e| panic!("dump {addr}: {e}"));
    let missing: Vec<&String> = acked
        .iter()
        .filter(|(p, d)| tree.get(p).map(|(data, _)| data.as_deref()) != Some(Some(d)))
        .map(|(p, _)| p)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing after the restart (first: {:?}); log:\n{}",
        missing.len(),
        acked.len(),
        missing.first(),
        log()
    );
}

#[test]
fn sigterm_exits_zero_closes_clients_and_keeps_acknowledged_writes() {
    let server = Server::corral("");
    let addr = server.addr();
    let mut writer = open_session(&addr).expect("a session");
    let mut acked = Vec::new();
    let parent = create_req("/stop", b"", CreateMode::Persistent);
    common::ensemble::call(&mut writer, &parent).expect("create /stop");
    acked.push(("/stop".to_string(), Vec::new()));
    for i in 0..ACKED_WRITES_COUNT {
        let (path, data) = (format!("/stop/k-{i:04}"), format!("v{i}").into_bytes());
        let req = create_req(&path, &data, CreateMode::Persistent);
        common::ensemble::call(&mut writer, &req).expect("an acknowledged create");
        acked.push((path, data));
    }
    // A second client that stays idle: it must see the server close its socket.
    let mut idle = RawClient::connect(&addr, 10_000);

    terminate_cleanly(&server);
    match idle.wait_closed(CLOSE_WAIT) {
        Ok(_) => {}
        Err(ReadEnd::Timeout) => panic!("the idle client's socket stayed open after the exit"),
        Err(e) => panic!("the idle client saw {e:?} instead of a close"),
    }

    let server = server.restart_corral("");
    assert_holds(&server.addr(), &acked, || server.log_tail());
}

/// A writer thread keeping LOAD_WINDOW_COUNT creates in flight until its
/// connection ends; returns every create it saw acknowledged.
fn pipelined_load(
    addr: String,
    acked_count: Arc<AtomicUsize>,
    started: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(String, Vec<u8>)>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let Ok(mut c) = open_session(&addr) else {
            started.store(true, Ordering::SeqCst);
            return acked;
        };
        let parent = create_req("/load", b"", CreateMode::Persistent);
        if common::ensemble::call(&mut c, &parent).is_err() {
            started.store(true, Ordering::SeqCst);
            return acked;
        }
        acked.push(("/load".to_string(), Vec::new()));
        started.store(true, Ordering::SeqCst);
        for window in 0.. {
            let batch: Vec<(String, Vec<u8>)> = (0..LOAD_WINDOW_COUNT)
                .map(|i| {
                    let n = window * LOAD_WINDOW_COUNT + i;
                    (format!("/load/n-{n:07}"), format!("load-{n}").into_bytes())
                })
                .collect();
            let reqs: Vec<Request> = batch
                .iter()
                .map(|(p, d)| create_req(p, d, CreateMode::Persistent))
                .collect();
            // The window's replies come in order; a lost connection ends the load
            // (what was answered before it still counts: send and read one by one).
            let mut xids = Vec::new();
            for req in &reqs {
                match c.send(req) {
                    Ok(x) => xids.push(x),
                    Err(_) => break,
                }
            }
            for ((path, data), x) in batch.into_iter().zip(xids.iter().copied()) {
                match c.recv_reply() {
                    Ok(r) if r.xid == x && r.err == 0 => {
                        acked.push((path, data));
                        acked_count.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => return acked,
                }
            }
            if xids.len() < reqs.len() {
                return acked;
            }
        }
        acked
    })
}

#[test]
fn sigterm_under_a_pipelined_write_load_keeps_every_acknowledged_write() {
    let server = Server::corral("");
    let count = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicBool::new(false));
    let load = pipelined_load(server.addr(), count.clone(), started.clone());
    let mut polls = 0;
    while count.load(Ordering::SeqCst) < LOAD_ACKED_BEFORE_STOP && polls < LOAD_POLLS_MAX {
        if load.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        polls += 1;
    }
    assert!(
        count.load(Ordering::SeqCst) >= LOAD_ACKED_BEFORE_STOP,
        "the load did not get going; log:\n{}",
        server.log_tail()
    );

    terminate_cleanly(&server);
    let acked = load.join().expect("the writer thread");
    eprintln!("[{} writes acknowledged before the stop]", acked.len());

    let server = server.restart_corral("");
    assert_holds(&server.addr(), &acked, || server.log_tail());
    assert!(
        !server.log().contains("torn record"),
        "recovery after a clean stop found a torn record; log:\n{}",
        server.log_tail()
    );
}

/// Checked on the pipeline helper too: nothing is answered after the stop.
#[test]
fn a_stopped_server_answers_nothing_more() {
    let server = Server::corral("");
    let mut c = open_session(&server.addr()).expect("a session");
    let first = pipeline(&mut c, &[create_req("/a", b"1", CreateMode::Persistent)])
        .expect("the first create");
    assert!(first[0].is_ok(), "create /a: {:?}", first[0]);
    terminate_cleanly(&server);
    assert!(
        common::ensemble::call(&mut c, &create_req("/b", b"2", CreateMode::Persistent)).is_err(),
        "a write was answered after the server exited"
    );
}

/// The names of a process's threads (`/proc/PID/task/*/comm`; at most 15 bytes).
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim_end().to_string())
        .collect()
}

/// `corral.sequencerCore`: `own` runs the sequencer on a thread of its own,
/// `shard` as a task of shard 0's thread (no sequencer thread); writes are
/// taken and the stop is clean either way.
#[test]
fn the_sequencer_runs_where_the_config_says_and_stops_cleanly_either_way() {
    for (cfg, own, says) in [
        (
            "corral.sequencerCore=own\n",
            true,
            "sequencer on its own core",
        ),
        (
            "corral.sequencerCore=shard\n",
            false,
            "sequencer beside shard 0",
        ),
    ] {
        let server = Server::corral(cfg);
        let mut c = open_session(&server.addr()).expect("a session");
        let req = create_req("/placed", b"x", CreateMode::Persistent);
        common::ensemble::call(&mut c, &req).expect("a write");
        let names = thread_names(server.pid().expect("running"));
        assert_eq!(
            names.iter().any(|n| n.starts_with("corral-sequenc")),
            own,
            "{cfg}: threads {names:?}"
        );
        assert!(
            server.log().contains(says),
            "{cfg}: log:\n{}",
            server.log_tail()
        );
        drop(c);
        terminate_cleanly(&server);
    }
}

#[test]
fn sigterm_on_the_leader_exits_zero_and_the_others_elect() {
    let kinds = [Kind::Corral, Kind::Corral, Kind::Corral];
    let mut ens = Ensemble::start(&kinds);
    let leader = ens.wait_leader();
    let mut c = ens.connect(leader);
    let req = create_req("/before-stop", b"x", CreateMode::Persistent);
    common::ensemble::call(&mut c, &req).expect("a write on the leader");
    drop(c);

    // The harness asks for the sequencer beside shard 0; a quorum core keeps its
    // own executor all the same, so its peer links close with it on the stop.
    assert!(
        ens.log(leader).contains("sequencer on its own core"),
        "the quorum core does not run on its own executor\n{}",
        ens.report()
    );
    let status = ens.terminate(leader, EXIT_WAIT);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the leader exited with {status:?} on SIGTERM\n{}",
        ens.report()
    );
    assert!(
        ens.log(leader).contains("stopped cleanly"),
        "no clean-stop line in the leader's log\n{}",
        ens.report()
    );
    let new_leader = ens.wait_leader();
    assert_ne!(new_leader, leader, "the stopped member still leads");
    let mut c = ens.connect(new_leader);
    let req = create_req("/after-stop", b"y", CreateMode::Persistent);
    common::ensemble::call(&mut c, &req).expect("a write on the new leader");
    for sid in ens.live_sids() {
        let tree = ens.dump_tree(sid);
        assert!(
            tree.contains_key("/before-stop") && tree.contains_key("/after-stop"),
            "member {sid} lacks a write\n{}",
            ens.report()
        );
    }
}

#[test]
fn json_log_format_prints_one_object_per_line() {
    let dir = tempfile::Builder::new()
        .prefix("corral-json-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let cfg = format!(
        "tickTime=500\ndataDir={d}/data\ndataLogDir={d}/datalog\nclientPort={port}\n\
         clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=*\n",
        d = dir.path().display()
    );
    let cfg_path = dir.path().join("corral.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut cmd = corral_command(&cfg_path);
    cmd.arg("--log-format").arg("json");
    let mut server = Server::launch(Kind::Corral, cmd, port, dir.path());
    server.wait_ready();
    terminate_cleanly(&server);

    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.contains("corral serving on")),
        "no start-up line; log:\n{log}"
    );
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        let level = v.get("level").and_then(|l| l.as_str());
        let message = v.get("message").and_then(|m| m.as_str());
        assert!(
            level.is_some() && message.is_some_and(|m| !m.is_empty()),
            "a line without level or message: {line}"
        );
    }
}
