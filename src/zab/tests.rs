//! Exact-output tests of the replication core: one [`Replica`] is fed a scripted
//! sequence of inputs and every batch it produces is compared whole (what leaves at
//! once, the writes, and what waits behind those writes). They pin ZooKeeper 3.8's
//! protocol as PEER-PROTOCOL.md (§4 election, §5 discovery and sync, §6 broadcast,
//! §7 requests, §10 observers, §11 reconfig) and the reference source describe it,
//! phase by phase and packet by packet; the simulator (`sim.rs`) covers whole
//! ensembles.
//!
//! Runs on the test thread; no IO, no clock: time is the `now` given to each step.
//! The cast is always the same: voters 1, 2 and 3, observer 4. In leader scenarios
//! server 3 leads and its driver numbers the learners' connections 10 (server 1),
//! 20 (server 2) and 40 (server 4); in learner scenarios server 3 is the leader the
//! learner dials on its first core connection `C`. Reconfig scenarios turn
//! reconfigEnabled on and add server 5, in no config, on connection 50.
//!
//! Tests marked `#[ignore = "BUG: …"]` describe the reference's behaviour where the
//! code differs from it (or from its own documented contract).

use bytes::Bytes;

use super::*;

// ----- the cast ----------------------------------------------------------------------

const LEADER: ServerId = 3;
const OBSERVER: ServerId = 4;
/// The committed QuorumVerifier text every member sends (opaque to the core).
const QV: &[u8] = b"server.1=127.0.0.1:2888:3888:participant\n\
server.2=127.0.0.1:2889:3889:participant\n\
server.3=127.0.0.1:2890:3890:participant\n\
server.4=127.0.0.1:2891:3891:observer\n\
version=100000000";
const CONFIG_VERSION: i64 = 0x1_0000_0000;
/// A learner's first dial to the leader.
const C: ConnId = CORE_CONN_BIT;
/// The leader's connections from servers 1, 2 and the observer 4.
const CONN_1: ConnId = 10;
const CONN_2: ConnId = 20;
const CONN_4: ConnId = 40;

fn cfg(id: ServerId) -> Config {
    let m = Membership::parse(QV).expect("the cast's config");
    assert_eq!(m.text().as_ref(), QV, "the text is kept byte for byte");
    Config::new(id, m)
}

fn z(epoch: u32, counter: u32) -> Zxid {
    Zxid::new(epoch, counter)
}

fn ent(epoch: u32, counter: u32) -> Entry {
    Entry::new(
        z(epoch, counter),
        Bytes::from(format!("txn {epoch}:{counter}")),
    )
}

/// A disk with these epochs and this log after the snapshot (the driver's state
/// holds all of it).
fn disk(accepted: u32, current: u32, tail: &[(u32, u32)]) -> DurableState {
    let tail: Vec<Entry> = tail.iter().map(|&(e, c)| ent(e, c)).collect();
    DurableState {
        accepted_epoch: accepted,
        current_epoch: current,
        last_zxid: tail.last().map_or(Zxid::ZERO, |e| e.zxid),
        tail,
    }
}

// ----- batches -----------------------------------------------------------------------

/// One batch as the driver sees it: performed at once, made durable, released after.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    now: Vec<Output>,
    writes: Vec<Write>,
    gated: Vec<Output>,
}

fn b(now: Vec<Output>, writes: Vec<Write>, gated: Vec<Output>) -> Batch {
    Batch { now, writes, gated }
}

/// A batch with nothing to persist.
fn only_now(now: Vec<Output>) -> Batch {
    b(now, vec![], vec![])
}

/// Takes one batch and persists it at once.
fn next_batch(r: &mut Replica) -> Option<Batch> {
    let mut ready = r.ready()?;
    let now = ready.take_now();
    let writes = ready.writes().to_vec();
    let gated = r.advance(ready.persisted());
    Some(Batch { now, writes, gated })
}

/// Every batch until the replica has nothing more (a leader's own ACK can make a
/// follow-up batch).
fn drain(r: &mut Replica) -> Vec<Batch> {
    std::iter::from_fn(|| next_batch(r)).collect()
}

/// The packets sent on `conn`, in wire order, across batches.
fn sent_on(batches: &[Batch], conn: ConnId) -> Vec<Packet> {
    batches
        .iter()
        .flat_map(|b| b.now.iter().chain(b.gated.iter()))
        .filter_map(|o| match o {
            Output::Send { conn: c, packet } if *c == conn => Some(packet.clone()),
            _ => None,
        })
        .collect()
}

// ----- outputs -----------------------------------------------------------------------

fn vote(leader: ServerId, zxid: Zxid, peer_epoch: u32) -> Vote {
    Vote {
        leader: leader as i64,
        zxid: zxid.as_i64(),
        peer_epoch: peer_epoch as i64,
    }
}

fn note(state: PeerState, v: Vote, round: i64) -> Notification {
    Notification {
        state,
        vote: v,
        election_epoch: round,
        config: Bytes::from_static(QV),
    }
}

fn looking(leader: ServerId, zxid: Zxid, peer_epoch: u32, round: i64) -> Notification {
    note(PeerState::Looking, vote(leader, zxid, peer_epoch), round)
}

fn notify(to: ServerId, n: Notification) -> Output {
    Output::Notify { to, n }
}

/// `n` to every voter but `me`, in id order.
fn notify_voters(me: ServerId, n: &Notification) -> Vec<Output> {
    [1, 2, 3]
        .into_iter()
        .filter(|v| *v != me)
        .map(|to| notify(to, n.clone()))
        .collect()
}

fn send(conn: ConnId, packet: Packet) -> Output {
    Output::Send { conn, packet }
}

fn close(conn: ConnId) -> Output {
    Output::Close { conn }
}

fn ev(e: Event) -> Output {
    Output::Event(e)
}

fn role_changed(r: Role) -> Output {
    ev(Event::RoleChanged(r))
}

fn apply(epoch: u32, counter: u32) -> Output {
    ev(Event::Apply(ent(epoch, counter)))
}

fn leading(epoch: Option<u32>, established: bool) -> Role {
    Role::Leading { epoch, established }
}

fn following(serving: bool) -> Role {
    Role::Following {
        leader: LEADER,
        serving,
    }
}

fn observing(serving: bool) -> Role {
    Role::Observing {
        leader: LEADER,
        serving,
    }
}

fn append(epoch: u32, counter: u32) -> Write {
    Write::Append(ent(epoch, counter))
}

// ----- packets -----------------------------------------------------------------------

fn learner_info(sid: ServerId, accepted_epoch: u32, observer: bool) -> Packet {
    Packet::LearnerInfo {
        info: LearnerInfo {
            sid,
            accepted_epoch,
            protocol_version: PROTOCOL_VERSION,
            config_version: CONFIG_VERSION,
        },
        observer,
    }
}

fn leader_info(new_epoch: u32) -> Packet {
    Packet::LeaderInfo {
        new_epoch,
        protocol_version: PROTOCOL_VERSION,
    }
}

fn ack_epoch(last_zxid: Zxid, current_epoch: Option<u32>) -> Packet {
    Packet::AckEpoch {
        last_zxid,
        current_epoch,
    }
}

fn new_leader(epoch: u32) -> Packet {
    Packet::NewLeader {
        zxid: z(epoch, 0),
        config: Bytes::from_static(QV),
    }
}

fn proposal(epoch: u32, counter: u32) -> Packet {
    Packet::Proposal(ent(epoch, counter))
}

fn commit(epoch: u32, counter: u32) -> Packet {
    Packet::Commit {
        zxid: z(epoch, counter),
    }
}

fn ack(epoch: u32, counter: u32) -> Packet {
    Packet::Ack {
        zxid: z(epoch, counter),
    }
}

fn forwarded(op: i32) -> Forwarded {
    Forwarded {
        session_id: 0x100_0000_0000_0001,
        cxid: 7,
        op,
        body: Bytes::from_static(b"\x00\x00\x00\x02/a"),
        auth: Some(Arc::new(vec![crate::proto::Id::new("ip", "127.0.0.1")])),
    }
}

// ----- inputs ------------------------------------------------------------------------

fn hear(r: &mut Replica, now: u64, from: ServerId, n: Notification) {
    r.step(now, Input::Notification { from, n });
}

fn tick(r: &mut Replica, now: u64) {
    r.step(now, Input::Tick);
}

fn pkt(r: &mut Replica, now: u64, conn: ConnId, packet: Packet) {
    r.step(now, Input::Packet { conn, packet });
}

// ----- scenarios ---------------------------------------------------------------------

/// A member started at time 0 from `d`, its first batch (LOOKING, round 1) drained.
fn started(c: Config, d: DurableState) -> Replica {
    let mut r = Replica::new(c, d, 0).expect("valid config");
    drain(&mut r);
    r
}

/// Server 3 from `d`, elected at time 200 with server 2's agreeing vote.
fn elected_with(c: Config, d: DurableState) -> Replica {
    let mine = looking(LEADER, d.last_zxid, d.current_epoch, 1);
    let mut r = started(c, d);
    hear(&mut r, 0, 2, mine);
    tick(&mut r, 200);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![role_changed(leading(None, false))])]
    );
    r
}

fn elected(d: DurableState) -> Replica {
    elected_with(cfg(LEADER), d)
}

/// A learner connects to the leader and introduces itself.
fn join(r: &mut Replica, now: u64, conn: ConnId, sid: ServerId, accepted: u32, observer: bool) {
    r.step(now, Input::Accepted { conn });
    pkt(r, now, conn, learner_info(sid, accepted, observer));
}

/// Leader 3 (log 1:1, 1:2, epochs 1) established in epoch 2 with followers 1 and 2
/// and the observer, all synced by an empty DIFF and up to date.
fn established() -> Replica {
    established_with(cfg(LEADER))
}

fn established_with(c: Config) -> Replica {
    let mut r = elected_with(c, disk(1, 1, &[(1, 1), (1, 2)]));
    for (conn, sid, observer) in [
        (CONN_2, 2, false),
        (CONN_1, 1, false),
        (CONN_4, OBSERVER, true),
    ] {
        join(&mut r, 300, conn, sid, 1, observer);
    }
    drain(&mut r);
    for conn in [CONN_2, CONN_1, CONN_4] {
        pkt(&mut r, 400, conn, ack_epoch(z(1, 2), Some(1)));
    }
    drain(&mut r);
    for conn in [CONN_2, CONN_1, CONN_4] {
        pkt(&mut r, 500, conn, ack(2, 0));
    }
    let out = drain(&mut r);
    for conn in [CONN_1, CONN_2, CONN_4] {
        assert_eq!(sent_on(&out, conn), vec![Packet::UpToDate]);
    }
    assert_eq!(r.established_epoch(), Some(2));
    r
}

/// Server `id` from `d`, decided (at time 200) for leader 3, dialling it on `C`.
fn learner_dialling(id: ServerId, d: DurableState) -> Replica {
    learner_dialling_with(cfg(id), d)
}

fn learner_dialling_with(c: Config, d: DurableState) -> Replica {
    let id = c.id;
    let mut r = started(c, d);
    if id == OBSERVER {
        // An observer learns the leader from the voters' answers.
        hear(
            &mut r,
            100,
            3,
            note(PeerState::Leading, vote(3, z(1, 2), 1), 1),
        );
        hear(
            &mut r,
            200,
            2,
            note(PeerState::Following, vote(3, z(1, 2), 1), 1),
        );
    } else {
        let (zxid, epoch) = (r.last_logged(), r.current_epoch());
        hear(&mut r, 0, LEADER, looking(LEADER, zxid, epoch, 1));
        drain(&mut r);
        tick(&mut r, 200);
    }
    let role = if id == OBSERVER {
        observing(false)
    } else {
        following(false)
    };
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(role),
            Output::Connect {
                conn: C,
                to: LEADER
            }
        ])]
    );
    r
}

/// The dial succeeded and FOLLOWERINFO / OBSERVERINFO left.
fn learner_connected(id: ServerId, d: DurableState) -> Replica {
    learner_connected_with(cfg(id), d)
}

fn learner_connected_with(c: Config, d: DurableState) -> Replica {
    let mut r = learner_dialling_with(c, d);
    r.step(300, Input::Connected { conn: C });
    drain(&mut r);
    r
}

/// A learner of leader 3 synced by an empty DIFF into epoch `accepted + 1` and
/// serving (UPTODATE at time 1000).
fn serving(id: ServerId, d: DurableState) -> Replica {
    serving_with(cfg(id), d)
}

fn serving_with(c: Config, d: DurableState) -> Replica {
    let epoch = d.accepted_epoch + 1;
    let last = d.last_zxid;
    let mut r = learner_connected_with(c, d);
    pkt(&mut r, 400, C, leader_info(epoch));
    pkt(&mut r, 500, C, Packet::Diff { zxid: last });
    pkt(&mut r, 600, C, new_leader(epoch));
    drain(&mut r);
    pkt(&mut r, 1000, C, Packet::UpToDate);
    drain(&mut r);
    assert!(r.role().serving());
    r
}

// =====================================================================================
// 1. Election (PEER-PROTOCOL §4)
// =====================================================================================

#[test]
fn election_fresh_voter_notifies_every_other_voter_with_its_own_vote() {
    let mut r = Replica::new(cfg(2), disk(1, 1, &[(1, 1), (1, 2)]), 0).unwrap();
    let mine = looking(2, z(1, 2), 1, 1);
    let mut first = vec![role_changed(Role::Looking)];
    first.extend(notify_voters(2, &mine));
    assert_eq!(drain(&mut r), vec![only_now(first)]);
    assert_eq!(r.election_epoch(), 1);
    assert_eq!(r.peer_state(), PeerState::Looking);
    assert_eq!(r.next_deadline(), 200);

    // Its own vote is recorded: one peer agreeing is a quorum of 3 (after the
    // finalize wait, nothing is sent).
    hear(&mut r, 10, 1, mine.clone());
    assert_eq!(drain(&mut r), vec![]);
    tick(&mut r, 210);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![role_changed(leading(None, false))])]
    );
}

#[test]
fn election_adopts_a_better_vote_and_notifies_again() {
    let mut r = started(cfg(2), DurableState::default());
    // Worse (same epoch and zxid, lower id): recorded, and the sender is told our
    // better vote at once (the reference stays silent until its timeout).
    hear(&mut r, 0, 1, looking(1, Zxid::ZERO, 0, 1));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![notify(1, looking(2, Zxid::ZERO, 0, 1))])]
    );
    // Better by peer epoch, then by zxid, then by id: each is adopted and sent.
    let by_id = looking(3, Zxid::ZERO, 0, 1);
    hear(&mut r, 0, 3, by_id.clone());
    assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &by_id))]);
    let by_zxid = looking(1, z(0, 5), 0, 1);
    hear(&mut r, 50, 1, by_zxid.clone());
    assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &by_zxid))]);
    let by_epoch = looking(3, z(0, 1), 1, 1);
    hear(&mut r, 60, 3, by_epoch.clone());
    assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &by_epoch))]);
    // 3 and we agree: decided once the finalize wait passes.
    tick(&mut r, 260);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(following(false)),
            Output::Connect {
                conn: C,
                to: LEADER
            }
        ])]
    );
    assert_eq!(r.election_epoch(), 1);
}

#[test]
fn election_higher_round_resets_the_round_to_the_initial_vote() {
    let mut r = started(cfg(2), DurableState::default());
    // Round 4 with a worse vote: our round becomes 4, our own vote is re-sent.
    hear(&mut r, 0, 1, looking(1, Zxid::ZERO, 0, 4));
    let mine = looking(2, Zxid::ZERO, 0, 4);
    assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &mine))]);
    assert_eq!(r.election_epoch(), 4);
    // A lagging LOOKING voter hears our round (and its vote is dropped).
    hear(&mut r, 10, 3, looking(3, z(0, 9), 0, 2));
    assert_eq!(drain(&mut r), vec![only_now(vec![notify(3, mine.clone())])]);
    // A better vote in our round is adopted; with 3 that is a quorum.
    let theirs = looking(3, Zxid::ZERO, 0, 4);
    hear(&mut r, 20, 3, theirs.clone());
    assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &theirs))]);
    tick(&mut r, 220);
    assert_eq!(r.role(), following(false));
}

#[test]
fn election_higher_round_with_a_better_vote_adopts_it() {
    let mut r = started(cfg(2), DurableState::default());
    let theirs = looking(1, z(1, 1), 1, 3);
    hear(&mut r, 0, 1, theirs.clone());
    assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &theirs))]);
    assert_eq!(r.election_epoch(), 3);
    tick(&mut r, 200);
    assert_eq!(
        r.role(),
        Role::Following {
            leader: 1,
            serving: false
        }
    );
}

#[test]
fn election_decides_after_the_finalize_wait_and_a_better_vote_reopens_it() {
    let mut r = started(cfg(2), DurableState::default());
    let three = looking(3, Zxid::ZERO, 0, 1);
    hear(&mut r, 0, 3, three.clone());
    assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &three))]);
    assert_eq!(r.next_deadline(), 200);
    tick(&mut r, 149);
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.role(), Role::Looking);

    // A better vote during the wait: adopted, re-sent, and the wait starts again.
    let one = looking(1, z(1, 4), 1, 1);
    hear(&mut r, 150, 1, one.clone());
    assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &one))]);
    assert_eq!(r.next_deadline(), 350);
    tick(&mut r, 349);
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.role(), Role::Looking);
    tick(&mut r, 350);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(Role::Following {
                leader: 1,
                serving: false
            }),
            Output::Connect { conn: C, to: 1 }
        ])]
    );
}

#[test]
fn election_finalize_wait_restarts_after_a_notification_that_is_not_better() {
    let mut r = started(cfg(2), DurableState::default());
    let three = looking(3, Zxid::ZERO, 0, 1);
    hear(&mut r, 0, 3, three.clone());
    drain(&mut r);
    hear(&mut r, 150, 3, three);
    tick(&mut r, 200);
    assert_eq!(r.role(), Role::Looking);
    tick(&mut r, 350);
    assert_eq!(r.role(), following(false));
}

#[test]
fn election_latecomer_joins_an_established_leader_once_it_says_leading() {
    let mut r = started(cfg(1), DurableState::default());
    let v = vote(LEADER, z(1, 2), 2);
    // Out of our round: a quorum follows 3 but 3 has not said LEADING yet.
    hear(&mut r, 0, 2, note(PeerState::Following, v, 5));
    hear(&mut r, 0, 3, note(PeerState::Following, v, 5));
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.role(), Role::Looking);
    // checkLeader: the leader's own LEADING vote.
    hear(&mut r, 0, 3, note(PeerState::Leading, v, 5));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(following(false)),
            Output::Connect {
                conn: C,
                to: LEADER
            }
        ])]
    );
    assert_eq!(r.election_epoch(), 5);

    // A LOOKING voter is answered with the decided vote, the round it was decided
    // in, and our state.
    hear(&mut r, 10, 2, looking(2, z(1, 1), 1, 9));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![notify(2, note(PeerState::Following, v, 5))])]
    );
}

#[test]
fn election_latecomer_joins_within_its_own_round() {
    let mut r = started(cfg(1), DurableState::default());
    let v = vote(LEADER, z(1, 2), 2);
    hear(&mut r, 0, 3, note(PeerState::Leading, v, 1));
    assert_eq!(drain(&mut r), vec![]);
    hear(&mut r, 0, 2, note(PeerState::Following, v, 1));
    assert_eq!(r.role(), following(false));
    assert_eq!(r.election_epoch(), 1);
}

#[test]
fn election_latecomer_in_round_counts_votes_by_leader_id() {
    let mut r = started(cfg(1), DurableState::default());
    // The leader updated its vote's peer epoch when established; follower 2 is
    // still syncing and reports the old one.
    hear(
        &mut r,
        0,
        3,
        note(PeerState::Leading, vote(LEADER, z(1, 2), 2), 1),
    );
    hear(
        &mut r,
        0,
        2,
        note(PeerState::Following, vote(LEADER, z(1, 2), 1), 1),
    );
    assert_eq!(r.role(), following(false));
}

#[test]
fn election_members_answer_a_looking_voter_with_their_decision() {
    // The leader: its LEADING vote, peer epoch raised once established.
    let mut r = established();
    hear(&mut r, 600, 1, looking(1, z(1, 1), 1, 7));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![notify(
            1,
            note(PeerState::Leading, vote(LEADER, z(1, 2), 2), 1)
        )])]
    );
    // A follower: FOLLOWING, the round of the decision, peer epoch after UPTODATE.
    let mut f = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    hear(&mut f, 1100, 1, looking(1, z(1, 1), 1, 7));
    assert_eq!(
        drain(&mut f),
        vec![only_now(vec![notify(
            1,
            note(PeerState::Following, vote(LEADER, z(1, 2), 2), 1)
        )])]
    );
    // Members do not answer FOLLOWING/LEADING notifications.
    hear(
        &mut f,
        1100,
        1,
        note(PeerState::Following, vote(3, z(1, 2), 2), 1),
    );
    assert_eq!(drain(&mut f), vec![]);
}

#[test]
fn election_observer_votes_none_and_voters_answer_it() {
    let mut o = Replica::new(cfg(OBSERVER), DurableState::default(), 0).unwrap();
    let none = note(PeerState::Looking, Vote::NONE, 1);
    let mut first = vec![role_changed(Role::Looking)];
    first.extend([1, 2, 3].map(|to| notify(to, none.clone())));
    assert_eq!(drain(&mut o), vec![only_now(first)]);

    // A LOOKING voter answers at once with its vote and round.
    let mut v = started(cfg(2), DurableState::default());
    hear(&mut v, 0, OBSERVER, none.clone());
    assert_eq!(
        drain(&mut v),
        vec![only_now(vec![notify(
            OBSERVER,
            looking(2, Zxid::ZERO, 0, 1)
        )])]
    );
    // A follower answers with its state, its decided vote and the current round.
    let mut f = started(cfg(1), DurableState::default());
    let v3 = vote(LEADER, z(1, 2), 2);
    hear(&mut f, 0, 2, note(PeerState::Following, v3, 5));
    hear(&mut f, 0, 3, note(PeerState::Leading, v3, 5));
    drain(&mut f);
    hear(&mut f, 10, OBSERVER, none.clone());
    assert_eq!(
        drain(&mut f),
        vec![only_now(vec![notify(
            OBSERVER,
            note(PeerState::Following, v3, 5)
        )])]
    );
    // A leader answers with its state and vote.
    let mut l = established();
    hear(&mut l, 600, OBSERVER, none.clone());
    assert_eq!(
        drain(&mut l),
        vec![only_now(vec![notify(
            OBSERVER,
            note(PeerState::Leading, vote(LEADER, z(1, 2), 2), 1)
        )])]
    );

    // The observer follows the quorum's leader once it says LEADING, and observes.
    hear(
        &mut o,
        10,
        2,
        note(PeerState::Following, vote(3, z(1, 2), 2), 1),
    );
    assert_eq!(drain(&mut o), vec![]);
    hear(
        &mut o,
        10,
        3,
        note(PeerState::Leading, vote(3, z(1, 2), 2), 1),
    );
    assert_eq!(
        drain(&mut o),
        vec![only_now(vec![
            role_changed(observing(false)),
            Output::Connect {
                conn: C,
                to: LEADER
            }
        ])]
    );
}

#[test]
fn election_observer_does_not_answer_a_lagging_voter() {
    // corral's one deliberate difference: the reference's observer answers, the
    // voter answers the non-voter, and the two bounce for as long as it lags.
    let mut o = started(cfg(OBSERVER), DurableState::default());
    hear(&mut o, 0, 2, looking(2, Zxid::ZERO, 0, 1));
    drain(&mut o);
    hear(&mut o, 0, 3, looking(3, Zxid::ZERO, 0, 0));
    assert_eq!(drain(&mut o), vec![]);
}

#[test]
fn election_looking_voter_answers_an_observer_with_its_current_vote() {
    let mut v = started(cfg(2), DurableState::default());
    hear(&mut v, 0, 3, looking(3, Zxid::ZERO, 0, 1));
    drain(&mut v);
    hear(
        &mut v,
        10,
        OBSERVER,
        note(PeerState::Looking, Vote::NONE, 1),
    );
    assert_eq!(
        drain(&mut v),
        vec![only_now(vec![notify(
            OBSERVER,
            looking(2, Zxid::ZERO, 0, 1)
        )])]
    );
}

#[test]
fn election_ignores_notifications_naming_a_non_voter() {
    let mut r = started(cfg(2), DurableState::default());
    // Better by every measure, but for the observer or an unknown server.
    hear(&mut r, 0, 1, looking(OBSERVER, z(9, 9), 9, 1));
    hear(&mut r, 0, 3, looking(7, z(9, 9), 9, 1));
    assert_eq!(drain(&mut r), vec![]);
    // So is a LOOKING vote with zxid -1.
    let minus_one = Vote {
        leader: 3,
        zxid: -1,
        peer_epoch: 9,
    };
    hear(&mut r, 0, 3, note(PeerState::Looking, minus_one, 1));
    assert_eq!(drain(&mut r), vec![]);
    // A vote for a voter is followed as usual.
    hear(&mut r, 0, 3, looking(3, Zxid::ZERO, 0, 1));
    drain(&mut r);
    tick(&mut r, 200);
    assert_eq!(r.role(), following(false));

    // A better vote from the observer is answered, never adopted.
    let mut r = started(cfg(2), DurableState::default());
    hear(&mut r, 0, OBSERVER, looking(1, z(5, 5), 5, 1));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![notify(
            OBSERVER,
            looking(2, Zxid::ZERO, 0, 1)
        )])]
    );
}

#[test]
fn election_duplicates_are_harmless() {
    let mut r = started(cfg(2), DurableState::default());
    let worse = looking(1, Zxid::ZERO, 0, 1);
    hear(&mut r, 0, 1, worse.clone());
    hear(&mut r, 0, 1, worse);
    // Each copy is answered with our vote; nothing else changes.
    let answer = notify(1, looking(2, Zxid::ZERO, 0, 1));
    assert_eq!(drain(&mut r), vec![only_now(vec![answer.clone(), answer])]);
    let better = looking(3, Zxid::ZERO, 0, 1);
    hear(&mut r, 0, 3, better.clone());
    assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &better))]);
    hear(&mut r, 50, 3, better.clone());
    hear(&mut r, 60, 3, better);
    assert_eq!(drain(&mut r), vec![]);
    tick(&mut r, 400);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(following(false)),
            Output::Connect {
                conn: C,
                to: LEADER
            }
        ])]
    );
}

#[test]
fn election_resend_timeout_doubles_up_to_its_max() {
    let mut c = cfg(2);
    c.election_timeout_max_ms = 1000;
    let mut r = started(c, DurableState::default());
    let mine = looking(2, Zxid::ZERO, 0, 1);
    tick(&mut r, 199);
    assert_eq!(drain(&mut r), vec![]);
    // Each silent timeout re-sends and doubles: 200, 400, 800, then the max.
    for (at, next) in [(200, 600), (600, 1400), (1400, 2400), (2400, 3400)] {
        assert_eq!(r.next_deadline(), at);
        tick(&mut r, at);
        assert_eq!(drain(&mut r), vec![only_now(notify_voters(2, &mine))]);
        assert_eq!(r.next_deadline(), next);
    }
    // A notification restarts the wait with the current timeout.
    hear(&mut r, 2500, 1, looking(1, Zxid::ZERO, 0, 1));
    assert_eq!(r.next_deadline(), 3500);
    // (the worse vote is answered with ours)
    assert_eq!(drain(&mut r), vec![only_now(vec![notify(1, mine.clone())])]);
    tick(&mut r, 3400);
    assert_eq!(drain(&mut r), vec![]);
}

// =====================================================================================
// 2. Leader discovery (PEER-PROTOCOL §5.2, §5.3)
// =====================================================================================

#[test]
fn discovery_epoch_quorum_writes_accepted_epoch_before_leaderinfo() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    r.step(300, Input::Accepted { conn: CONN_2 });
    assert_eq!(drain(&mut r), vec![]);
    // With the leader itself, server 2 makes a quorum: epoch = max accepted + 1.
    pkt(&mut r, 300, CONN_2, learner_info(2, 1, false));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![Write::AcceptedEpoch(2)],
            vec![send(CONN_2, leader_info(2))]
        )]
    );
    assert_eq!(r.role(), leading(Some(2), false));
    assert_eq!(r.accepted_epoch(), 2);
    // A later learner gets the decided epoch at once, still behind this batch's disk.
    join(&mut r, 310, CONN_1, 1, 1, false);
    assert_eq!(
        drain(&mut r),
        vec![b(vec![], vec![], vec![send(CONN_1, leader_info(2))])]
    );
}

/// The connections closed in `batches`, in order.
fn closed_in(batches: &[Batch]) -> Vec<ConnId> {
    (batches.iter())
        .flat_map(|b| b.now.iter().chain(b.gated.iter()))
        .filter_map(|o| match o {
            Output::Close { conn } => Some(*conn),
            _ => None,
        })
        .collect()
}

/// A learner that decided first dials the leader-to-be while its election still
/// waits out finalizeWait: the link and its FOLLOWERINFO are held, not closed
/// (a reference learner would not dial again, but go back to its election), and
/// the leader it becomes answers them.
#[test]
fn discovery_a_learner_that_dials_before_the_election_ends_is_held_for_the_leader() {
    let d = disk(1, 1, &[(1, 1), (1, 2)]);
    let mine = looking(LEADER, d.last_zxid, d.current_epoch, 1);
    let mut r = started(cfg(LEADER), d);
    hear(&mut r, 0, 2, mine);
    join(&mut r, 100, CONN_2, 2, 1, false);
    assert_eq!(drain(&mut r), vec![], "held while looking");
    assert_eq!(r.role(), Role::Looking);
    tick(&mut r, 200);
    let out = drain(&mut r);
    assert!(closed_in(&out).is_empty());
    assert_eq!(sent_on(&out, CONN_2), vec![leader_info(2)]);
    assert_eq!(r.role(), leading(Some(2), false));
    assert_eq!(r.accepted_epoch(), 2);
}

/// A learner's early link is held only while its member is about to lead (a
/// quorum agrees, finalizeWait runs): it is closed as soon as a better vote
/// comes, and after initLimit of a finalizeWait restarted over and over; a dial
/// to a member not about to lead is refused at once, as by the reference's
/// unbound port. Links beyond `EARLY_LINKS_MAX` and packets beyond
/// `EARLY_PACKETS_MAX` are closed at once.
#[test]
fn discovery_held_links_are_closed_on_a_better_vote_after_their_hold_and_beyond_their_bounds() {
    use super::replica::{EARLY_LINKS_MAX, EARLY_PACKETS_MAX};
    // Server 1 alone proposes itself but is not about to lead: refused.
    let mut r = started(cfg(1), DurableState::default());
    r.step(10, Input::Accepted { conn: CONN_4 });
    assert_eq!(closed_in(&drain(&mut r)), vec![CONN_4]);
    // Server 2 agrees: held, until 3's better vote.
    hear(&mut r, 20, 2, looking(1, Zxid::ZERO, 0, 1));
    join(&mut r, 30, CONN_2, 2, 0, false);
    assert!(closed_in(&drain(&mut r)).is_empty());
    hear(&mut r, 40, 3, looking(LEADER, Zxid::ZERO, 0, 1));
    assert_eq!(closed_in(&drain(&mut r)), vec![CONN_2]);

    // Server 3, server 2 agreeing, server 1 restarting its finalizeWait every
    // 100 ms: held for initLimit, then closed.
    let mut c = cfg(LEADER);
    c.tick_ms = 100;
    let hold = c.init_limit_ms();
    let mut r = started(c, DurableState::default());
    hear(&mut r, 50, 2, looking(LEADER, Zxid::ZERO, 0, 1));
    r.step(100, Input::Accepted { conn: CONN_1 });
    let mut t = 100;
    while t + 100 < 100 + hold {
        t += 100;
        hear(&mut r, t, 1, looking(1, Zxid::ZERO, 0, 1));
        tick(&mut r, t);
    }
    assert!(closed_in(&drain(&mut r)).is_empty());
    assert!(r.next_deadline() <= 100 + hold);
    tick(&mut r, 100 + hold);
    assert_eq!(closed_in(&drain(&mut r)), vec![CONN_1]);
    assert_eq!(r.role(), Role::Looking);

    // The bounds.
    let mut r = started(cfg(LEADER), DurableState::default());
    hear(&mut r, 0, 2, looking(LEADER, Zxid::ZERO, 0, 1));
    let conns: Vec<ConnId> = (0..=EARLY_LINKS_MAX as ConnId).map(|i| 100 + i).collect();
    for &conn in &conns {
        r.step(10, Input::Accepted { conn });
    }
    assert_eq!(closed_in(&drain(&mut r)), vec![*conns.last().unwrap()]);
    for _ in 0..EARLY_PACKETS_MAX {
        pkt(&mut r, 20, conns[0], learner_info(1, 0, false));
    }
    assert!(closed_in(&drain(&mut r)).is_empty());
    pkt(&mut r, 20, conns[0], learner_info(1, 0, false));
    assert_eq!(closed_in(&drain(&mut r)), vec![conns[0]]);
    // A closed link's later packets are refused too.
    pkt(&mut r, 30, conns[0], learner_info(1, 0, false));
    assert_eq!(closed_in(&drain(&mut r)), vec![conns[0]]);
}

#[test]
fn discovery_accepted_epochs_raise_the_epoch_but_observers_do_not_count() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_4, OBSERVER, 5, true);
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.role(), leading(None, false));
    join(&mut r, 310, CONN_2, 2, 1, false);
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![Write::AcceptedEpoch(6)],
            vec![send(CONN_2, leader_info(6)), send(CONN_4, leader_info(6))]
        )]
    );
}

#[test]
fn discovery_ackepoch_quorum_writes_current_epoch_and_syncs() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_2, 2, 1, false);
    drain(&mut r);
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 2), Some(1)));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].writes, vec![Write::CurrentEpoch(2)]);
    assert_eq!(
        sent_on(&out, CONN_2),
        vec![Packet::Diff { zxid: z(1, 2) }, new_leader(2)]
    );
    assert_eq!(r.current_epoch(), 2);
    assert_eq!(r.role(), leading(Some(2), false));
}

#[test]
fn discovery_newleader_waits_for_the_current_epoch_write() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_2, 2, 1, false);
    drain(&mut r);
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 2), Some(1)));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![send(CONN_2, Packet::Diff { zxid: z(1, 2) })],
            vec![Write::CurrentEpoch(2)],
            vec![send(CONN_2, new_leader(2))]
        )]
    );
}

#[test]
fn discovery_drops_a_follower_ahead_of_the_leader() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_2, 2, 1, false);
    join(&mut r, 300, CONN_1, 1, 1, false);
    drain(&mut r);
    // Same current epoch, later zxid.
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 3), Some(1)));
    assert_eq!(drain(&mut r), vec![only_now(vec![close(CONN_2)])]);
    // A later current epoch.
    pkt(&mut r, 400, CONN_1, ack_epoch(z(1, 1), Some(2)));
    assert_eq!(drain(&mut r), vec![only_now(vec![close(CONN_1)])]);
    assert_eq!(r.current_epoch(), 1);
    assert_eq!(r.leader_stats(), Some(LeaderStats::default()));
}

#[test]
fn discovery_ackepoch_minus_one_is_not_counted() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_1, 1, 1, false);
    drain(&mut r);
    // Epoch 2 is decided; server 2 had already accepted it (it restarted after
    // LEADERINFO): it gets epoch 2 as it is, says -1, and does not count.
    join(&mut r, 300, CONN_2, 2, 2, false);
    assert_eq!(
        drain(&mut r),
        vec![b(vec![], vec![], vec![send(CONN_2, leader_info(2))])]
    );
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 2), None));
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.current_epoch(), 1);
    // Server 1 completes the quorum; both are synced.
    pkt(&mut r, 410, CONN_1, ack_epoch(z(1, 2), Some(1)));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].writes, vec![Write::CurrentEpoch(2)]);
    for conn in [CONN_1, CONN_2] {
        assert_eq!(
            sent_on(&out, conn),
            vec![Packet::Diff { zxid: z(1, 2) }, new_leader(2)]
        );
    }
}

#[test]
fn discovery_refuses_unknown_own_and_newer_config_learners() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, 50, 9, 1, false);
    assert_eq!(drain(&mut r), vec![only_now(vec![close(50)])]);
    join(&mut r, 300, 51, LEADER, 1, false);
    assert_eq!(drain(&mut r), vec![only_now(vec![close(51)])]);
    r.step(300, Input::Accepted { conn: 52 });
    let newer = Packet::LearnerInfo {
        info: LearnerInfo {
            sid: 2,
            accepted_epoch: 1,
            protocol_version: PROTOCOL_VERSION,
            config_version: CONFIG_VERSION + 1,
        },
        observer: false,
    };
    pkt(&mut r, 300, 52, newer);
    assert_eq!(drain(&mut r), vec![only_now(vec![close(52)])]);
    // Anything but FOLLOWERINFO / OBSERVERINFO first.
    r.step(300, Input::Accepted { conn: 53 });
    pkt(&mut r, 300, 53, ack_epoch(z(1, 2), Some(1)));
    assert_eq!(drain(&mut r), vec![only_now(vec![close(53)])]);
    // None of them counted toward the epoch.
    assert_eq!(r.role(), leading(None, false));
}

#[test]
fn discovery_refuses_a_learner_beyond_the_last_epoch_before_it_replaces_anyone() {
    // No epoch comes after it (the reference would read it as negative): it neither
    // raises the epoch being proposed nor counts toward its quorum.
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, 21, 2, u32::MAX, false);
    assert_eq!(drain(&mut r), vec![only_now(vec![close(21)])]);
    assert_eq!(r.role(), leading(None, false));
    join(&mut r, 310, CONN_2, 2, 1, false);
    let out = drain(&mut r);
    assert_eq!(out[0].writes, vec![Write::AcceptedEpoch(2)]);
    assert_eq!(sent_on(&out, CONN_2), vec![leader_info(2)]);
    // Claiming server 2's id does not push out its connection.
    join(&mut r, 320, 22, 2, EPOCH_MAX + 1, false);
    assert_eq!(drain(&mut r), vec![only_now(vec![close(22)])]);
    pkt(&mut r, 330, CONN_2, ack_epoch(z(1, 2), Some(1)));
    let out = drain(&mut r);
    assert_eq!(out[0].writes, vec![Write::CurrentEpoch(2)]);
}

#[test]
fn discovery_second_connection_of_a_server_replaces_the_first() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_2, 2, 1, false);
    drain(&mut r);
    join(&mut r, 310, 21, 2, 1, false);
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![close(CONN_2)],
            vec![],
            vec![send(21, leader_info(2))]
        )]
    );
    // The old connection is forgotten; the new one goes on.
    pkt(&mut r, 320, CONN_2, ack_epoch(z(1, 2), Some(1)));
    assert_eq!(drain(&mut r), vec![]);
    pkt(&mut r, 330, 21, ack_epoch(z(1, 2), Some(1)));
    let out = drain(&mut r);
    assert_eq!(out[0].writes, vec![Write::CurrentEpoch(2)]);
    assert_eq!(
        sent_on(&out, 21),
        vec![Packet::Diff { zxid: z(1, 2) }, new_leader(2)]
    );
}

// =====================================================================================
// 3. Sync decisions (PEER-PROTOCOL §5.4)
// =====================================================================================

/// Leader 3 from `d` past the epoch-ack quorum with server 2 (which reported the
/// leader's own last zxid), its current epoch durable. Server 1 then joins on
/// `CONN_1` and reports `peer`; returns the batches its ACKEPOCH produced.
fn sync_of(c: Config, d: DurableState, peer: Zxid, peer_epoch: Option<u32>) -> Vec<Batch> {
    let (accepted, current, last) = (d.accepted_epoch, d.current_epoch, d.last_zxid);
    let mut r = elected_with(c, d);
    join(&mut r, 300, CONN_2, 2, accepted, false);
    drain(&mut r);
    pkt(&mut r, 400, CONN_2, ack_epoch(last, Some(current)));
    drain(&mut r);
    join(&mut r, 500, CONN_1, 1, 1, false);
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![],
            vec![send(CONN_1, leader_info(accepted + 1))]
        )]
    );
    pkt(&mut r, 600, CONN_1, ack_epoch(peer, peer_epoch));
    drain(&mut r)
}

fn sends(conn: ConnId, packets: Vec<Packet>) -> Vec<Output> {
    packets.into_iter().map(|p| send(conn, p)).collect()
}

#[test]
fn sync_empty_diff_when_the_peer_is_at_the_leaders_last_processed_zxid() {
    let out = sync_of(cfg(LEADER), disk(1, 1, &[(1, 1), (1, 2)]), z(1, 2), Some(1));
    assert_eq!(
        out,
        vec![only_now(sends(
            CONN_1,
            vec![Packet::Diff { zxid: z(1, 2) }, new_leader(2)]
        ))]
    );
}

#[test]
fn sync_diff_replays_the_committed_window_as_proposal_commit_pairs() {
    let out = sync_of(
        cfg(LEADER),
        disk(1, 1, &[(1, 1), (1, 2), (1, 3)]),
        z(1, 1),
        Some(1),
    );
    assert_eq!(
        out,
        vec![only_now(sends(
            CONN_1,
            vec![
                Packet::Diff { zxid: z(1, 3) },
                proposal(1, 2),
                commit(1, 2),
                proposal(1, 3),
                commit(1, 3),
                new_leader(2),
            ]
        ))]
    );
}

#[test]
fn sync_diff_for_a_peer_at_an_epoch_start() {
    let out = sync_of(
        cfg(LEADER),
        disk(2, 2, &[(1, 1), (1, 2), (2, 1), (2, 2)]),
        z(2, 0),
        Some(2),
    );
    assert_eq!(
        out,
        vec![only_now(sends(
            CONN_1,
            vec![
                Packet::Diff { zxid: z(2, 2) },
                proposal(2, 1),
                commit(2, 1),
                proposal(2, 2),
                commit(2, 2),
                new_leader(3),
            ]
        ))]
    );
}

#[test]
fn sync_trunc_when_the_peer_is_ahead_of_the_window() {
    // The peer led epoch 1 and logged 1:3 that nobody else has.
    let out = sync_of(cfg(LEADER), disk(2, 2, &[(1, 1), (1, 2)]), z(1, 3), Some(1));
    assert_eq!(
        out,
        vec![only_now(sends(
            CONN_1,
            vec![Packet::Trunc { zxid: z(1, 2) }, new_leader(3)]
        ))]
    );
}

#[test]
fn sync_trunc_to_the_previous_proposal_in_the_same_epoch() {
    let out = sync_of(
        cfg(LEADER),
        disk(1, 1, &[(1, 1), (1, 2), (1, 4)]),
        z(1, 3),
        Some(1),
    );
    assert_eq!(
        out,
        vec![only_now(sends(
            CONN_1,
            vec![
                Packet::Trunc { zxid: z(1, 2) },
                proposal(1, 4),
                commit(1, 4),
                new_leader(2),
            ]
        ))]
    );
}

#[test]
fn sync_snap_when_the_peer_is_behind_the_window() {
    let mut c = cfg(LEADER);
    c.committed_log_count_max = 2;
    let out = sync_of(c, disk(1, 1, &[(1, 1), (1, 2), (1, 3)]), z(1, 1), Some(1));
    assert_eq!(
        out,
        vec![only_now(vec![
            send(CONN_1, Packet::Snap { zxid: z(1, 3) }),
            Output::SendSnapshot {
                conn: CONN_1,
                zxid: z(1, 3)
            },
            send(CONN_1, new_leader(2)),
        ])]
    );
    // An empty server is behind any window that starts after zxid 0.
    let out = sync_of(
        cfg(LEADER),
        disk(1, 1, &[(1, 1), (1, 2), (1, 3)]),
        Zxid::ZERO,
        Some(0),
    );
    assert_eq!(
        sent_on(&out, CONN_1),
        vec![Packet::Snap { zxid: z(1, 3) }, new_leader(2)]
    );
}

#[test]
fn sync_snap_instead_of_a_trunc_across_epochs() {
    // 1:3 is not in the window and the next txn is of epoch 2.
    let out = sync_of(
        cfg(LEADER),
        disk(2, 2, &[(1, 1), (1, 2), (2, 1)]),
        z(1, 3),
        Some(1),
    );
    assert_eq!(
        out,
        vec![only_now(vec![
            send(CONN_1, Packet::Snap { zxid: z(2, 1) }),
            Output::SendSnapshot {
                conn: CONN_1,
                zxid: z(2, 1)
            },
            send(CONN_1, new_leader(3)),
        ])]
    );
}

/// Leader 3 (log 1:1, 1:2) established in epoch 2 with server 2 only.
fn established_with_2() -> Replica {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_2, 2, 1, false);
    drain(&mut r);
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 2), Some(1)));
    drain(&mut r);
    pkt(&mut r, 500, CONN_2, ack(2, 0));
    drain(&mut r);
    assert_eq!(r.established_epoch(), Some(2));
    r
}

#[test]
fn sync_forwards_outstanding_proposals_to_followers_but_not_observers() {
    let mut r = established_with_2();
    r.propose(ent(2, 1)).unwrap();
    drain(&mut r);
    for (conn, sid, observer) in [(CONN_1, 1, false), (CONN_4, OBSERVER, true)] {
        join(&mut r, 600, conn, sid, 1, observer);
        assert_eq!(
            drain(&mut r),
            vec![b(vec![], vec![], vec![send(conn, leader_info(2))])]
        );
    }
    pkt(&mut r, 700, CONN_1, ack_epoch(z(1, 2), Some(1)));
    assert_eq!(
        drain(&mut r),
        vec![only_now(sends(
            CONN_1,
            vec![
                Packet::Diff { zxid: z(1, 2) },
                proposal(2, 1),
                new_leader(2)
            ]
        ))]
    );
    pkt(&mut r, 700, CONN_4, ack_epoch(z(1, 2), Some(1)));
    assert_eq!(
        drain(&mut r),
        vec![only_now(sends(
            CONN_4,
            vec![Packet::Diff { zxid: z(1, 2) }, new_leader(2)]
        ))]
    );
    // Both joined the broadcast: the commit reaches the follower still syncing as
    // COMMIT and the observer as INFORM.
    pkt(&mut r, 800, CONN_2, ack(2, 1));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            send(CONN_1, commit(2, 1)),
            send(CONN_2, commit(2, 1)),
            send(CONN_4, Packet::Inform(ent(2, 1))),
            apply(2, 1),
        ])]
    );
}

// =====================================================================================
// 4. Establishment (PEER-PROTOCOL §5.3 waitForNewLeaderAck)
// =====================================================================================

#[test]
fn establishment_counts_the_leaders_own_ack_only_once_its_epoch_is_durable() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_2, 2, 1, false);
    drain(&mut r);
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 2), Some(1)));
    let mut ready = r.ready().expect("the currentEpoch batch");
    assert_eq!(ready.writes(), &[Write::CurrentEpoch(2)]);
    let _sync = ready.take_now();
    // Server 2's ACK alone is no quorum while our currentEpoch is not on disk.
    pkt(&mut r, 450, CONN_2, ack(2, 0));
    assert!(r.ready().is_none(), "one batch at a time");
    assert_eq!(r.role(), leading(Some(2), false));
    let _ = r.advance(ready.persisted());
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(leading(Some(2), true)),
            send(CONN_2, Packet::UpToDate),
        ])]
    );
    assert_eq!(r.established_epoch(), Some(2));
}

#[test]
fn establishment_sends_uptodate_to_every_learner_that_acked_exactly_once() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_2, 2, 1, false);
    join(&mut r, 300, CONN_1, 1, 1, false);
    join(&mut r, 300, CONN_4, OBSERVER, 1, true);
    drain(&mut r);
    // The observer's epoch ack does not count either.
    pkt(&mut r, 400, CONN_4, ack_epoch(z(1, 2), Some(1)));
    assert_eq!(drain(&mut r), vec![]);
    for conn in [CONN_2, CONN_1] {
        pkt(&mut r, 400, conn, ack_epoch(z(1, 2), Some(1)));
    }
    drain(&mut r);
    // The observer's ACK does not count.
    pkt(&mut r, 500, CONN_4, ack(2, 0));
    assert_eq!(drain(&mut r), vec![]);
    // Server 2's does: everyone who acked gets UPTODATE.
    pkt(&mut r, 510, CONN_2, ack(2, 0));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(leading(Some(2), true)),
            send(CONN_2, Packet::UpToDate),
            send(CONN_4, Packet::UpToDate),
        ])]
    );
    // A later ACK gets its own; the UPTODATE ACK (or a duplicate) gets nothing.
    pkt(&mut r, 520, CONN_1, ack(2, 0));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(CONN_1, Packet::UpToDate)])]
    );
    for conn in [CONN_1, CONN_2, CONN_4] {
        pkt(&mut r, 530, conn, ack(2, 0));
    }
    assert_eq!(drain(&mut r), vec![]);
}

#[test]
fn establishment_ignores_a_newleader_ack_of_another_epoch_but_still_sends_uptodate() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_2, 2, 1, false);
    join(&mut r, 300, CONN_1, 1, 1, false);
    drain(&mut r);
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 2), Some(1)));
    pkt(&mut r, 400, CONN_1, ack_epoch(z(1, 2), Some(1)));
    drain(&mut r);
    pkt(&mut r, 500, CONN_2, ack(1, 0));
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.established_epoch(), None);
    pkt(&mut r, 510, CONN_1, ack(2, 0));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(leading(Some(2), true)),
            send(CONN_1, Packet::UpToDate),
            send(CONN_2, Packet::UpToDate),
        ])]
    );
}

#[test]
fn establishment_drops_a_learner_whose_first_packet_after_newleader_is_not_an_ack() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, CONN_2, 2, 1, false);
    drain(&mut r);
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 2), Some(1)));
    drain(&mut r);
    pkt(
        &mut r,
        500,
        CONN_2,
        Packet::LearnerPing {
            zxid: z(2, 0),
            touches: vec![],
        },
    );
    assert_eq!(drain(&mut r), vec![only_now(vec![close(CONN_2)])]);
    assert_eq!(r.established_epoch(), None);
}

// =====================================================================================
// 5. Broadcast (PEER-PROTOCOL §6.6, §7)
// =====================================================================================

fn inform(epoch: u32, counter: u32) -> Packet {
    Packet::Inform(ent(epoch, counter))
}

/// What committing `epoch:counter` sends with all three learners connected.
fn committed_everywhere(epoch: u32, counter: u32) -> Vec<Output> {
    vec![
        send(CONN_1, commit(epoch, counter)),
        send(CONN_2, commit(epoch, counter)),
        send(CONN_4, inform(epoch, counter)),
        apply(epoch, counter),
    ]
}

#[test]
fn broadcast_proposes_to_followers_and_commits_with_a_quorum() {
    let mut r = established();
    assert_eq!(r.next_zxid(), Ok(z(2, 1)));
    r.propose(ent(2, 1)).unwrap();
    // PROPOSAL to the forwarding followers only; our own ACK once the log is
    // durable is one of three, no commit yet.
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![send(CONN_1, proposal(2, 1)), send(CONN_2, proposal(2, 1))],
            vec![append(2, 1)],
            vec![]
        )]
    );
    assert_eq!(r.committed(), z(1, 2));
    assert_eq!(r.last_proposed(), Some(z(2, 1)));
    pkt(&mut r, 600, CONN_2, ack(2, 1));
    assert_eq!(drain(&mut r), vec![only_now(committed_everywhere(2, 1))]);
    assert_eq!(r.committed(), z(2, 1));
    assert_eq!(r.applied(), z(2, 1));
    // Late and duplicate ACKs change nothing.
    pkt(&mut r, 610, CONN_1, ack(2, 1));
    pkt(&mut r, 610, CONN_2, ack(2, 1));
    assert_eq!(drain(&mut r), vec![]);
}

#[test]
fn broadcast_counts_the_leaders_own_ack_once_its_log_is_durable() {
    let mut r = established();
    r.propose(ent(2, 1)).unwrap();
    let mut ready = r.ready().unwrap();
    assert_eq!(ready.writes(), &[append(2, 1)]);
    let _ = ready.take_now();
    pkt(&mut r, 600, CONN_2, ack(2, 1));
    assert_eq!(r.committed(), z(1, 2), "one voter of three");
    assert_eq!(r.advance(ready.persisted()), vec![]);
    assert_eq!(drain(&mut r), vec![only_now(committed_everywhere(2, 1))]);
}

#[test]
fn broadcast_commits_in_zxid_order_only_with_a_quorum_of_voters() {
    let mut r = established();
    r.propose(ent(2, 1)).unwrap();
    r.propose(ent(2, 2)).unwrap();
    let mut ready = r.ready().unwrap();
    assert_eq!(ready.writes(), &[append(2, 1), append(2, 2)]);
    let _ = ready.take_now();
    // 2:2 has a quorum of followers, 2:1 none (an observer's ACK never counts).
    pkt(&mut r, 600, CONN_1, ack(2, 2));
    pkt(&mut r, 600, CONN_2, ack(2, 2));
    pkt(&mut r, 600, CONN_4, ack(2, 1));
    assert_eq!(r.advance(ready.persisted()), vec![]);
    // Our own ACK of both: 2:1 has one voter of three.
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.committed(), z(1, 2));
    pkt(&mut r, 610, CONN_2, ack(2, 1));
    let mut both = committed_everywhere(2, 1);
    both.extend(committed_everywhere(2, 2));
    assert_eq!(drain(&mut r), vec![only_now(both)]);
}

#[test]
fn broadcast_forgets_the_acks_of_a_closed_learner() {
    let mut r = established();
    r.propose(ent(2, 1)).unwrap();
    let mut ready = r.ready().unwrap();
    let _ = ready.take_now();
    pkt(&mut r, 600, CONN_2, ack(2, 1));
    r.step(600, Input::Closed { conn: CONN_2 });
    let _ = r.advance(ready.persisted());
    // Our own ACK and server 2's old one would be a quorum; the old one is gone.
    assert_eq!(drain(&mut r), vec![]);
    pkt(&mut r, 610, CONN_1, ack(2, 1));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            send(CONN_1, commit(2, 1)),
            send(CONN_4, inform(2, 1)),
            apply(2, 1),
        ])]
    );
}

#[test]
fn broadcast_steps_down_when_the_zxid_counter_is_exhausted() {
    let mut c = cfg(LEADER);
    c.zxid_counter_max = 2;
    let mut r = established_with(c);
    r.propose(ent(2, 1)).unwrap();
    r.propose(ent(2, 2)).unwrap();
    drain(&mut r);
    assert_eq!(r.next_zxid(), Err(ZabError::ZxidExhausted { epoch: 2 }));
    let mut out = vec![
        close(CONN_1),
        close(CONN_2),
        close(CONN_4),
        role_changed(Role::Looking),
    ];
    out.extend(notify_voters(LEADER, &looking(LEADER, z(2, 2), 2, 2)));
    assert_eq!(drain(&mut r), vec![only_now(out)]);
    assert_eq!(r.propose(ent(2, 3)), Err(ZabError::NotLeader));
}

#[test]
fn broadcast_refuses_proposals_past_the_in_flight_bound_and_bad_ones() {
    let mut c = cfg(LEADER);
    c.in_flight_proposals_max = 2;
    c.payload_bytes_max = 16;
    let mut r = established_with(c);
    r.propose(ent(2, 1)).unwrap();
    r.propose(ent(2, 2)).unwrap();
    assert_eq!(r.propose(ent(2, 3)), Err(ZabError::InFlightFull { max: 2 }));
    assert_eq!(
        r.propose(ent(2, 5)),
        Err(ZabError::WrongZxid {
            got: z(2, 5),
            want: z(2, 3)
        })
    );
    let big = Entry::new(z(2, 3), Bytes::from(vec![0u8; 17]));
    assert_eq!(
        r.propose(big),
        Err(ZabError::PayloadTooLarge { len: 17, max: 16 })
    );
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![
                send(CONN_1, proposal(2, 1)),
                send(CONN_2, proposal(2, 1)),
                send(CONN_1, proposal(2, 2)),
                send(CONN_2, proposal(2, 2)),
            ],
            vec![append(2, 1), append(2, 2)],
            vec![]
        )]
    );
    assert_eq!(r.next_zxid(), Ok(z(2, 3)));
}

/// A learner's sync reaches the driver as a request; the driver hands it back with
/// `forwarded_sync` at its place among that learner's requests.
fn learner_sync(r: &mut Replica, now: u64, conn: ConnId, from: ServerId) {
    pkt(r, now, conn, Packet::Request(forwarded(OP_SYNC)));
    assert_eq!(
        drain(r),
        vec![only_now(vec![ev(Event::Request {
            conn,
            from,
            req: forwarded(OP_SYNC)
        })])]
    );
    r.forwarded_sync(conn);
}

/// A learner answers the leader's oldest unanswered ping.
fn answer_ping(r: &mut Replica, now: u64, conn: ConnId) {
    pkt(
        r,
        now,
        conn,
        Packet::LearnerPing {
            zxid: z(2, 0),
            touches: vec![],
        },
    );
}

fn ping(counter: u32) -> Packet {
    Packet::LeaderPing {
        zxid: z(2, counter),
    }
}

#[test]
fn broadcast_answers_a_sync_once_a_quorum_answered_a_ping_sent_after_it() {
    // A leader cut off from its followers must not answer a sync (the followers may
    // have elected another leader that committed writes): it pings, and answers
    // once a quorum (itself included) answered that ping.
    let mut r = established();
    learner_sync(&mut r, 600, CONN_2, 2);
    assert_eq!(drain(&mut r), vec![only_now(sends_to_all(ping(0)))]);
    answer_ping(&mut r, 601, CONN_4);
    assert_eq!(
        drain(&mut r),
        vec![],
        "an observer's answer counts for nothing"
    );
    answer_ping(&mut r, 602, CONN_2);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(CONN_2, Packet::Sync)])],
        "the leader and follower 2 are a quorum of 3"
    );
    // The leader's own client: the same gate, answered by an event.
    assert!(r.leader_sync(7));
    assert_eq!(drain(&mut r), vec![only_now(sends_to_all(ping(0)))]);
    answer_ping(&mut r, 610, CONN_1); // round 1: older than the sync
    assert_eq!(drain(&mut r), vec![]);
    answer_ping(&mut r, 611, CONN_1);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![ev(Event::LocalSyncReady {
            tag: 7,
            at: z(2, 0)
        })])]
    );
}

#[test]
fn broadcast_answers_a_sync_once_the_last_proposal_before_it_commits() {
    let mut r = established();
    r.propose(ent(2, 1)).unwrap();
    r.propose(ent(2, 2)).unwrap();
    drain(&mut r);
    learner_sync(&mut r, 610, CONN_1, 1);
    assert_eq!(drain(&mut r), vec![only_now(sends_to_all(ping(2)))]);
    // The second arrives while that round is out: it needs the next one.
    learner_sync(&mut r, 610, CONN_4, 4);
    assert_eq!(drain(&mut r), vec![]);
    answer_ping(&mut r, 611, CONN_1);
    assert_eq!(
        drain(&mut r),
        vec![only_now(sends_to_all(ping(2)))],
        "round 1 confirmed: round 2 for the observer's sync"
    );
    pkt(&mut r, 620, CONN_2, ack(2, 1));
    assert_eq!(drain(&mut r), vec![only_now(committed_everywhere(2, 1))]);
    pkt(&mut r, 630, CONN_2, ack(2, 2));
    let mut out = committed_everywhere(2, 2);
    out.push(send(CONN_1, Packet::Sync));
    assert_eq!(drain(&mut r), vec![only_now(out)]);
    answer_ping(&mut r, 640, CONN_2); // its answer to round 1
    assert_eq!(drain(&mut r), vec![]);
    answer_ping(&mut r, 641, CONN_2); // to round 2: committed already, at once
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(CONN_4, Packet::Sync)])]
    );
}

#[test]
fn broadcast_answers_a_learners_gated_sync_before_the_commit_of_its_later_write() {
    // A ZooKeeper follower matches SYNCs and the COMMITs of its own writes against
    // one queue of what it forwarded: a COMMIT for a write it forwarded after a
    // sync, arriving before that sync's SYNC, is taken for another server's write,
    // and its local writes stay mismatched for good (the mixed disk-full faults run:
    // sync, sync, setData forwarded; SYNC, COMMIT(setData), SYNC came back).
    let mut r = established();
    learner_sync(&mut r, 600, CONN_1, 1);
    assert_eq!(drain(&mut r), vec![only_now(sends_to_all(ping(0)))]);
    learner_sync(&mut r, 600, CONN_1, 1); // waits for the next round
    r.propose(ent(2, 1)).unwrap(); // a write it forwarded after both
    drain(&mut r);
    answer_ping(&mut r, 601, CONN_1);
    assert_eq!(
        drain(&mut r),
        vec![only_now(
            [send(CONN_1, Packet::Sync)]
                .into_iter()
                .chain(sends_to_all(ping(1)))
                .collect()
        )],
        "the first sync through, a round for the second"
    );
    // The write's ACK quorum followed us after the second sync arrived: that
    // proves what its ping round would, so its SYNC goes out before the COMMIT.
    pkt(&mut r, 602, CONN_2, ack(2, 1));
    let mut want = vec![send(CONN_1, Packet::Sync)];
    want.extend(committed_everywhere(2, 1));
    assert_eq!(drain(&mut r), vec![only_now(want)]);
    answer_ping(&mut r, 603, CONN_2); // round 1
    answer_ping(&mut r, 604, CONN_2); // round 2: nothing waits for it any more
    assert_eq!(drain(&mut r), vec![]);
    // Nothing waits any more: commits flow at once.
    r.propose(ent(2, 2)).unwrap();
    drain(&mut r);
    pkt(&mut r, 610, CONN_2, ack(2, 2));
    assert_eq!(drain(&mut r), vec![only_now(committed_everywhere(2, 2))]);
}

#[test]
fn broadcast_drops_a_learner_whose_sync_passes_the_bound_of_syncs_waiting() {
    let mut c = cfg(LEADER);
    c.syncs_waiting_count_max = 2;
    let mut r = established_with(c);
    r.propose(ent(2, 1)).unwrap();
    drain(&mut r);
    // Nothing acknowledged: both wait (the first at the gate's round, the second
    // behind it).
    learner_sync(&mut r, 610, CONN_1, 1);
    drain(&mut r);
    learner_sync(&mut r, 611, CONN_1, 1);
    assert!(
        !drain(&mut r)
            .iter()
            .flat_map(|b| b.now.iter())
            .any(|o| matches!(o, Output::Close { .. })),
        "two are within the bound"
    );
    learner_sync(&mut r, 612, CONN_1, 1);
    let out = drain(&mut r);
    assert!(
        out.iter()
            .flat_map(|b| b.now.iter())
            .any(|o| *o == Output::Close { conn: CONN_1 }),
        "the third passes it: that learner is dropped: {out:?}"
    );
    // The leader's own clients' syncs count against the same bound: refused.
    assert!(
        !r.leader_sync(9),
        "two still held by the dropped learner's gate"
    );
}

#[test]
fn broadcast_a_learners_sync_waits_for_the_write_it_forwarded_just_before() {
    // A client pipelines create + sync through follower 1: both packets arrive in
    // one step. The sync must not be answered before the create's proposal commits
    // (the faults harness caught a corral follower answering them out of order, and
    // a ZooKeeper follower's commit processor stalling for good).
    let mut r = established();
    pkt(&mut r, 600, CONN_1, Packet::Request(forwarded(1)));
    pkt(&mut r, 600, CONN_1, Packet::Request(forwarded(OP_SYNC)));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            ev(Event::Request {
                conn: CONN_1,
                from: 1,
                req: forwarded(1)
            }),
            ev(Event::Request {
                conn: CONN_1,
                from: 1,
                req: forwarded(OP_SYNC)
            })
        ])],
        "nothing answered by the core itself"
    );
    // The driver, in order: proposes the create, then hands the sync back.
    r.propose(ent(2, 1)).unwrap();
    r.forwarded_sync(CONN_1);
    answer_ping(&mut r, 605, CONN_1);
    let out = drain(&mut r);
    assert!(
        !out.iter()
            .flat_map(|b| b.now.iter().chain(b.gated.iter()))
            .any(|o| *o == send(CONN_1, Packet::Sync)),
        "SYNC before the create committed: {out:?}"
    );
    pkt(&mut r, 610, CONN_2, ack(2, 1));
    let mut want = committed_everywhere(2, 1);
    want.push(send(CONN_1, Packet::Sync));
    assert_eq!(drain(&mut r), vec![only_now(want)]);
}

#[test]
fn broadcast_hands_requests_revalidations_and_touches_to_the_driver() {
    let mut r = established();
    pkt(&mut r, 600, CONN_2, Packet::Request(forwarded(1)));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![ev(Event::Request {
            conn: CONN_2,
            from: 2,
            req: forwarded(1)
        })])]
    );
    pkt(
        &mut r,
        600,
        CONN_1,
        Packet::RevalidateRequest {
            session_id: 0x55,
            timeout_ms: 30_000,
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![ev(Event::Revalidate {
            conn: CONN_1,
            from: 1,
            session_id: 0x55,
            timeout_ms: 30_000
        })])]
    );
    r.revalidated(CONN_1, 0x55, true);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(
            CONN_1,
            Packet::RevalidateReply {
                session_id: 0x55,
                valid: true
            }
        )])]
    );
    // The learner left meanwhile: nobody to answer.
    r.revalidated(99, 0x55, false);
    assert_eq!(drain(&mut r), vec![]);
    // Ping replies carry touched sessions; an empty one is only liveness.
    let touches = vec![(7, 4000), (5, 3000)];
    pkt(
        &mut r,
        600,
        CONN_4,
        Packet::LearnerPing {
            zxid: z(2, 0),
            touches: touches.clone(),
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![ev(Event::Touches {
            from: OBSERVER,
            touches
        })])]
    );
    pkt(
        &mut r,
        600,
        CONN_1,
        Packet::LearnerPing {
            zxid: z(2, 0),
            touches: vec![],
        },
    );
    assert_eq!(drain(&mut r), vec![]);
}

#[test]
fn broadcast_pings_every_learner_each_half_tick() {
    let mut r = established();
    // Elected at 200, tickTime 2000: the first half tick is at 1200.
    assert_eq!(r.next_deadline(), 1200);
    tick(&mut r, 1199);
    assert_eq!(drain(&mut r), vec![]);
    tick(&mut r, 1200);
    let ping = Packet::LeaderPing { zxid: z(2, 0) };
    assert_eq!(drain(&mut r), vec![only_now(sends_to_all(ping))]);
    assert_eq!(r.next_deadline(), 2200);
    r.propose(ent(2, 1)).unwrap();
    drain(&mut r);
    tick(&mut r, 2200);
    assert_eq!(
        drain(&mut r),
        vec![only_now(sends_to_all(Packet::LeaderPing { zxid: z(2, 1) }))]
    );
}

#[test]
fn broadcast_names_the_learners_silent_for_over_a_tick() {
    // Every learner was last heard at 500; tickTime 2000.
    let mut r = established();
    let answer = || Packet::LearnerPing {
        zxid: z(2, 0),
        touches: vec![],
    };
    pkt(&mut r, 2400, CONN_1, answer());
    assert_eq!(
        r.silent_learners(),
        Vec::<ServerId>::new(),
        "heard a tick ago"
    );
    tick(&mut r, 2600);
    let mut silent = r.silent_learners();
    silent.sort_unstable();
    assert_eq!(silent, vec![2, OBSERVER]);
    pkt(&mut r, 2700, CONN_2, answer());
    assert_eq!(r.silent_learners(), vec![OBSERVER]);
}

fn sends_to_all(p: Packet) -> Vec<Output> {
    [CONN_1, CONN_2, CONN_4]
        .into_iter()
        .map(|c| send(c, p.clone()))
        .collect()
}

// =====================================================================================
// 6. Learner (PEER-PROTOCOL §5.2, §5.6, §6.6, §7, §8)
// =====================================================================================

/// What a learner does when it drops the leader: close `conn` (if still open), go
/// LOOKING, and notify the voters of its own vote in round 2.
fn back_to_looking(conn: Option<ConnId>, me: ServerId, last: Zxid, epoch: u32) -> Vec<Output> {
    let mut out: Vec<Output> = conn.into_iter().map(close).collect();
    out.push(role_changed(Role::Looking));
    out.extend(notify_voters(me, &looking(me, last, epoch, 2)));
    out
}

#[test]
fn learner_retries_a_dial_closed_before_leaderinfo_ten_times_faster() {
    // Our quorum port is always open, so a dial to a member that does not lead
    // connects and is closed (one about to lead holds it first): the reference's
    // refused dial. Retried every
    // connect_retry_ms / 10, ten times as often: the same 500 ms budget.
    let mut r = learner_dialling(2, disk(1, 1, &[(1, 1), (1, 2)]));
    let mut t = 300;
    for attempt in 1..50 {
        let conn = C + attempt - 1;
        r.step(t, Input::Connected { conn });
        assert_eq!(
            drain(&mut r),
            vec![only_now(vec![send(conn, learner_info(2, 1, false))])]
        );
        r.step(t, Input::Closed { conn });
        assert_eq!(drain(&mut r), vec![]);
        assert_eq!(r.next_deadline(), t + 10, "attempt {attempt}");
        tick(&mut r, t + 10);
        assert_eq!(
            drain(&mut r),
            vec![only_now(vec![Output::Connect {
                conn: C + attempt,
                to: LEADER
            }])]
        );
        t += 10;
    }
    // The fiftieth ends the attempt.
    r.step(t, Input::Connected { conn: C + 49 });
    drain(&mut r);
    r.step(t, Input::Closed { conn: C + 49 });
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(None, 2, z(1, 2), 1))]
    );
}

/// A dial held by a member still looking for the whole window a refused learner
/// dials for (5 x 100 ms): that member did not come to lead; back to the election,
/// as a reference learner whose dials were refused that long.
#[test]
fn learner_held_for_the_whole_window_goes_back_to_its_election() {
    let mut r = learner_dialling(2, disk(1, 1, &[(1, 1), (1, 2)]));
    r.step(300, Input::Connected { conn: C });
    drain(&mut r);
    // Closed sooner: the member decided otherwise quickly; dialled again.
    r.step(799, Input::Closed { conn: C });
    assert!(drain(&mut r).is_empty());
    tick(&mut r, 809);
    drain(&mut r);
    r.step(809, Input::Connected { conn: C + 1 });
    drain(&mut r);
    // Held for the whole window: back to looking.
    r.step(1309, Input::Closed { conn: C + 1 });
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(None, 2, z(1, 2), 1))]
    );
}

#[test]
fn election_after_losing_the_leader_skips_the_finalize_wait_when_all_others_agree() {
    // Server 2 follows 3 and loses it: 3 is the only vote still to come, so once 1
    // agrees there is nothing better to wait for.
    let mut r = learner_dialling(2, disk(1, 1, &[(1, 1), (1, 2)]));
    let mut t = 300;
    for attempt in 0..5 {
        r.step(t, Input::Closed { conn: C + attempt });
        t += 100;
        tick(&mut r, t);
    }
    drain(&mut r);
    assert_eq!(r.peer_state(), PeerState::Looking);
    hear(&mut r, t, 1, looking(2, z(1, 2), 1, 2));
    assert_eq!(r.role(), leading(None, false), "decided without waiting");

    // Without a lost leader (a fresh start) the same agreement still waits.
    let mut r = started(cfg(2), disk(1, 1, &[(1, 1), (1, 2)]));
    drain(&mut r);
    hear(&mut r, 10, 1, looking(2, z(1, 2), 1, 1));
    assert_eq!(r.peer_state(), PeerState::Looking, "finalizeWait first");
    tick(&mut r, 210);
    assert_eq!(r.role(), leading(None, false));

    // A word from the lost leader puts the wait back: it is alive after all.
    let mut r = learner_dialling(2, disk(1, 1, &[(1, 1), (1, 2)]));
    let mut t = 300;
    for attempt in 0..5 {
        r.step(t, Input::Closed { conn: C + attempt });
        t += 100;
        tick(&mut r, t);
    }
    drain(&mut r);
    hear(&mut r, t, 3, looking(2, z(1, 2), 1, 2));
    hear(&mut r, t, 1, looking(2, z(1, 2), 1, 2));
    assert_eq!(r.peer_state(), PeerState::Looking, "3 spoke: wait again");
}

#[test]
fn learner_sends_followerinfo_once_connected() {
    let mut r = learner_dialling(2, disk(1, 1, &[(1, 1), (1, 2)]));
    r.step(300, Input::Connected { conn: C });
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(C, learner_info(2, 1, false))])]
    );
    // Only a leader serves the quorum port.
    r.step(300, Input::Accepted { conn: 5 });
    assert_eq!(drain(&mut r), vec![only_now(vec![close(5)])]);
}

#[test]
fn learner_leaderinfo_with_a_new_epoch_writes_it_before_ackepoch() {
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![Write::AcceptedEpoch(2)],
            vec![send(C, ack_epoch(z(1, 2), Some(1)))]
        )]
    );
    assert_eq!(r.accepted_epoch(), 2);
}

#[test]
fn learner_leaderinfo_with_the_accepted_epoch_acks_minus_one() {
    let mut r = learner_connected(2, disk(2, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(C, ack_epoch(z(1, 2), None))])]
    );
}

#[test]
fn learner_leaderinfo_with_an_older_epoch_goes_back_to_looking() {
    let mut r = learner_connected(2, disk(2, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(1));
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(Some(C), 2, z(1, 2), 1))]
    );
    assert_eq!(r.election_epoch(), 2);
}

#[test]
fn learner_leaderinfo_beyond_the_last_epoch_goes_back_to_looking() {
    // The reference reads such an epoch as negative: below every accepted epoch.
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(EPOCH_MAX + 1));
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(Some(C), 2, z(1, 2), 1))]
    );
    assert_eq!(r.accepted_epoch(), 1);
}

#[test]
fn learner_sync_txns_must_follow_each_other() {
    // DIFF from our last zxid 1:2: a proposal at or before it is not new history.
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    pkt(&mut r, 500, C, Packet::Diff { zxid: z(1, 2) });
    drain(&mut r);
    pkt(&mut r, 510, C, proposal(1, 2));
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(Some(C), 2, z(1, 2), 1))]
    );
    // A sync point past the new epoch is no history of this leader.
    for start in [
        Packet::Diff { zxid: z(3, 0) },
        Packet::Snap { zxid: z(3, 1) },
    ] {
        let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
        pkt(&mut r, 400, C, leader_info(2));
        drain(&mut r);
        pkt(&mut r, 500, C, start);
        assert_eq!(
            drain(&mut r),
            vec![only_now(back_to_looking(Some(C), 2, z(1, 2), 1))]
        );
    }
    // Out of order after a good one, or of an epoch after the new one.
    for bad in [proposal(1, 3), proposal(3, 1)] {
        let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
        pkt(&mut r, 400, C, leader_info(2));
        pkt(&mut r, 500, C, Packet::Diff { zxid: z(1, 2) });
        pkt(&mut r, 510, C, proposal(1, 3));
        pkt(&mut r, 510, C, proposal(1, 4));
        drain(&mut r);
        pkt(&mut r, 520, C, bad);
        assert_eq!(
            drain(&mut r),
            vec![only_now(back_to_looking(Some(C), 2, z(1, 2), 1))]
        );
    }
}

#[test]
fn learner_diff_applies_the_log_it_holds() {
    // Serving epoch 2, 2:1 logged and acknowledged but never committed; the leader
    // goes away and is elected again.
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 1100, C, proposal(2, 1));
    assert_eq!(
        drain(&mut r),
        vec![b(vec![], vec![append(2, 1)], vec![send(C, ack(2, 1))])]
    );
    r.step(1200, Input::Closed { conn: C });
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(None, 2, z(2, 1), 2))]
    );
    hear(&mut r, 1200, LEADER, looking(LEADER, z(2, 1), 2, 2));
    drain(&mut r);
    tick(&mut r, 1400);
    let c2 = C + 1;
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(following(false)),
            Output::Connect {
                conn: c2,
                to: LEADER
            }
        ])]
    );
    r.step(1500, Input::Connected { conn: c2 });
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(c2, learner_info(2, 2, false))])]
    );
    pkt(&mut r, 1600, c2, leader_info(3));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![Write::AcceptedEpoch(3)],
            vec![send(c2, ack_epoch(z(2, 1), Some(2)))]
        )]
    );
    // DIFF: the leader's history holds our log.
    pkt(&mut r, 1700, c2, Packet::Diff { zxid: z(2, 1) });
    assert_eq!(drain(&mut r), vec![only_now(vec![apply(2, 1)])]);
    assert_eq!(r.committed(), z(2, 1));
}

#[test]
fn learner_logs_the_sync_at_newleader_acks_it_first_and_commits_at_uptodate() {
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    drain(&mut r);
    for p in [
        Packet::Diff { zxid: z(1, 4) },
        proposal(1, 3),
        commit(1, 3),
        proposal(1, 4),
        commit(1, 4),
        // Pings during the sync are ignored.
        Packet::LeaderPing { zxid: z(2, 0) },
    ] {
        pkt(&mut r, 500, C, p);
    }
    assert_eq!(drain(&mut r), vec![]);
    // NEWLEADER: the proposals so far, then currentEpoch, on disk (never the new
    // epoch without the history); NEWLEADER's ACK, then each proposal's, once durable.
    pkt(&mut r, 600, C, new_leader(2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![append(1, 3), append(1, 4), Write::CurrentEpoch(2)],
            vec![send(C, ack(2, 0)), send(C, ack(1, 3)), send(C, ack(1, 4))]
        )]
    );
    assert_eq!(r.current_epoch(), 2);
    assert_eq!(r.role(), following(false));
    // Live broadcast before UPTODATE is held too.
    pkt(&mut r, 700, C, proposal(2, 1));
    pkt(&mut r, 700, C, commit(2, 1));
    assert_eq!(drain(&mut r), vec![]);
    // UPTODATE: ACK, serve, log what came since NEWLEADER, commit in order.
    pkt(&mut r, 800, C, Packet::UpToDate);
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![
                send(C, ack(2, 0)),
                role_changed(following(true)),
                apply(1, 3),
                apply(1, 4),
                apply(2, 1),
            ],
            vec![append(2, 1)],
            vec![send(C, ack(2, 1))]
        )]
    );
    assert_eq!(r.committed(), z(2, 1));
}

/// SNAP at 1:5, the packets `after` it, NEWLEADER and UPTODATE: the snapshot is
/// installed at once and written at NEWLEADER with 1:6 logged behind it, and 1:6 is
/// applied once serving.
fn snap_at_1_5_syncs_1_6(after: Vec<Packet>) {
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    drain(&mut r);
    pkt(&mut r, 500, C, Packet::Snap { zxid: z(1, 5) });
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![ev(Event::InstallSnapshot {
            conn: C,
            zxid: z(1, 5)
        })])]
    );
    for p in after {
        pkt(&mut r, 510, C, p);
    }
    assert_eq!(drain(&mut r), vec![]);
    pkt(&mut r, 600, C, new_leader(2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![ev(Event::CaptureSnapshot { zxid: z(1, 5) })],
            vec![
                Write::Snapshot(z(1, 5)),
                append(1, 6),
                Write::CurrentEpoch(2)
            ],
            vec![send(C, ack(2, 0)), send(C, ack(1, 6))]
        )]
    );
    pkt(&mut r, 700, C, Packet::UpToDate);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            send(C, ack(2, 0)),
            role_changed(following(true)),
            apply(1, 6),
        ])]
    );
    assert_eq!(r.committed(), z(1, 6));
}

#[test]
fn learner_snap_installs_at_once_and_writes_the_snapshot_at_newleader() {
    snap_at_1_5_syncs_1_6(vec![proposal(1, 6), commit(1, 6)]);
}

/// A reference leader starts forwarding to a learner before it reads the zxid it
/// sends with SNAP: txns (and commits) at or before it follow the snapshot, which
/// holds them. They are passed over, in any order; the rest syncs as usual.
#[test]
fn learner_snap_passes_over_txns_the_snapshot_holds() {
    snap_at_1_5_syncs_1_6(vec![
        proposal(1, 4),
        proposal(1, 5),
        commit(1, 4),
        proposal(1, 6),
        commit(1, 5),
        commit(1, 6),
    ]);
}

#[test]
fn learner_snap_cut_short_before_newleader_rolls_back_to_its_log() {
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    drain(&mut r);
    pkt(&mut r, 500, C, Packet::Snap { zxid: z(1, 5) });
    drain(&mut r);
    r.step(600, Input::Closed { conn: C });
    let mut out = vec![ev(Event::Rollback { zxid: z(1, 2) })];
    out.extend(back_to_looking(None, 2, z(1, 2), 1));
    assert_eq!(drain(&mut r), vec![only_now(out)]);
    assert_eq!(r.last_logged(), z(1, 2));
}

/// A learner gone back to looking hears the leader of epoch 2 (an established one
/// answers LEADING) and a follower of it, dials the leader again and connects at
/// `t + 100`; the new link.
fn back_to_the_leader(r: &mut Replica, t: u64) -> ConnId {
    hear(
        r,
        t,
        LEADER,
        note(PeerState::Leading, vote(3, Zxid::ZERO, 2), 2),
    );
    hear(
        r,
        t,
        1,
        note(PeerState::Following, vote(3, Zxid::ZERO, 2), 2),
    );
    let dial = drain(r)
        .into_iter()
        .flat_map(|b| b.now)
        .find_map(|o| match o {
            Output::Connect { conn, to: LEADER } => Some(conn),
            _ => None,
        })
        .expect("dials the leader again");
    r.step(t + 100, Input::Connected { conn: dial });
    drain(r);
    dial
}

/// A reference leader that took a SNAP in the middle of an epoch serves a DIFF
/// from its on-disk txn log, which runs from before the snapshot straight on to
/// after it (a mixed 5-member soak: the learner logged 0x2100000522 after
/// 0x210000010a, its tree digest no longer matched, and it could not restart:
/// "zxid ... skips ahead ... records are missing"). The txn that skips counters is
/// refused, and the learner asks for a whole snapshot next time.
#[test]
fn learner_refuses_a_diff_that_skips_txns_and_asks_for_a_whole_snapshot() {
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    drain(&mut r);
    pkt(&mut r, 500, C, Packet::Diff { zxid: z(1, 9) });
    pkt(&mut r, 510, C, proposal(1, 3));
    pkt(&mut r, 510, C, commit(1, 3));
    drain(&mut r);
    pkt(&mut r, 520, C, proposal(1, 7));
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(Some(C), 2, z(1, 2), 1))]
    );
    assert_eq!(r.last_logged(), z(1, 2), "nothing of the DIFF was logged");
    let dial = back_to_the_leader(&mut r, 600);
    pkt(&mut r, 700, dial, leader_info(2));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(dial, ack_epoch(Zxid::ZERO, None))])]
    );
    // The SNAP that answers it syncs as usual, its next txn in order.
    pkt(&mut r, 800, dial, Packet::Snap { zxid: z(1, 9) });
    drain(&mut r);
    pkt(&mut r, 810, dial, proposal(1, 10));
    pkt(&mut r, 820, dial, new_leader(2));
    let out = drain(&mut r);
    assert!(
        sent_on(&out, dial).contains(&ack(2, 0)),
        "NEWLEADER acknowledged: {out:?}"
    );
    assert_eq!(r.peer_state(), PeerState::Following);
}

/// Once serving, a PROPOSAL that skips counters of the epoch is refused too: the
/// log's recovery would refuse the hole. The next sync starts from our log's end.
#[test]
fn learner_serving_refuses_a_proposal_that_skips_txns() {
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 1100, C, proposal(2, 1));
    drain(&mut r);
    pkt(&mut r, 1200, C, proposal(2, 3));
    let out = drain(&mut r);
    assert!(closed_in(&out).contains(&C), "the link is closed: {out:?}");
    assert_eq!(r.peer_state(), PeerState::Looking);
    assert_eq!(r.last_logged(), z(2, 1));
    let dial = back_to_the_leader(&mut r, 1300);
    pkt(&mut r, 1400, dial, leader_info(2));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(dial, ack_epoch(z(2, 1), None))])]
    );
}

#[test]
fn learner_that_cannot_roll_back_asks_for_everything_and_a_diff_from_zero_resets_it() {
    // The disk holds a snapshot past the TRUNC point: the state cannot go back.
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2), (1, 3)]));
    pkt(&mut r, 400, C, leader_info(2));
    drain(&mut r);
    pkt(&mut r, 500, C, Packet::Trunc { zxid: Zxid::ZERO });
    drain(&mut r);
    r.rollback_failed(z(1, 3));
    drain(&mut r);
    assert_eq!(r.peer_state(), PeerState::Looking);
    let dial = back_to_the_leader(&mut r, 600);
    // It reports zxid 0 (everything, please)...
    pkt(&mut r, 700, dial, leader_info(2));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(dial, ack_epoch(Zxid::ZERO, None))])]
    );
    // ... and the leader, whose history starts empty, answers DIFF: our state is
    // dropped, as for a SNAP of the empty state.
    pkt(&mut r, 800, dial, Packet::Diff { zxid: Zxid::ZERO });
    assert_eq!(drain(&mut r), vec![only_now(vec![ev(Event::Reset)])]);
    assert_eq!(r.last_logged(), Zxid::ZERO);
    pkt(&mut r, 900, dial, new_leader(2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![ev(Event::CaptureSnapshot { zxid: Zxid::ZERO })],
            vec![Write::Snapshot(Zxid::ZERO), Write::CurrentEpoch(2)],
            vec![send(dial, ack(2, 0))]
        )]
    );
}

#[test]
fn learner_trunc_drops_the_log_after_the_point_at_newleader() {
    // Restarted with 1:3 that the leader never had: the state holds it too.
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2), (1, 3)]));
    pkt(&mut r, 400, C, leader_info(2));
    drain(&mut r);
    pkt(&mut r, 500, C, Packet::Trunc { zxid: z(1, 2) });
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![ev(Event::Rollback { zxid: z(1, 2) })])]
    );
    pkt(&mut r, 600, C, new_leader(2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![Write::TruncateAfter(z(1, 2)), Write::CurrentEpoch(2)],
            vec![send(C, ack(2, 0))]
        )]
    );
    assert_eq!(r.last_logged(), z(1, 2));
}

#[test]
fn learner_trunc_keeps_what_the_leader_proposes_again() {
    // Back to the same leader of epoch 2: 2:2 is still outstanding there, 2:3 not.
    let mut r = learner_connected(2, disk(2, 2, &[(2, 1), (2, 2), (2, 3)]));
    pkt(&mut r, 400, C, leader_info(2));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(C, ack_epoch(z(2, 3), None))])]
    );
    pkt(&mut r, 500, C, Packet::Trunc { zxid: z(2, 1) });
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![ev(Event::Rollback { zxid: z(2, 1) })])]
    );
    pkt(&mut r, 510, C, proposal(2, 2));
    assert_eq!(drain(&mut r), vec![]);
    pkt(&mut r, 600, C, new_leader(2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![Write::TruncateAfter(z(2, 2))],
            vec![send(C, ack(2, 0)), send(C, ack(2, 2))]
        )]
    );
    pkt(&mut r, 700, C, Packet::UpToDate);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            send(C, ack(2, 0)),
            role_changed(following(true))
        ])]
    );
    pkt(&mut r, 800, C, commit(2, 2));
    assert_eq!(drain(&mut r), vec![only_now(vec![apply(2, 2)])]);
}

#[test]
fn learner_broadcast_logs_acks_and_applies_in_order() {
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 1100, C, proposal(2, 1));
    pkt(&mut r, 1100, C, proposal(2, 2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![append(2, 1), append(2, 2)],
            vec![send(C, ack(2, 1)), send(C, ack(2, 2))]
        )]
    );
    pkt(&mut r, 1200, C, commit(2, 1));
    pkt(&mut r, 1200, C, commit(2, 2));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![apply(2, 1), apply(2, 2)])]
    );
    // UPTODATE again is only a warning.
    pkt(&mut r, 1300, C, Packet::UpToDate);
    assert_eq!(drain(&mut r), vec![]);
}

/// While a batch is out for its sync, `take_released` lets go only what needs
/// nothing of it: the answer to a looking voter (no connection), and the answer to
/// the leader's ping and a forwarded REQUEST (`Target::Aside`: what a serving
/// learner sends besides ACKs does not wait for them, so a stalled disk holds only
/// its ACKs). The ACK of a proposal that came meanwhile stays behind the held
/// batch's ACK, and both follow in order as their batches become durable.
#[test]
fn learner_releases_while_a_sync_is_out_but_no_ack_overtakes_a_held_ack() {
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 1100, C, proposal(2, 1));
    let mut held = r.ready().expect("the proposal's batch");
    assert_eq!(held.take_now(), vec![]);
    assert_eq!(held.writes(), &[append(2, 1)]);
    assert!(r.persisting());
    pkt(&mut r, 1150, C, ping(1));
    hear(&mut r, 1150, 1, looking(1, z(1, 1), 1, 7));
    r.forward(forwarded(crate::proto::op::CREATE)).unwrap();
    let released = r.take_released();
    let answer = notify(1, note(PeerState::Following, vote(LEADER, z(1, 2), 2), 1));
    assert!(released.contains(&answer), "{released:?}");
    let on_c = sent_on(&[only_now(released)], C);
    assert!(
        matches!(
            on_c.as_slice(),
            [Packet::LearnerPing { .. }, Packet::Request(_)]
        ),
        "{on_c:?}"
    );
    pkt(&mut r, 1160, C, proposal(2, 2));
    assert_eq!(r.take_released(), vec![], "an ACK overtook the held one");
    assert_eq!(r.advance(held.persisted()), vec![send(C, ack(2, 1))]);
    let after = drain(&mut r);
    assert_eq!(sent_on(&after, C), vec![ack(2, 2)]);
    // No batch out: nothing to release (the driver uses `ready`).
    assert_eq!(r.take_released(), vec![]);
}

#[test]
fn learner_commit_that_is_not_the_oldest_pending_goes_back_to_looking() {
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 1100, C, proposal(2, 1));
    pkt(&mut r, 1100, C, proposal(2, 2));
    drain(&mut r);
    pkt(&mut r, 1200, C, commit(2, 2));
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(Some(C), 2, z(2, 2), 2))]
    );
}

#[test]
fn learner_broadcast_refuses_a_proposal_that_is_old_or_of_another_epoch() {
    // Epoch 2 is being served; 1:3 belongs to an older leader, 2:1 is logged.
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 1100, C, proposal(1, 3));
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(Some(C), 2, z(1, 2), 2))]
    );
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 1100, C, proposal(2, 1));
    drain(&mut r);
    pkt(&mut r, 1110, C, proposal(2, 1));
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(Some(C), 2, z(2, 1), 2))]
    );
}

#[test]
fn learner_commit_with_nothing_pending_is_only_a_warning() {
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 1100, C, commit(2, 5));
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.role(), following(true));
}

#[test]
fn learner_answers_pings_with_the_sessions_touched_since_the_last() {
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    r.touch(7, 4000);
    r.touch(5, 3000);
    let ping = Packet::LeaderPing { zxid: z(2, 0) };
    pkt(&mut r, 1100, C, ping.clone());
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(
            C,
            Packet::LearnerPing {
                zxid: z(2, 0),
                touches: vec![(5, 3000), (7, 4000)]
            }
        )])]
    );
    pkt(&mut r, 2100, C, ping);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(
            C,
            Packet::LearnerPing {
                zxid: z(2, 0),
                touches: vec![]
            }
        )])]
    );
}

#[test]
fn learner_forwards_requests_and_completes_syncs_and_revalidations() {
    let mut early = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
    assert_eq!(early.forward(forwarded(OP_SYNC)), Err(ZabError::NotServing));
    assert_eq!(early.revalidate(0x55, 30_000), Err(ZabError::NotServing));

    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    r.forward(forwarded(OP_SYNC)).unwrap();
    r.revalidate(0x55, 30_000).unwrap();
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            send(C, Packet::Request(forwarded(OP_SYNC))),
            send(
                C,
                Packet::RevalidateRequest {
                    session_id: 0x55,
                    timeout_ms: 30_000
                }
            ),
        ])]
    );
    pkt(&mut r, 1100, C, Packet::Sync);
    pkt(
        &mut r,
        1100,
        C,
        Packet::RevalidateReply {
            session_id: 0x55,
            valid: false,
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            ev(Event::SyncDone),
            ev(Event::Revalidated {
                session_id: 0x55,
                valid: false
            }),
        ])]
    );
}

#[test]
fn learner_leaves_a_leader_silent_past_sync_limit() {
    let mut r = serving(2, disk(1, 1, &[(1, 1), (1, 2)]));
    // UPTODATE came at 1000; syncLimit is 5 ticks of 2000 ms.
    assert_eq!(r.next_deadline(), 11_000);
    tick(&mut r, 11_000);
    assert_eq!(drain(&mut r), vec![]);
    tick(&mut r, 11_001);
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(Some(C), 2, z(1, 2), 2))]
    );
}

#[test]
fn learner_leaves_a_leader_silent_past_init_limit_before_newleader() {
    let mut r = learner_connected(2, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    drain(&mut r);
    // initLimit is 10 ticks of 2000 ms.
    tick(&mut r, 20_400);
    assert_eq!(drain(&mut r), vec![]);
    tick(&mut r, 20_401);
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(Some(C), 2, z(1, 2), 1))]
    );
}

#[test]
fn learner_retries_a_failed_dial_up_to_connect_attempts_max() {
    let mut r = learner_dialling(2, disk(1, 1, &[(1, 1), (1, 2)]));
    let mut t = 300;
    for attempt in 1..5 {
        r.step(
            t,
            Input::Closed {
                conn: C + attempt - 1,
            },
        );
        assert_eq!(drain(&mut r), vec![]);
        assert_eq!(r.next_deadline(), t + 100);
        tick(&mut r, t + 99);
        assert_eq!(drain(&mut r), vec![]);
        tick(&mut r, t + 100);
        assert_eq!(
            drain(&mut r),
            vec![only_now(vec![Output::Connect {
                conn: C + attempt,
                to: LEADER
            }])]
        );
        t += 200;
    }
    // The fifth failure ends the attempt.
    r.step(t, Input::Closed { conn: C + 4 });
    assert_eq!(
        drain(&mut r),
        vec![only_now(back_to_looking(None, 2, z(1, 2), 1))]
    );
    // A late answer on an old dial is closed: a dial that connects late, and a
    // packet on another.
    r.step(t, Input::Connected { conn: C + 1 });
    r.step(
        t,
        Input::Packet {
            conn: C + 2,
            packet: leader_info(2),
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![close(C + 1), close(C + 2)])]
    );
}

// =====================================================================================
// 7. Observer (PEER-PROTOCOL §10)
// =====================================================================================

#[test]
fn observer_sends_observerinfo() {
    let mut r = learner_dialling(OBSERVER, disk(1, 1, &[(1, 1), (1, 2)]));
    r.step(300, Input::Connected { conn: C });
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(C, learner_info(OBSERVER, 1, true))])]
    );
}

#[test]
fn observer_sync_logs_only_committed_pairs_after_uptodate() {
    let mut r = learner_connected(OBSERVER, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![Write::AcceptedEpoch(2)],
            vec![send(C, ack_epoch(z(1, 2), Some(1)))]
        )]
    );
    // A pair, then a proposal never committed (skipped at UPTODATE).
    for p in [
        Packet::Diff { zxid: z(1, 3) },
        proposal(1, 3),
        commit(1, 3),
        proposal(1, 4),
    ] {
        pkt(&mut r, 500, C, p);
    }
    assert_eq!(drain(&mut r), vec![]);
    // No proposal is logged or acknowledged at NEWLEADER by an observer.
    pkt(&mut r, 600, C, new_leader(2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![Write::CurrentEpoch(2)],
            vec![send(C, ack(2, 0))]
        )]
    );
    // A live INFORM before UPTODATE is held as pending and committed.
    pkt(&mut r, 650, C, inform(2, 1));
    assert_eq!(drain(&mut r), vec![]);
    pkt(&mut r, 700, C, Packet::UpToDate);
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![
                send(C, ack(2, 0)),
                role_changed(observing(true)),
                apply(1, 3),
                apply(2, 1),
            ],
            vec![append(1, 3), append(2, 1)],
            vec![]
        )]
    );
}

#[test]
fn observer_logs_and_applies_informs_without_acking_and_ignores_proposals() {
    let mut r = serving(OBSERVER, disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 1100, C, inform(2, 1));
    assert_eq!(
        drain(&mut r),
        vec![b(vec![apply(2, 1)], vec![append(2, 1)], vec![])]
    );
    pkt(&mut r, 1200, C, proposal(2, 2));
    pkt(&mut r, 1200, C, commit(2, 2));
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.last_logged(), z(2, 1));
    pkt(&mut r, 1300, C, Packet::LeaderPing { zxid: z(2, 2) });
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(
            C,
            Packet::LearnerPing {
                zxid: z(2, 2),
                touches: vec![]
            }
        )])]
    );
}

// =====================================================================================
// 8. Reconfig (PEER-PROTOCOL §2 "Config versions", §4.1, §5.1, §5.6, §11)
// =====================================================================================

use std::sync::Arc;

/// The cast's config with reconfigEnabled=true.
fn cfg_r(id: ServerId) -> Config {
    let mut c = cfg(id);
    c.reconfig_enabled = true;
    c
}

/// A config of the cast's addresses (`server.N=127.0.0.1:2887+N:3887+N:…`).
fn conf(voters: &[ServerId], observers: &[ServerId], version: i64) -> Arc<Membership> {
    Arc::new(Membership::local(voters, observers, version))
}

/// A reconfig txn at `epoch:counter` proposing these members (its version is its
/// zxid).
fn rent(epoch: u32, counter: u32, voters: &[ServerId], observers: &[ServerId]) -> Entry {
    let mut e = ent(epoch, counter);
    e.reconfig = Some(conf(voters, observers, z(epoch, counter).as_i64()));
    e
}

fn config_of(e: &Entry) -> Arc<Membership> {
    e.reconfig.clone().expect("a reconfig txn")
}

fn proposed_ev(m: &Arc<Membership>) -> Output {
    ev(Event::ConfigProposed(m.clone()))
}

fn activated_ev(m: &Arc<Membership>) -> Output {
    ev(Event::ConfigActivated(m.clone()))
}

fn new_leader_with(epoch: u32, m: &Membership) -> Packet {
    Packet::NewLeader {
        zxid: z(epoch, 0),
        config: m.text().clone(),
    }
}

/// FOLLOWERINFO of a learner whose committed config has `version`.
fn follower_info_at(sid: ServerId, accepted_epoch: u32, version: i64) -> Packet {
    let mut p = learner_info(sid, accepted_epoch, false);
    if let Packet::LearnerInfo { info, .. } = &mut p {
        info.config_version = version;
    }
    p
}

fn looking_in(
    m: &Membership,
    leader: ServerId,
    zxid: Zxid,
    epoch: u32,
    round: i64,
) -> Notification {
    Notification {
        config: m.text().clone(),
        ..looking(leader, zxid, epoch, round)
    }
}

#[test]
fn reconfig_the_first_leader_versions_the_initial_config_with_its_newleader_zxid() {
    // Version 0 everywhere (zoo.cfg's own server lines), reconfig on.
    let v0 = conf(&[1, 2, 3], &[OBSERVER], 0);
    let mut c = Config::new(LEADER, (*v0).clone());
    c.reconfig_enabled = true;
    let d = disk(1, 1, &[(1, 1), (1, 2)]);
    let mut r = started(c, d);
    hear(&mut r, 0, 2, looking_in(&v0, LEADER, z(1, 2), 1, 1));
    tick(&mut r, 200);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![role_changed(leading(None, false))])]
    );
    // Once the epoch is decided, the last-seen config takes NEWLEADER's zxid as
    // its version (ZOOKEEPER-1783).
    let v2 = conf(&[1, 2, 3], &[OBSERVER], 0x2_0000_0000);
    r.step(300, Input::Accepted { conn: CONN_2 });
    pkt(&mut r, 300, CONN_2, follower_info_at(2, 1, 0));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![proposed_ev(&v2)],
            vec![Write::AcceptedEpoch(2), Write::LastSeenConfig(v2.clone())],
            vec![send(CONN_2, leader_info(2))]
        )]
    );
    assert_eq!(r.committed_config().version(), 0);
    assert_eq!(r.last_seen_config().version(), 0x2_0000_0000);
    // NEWLEADER carries it.
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 2), Some(1)));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![send(CONN_2, Packet::Diff { zxid: z(1, 2) })],
            vec![Write::CurrentEpoch(2)],
            vec![send(CONN_2, new_leader_with(2, &v2))]
        )]
    );
    // Established: activated first, then serving.
    pkt(&mut r, 500, CONN_2, ack(2, 0));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![
                activated_ev(&v2),
                role_changed(leading(Some(2), true)),
                send(CONN_2, Packet::UpToDate)
            ],
            vec![Write::CommittedConfig(v2.clone())],
            vec![]
        )]
    );
    assert_eq!(r.committed_config(), &v2);
}

#[test]
fn reconfig_off_keeps_version_zero_and_newleader_carries_the_config_as_it_is() {
    let v0 = conf(&[1, 2, 3], &[OBSERVER], 0);
    let c = Config::new(LEADER, (*v0).clone());
    let mut r = started(c, disk(1, 1, &[(1, 1), (1, 2)]));
    hear(&mut r, 0, 2, looking_in(&v0, LEADER, z(1, 2), 1, 1));
    tick(&mut r, 200);
    drain(&mut r);
    r.step(300, Input::Accepted { conn: CONN_2 });
    pkt(&mut r, 300, CONN_2, follower_info_at(2, 1, 0));
    assert_eq!(drain(&mut r)[0].writes, vec![Write::AcceptedEpoch(2)]);
    pkt(&mut r, 400, CONN_2, ack_epoch(z(1, 2), Some(1)));
    let out = drain(&mut r);
    assert_eq!(
        sent_on(&out, CONN_2),
        vec![Packet::Diff { zxid: z(1, 2) }, new_leader_with(2, &v0)]
    );
    pkt(&mut r, 500, CONN_2, ack(2, 0));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(leading(Some(2), true)),
            send(CONN_2, Packet::UpToDate)
        ])]
    );
    assert_eq!(r.committed_config().version(), 0);
}

#[test]
fn reconfig_learner_takes_newleaders_config_after_the_sync_and_activates_it_at_uptodate() {
    let mut r = learner_connected_with(cfg_r(2), disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    pkt(&mut r, 500, C, Packet::Diff { zxid: z(1, 2) });
    drain(&mut r);
    let v2 = conf(&[1, 2, 3], &[OBSERVER], 0x2_0000_0000);
    pkt(&mut r, 600, C, new_leader_with(2, &v2));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![proposed_ev(&v2)],
            vec![Write::CurrentEpoch(2), Write::LastSeenConfig(v2.clone())],
            vec![send(C, ack(2, 0))]
        )]
    );
    pkt(&mut r, 1000, C, Packet::UpToDate);
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![
                activated_ev(&v2),
                send(C, ack(2, 0)),
                role_changed(following(true))
            ],
            vec![Write::CommittedConfig(v2.clone())],
            vec![]
        )]
    );
    assert_eq!(r.committed_config(), &v2);
}

/// A committed reconfig the SNAP already holds, forwarded again after it, is still
/// activated (the snapshot's config node is not taken; NEWLEADER may carry a later,
/// uncommitted config).
#[test]
fn reconfig_learner_activates_a_reconfig_its_snapshot_holds() {
    let r14 = rent(1, 4, &[1, 2, 3], &[]);
    let m = config_of(&r14);
    let mut r = learner_connected_with(cfg_r(2), disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    pkt(&mut r, 500, C, Packet::Snap { zxid: z(1, 5) });
    drain(&mut r);
    pkt(&mut r, 510, C, Packet::Proposal(r14));
    assert_eq!(drain(&mut r), vec![], "nothing to log");
    pkt(
        &mut r,
        520,
        C,
        Packet::CommitAndActivate {
            zxid: z(1, 4),
            designated_leader: LEADER,
        },
    );
    let out = drain(&mut r);
    assert!(
        format!("{out:?}").contains(&format!("{:?}", activated_ev(&m))),
        "{out:?}"
    );
    assert_eq!(r.committed_config(), &m);
    assert_eq!(r.role(), following(false), "the leader stays");
}

#[test]
fn reconfig_late_joiner_keeps_a_pending_newleader_config_until_its_commit() {
    // The leader's last-seen config is a reconfig proposed in this epoch (2:1,
    // dropping the observer): an outstanding proposal, not committed at UPTODATE.
    let r21 = rent(2, 1, &[1, 2, 3], &[]);
    let m = config_of(&r21);
    let mut r = learner_connected_with(cfg_r(2), disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    pkt(&mut r, 500, C, Packet::Diff { zxid: z(1, 2) });
    pkt(&mut r, 500, C, Packet::Proposal(r21.clone()));
    drain(&mut r);
    pkt(&mut r, 600, C, new_leader_with(2, &m));
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![proposed_ev(&m)],
            vec![
                Write::Append(r21.clone()),
                Write::CurrentEpoch(2),
                Write::LastSeenConfig(m.clone())
            ],
            vec![send(C, ack(2, 0)), send(C, ack(2, 1))]
        )]
    );
    pkt(&mut r, 1000, C, Packet::UpToDate);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            send(C, ack(2, 0)),
            role_changed(following(true))
        ])]
    );
    assert_eq!(r.committed_config().version(), CONFIG_VERSION);
    assert_eq!(r.last_seen_config(), &m);
    // Its commit activates it; the leader stays (designated 3), our role too.
    pkt(
        &mut r,
        1100,
        C,
        Packet::CommitAndActivate {
            zxid: z(2, 1),
            designated_leader: LEADER,
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![activated_ev(&m), ev(Event::Apply(r21))],
            vec![Write::CommittedConfig(m.clone())],
            vec![]
        )]
    );
    assert!(r.role().serving());
}

#[test]
fn reconfig_follower_logs_a_reconfig_then_activates_it_and_follows_the_designated_leader() {
    let mut r = serving_with(cfg_r(2), disk(1, 1, &[(1, 1), (1, 2)]));
    let r21 = rent(2, 1, &[1, 2, 3], &[]);
    let m = config_of(&r21);
    pkt(&mut r, 1100, C, Packet::Proposal(r21.clone()));
    // The config becomes last-seen once its txn is logged.
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![proposed_ev(&m)],
            vec![Write::Append(r21.clone()), Write::LastSeenConfig(m.clone())],
            vec![send(C, ack(2, 1))]
        )]
    );
    // Committed with server 1 designated: activate, apply, and leave leader 3.
    pkt(
        &mut r,
        1200,
        C,
        Packet::CommitAndActivate {
            zxid: z(2, 1),
            designated_leader: 1,
        },
    );
    let mut now = vec![
        activated_ev(&m),
        ev(Event::Apply(r21)),
        close(C),
        role_changed(Role::Looking),
    ];
    let mine = looking_in(&m, 2, z(2, 1), 2, 2);
    now.extend([notify(1, mine.clone()), notify(3, mine)]);
    assert_eq!(
        drain(&mut r),
        vec![b(now, vec![Write::CommittedConfig(m.clone())], vec![])]
    );
}

#[test]
fn reconfig_observer_made_a_participant_by_informandactivate_runs_an_election() {
    let mut r = serving_with(cfg_r(OBSERVER), disk(1, 1, &[(1, 1), (1, 2)]));
    let r21 = rent(2, 1, &[1, 2, 3, OBSERVER], &[]);
    let m = config_of(&r21);
    pkt(
        &mut r,
        1100,
        C,
        Packet::InformAndActivate {
            entry: r21.clone(),
            designated_leader: LEADER,
        },
    );
    // Logged and applied; then, a participant now, it votes for itself.
    let mut now = vec![
        activated_ev(&m),
        ev(Event::Apply(r21.clone())),
        close(C),
        role_changed(Role::Looking),
    ];
    let mine = looking_in(&m, OBSERVER, z(2, 1), 2, 2);
    now.extend(notify_voters(OBSERVER, &mine));
    assert_eq!(
        drain(&mut r),
        vec![b(
            now,
            vec![Write::CommittedConfig(m.clone()), Write::Append(r21)],
            vec![]
        )]
    );
    assert!(!r.is_observer());
}

#[test]
fn reconfig_observer_untouched_by_the_change_stays_with_its_leader() {
    let mut r = serving_with(cfg_r(OBSERVER), disk(1, 1, &[(1, 1), (1, 2)]));
    let r21 = rent(2, 1, &[2, 3], &[OBSERVER]);
    let m = config_of(&r21);
    pkt(
        &mut r,
        1100,
        C,
        Packet::InformAndActivate {
            entry: r21.clone(),
            designated_leader: LEADER,
        },
    );
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![activated_ev(&m), ev(Event::Apply(r21.clone()))],
            vec![Write::CommittedConfig(m), Write::Append(r21)],
            vec![]
        )]
    );
    assert!(r.role().serving());
}

#[test]
fn reconfig_commitandactivate_while_syncing_activates_at_once() {
    // Server 2 is made an observer by a reconfig the leader commits during our
    // sync: the role changed, so we leave before NEWLEADER.
    let r13 = rent(1, 3, &[1, 3], &[2, OBSERVER]);
    let m = config_of(&r13);
    let mut r = learner_connected_with(cfg_r(2), disk(1, 1, &[(1, 1), (1, 2)]));
    pkt(&mut r, 400, C, leader_info(2));
    pkt(&mut r, 500, C, Packet::Diff { zxid: z(1, 3) });
    pkt(&mut r, 500, C, Packet::Proposal(r13.clone()));
    drain(&mut r);
    pkt(
        &mut r,
        500,
        C,
        Packet::CommitAndActivate {
            zxid: z(1, 3),
            designated_leader: LEADER,
        },
    );
    let mut now = vec![activated_ev(&m), close(C), role_changed(Role::Looking)];
    let observer_vote = looking_in(&m, 0, z(1, 2), 1, 2);
    let observer_vote = Notification {
        vote: Vote::NONE,
        ..observer_vote
    };
    now.extend([notify(1, observer_vote.clone()), notify(3, observer_vote)]);
    assert_eq!(
        drain(&mut r),
        vec![b(now, vec![Write::CommittedConfig(m)], vec![])]
    );
    assert!(r.is_observer());
}

/// Leader 3 of the cast with reconfig on, and server 5 (in no config) joined as a
/// non-voting follower on connection 50, synced and up to date.
fn established_with_joiner() -> Replica {
    let mut r = established_with(cfg_r(LEADER));
    const CONN_5: ConnId = 50;
    join(&mut r, 600, CONN_5, 5, 1, false);
    assert_eq!(
        drain(&mut r),
        vec![b(vec![], vec![], vec![send(CONN_5, leader_info(2))])]
    );
    pkt(&mut r, 610, CONN_5, ack_epoch(z(1, 2), Some(1)));
    drain(&mut r);
    pkt(&mut r, 620, CONN_5, ack(2, 0));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![send(CONN_5, Packet::UpToDate)])]
    );
    r
}

#[test]
fn reconfig_off_refuses_a_server_not_in_the_config_with_it_on_accepts_it_without_a_vote() {
    let mut r = elected(disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, 50, 5, 1, false);
    assert_eq!(drain(&mut r), vec![only_now(vec![close(50)])]);
    let mut r = elected_with(cfg_r(LEADER), disk(1, 1, &[(1, 1), (1, 2)]));
    join(&mut r, 300, 50, 5, 1, false);
    // Kept, but no quorum for the epoch: it has no vote.
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.role(), leading(None, false));
    join(&mut r, 310, CONN_2, 2, 1, false);
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![],
            vec![Write::AcceptedEpoch(2)],
            vec![send(CONN_2, leader_info(2)), send(50, leader_info(2))]
        )]
    );
}

#[test]
fn reconfig_proposal_needs_a_quorum_of_both_configs_and_commits_with_activation() {
    let mut r = established_with_joiner();
    // Server 5 becomes a voter: 4 voters, a quorum is 3 of them.
    let r21 = rent(2, 1, &[1, 2, 3, 5], &[OBSERVER]);
    let m = config_of(&r21);
    assert!(r.is_quorum_synced(&m), "3, 1, 2 and 5 are synced");
    r.propose(r21.clone()).unwrap();
    assert_eq!(r.reconfig_in_progress(), Some(m.version()));
    let to_followers = |p: &Packet| {
        [CONN_1, CONN_2, 50]
            .into_iter()
            .map(|c| send(c, p.clone()))
            .collect::<Vec<_>>()
    };
    let mut now = to_followers(&Packet::Proposal(r21.clone()));
    now.push(proposed_ev(&m));
    assert_eq!(
        drain(&mut r),
        vec![b(
            now,
            vec![Write::Append(r21.clone()), Write::LastSeenConfig(m.clone())],
            vec![]
        )]
    );
    // A proposal made while it is pending needs both quorums too.
    r.propose(ent(2, 2)).unwrap();
    drain(&mut r);
    // 3 and 1: a quorum of the old config, not of the new.
    pkt(&mut r, 700, CONN_1, ack(2, 1));
    pkt(&mut r, 700, CONN_1, ack(2, 2));
    assert_eq!(drain(&mut r), vec![]);
    // 5 completes the new one for 2:1 only: it commits, activated; we stay leader.
    pkt(&mut r, 710, 50, ack(2, 1));
    let caa = Packet::CommitAndActivate {
        zxid: z(2, 1),
        designated_leader: LEADER,
    };
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![
                activated_ev(&m),
                send(CONN_1, caa.clone()),
                send(CONN_2, caa.clone()),
                send(
                    CONN_4,
                    Packet::InformAndActivate {
                        entry: r21.clone(),
                        designated_leader: LEADER
                    }
                ),
                send(50, caa),
                ev(Event::Apply(r21)),
            ],
            vec![Write::CommittedConfig(m.clone())],
            vec![]
        )]
    );
    assert_eq!(r.committed_config(), &m);
    assert_eq!(r.reconfig_in_progress(), None);
    assert_eq!(r.established_epoch(), Some(2));
    // 2:2 still needs the old config's quorum and the new one's: 5's ACK does it.
    pkt(&mut r, 720, CONN_2, ack(2, 2));
    pkt(&mut r, 720, 50, ack(2, 2));
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            send(CONN_1, commit(2, 2)),
            send(CONN_2, commit(2, 2)),
            send(CONN_4, inform(2, 2)),
            send(50, commit(2, 2)),
            apply(2, 2),
        ])]
    );
}

#[test]
fn reconfig_a_leader_that_removes_itself_names_a_successor_and_steps_down() {
    let mut r = established_with(cfg_r(LEADER));
    let r21 = rent(2, 1, &[1, 2], &[OBSERVER]);
    let m = config_of(&r21);
    r.propose(r21.clone()).unwrap();
    r.propose(ent(2, 2)).unwrap();
    drain(&mut r);
    // Both remaining voters acked the reconfig; only 2 acked the next proposal:
    // 2 is the most up to date, so it is designated.
    pkt(&mut r, 700, CONN_1, ack(2, 1));
    assert_eq!(drain(&mut r), vec![], "1 alone is no quorum of [1, 2]");
    pkt(&mut r, 700, CONN_2, ack(2, 2));
    pkt(&mut r, 700, CONN_2, ack(2, 1));
    let caa = Packet::CommitAndActivate {
        zxid: z(2, 1),
        designated_leader: 2,
    };
    // A server in no config proposes nobody, to the voters of the new config.
    let mine = Notification {
        vote: Vote {
            leader: i64::MIN,
            zxid: z(2, 2).as_i64(),
            peer_epoch: 2,
        },
        ..looking_in(&m, 0, z(2, 2), 2, 2)
    };
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![
                activated_ev(&m),
                send(CONN_1, caa.clone()),
                send(CONN_2, caa),
                send(
                    CONN_4,
                    Packet::InformAndActivate {
                        entry: r21.clone(),
                        designated_leader: 2
                    }
                ),
                ev(Event::Apply(r21)),
                close(CONN_1),
                close(CONN_2),
                close(CONN_4),
                role_changed(Role::Looking),
                notify(1, mine.clone()),
                notify(2, mine),
            ],
            vec![Write::CommittedConfig(m)],
            vec![]
        )]
    );
    assert_eq!(r.peer_state(), PeerState::Looking);
}

#[test]
fn reconfig_proposals_the_leader_refuses() {
    let mut r = established();
    let r21 = rent(2, 1, &[1, 2, 3], &[]);
    assert_eq!(r.propose(r21.clone()), Err(ZabError::ReconfigDisabled));
    let mut r = established_with(cfg_r(LEADER));
    let mut wrong = r21.clone();
    wrong.reconfig = Some(conf(&[1, 2, 3], &[], 7));
    assert_eq!(
        r.propose(wrong),
        Err(ZabError::ReconfigVersion {
            zxid: z(2, 1),
            version: 7
        })
    );
    r.propose(r21).unwrap();
    assert_eq!(
        r.propose(rent(2, 2, &[1, 2], &[])),
        Err(ZabError::ReconfigInProgress {
            version: z(2, 1).as_i64()
        })
    );
    // A synced quorum of the proposed config: 3 and 1 of [1, 3, 5] are; 5 and 6
    // are nowhere.
    assert!(r.is_quorum_synced(&conf(&[1, 3, 5], &[], 9)));
    assert!(!r.is_quorum_synced(&conf(&[1, 5, 6], &[], 9)));
    assert!(
        !r.is_quorum_synced(&conf(&[1, 5, 6], &[3], 9)),
        "we count only as a voter"
    );
}

#[test]
fn reconfig_looking_server_adopts_a_higher_config_version_and_restarts_if_members_differ() {
    let d = || disk(1, 1, &[(1, 1), (1, 2)]);
    // Same members, higher version: adopted, the vote is counted as usual.
    let mut r = started(cfg_r(2), d());
    let v2 = conf(&[1, 2, 3], &[OBSERVER], 0x2_0000_0000);
    hear(&mut r, 10, 1, looking_in(&v2, 1, z(1, 2), 1, 1));
    // (Server 1 votes for a worse leader in our round: we answer with our vote.)
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![
                activated_ev(&v2),
                notify(1, looking_in(&v2, 2, z(1, 2), 1, 1))
            ],
            vec![Write::CommittedConfig(v2.clone())],
            vec![]
        )]
    );
    assert_eq!(r.election_epoch(), 1);
    // Other members: adopted, and the election starts over (round 1 again) with
    // the new voters; the notification itself is dropped.
    let mut r = started(cfg_r(2), d());
    let other = conf(&[1, 2, 3, 5], &[], 0x2_0000_0001);
    hear(&mut r, 10, 1, looking_in(&other, 1, z(1, 2), 1, 1));
    let mine = looking_in(&other, 2, z(1, 2), 1, 1);
    assert_eq!(
        drain(&mut r),
        vec![b(
            vec![
                activated_ev(&other),
                notify(1, mine.clone()),
                notify(3, mine.clone()),
                notify(5, mine)
            ],
            vec![Write::CommittedConfig(other.clone())],
            vec![]
        )]
    );
    // An older or equal version, or reconfig off: nothing but the vote (worse
    // than ours, so answered with our own in our config).
    let mut r = started(cfg(2), d());
    hear(&mut r, 10, 1, looking_in(&other, 1, z(1, 2), 1, 1));
    let ours = conf(&[1, 2, 3], &[OBSERVER], CONFIG_VERSION);
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![notify(
            1,
            looking_in(&ours, 2, z(1, 2), 1, 1)
        )])]
    );
    assert_eq!(r.committed_config().version(), CONFIG_VERSION);
}

#[test]
fn reconfig_a_pending_config_needs_its_quorum_to_elect_but_not_to_join_a_leader() {
    // Server 2 saw a reconfig (to voters 1, 2, 3, 5) that never committed.
    let pending = conf(&[1, 2, 3, 5], &[], 0x1_0000_0007);
    let mut c = cfg_r(2);
    c.last_seen = Some((*pending).clone());
    let d = disk(1, 1, &[(1, 1), (1, 2)]);
    // Electing: 2 and 1 agree, a quorum of [1, 2, 3] but not of [1, 2, 3, 5].
    let mut r = started(c.clone(), d.clone());
    hear(&mut r, 10, 1, looking(2, z(1, 2), 1, 1));
    tick(&mut r, 300);
    drain(&mut r);
    assert_eq!(r.peer_state(), PeerState::Looking);
    // It notifies the pending config's voters too.
    let mut r = Replica::new(c.clone(), d.clone(), 0).unwrap();
    let mine = looking(2, z(1, 2), 1, 1);
    let mut first = vec![role_changed(Role::Looking)];
    first.extend([1, 3, 5].map(|to| notify(to, mine.clone())));
    assert_eq!(drain(&mut r), vec![only_now(first)]);
    // Joining leader 3, followed by 1: a quorum of the committed config is enough.
    let mut r = started(c, d);
    hear(
        &mut r,
        10,
        1,
        note(PeerState::Following, vote(3, z(1, 2), 1), 1),
    );
    hear(
        &mut r,
        20,
        3,
        note(PeerState::Leading, vote(3, z(1, 2), 1), 1),
    );
    assert_eq!(
        drain(&mut r),
        vec![only_now(vec![
            role_changed(following(false)),
            Output::Connect { conn: C, to: 3 }
        ])]
    );
}

/// A dial that finishes after the member stopped following (a slow connect or TLS
/// handshake) is closed, not left open: looking, and leading.
#[test]
fn a_learner_link_connected_when_no_longer_following_is_closed() {
    let mut r = started(cfg(2), DurableState::default());
    drain(&mut r);
    r.step(300, Input::Connected { conn: C + 7 });
    let out = drain(&mut r);
    assert!(
        out.iter()
            .flat_map(|b| b.now.iter())
            .any(|o| *o == close(C + 7)),
        "looking: {out:?}"
    );
    let mut r = established_with(cfg(LEADER));
    drain(&mut r);
    r.step(700, Input::Connected { conn: C + 8 });
    let out = drain(&mut r);
    assert!(
        out.iter()
            .flat_map(|b| b.now.iter())
            .any(|o| *o == close(C + 8)),
        "leading: {out:?}"
    );
}
