//! A server that does not run for three session timeouts while its clients keep
//! pinging: their pings wait in the sockets, unread. No session may expire for
//! time the server itself lost. Three ways a server stops running:
//! - the whole process is stopped (SIGSTOP: what a frozen VM or a long pause
//!   looks like from outside). The reference expires every such session at its
//!   next check (printed, not asserted); corral moves the deadlines later by the
//!   time lost (`SessionTable::catch_up`) and says so in its log;
//! - its session-owning core is held by a stalled inline fsync (the `LD_PRELOAD`
//!   shim of `common::stall`), standalone, the first sync of a fast disk: both
//!   servers keep the sessions (the reference's connection threads are not held);
//! - an ensemble's corral leader is stopped for less than syncLimit, so it stays
//!   leader, while every member's clients keep pinging: it keeps their sessions;
//! - its reference follower is stopped instead: the leader (with the other
//!   follower, a quorum) hears none of its clients' touches meanwhile, and keeps
//!   those sessions until a tickTime after it answers again (the follower itself
//!   may close their connections on waking, as a standalone reference does: the
//!   sessions are then resumed on another member). A ZooKeeper leader of
//!   corral followers, one stopped the same way, expired its client's session in
//!   one of two runs (printed, not asserted).
//!
//! No timing is asserted; the pause is held for a fixed time, and every wait
//! afterwards is a bounded read.

mod common;

use std::time::{Duration, Instant};

use common::ensemble::{resume_session, Ensemble, Role};
use common::stall::{preload_env, Stall};
use common::{require_reference, Decoded, Kind, RawClient, ReadEnd, Server};
use corral::proto::{Request, Response};

/// Session timeout of the tests' clients.
const SESSION_TIMEOUT_MS: i32 = 2_000;
/// tickTime of the standalone servers (so SESSION_TIMEOUT_MS is negotiable).
const TICK_MS: u64 = 500;
/// How long the server does not run: three session timeouts.
const PAUSE_MS: u64 = 3 * SESSION_TIMEOUT_MS as u64;
/// Ping interval of the clients while the server does not run (a third of the
/// timeout, as the reference's clients ping).
const PING_MS: u64 = SESSION_TIMEOUT_MS as u64 / 3;
/// The ensemble's syncLimit in ticks of its 200 ms: 10 s, so a leader stopped for
/// PAUSE_MS keeps its followers.
const ENSEMBLE_SYNC_LIMIT_TICKS: u64 = 50;
/// Bound on waiting for the server to enter a stalled sync.
const STALL_ENTERED_POLLS_MAX: u32 = 1_500;
/// Poll interval of that wait.
const POLL_MS: u64 = 20;
/// corral's log line when its session tracker finds it did not run.
const PAUSE_LINE: &str = "the session tracker did not run for over a tickTime";
/// A corral leader's log line when it keeps the sessions of a silent member.
const SILENT_MEMBER_LINE: &str = "has been silent for over a tickTime: its clients' sessions";

/// How the standalone server stops running.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pause {
    /// SIGSTOP, then SIGCONT.
    Process,
    /// Its first log sync is held.
    Disk,
}

/// A session with an ephemeral node `/eph-<name>`, open on `addr`.
fn session_with_ephemeral(addr: &str, name: &str) -> RawClient {
    let mut c = RawClient::connect(addr, SESSION_TIMEOUT_MS);
    let mut req = Request::create_open(&format!("/eph-{name}"), b"e");
    if let Request::Create(create) = &mut req {
        create.flags = 1; // ephemeral
    }
    let r = c.call(&req).expect("create the ephemeral");
    assert_eq!(r.err, 0, "create /eph-{name}: {r:?}");
    c
}

/// Pings every client every PING_MS for PAUSE_MS; returns how many each sent.
fn keep_pinging(clients: &mut [(String, RawClient)]) -> usize {
    let began = Instant::now();
    let mut pings = 0;
    while began.elapsed() < Duration::from_millis(PAUSE_MS) {
        std::thread::sleep(Duration::from_millis(PING_MS));
        for (_, c) in clients.iter_mut() {
            c.send_request(&Request::Ping).expect("send a ping");
        }
        pings += 1;
    }
    pings
}

/// Every ping answered and every session's ephemeral still there; `Err` names
/// the first session that was not. `resume_on(name)`: where a session whose
/// connection was closed may be resumed (None: a closed connection is a failure).
fn sessions_survived(
    clients: &mut [(String, RawClient)],
    pings: usize,
    resume_on: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    for (name, c) in clients.iter_mut() {
        let mut closed = false;
        for i in 0..pings {
            match c.wait_reply() {
                Ok(r) if r.err == 0 => {}
                Err(ReadEnd::Closed) if resume_on(name).is_some() => {
                    closed = true;
                    break;
                }
                other => return Err(format!("session {name}'s ping {i}: {other:?}")),
            }
        }
        if closed {
            let addr = resume_on(name).unwrap();
            eprintln!(
                "[pause] session {name}'s server closed its connection: resuming it on {addr}"
            );
            *c = match resume_session(&addr, c.session_id, &c.passwd, c.last_zxid) {
                Ok(Some(resumed)) => resumed,
                Ok(None) => return Err(format!("session {name} expired (resumed on {addr})")),
                Err(e) => return Err(format!("session {name} not resumed on {addr}: {e}")),
            };
        }
        let req = Request::get_data_of(&format!("/eph-{name}"));
        match c.call_decoded(&req) {
            Ok(Decoded::Ok(Response::Data { .. })) => {}
            other => return Err(format!("session {name}'s ephemeral: {other:?}")),
        }
    }
    Ok(())
}

fn standalone_pause(kind: Kind, pause: Pause) {
    if kind == Kind::Reference && !require_reference() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stall_file = tmp.path().join("stall");
    let mut cfg = format!("tickTime={TICK_MS}\n");
    if kind == Kind::Corral {
        // One shard with the sequencer beside it (the default on up to 2 CPUs),
        // whose first sync runs inline: the core the stall holds owns the sessions.
        cfg.push_str("corral.shardCores=1\n");
    }
    let env = preload_env(&stall_file, None);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start_with_env(kind, &cfg, &env);
    let mut clients: Vec<(String, RawClient)> = ["a", "b"]
        .iter()
        .map(|n| (n.to_string(), session_with_ephemeral(&server.addr(), n)))
        .collect();

    let stall = match pause {
        Pause::Process => {
            assert!(server.signal(libc::SIGSTOP), "SIGSTOP the server");
            None
        }
        Pause::Disk => {
            let stall = Stall::begin(&stall_file);
            let req = Request::create_open("/written", b"w");
            clients[0].1.send_request(&req).unwrap();
            let mut polls = 0;
            while !stall.entered() {
                polls += 1;
                assert!(polls < STALL_ENTERED_POLLS_MAX, "no sync entered the stall");
                std::thread::sleep(Duration::from_millis(POLL_MS));
            }
            Some(stall)
        }
    };
    let pings = keep_pinging(&mut clients);
    match stall {
        Some(stall) => {
            drop(stall);
            let r = clients[0].1.wait_reply().expect("the held create's reply");
            assert_eq!(r.err, 0, "the create held by the stall: {r:?}");
        }
        None => assert!(server.signal(libc::SIGCONT), "SIGCONT the server"),
    }
    let survived = sessions_survived(&mut clients, pings, &|_| None);
    match (kind, pause) {
        (Kind::Reference, Pause::Process) => eprintln!(
            "[reference] sessions that kept pinging through a {PAUSE_MS} ms SIGSTOP: \
             {survived:?} (not asserted)"
        ),
        _ => {
            if let Err(e) = survived {
                panic!("{kind:?}, {pause:?}: {e}\n{}", server.log_tail());
            }
        }
    }
    if kind == Kind::Corral && pause == Pause::Process {
        let log = server.log();
        assert!(log.contains(PAUSE_LINE), "no line about the pause:\n{log}");
    }
}

#[test]
fn a_stopped_process_expires_no_session_that_kept_pinging_corral() {
    standalone_pause(Kind::Corral, Pause::Process);
}

#[test]
fn a_stopped_process_expires_no_session_that_kept_pinging_reference() {
    standalone_pause(Kind::Reference, Pause::Process);
}

#[test]
fn a_core_held_by_a_stalled_disk_expires_no_session_corral() {
    standalone_pause(Kind::Corral, Pause::Disk);
}

#[test]
fn a_core_held_by_a_stalled_disk_expires_no_session_reference() {
    standalone_pause(Kind::Reference, Pause::Disk);
}

/// A corral leader (sid 3) with a reference follower (1) and a corral follower
/// (2), syncLimit 10 s, a client on every member: the leader, or follower 1, is
/// SIGSTOPped for PAUSE_MS while every client keeps pinging. Afterwards every ping is answered,
/// every session's ephemeral is there, the leader is the same, and its log has
/// `line`.
fn ensemble_members_stopped(stop_leader: bool, line: &str) {
    ensemble_stopped(
        [Kind::Reference, Kind::Corral, Kind::Corral],
        stop_leader,
        Some(line),
    );
}

/// `ensemble_members_stopped` with these kinds (sid 3 leads); `line`: None for a
/// reference leader, whose outcome is printed, not asserted.
fn ensemble_stopped(kinds: [Kind; 3], stop_leader: bool, line: Option<&str>) {
    if !Ensemble::can_start(&kinds) {
        return;
    }
    let members = kinds.map(|k| (k, Role::Participant));
    let mut ens = Ensemble::start_cfg(
        &members,
        &format!("syncLimit={ENSEMBLE_SYNC_LIMIT_TICKS}\n"),
    );
    let leader = ens.lead_by(3);
    let mut clients: Vec<(String, RawClient)> = ens
        .sids()
        .into_iter()
        .map(|sid| {
            let name = format!("m{sid}");
            let c = session_with_ephemeral(&ens.client_addr(sid), &name);
            (name, c)
        })
        .collect();
    // The leader, or follower 1 alone (the leader keeps a quorum).
    let stopped: Vec<u64> = vec![if stop_leader { leader } else { 1 }];
    for &sid in &stopped {
        ens.pause(sid);
    }
    let pings = keep_pinging(&mut clients);
    for &sid in &stopped {
        ens.resume(sid);
    }
    // A ZooKeeper member that did not run for longer than a session timeout may
    // close its clients' connections on waking (its connection expirer can run
    // before its selector reads the waiting pings): a client library then
    // resumes the session elsewhere. The session itself must live.
    let resume_on = |name: &str| -> Option<String> {
        let sid: u64 = name.strip_prefix('m')?.parse().ok()?;
        let other = ens.sids().into_iter().find(|&s| s != sid)?;
        (stopped.contains(&sid) && ens.kind(sid) == Kind::Reference).then(|| ens.client_addr(other))
    };
    let survived = sessions_survived(&mut clients, pings, &resume_on);
    let Some(line) = line else {
        eprintln!(
            "[reference] a ZooKeeper leader's sessions after members {stopped:?} were \
             stopped {PAUSE_MS} ms: {survived:?} (not asserted)"
        );
        return;
    };
    if let Err(e) = survived {
        panic!("members {stopped:?} stopped: {e}\n{}", ens.report());
    }
    assert_eq!(ens.wait_leader(), leader, "the leader changed");
    let log = ens.log(leader);
    assert!(
        log.contains(line),
        "no line {line:?} in the leader's log:\n{log}"
    );
}

/// The leader stopped for less than syncLimit: it stays leader. Its own clients'
/// pings wait in its sockets like a standalone server's; the followers pass theirs
/// on in answer to its pings. Before `catch_up`, it expired some of them on waking
/// (one run in three lost a follower's session; every run lacked the log line).
#[test]
fn a_stopped_leader_expires_no_session() {
    ensemble_members_stopped(true, PAUSE_LINE);
}

/// The reference follower stopped for less than syncLimit: the leader (with the
/// other follower, a quorum) hears no touches from it meanwhile, and keeps its
/// clients' sessions until a tickTime after it answers again.
#[test]
fn stopped_followers_cost_their_clients_no_session() {
    ensemble_members_stopped(false, SILENT_MEMBER_LINE);
}

/// The same with a ZooKeeper leader and corral followers: printed, not asserted.
#[test]
fn stopped_followers_of_a_reference_leader() {
    ensemble_stopped([Kind::Corral, Kind::Corral, Kind::Reference], false, None);
}
