//! localSessionsEnabled in ensembles: a member keeps the sessions of its clients
//! to itself (no createSession txn) and forwards their writes with ids the leader
//! has never seen; an ephemeral create first upgrades the session (a
//! createSession forwarded right before it), or fails with EphemeralOnLocalSession
//! when localSessionsUpgradingEnabled=false. The same operation sequence runs
//! through a follower and through the leader of a reference ensemble, and through
//! the same places in ensembles where corral plays either part (a corral leader of
//! reference followers, corral followers of a reference leader, corral only); the
//! outcomes, the members' trees and the member's count of local sessions must be
//! the same.
//!
//! Each ensemble runs on 127.0.0.1 (one at a time per binary: the harness takes the
//! reference lock); every wait is a bounded poll.

mod common;

use common::ensemble::{
    call, create_req, CallError, Ensemble, Role, CORRAL_LEADS, THREE_CORRALS, THREE_REFERENCES,
    ZOOKEEPER_LEADS,
};
use common::RawClient;
use common::{four_letter_word, Kind};
use corral::proto::{ConnectRequest, CreateMode, OpResult, Request, Response};

/// One operation's outcome, comparable across servers: `ok` or the error code.
fn outcome<T>(r: Result<T, CallError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(CallError::Code(c)) => format!("error {c}"),
        Err(e) => panic!("no answer: {e:?}"),
    }
}

/// An ensemble of `kinds` with the local session keys, all members up, sid 3
/// leading (the place each transcript means).
fn start(kinds: [Kind; 3], upgrading: bool) -> Option<Ensemble> {
    let mut ens = start_as(kinds, [Role::Participant; 3], upgrading)?;
    ens.lead_by(3);
    Some(ens)
}

/// [`start`] with each member's role.
fn start_as(kinds: [Kind; 3], roles: [Role; 3], upgrading: bool) -> Option<Ensemble> {
    if !Ensemble::can_start(&kinds) {
        return None;
    }
    let members: Vec<(Kind, Role)> = kinds.into_iter().zip(roles).collect();
    let cfg = format!("localSessionsEnabled=true\nlocalSessionsUpgradingEnabled={upgrading}\n");
    let ens = Ensemble::start_cfg(&members, &cfg);
    Some(ens)
}

/// The member's `zk_local_sessions` (mntr).
fn local_sessions(ens: &Ensemble, sid: u64) -> String {
    let text = four_letter_word(&ens.client_addr(sid), "mntr").unwrap_or_default();
    (text.lines())
        .find_map(|l| l.strip_prefix("zk_local_sessions\t"))
        .unwrap_or("missing")
        .to_string()
}

/// Through member `sid`: a persistent create, a setData, an ephemeral create, a
/// multi with an ephemeral create, then the session closed; the outcomes, the
/// member's count of local sessions along the way, and which of the nodes every
/// member still has afterwards (the same on all).
fn transcript(ens: &Ensemble, sid: u64) -> Vec<String> {
    let mut c = ens.connect(sid);
    let mut out = vec![format!(
        "local sessions at start: {}",
        local_sessions(ens, sid)
    )];
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
    out.push(format!(
        "local sessions after /e: {}",
        local_sessions(ens, sid)
    ));
    let multi = Request::Multi(vec![
        create_req("/m1", b"", CreateMode::Persistent),
        create_req("/m2", b"", CreateMode::Ephemeral),
    ]);
    // Each op's result too: the header of a failed multi says 0 on both.
    out.push(match call(&mut c, &multi) {
        Ok(Response::Multi(results)) => results
            .iter()
            .map(|r| match r {
                OpResult::Ok(..) => "ok".to_string(),
                OpResult::Err(e) => format!("{}", *e as i32),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => outcome(other),
    });
    let tree = ens.assert_same_tree();
    for path in ["/p", "/e", "/m1", "/m2"] {
        out.push(format!("{path} before close: {}", tree.contains_key(path)));
    }
    // A setData and the close back to back: both answered, in order (a local
    // session's close needs no txn, yet waits for the write ahead of it).
    let set = c.send(&set).expect("send setData");
    let close = c.send(&Request::CloseSession).expect("send closeSession");
    for want in [set, close] {
        let r = c.recv_reply().expect("a reply");
        out.push(format!("reply {}: {}", r.xid - want, r.err));
    }
    let tree = ens.assert_same_tree();
    for path in ["/p", "/e", "/m1", "/m2"] {
        out.push(format!("{path} after close: {}", tree.contains_key(path)));
    }
    out
}

/// Deletes what a transcript leaves (its persistent nodes), so another can run.
fn clean(ens: &Ensemble, sid: u64) {
    let mut c = ens.connect(sid);
    for path in ["/p", "/m1"] {
        let del = Request::Delete {
            path: path.into(),
            version: -1,
        };
        let done = outcome(call(&mut c, &del));
        assert!(
            done == "ok" || done == "error -101",
            "delete {path}: {done}"
        );
    }
    c.close_session().expect("closeSession reply");
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
        assert_eq!(reference[3], want_ephemeral, "{reference:?}");
        for (kinds, got) in &runs[1..] {
            assert_eq!(got, reference, "{kinds:?}, upgrading={upgrading}");
        }
    }
}

/// corral's own local sessions: through a corral follower (of a reference leader,
/// and of a corral leader) and through a corral leader (of reference followers,
/// and of corral ones), the same transcript as through the reference's follower
/// and leader, with upgrading on and off.
#[test]
fn corral_members_keep_their_own_local_sessions_as_the_reference() {
    for upgrading in [true, false] {
        let Some(reference) = start(THREE_REFERENCES, upgrading) else {
            return;
        };
        assert_eq!(reference.wait_leader(), 3, "{}", reference.report());
        let via_follower = transcript(&reference, 1);
        clean(&reference, 1);
        let via_leader = transcript(&reference, 3);
        eprintln!("[local_sessions] upgrading={upgrading}: via a follower {via_follower:?}; via the leader {via_leader:?}");
        drop(reference);
        assert_eq!(
            via_follower[0], "local sessions at start: 1",
            "{via_follower:?}"
        );
        for (kinds, sid, want) in [
            (ZOOKEEPER_LEADS, 1, &via_follower),
            (CORRAL_LEADS, 3, &via_leader),
            (THREE_CORRALS, 1, &via_follower),
            (THREE_CORRALS, 3, &via_leader),
        ] {
            let ens = start(kinds, upgrading).expect("the reference ran above");
            assert_eq!(ens.wait_leader(), 3, "{}", ens.report());
            assert_eq!(ens.kind(sid), Kind::Corral);
            assert_eq!(
                &transcript(&ens, sid),
                want,
                "{kinds:?} through member {sid}, upgrading={upgrading}"
            );
        }
    }
}

/// A local session resumed: on its own member it goes on (a read answers); on
/// another member it is expired (the leader never knew it), and after its
/// client is silent for its timeout it is gone on its own member too, with no
/// txn. The same outcomes as the reference's, corral on either side.
fn resume_transcript(ens: &Ensemble) -> Vec<String> {
    // The answer, and the connection (which now holds the session).
    let resume = |sid: u64, id: i64, passwd: &[u8]| {
        let mut req = ConnectRequest::new_session(common::ensemble::SESSION_TIMEOUT_MS);
        req.session_id = id;
        req.passwd = passwd.to_vec();
        let (mut again, resp) =
            RawClient::handshake(&ens.client_addr(sid), &req).expect("handshake");
        let read = match resp.session_id {
            0 => "expired".to_string(),
            _ => outcome(call(
                &mut again,
                &Request::Exists {
                    path: "/".into(),
                    watch: false,
                },
            )),
        };
        (format!("resumed on {sid}: {read}"), again)
    };
    let zxid = |sid: u64| {
        let text = four_letter_word(&ens.client_addr(sid), "srvr").unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("Zxid:"))
            .map(str::to_string)
    };
    let before = zxid(1);
    assert!(before.is_some(), "srvr has a Zxid line");
    let c = ens.connect(1);
    let (id, passwd) = (c.session_id, c.passwd.clone());
    let mut out = Vec::new();
    for sid in [1, 2] {
        out.push(resume(sid, id, &passwd).0);
    }
    // The session moves to the newest connection: closed through it.
    let (again, mut holder) = resume(1, id, &passwd);
    out.push(again);
    drop(c);
    let closed = holder.close_session().expect("closeSession reply");
    out.push(format!("close: {}", closed.err));
    out.push(format!(
        "local sessions after close: {}",
        local_sessions(ens, 1)
    ));
    // A short session, then silence: it expires on its member.
    let mut req = ConnectRequest::new_session(SHORT_SESSION_MS);
    req.timeout_ms = SHORT_SESSION_MS;
    let (short, resp) = RawClient::handshake(&ens.client_addr(1), &req).expect("handshake");
    drop(short);
    out.push(format!(
        "local sessions with it: {}",
        local_sessions(ens, 1)
    ));
    // Watched without touching it (a resume would).
    let gone = (0..EXPIRY_POLLS_MAX).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        local_sessions(ens, 1) == "0"
    });
    out.push(format!("silent short session gone: {gone}"));
    out.push(resume(1, resp.session_id, &resp.passwd).0);
    assert_eq!(zxid(1), before, "local sessions write no txn");
    out
}

/// The short session's timeout (the harness's minSessionTimeout).
const SHORT_SESSION_MS: i32 = 1_000;
/// Polls (100 ms apart) for the short session to expire.
const EXPIRY_POLLS_MAX: u32 = 300;

#[test]
fn a_local_session_resumes_only_on_its_own_member() {
    let Some(reference) = start(THREE_REFERENCES, true) else {
        return;
    };
    let want = resume_transcript(&reference);
    eprintln!("[local_sessions] the reference: {want:?}");
    drop(reference);
    assert_eq!(want[1], "resumed on 2: expired", "{want:?}");
    for kinds in [ZOOKEEPER_LEADS, THREE_CORRALS] {
        let ens = start(kinds, true).expect("the reference ran above");
        assert_eq!(resume_transcript(&ens), want, "{kinds:?}");
    }
}

/// An observer keeps local sessions too (ObserverRequestProcessor upgrades as a
/// follower does): through a corral observer of corral participants, and of
/// reference ones, the transcript of the reference's observer, upgrading on and
/// off.
#[test]
fn observers_keep_local_sessions_as_the_reference() {
    let roles = [Role::Participant, Role::Participant, Role::Observer];
    for upgrading in [true, false] {
        let Some(reference) = start_as(THREE_REFERENCES, roles, upgrading) else {
            return;
        };
        assert_eq!(reference.wait_leader(), 2, "{}", reference.report());
        let want = transcript(&reference, 3);
        drop(reference);
        assert_eq!(want[0], "local sessions at start: 1", "{want:?}");
        let observed = [Kind::Reference, Kind::Reference, Kind::Corral];
        for kinds in [THREE_CORRALS, observed] {
            let ens = start_as(kinds, roles, upgrading).expect("the reference ran above");
            assert_eq!(ens.wait_leader(), 2, "{}", ens.report());
            assert_eq!(
                transcript(&ens, 3),
                want,
                "{kinds:?} through the observer, upgrading={upgrading}"
            );
        }
    }
}
