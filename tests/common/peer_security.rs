//! Helpers of the peer-security tests (quorum TLS, quorum SASL): ensembles whose
//! members' zoo.cfg get extra lines per member, writes through every member with a
//! tree check, and bounded waits on what a member logs or does not do.

use super::ensemble::{call, create_req, Ensemble, Role};
use super::Kind;
use corral::proto::{CreateMode, Response};
use std::time::Duration;

/// Writes each phase makes through every serving member.
const WRITES_PER_MEMBER: usize = 5;
/// Polls (of `POLL_MS`) a refused member is watched for: it must not serve.
const REFUSED_POLLS: usize = 40;
/// Polls for a line to appear in a member's log.
const LOG_POLLS_MAX: usize = 200;
const POLL_MS: u64 = 100;

/// An ensemble of these kinds, configured (not launched), each member's zoo.cfg the
/// harness's lines plus `lines(sid)`.
pub fn configure(kinds: [Kind; 3], lines: impl Fn(u64) -> String) -> Option<Ensemble> {
    if !Ensemble::can_start(&kinds) {
        return None;
    }
    let members: Vec<(Kind, Role)> = kinds.iter().map(|&k| (k, Role::Participant)).collect();
    let ens = Ensemble::configure(&members, "");
    for sid in ens.sids() {
        set_lines(&ens, sid, &lines(sid));
    }
    Some(ens)
}

/// Rewrites member `sid`'s zoo.cfg as the harness wrote it plus `lines` (before a
/// launch or restart); the harness's own lines end at the marker.
pub fn set_lines(ens: &Ensemble, sid: u64, lines: &str) {
    const MARK: &str = "# peer security\n";
    let text = ens.config(sid);
    let base = text.split(MARK).next().unwrap_or_default().to_string();
    let path = ens.member_dir(sid).join("zoo.cfg");
    std::fs::write(path, format!("{base}{MARK}{lines}")).unwrap();
}

/// Creates `/<tag>-<sid>-<i>` through every member in `sids`, then checks every
/// member in `sids` has the same tree.
pub fn write_through(ens: &Ensemble, sids: &[u64], tag: &str) {
    for &sid in sids {
        let mut c = ens.connect(sid);
        for i in 0..WRITES_PER_MEMBER {
            let path = format!("/{tag}-{sid}-{i}");
            match call(
                &mut c,
                &create_req(&path, tag.as_bytes(), CreateMode::Persistent),
            ) {
                Ok(Response::Create { .. }) => {}
                other => panic!(
                    "create {path} through member {sid}: {other:?}\n{}",
                    ens.report()
                ),
            }
        }
    }
    let trees: Vec<_> = sids.iter().map(|&s| (s, ens.dump_tree(s))).collect();
    for (sid, tree) in &trees[1..] {
        let diff = super::ensemble::tree_differences(trees[0].0, &trees[0].1, *sid, tree);
        assert!(diff.is_empty(), "trees differ: {diff:?}\n{}", ens.report());
    }
    let ours = trees[0]
        .1
        .keys()
        .filter(|p| p.starts_with(&format!("/{tag}-")))
        .count();
    assert_eq!(
        ours,
        sids.len() * WRITES_PER_MEMBER,
        "every create of {tag} is there"
    );
}

/// Waits (bounded) until member `sid`'s log has a line containing `what`.
pub fn wait_log(ens: &Ensemble, sid: u64, what: &str) {
    wait_log_count(ens, sid, what, 1);
}

/// How many times member `sid`'s log says `what`.
pub fn log_count(ens: &Ensemble, sid: u64, what: &str) -> usize {
    ens.log(sid).matches(what).count()
}

/// Waits (bounded) until member `sid`'s log says `what` at least `n` times.
pub fn wait_log_count(ens: &Ensemble, sid: u64, what: &str, n: usize) {
    for _ in 0..LOG_POLLS_MAX {
        if log_count(ens, sid, what) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    panic!(
        "member {sid}'s log never said `{what}` {n} times\n{}",
        ens.report()
    );
}

/// Checks that member `sid` does not serve while the others go on.
pub fn assert_kept_out(ens: &Ensemble, sid: u64) {
    for _ in 0..REFUSED_POLLS {
        assert!(ens.is_running(sid), "member {sid} still runs");
        assert_eq!(
            ens.mode(sid),
            None,
            "member {sid} must not serve\n{}",
            ens.report()
        );
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// A follower killed and restarted: the others take writes while it is down (tagged
/// `<tag>-down`), then it syncs (a DIFF from the leader's log, over whatever the
/// links are secured with) and every member takes writes (`<tag>-again`).
pub fn follower_rejoins(ens: &mut Ensemble, tag: &str) {
    let leader = ens.wait_leader();
    let follower = if leader == 1 { 2 } else { 1 };
    ens.kill(follower);
    let up: Vec<u64> = [1, 2, 3].into_iter().filter(|s| *s != follower).collect();
    write_through(ens, &up, &format!("{tag}-down"));
    ens.restart(follower);
    ens.wait_serving(follower);
    write_through(ens, &[1, 2, 3], &format!("{tag}-again"));
}
