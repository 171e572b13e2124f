//! localSessionsEnabled in ensembles: a reference member keeps the sessions of its
//! clients to itself (no createSession txn) and forwards their writes with ids the
//! leader has never seen; an ephemeral create first upgrades the session (a
//! createSession forwarded right before it), or fails with EphemeralOnLocalSession
//! when localSessionsUpgradingEnabled=false. A corral leader must take those writes
//! as the reference's leader does. The same operation sequence runs through a
//! reference follower of a reference leader and of a corral leader, and the
//! outcomes must be the same; then through a corral follower of a reference leader
//! (corral's own sessions stay global).
//!
//! Each ensemble runs on 127.0.0.1 (one at a time per binary: the harness takes the
//! reference lock); every wait is a bounded poll.

mod common;

use common::ensemble::{
    call, create_req, CallError, Ensemble, Role, CORRAL_LEADS, THREE_REFERENCES, ZOOKEEPER_LEADS,
};
use common::Kind;
use corral::proto::{CreateMode, Request};

/// One operation's outcome, comparable across servers: `ok` or the error code.
fn outcome<T>(r: Result<T, CallError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(CallError::Code(c)) => format!("error {c}"),
        Err(e) => panic!("no answer: {e:?}"),
    }
}

/// An ensemble of `kinds` with the local session keys, all members up.
fn start(kinds: [Kind; 3], upgrading: bool) -> Option<Ensemble> {
    if !Ensemble::can_start(&kinds) {
        return None;
    }
    let members: Vec<(Kind, Role)> = kinds.iter().map(|&k| (k, Role::Participant)).collect();
    let cfg = format!("localSessionsEnabled=true\nlocalSessionsUpgradingEnabled={upgrading}\n");
    let ens = Ensemble::start_cfg(&members, &cfg);
    Some(ens)
}

/// Through member `sid`: a persistent create, a setData, an ephemeral create, a
/// multi with an ephemeral create, then the session closed; the outcomes, and
/// which of the nodes every member still has afterwards (the same on all).
fn transcript(ens: &Ensemble, sid: u64) -> Vec<String> {
    let mut c = ens.connect(sid);
    let mut out = Vec::new();
    out.push(outcome(call(
        &mut c,
        &create_req("/p", b"1", CreateMode::Persistent),
    )));
    let set = Request::SetData {
        path: "/p".into(),
        data: Some(b"2".to_vec()),
        version: -1,
    };
    out.push(outcome(call(&mut c, &set)));
    out.push(outcome(call(
        &mut c,
        &create_req("/e", b"", CreateMode::Ephemeral),
    )));
    let multi = Request::Multi(vec![
        create_req("/m1", b"", CreateMode::Persistent),
        create_req("/m2", b"", CreateMode::Ephemeral),
    ]);
    out.push(outcome(call(&mut c, &multi)));
    let tree = ens.assert_same_tree();
    for path in ["/p", "/e", "/m1", "/m2"] {
        out.push(format!("{path} before close: {}", tree.contains_key(path)));
    }
    let closed = c.close_session().expect("closeSession reply");
    out.push(format!("close: {}", closed.err));
    let tree = ens.assert_same_tree();
    for path in ["/p", "/e", "/m1", "/m2"] {
        out.push(format!("{path} after close: {}", tree.contains_key(path)));
    }
    out
}

/// A reference follower's local sessions, under a reference leader and under a
/// corral leader: the same outcomes, with upgrading on and off.
#[test]
fn a_corral_leader_takes_reference_members_local_sessions() {
    for upgrading in [true, false] {
        let mut runs = Vec::new();
        for kinds in [THREE_REFERENCES, CORRAL_LEADS] {
            let Some(ens) = start(kinds, upgrading) else {
                return;
            };
            let leader = ens.wait_leader();
            assert_eq!(leader, 3, "the highest sid leads\n{}", ens.report());
            runs.push((kinds, transcript(&ens, 1)));
        }
        let (_, reference) = &runs[0];
        // What the reference does, for the record: an upgrade makes the session
        // global (its ephemerals go with it); without it, ephemerals are refused.
        let want_ephemeral = if upgrading { "ok" } else { "error -120" };
        assert_eq!(reference[2], want_ephemeral, "{reference:?}");
        for (kinds, got) in &runs[1..] {
            assert_eq!(got, reference, "{kinds:?}, upgrading={upgrading}");
        }
    }
}

/// corral members under a reference leader with localSessionsEnabled: their
/// sessions are global (the reference's own follower with upgrading on gives the
/// same outcomes), and the reference leader takes them.
#[test]
fn corral_followers_of_a_reference_leader_with_local_sessions() {
    let Some(reference) = start(THREE_REFERENCES, true) else {
        return;
    };
    let want = transcript(&reference, 1);
    drop(reference);
    let Some(ens) = start(ZOOKEEPER_LEADS, true) else {
        return;
    };
    assert_eq!(ens.wait_leader(), 3, "{}", ens.report());
    assert_eq!(ens.kind(1), Kind::Corral);
    assert_eq!(transcript(&ens, 1), want);
}
