//! Exact-output tests of the replica: each phase and message type, fed a scripted
//! sequence of inputs, asserting the full list of messages, writes and applies.

use bytes::Bytes;

use super::*;

const V: [ServerId; 3] = [1, 2, 3];

fn cfg(id: ServerId) -> Config {
    let mut c = Config::new(id, V.to_vec(), vec![4]);
    c.election_jitter_ticks = 0;
    c.election_resend_ticks = 2;
    c.init_limit_ticks = 10;
    c.sync_limit_ticks = 5;
    c.seed = 1;
    c
}

fn z(e: u32, c: u32) -> Zxid {
    Zxid::new(e, c)
}

fn ent(e: u32, c: u32) -> Entry {
    Entry {
        zxid: z(e, c),
        payload: Bytes::from(format!("{e}:{c}")),
    }
}

fn durable(epoch: u32, log: Vec<Entry>) -> DurableState {
    DurableState {
        accepted_epoch: epoch,
        current_epoch: epoch,
        snapshot: None,
        log,
    }
}

fn out(to: ServerId, msg: Msg) -> Outgoing {
    Outgoing { to, msg }
}

/// One batch, split as the driver sees it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    now: Vec<Outgoing>,
    writes: Vec<Write>,
    after: Vec<Outgoing>,
    apply: Vec<Apply>,
}

/// Takes one batch and persists it.
fn batch(r: &mut Replica) -> Batch {
    let Some(mut rd) = r.ready() else {
        return Batch::default();
    };
    let now = rd.take_send_now();
    let writes = rd.writes().to_vec();
    let rel = r.advance(rd.persisted());
    Batch {
        now,
        writes,
        after: rel.send,
        apply: rel.apply,
    }
}

/// Drains every batch (a leader's own ack can produce a follow-up batch).
fn drain(r: &mut Replica) -> Batch {
    let mut all = Batch::default();
    loop {
        let b = batch(r);
        if b == Batch::default() {
            return all;
        }
        all.now.extend(b.now);
        all.writes.extend(b.writes);
        all.after.extend(b.after);
        all.apply.extend(b.apply);
    }
}

fn msg(r: &mut Replica, now: u64, from: ServerId, m: Msg) {
    r.step(now, Input::Message { from, msg: m });
}

fn notif(ee: u64, leader: ServerId, zxid: Zxid, epoch: u32, state: PeerState) -> Msg {
    Msg::Notification {
        election_epoch: ee,
        vote: Vote {
            leader,
            zxid,
            epoch,
        },
        state,
    }
}

fn follower_attempt(b: &Batch) -> u64 {
    b.now
        .iter()
        .chain(b.after.iter())
        .find_map(|o| match o.msg {
            Msg::FollowerInfo { attempt, .. } => Some(attempt),
            _ => None,
        })
        .expect("a FollowerInfo")
}

#[test]
fn zxid_layout_and_vote_order() {
    let x = Zxid::new(3, 7);
    assert_eq!(x.0, (3 << 32) | 7);
    assert_eq!((x.epoch(), x.counter()), (3, 7));
    assert!(Zxid::new(2, u32::MAX) < Zxid::new(3, 0));
    let v = |leader, zxid, epoch| Vote {
        leader,
        zxid,
        epoch,
    };
    // Epoch first, then zxid, then id.
    assert!(v(1, z(1, 9), 2) > v(3, z(1, 9), 1));
    assert!(v(1, z(1, 9), 1) > v(3, z(1, 8), 1));
    assert!(v(3, z(1, 9), 1) > v(2, z(1, 9), 1));
}

#[test]
fn config_is_validated() {
    let mut c = cfg(9);
    assert!(matches!(
        Replica::new(c.clone(), DurableState::default(), 0),
        Err(ZabError::InvalidConfig(_))
    ));
    c.id = 1;
    c.observers = vec![1];
    assert!(Replica::new(c, DurableState::default(), 0).is_err());
}

#[test]
fn election_looking_broadcasts_then_follows_the_best_vote() {
    let mut r = Replica::new(cfg(2), durable(1, vec![ent(1, 1)]), 0).unwrap();
    let b = drain(&mut r);
    let mine = notif(1, 2, z(1, 1), 1, PeerState::Looking);
    assert_eq!(b.now, vec![out(1, mine.clone()), out(3, mine)]);
    assert!(b.writes.is_empty());
    assert_eq!(r.role(), Role::Looking);

    // A better vote (higher zxid) from server 1: adopt it and tell everyone;
    // with our own vote that is a quorum for 1.
    msg(&mut r, 0, 1, notif(1, 1, z(1, 2), 1, PeerState::Looking));
    let b = drain(&mut r);
    let adopted = notif(1, 1, z(1, 2), 1, PeerState::Looking);
    let attempt = follower_attempt(&b);
    assert_eq!(
        b.now,
        vec![
            out(1, adopted.clone()),
            out(3, adopted),
            out(
                1,
                Msg::FollowerInfo {
                    accepted_epoch: 1,
                    attempt,
                    observer: false,
                    want_snap: false
                }
            ),
        ]
    );
    assert_eq!(
        r.role(),
        Role::Following {
            leader: 1,
            serving: false
        }
    );
}

#[test]
fn election_worse_vote_and_older_round() {
    let mut r = Replica::new(cfg(1), durable(1, vec![ent(1, 2)]), 0).unwrap();
    drain(&mut r);
    // A worse vote in our round: recorded, no change, no quorum for it.
    msg(&mut r, 0, 2, notif(1, 2, z(1, 1), 1, PeerState::Looking));
    assert_eq!(drain(&mut r), Batch::default());
    // A peer in an older round (our round is 1, we move to 3 first).
    msg(&mut r, 0, 3, notif(3, 3, z(1, 1), 1, PeerState::Looking));
    let b = drain(&mut r);
    let mine = notif(3, 1, z(1, 2), 1, PeerState::Looking);
    assert_eq!(b.now, vec![out(2, mine.clone()), out(3, mine.clone())]);
    msg(&mut r, 0, 2, notif(2, 2, z(1, 1), 1, PeerState::Looking));
    assert_eq!(drain(&mut r).now, vec![out(2, mine)]);
    assert_eq!(r.role(), Role::Looking);
    // Resend after election_resend_ticks without an answer.
    r.step(2, Input::Tick);
    assert_eq!(drain(&mut r).now.len(), 2);
}

#[test]
fn election_joins_an_established_leader_and_answers_lookers() {
    let mut r = Replica::new(cfg(3), durable(0, vec![]), 0).unwrap();
    drain(&mut r);
    // Followers and the leader answer with their state: join once a quorum backs
    // a leader that says it leads. The follower may still hold the vote from an
    // earlier election of the same leader.
    msg(&mut r, 0, 2, notif(3, 1, z(1, 1), 1, PeerState::Following));
    assert_eq!(r.role(), Role::Looking);
    msg(&mut r, 0, 1, notif(4, 1, z(1, 2), 1, PeerState::Leading));
    assert_eq!(
        r.role(),
        Role::Following {
            leader: 1,
            serving: false
        }
    );
    assert_eq!(
        r.vote(),
        Vote {
            leader: 1,
            zxid: z(1, 2),
            epoch: 1
        }
    );
    assert_eq!(r.election_epoch(), 4);
    drain(&mut r);
    // Now a looking peer gets our state back.
    msg(&mut r, 0, 2, notif(9, 2, z(0, 0), 0, PeerState::Looking));
    assert_eq!(
        drain(&mut r).now,
        vec![out(2, notif(4, 1, z(1, 2), 1, PeerState::Following))]
    );
}

/// Server 1 (log 1:1, 1:2) wins the election, runs discovery and sync with
/// server 2 (log 1:1) and becomes established. Returns the leader and 2's attempt.
fn established_leader() -> Replica {
    let mut l = Replica::new(cfg(1), durable(1, vec![ent(1, 1), ent(1, 2)]), 0).unwrap();
    drain(&mut l);
    msg(&mut l, 0, 2, notif(1, 2, z(1, 1), 1, PeerState::Looking));
    msg(&mut l, 0, 3, notif(1, 1, z(1, 2), 1, PeerState::Looking));
    assert_eq!(
        l.role(),
        Role::Leading {
            epoch: None,
            established: false
        }
    );
    assert_eq!(drain(&mut l), Batch::default());

    // Discovery: a quorum (us + 2) reported accepted epochs: new epoch 2, made
    // durable before LEADERINFO leaves.
    msg(
        &mut l,
        1,
        2,
        Msg::FollowerInfo {
            accepted_epoch: 1,
            attempt: 7,
            observer: false,
            want_snap: false,
        },
    );
    let mut rd = l.ready().unwrap();
    assert!(rd.take_send_now().is_empty());
    assert_eq!(rd.writes(), &[Write::AcceptedEpoch(2)]);
    assert!(l.ready().is_none(), "one batch at a time");
    let rel = l.advance(rd.persisted());
    assert_eq!(
        rel.send,
        vec![out(
            2,
            Msg::LeaderInfo {
                new_epoch: 2,
                attempt: 7
            }
        )]
    );

    // Epoch acknowledged by a quorum: adopt it, sync 2 with a DIFF.
    msg(
        &mut l,
        1,
        2,
        Msg::AckEpoch {
            attempt: 7,
            current_epoch: Some(1),
            last_zxid: z(1, 1),
        },
    );
    let b = drain(&mut l);
    assert_eq!(b.writes, vec![Write::CurrentEpoch(2)]);
    assert_eq!(
        b.now,
        vec![
            out(
                2,
                Msg::Sync {
                    epoch: 2,
                    attempt: 7,
                    mode: SyncMode::Diff,
                    prev: z(1, 1),
                    entries: vec![ent(1, 2)]
                }
            ),
            out(
                2,
                Msg::NewLeader {
                    epoch: 2,
                    attempt: 7,
                    last_zxid: z(1, 2)
                }
            ),
        ]
    );
    assert_eq!(
        l.role(),
        Role::Leading {
            epoch: Some(2),
            established: false
        }
    );

    // NEWLEADER acknowledged: established, initial history committed.
    msg(
        &mut l,
        1,
        2,
        Msg::Ack {
            epoch: 2,
            zxid: z(1, 2),
        },
    );
    let b = drain(&mut l);
    assert_eq!(
        b.now,
        vec![out(
            2,
            Msg::UpToDate {
                epoch: 2,
                attempt: 7,
                commit: z(1, 2)
            }
        )]
    );
    assert_eq!(
        b.apply,
        vec![Apply::Entry(ent(1, 1)), Apply::Entry(ent(1, 2))]
    );
    assert_eq!(l.established_epoch(), Some(2));
    assert_eq!(l.committed(), z(1, 2));
    l
}

#[test]
fn leader_discovery_sync_and_establishment() {
    established_leader();
}

#[test]
fn leader_abandons_when_a_quorum_member_is_ahead() {
    let mut l = Replica::new(cfg(1), durable(1, vec![ent(1, 1)]), 0).unwrap();
    drain(&mut l);
    msg(&mut l, 0, 2, notif(1, 1, z(1, 1), 1, PeerState::Looking));
    drain(&mut l);
    let info = Msg::FollowerInfo {
        accepted_epoch: 1,
        attempt: 5,
        observer: false,
        want_snap: false,
    };
    msg(&mut l, 0, 2, info);
    drain(&mut l);
    msg(
        &mut l,
        0,
        2,
        Msg::AckEpoch {
            attempt: 5,
            current_epoch: Some(1),
            last_zxid: z(1, 3),
        },
    );
    assert_eq!(l.role(), Role::Looking);
}

#[test]
fn broadcast_proposal_ack_commit_and_duplicate_acks() {
    let mut l = established_leader();
    let x = l.propose(Bytes::from_static(b"x")).unwrap();
    assert_eq!(x, z(2, 1));
    let e = Entry {
        zxid: x,
        payload: Bytes::from_static(b"x"),
    };
    let b = drain(&mut l);
    assert_eq!(b.writes, vec![Write::Append(e.clone())]);
    assert_eq!(
        b.now,
        vec![out(
            2,
            Msg::Proposal {
                epoch: 2,
                prev: z(1, 2),
                entry: e.clone()
            }
        )]
    );
    // Our own durable copy is one of three: not yet committed.
    assert!(b.apply.is_empty());
    assert_eq!(l.committed(), z(1, 2));

    msg(&mut l, 2, 2, Msg::Ack { epoch: 2, zxid: x });
    let b = drain(&mut l);
    assert_eq!(b.now, vec![out(2, Msg::Commit { epoch: 2, zxid: x })]);
    assert_eq!(b.apply, vec![Apply::Entry(e)]);

    // Duplicated and stale-epoch acks change nothing.
    msg(&mut l, 2, 2, Msg::Ack { epoch: 2, zxid: x });
    msg(&mut l, 2, 2, Msg::Ack { epoch: 1, zxid: x });
    assert_eq!(drain(&mut l), Batch::default());
    assert_eq!(l.committed(), x);
}

#[test]
fn duplicated_acks_of_one_follower_are_not_a_quorum() {
    // Five voters: the leader plus one follower acking twice is two of five.
    let mut c = Config::new(1, vec![1, 2, 3, 4, 5], vec![]);
    c.seed = 1;
    let mut l = Replica::new(c, durable(1, vec![]), 0).unwrap();
    drain(&mut l);
    for p in [2, 3] {
        msg(&mut l, 0, p, notif(1, 1, z(0, 0), 1, PeerState::Looking));
    }
    for (p, a) in [(2, 20), (3, 30)] {
        let info = Msg::FollowerInfo {
            accepted_epoch: 1,
            attempt: a,
            observer: false,
            want_snap: false,
        };
        msg(&mut l, 0, p, info);
    }
    drain(&mut l);
    for (p, a) in [(2, 20), (3, 30)] {
        let ack = Msg::AckEpoch {
            attempt: a,
            current_epoch: Some(1),
            last_zxid: z(0, 0),
        };
        msg(&mut l, 0, p, ack);
    }
    drain(&mut l);
    for p in [2, 3] {
        msg(
            &mut l,
            0,
            p,
            Msg::Ack {
                epoch: 2,
                zxid: z(0, 0),
            },
        );
    }
    drain(&mut l);
    assert_eq!(l.established_epoch(), Some(2));
    let x = l.propose(Bytes::from_static(b"y")).unwrap();
    drain(&mut l);
    msg(&mut l, 0, 2, Msg::Ack { epoch: 2, zxid: x });
    msg(&mut l, 0, 2, Msg::Ack { epoch: 2, zxid: x });
    drain(&mut l);
    assert_eq!(l.committed(), z(0, 0));
    msg(&mut l, 0, 3, Msg::Ack { epoch: 2, zxid: x });
    let b = drain(&mut l);
    assert_eq!(l.committed(), x);
    assert_eq!(b.apply.len(), 1);
}

#[test]
fn leader_sync_trunc_for_a_follower_with_an_uncommitted_tail() {
    let mut l = established_leader();
    let x = l.propose(Bytes::from_static(b"x")).unwrap();
    drain(&mut l);
    // Server 3 comes back with 1:3, which no leader ever committed.
    let info = Msg::FollowerInfo {
        accepted_epoch: 1,
        attempt: 9,
        observer: false,
        want_snap: false,
    };
    msg(&mut l, 3, 3, info);
    assert_eq!(
        drain(&mut l).now,
        vec![out(
            3,
            Msg::LeaderInfo {
                new_epoch: 2,
                attempt: 9
            }
        )]
    );
    let ack = Msg::AckEpoch {
        attempt: 9,
        current_epoch: Some(1),
        last_zxid: z(1, 3),
    };
    msg(&mut l, 3, 3, ack);
    let e = Entry {
        zxid: x,
        payload: Bytes::from_static(b"x"),
    };
    assert_eq!(
        drain(&mut l).now,
        vec![
            out(
                3,
                Msg::Sync {
                    epoch: 2,
                    attempt: 9,
                    mode: SyncMode::Trunc,
                    prev: z(1, 2),
                    entries: vec![e]
                }
            ),
            out(
                3,
                Msg::NewLeader {
                    epoch: 2,
                    attempt: 9,
                    last_zxid: x
                }
            ),
        ]
    );
    // Its ack completes the quorum for x and gets it serving.
    msg(&mut l, 3, 3, Msg::Ack { epoch: 2, zxid: x });
    let b = drain(&mut l);
    assert_eq!(
        b.now,
        vec![
            out(
                3,
                Msg::UpToDate {
                    epoch: 2,
                    attempt: 9,
                    commit: z(1, 2)
                }
            ),
            out(2, Msg::Commit { epoch: 2, zxid: x }),
            out(3, Msg::Commit { epoch: 2, zxid: x }),
        ]
    );
}

#[test]
fn leader_sync_snap_for_a_follower_behind_the_snapshot() {
    let mut l = established_leader();
    let snap = Snapshot {
        zxid: z(1, 2),
        data: Bytes::from_static(b"state@1:2"),
    };
    assert_eq!(
        l.compact(Snapshot {
            zxid: z(2, 9),
            data: Bytes::new()
        }),
        Err(ZabError::SnapshotAhead {
            snapshot: z(2, 9),
            applied: z(1, 2)
        })
    );
    l.compact(snap.clone()).unwrap();
    assert_eq!(drain(&mut l).writes, vec![Write::Compact(snap.clone())]);
    assert!(l.log().is_empty());
    let info = Msg::FollowerInfo {
        accepted_epoch: 0,
        attempt: 4,
        observer: false,
        want_snap: false,
    };
    msg(&mut l, 1, 3, info);
    drain(&mut l);
    let ack = Msg::AckEpoch {
        attempt: 4,
        current_epoch: Some(0),
        last_zxid: z(0, 0),
    };
    msg(&mut l, 1, 3, ack);
    assert_eq!(
        drain(&mut l).now[0],
        out(
            3,
            Msg::Sync {
                epoch: 2,
                attempt: 4,
                mode: SyncMode::Snap(snap.clone()),
                prev: z(1, 2),
                entries: vec![]
            }
        )
    );
}

/// Server 2 (log 1:1) chooses leader 1 and receives LEADERINFO for epoch 2.
fn follower_after_leaderinfo() -> (Replica, u64) {
    let mut f = Replica::new(cfg(2), durable(1, vec![ent(1, 1)]), 0).unwrap();
    drain(&mut f);
    msg(&mut f, 0, 1, notif(1, 1, z(1, 2), 1, PeerState::Looking));
    let a = follower_attempt(&drain(&mut f));
    msg(
        &mut f,
        0,
        1,
        Msg::LeaderInfo {
            new_epoch: 2,
            attempt: a,
        },
    );
    // The epoch ack waits for the accepted epoch to be durable.
    let mut rd = f.ready().unwrap();
    assert!(rd.take_send_now().is_empty());
    assert_eq!(rd.writes(), &[Write::AcceptedEpoch(2)]);
    let rel = f.advance(rd.persisted());
    assert_eq!(
        rel.send,
        vec![out(
            1,
            Msg::AckEpoch {
                attempt: a,
                current_epoch: Some(1),
                last_zxid: z(1, 1)
            }
        )]
    );
    (f, a)
}

/// ... then DIFF + NEWLEADER + UPTODATE: serving.
fn serving_follower() -> (Replica, u64) {
    let (mut f, a) = follower_after_leaderinfo();
    msg(
        &mut f,
        1,
        1,
        Msg::Sync {
            epoch: 2,
            attempt: a,
            mode: SyncMode::Diff,
            prev: z(1, 1),
            entries: vec![ent(1, 2)],
        },
    );
    msg(
        &mut f,
        1,
        1,
        Msg::NewLeader {
            epoch: 2,
            attempt: a,
            last_zxid: z(1, 2),
        },
    );
    let b = drain(&mut f);
    assert!(b.now.is_empty(), "the NEWLEADER ack must wait for the disk");
    assert_eq!(
        b.writes,
        vec![Write::Append(ent(1, 2)), Write::CurrentEpoch(2)]
    );
    assert_eq!(
        b.after,
        vec![out(
            1,
            Msg::Ack {
                epoch: 2,
                zxid: z(1, 2)
            }
        )]
    );
    msg(
        &mut f,
        1,
        1,
        Msg::UpToDate {
            epoch: 2,
            attempt: a,
            commit: z(1, 2),
        },
    );
    let b = drain(&mut f);
    assert_eq!(
        b.apply,
        vec![Apply::Entry(ent(1, 1)), Apply::Entry(ent(1, 2))]
    );
    assert_eq!(
        f.role(),
        Role::Following {
            leader: 1,
            serving: true
        }
    );
    (f, a)
}

#[test]
fn follower_discovery_and_diff_sync() {
    serving_follower();
}

#[test]
fn follower_acks_only_after_the_proposal_is_durable() {
    let (mut f, _) = serving_follower();
    let p = Msg::Proposal {
        epoch: 2,
        prev: z(1, 2),
        entry: ent(2, 1),
    };
    msg(&mut f, 2, 1, p.clone());
    let mut rd = f.ready().unwrap();
    assert!(rd.take_send_now().is_empty());
    assert_eq!(rd.writes(), &[Write::Append(ent(2, 1))]);
    // Until persisted, nothing else comes out.
    msg(
        &mut f,
        2,
        1,
        Msg::Commit {
            epoch: 2,
            zxid: z(2, 1),
        },
    );
    assert!(f.ready().is_none());
    let rel = f.advance(rd.persisted());
    assert_eq!(
        rel.send,
        vec![out(
            1,
            Msg::Ack {
                epoch: 2,
                zxid: z(2, 1)
            }
        )]
    );
    assert_eq!(drain(&mut f).apply, vec![Apply::Entry(ent(2, 1))]);
    // A duplicate and a stale-epoch proposal are ignored.
    msg(&mut f, 2, 1, p);
    let stale = Msg::Proposal {
        epoch: 1,
        prev: z(2, 1),
        entry: ent(1, 9),
    };
    msg(&mut f, 2, 1, stale);
    assert_eq!(drain(&mut f), Batch::default());
}

#[test]
fn follower_rejoins_on_a_gap() {
    let (mut f, a) = serving_follower();
    let p = Msg::Proposal {
        epoch: 2,
        prev: z(2, 1),
        entry: ent(2, 2),
    };
    msg(&mut f, 2, 1, p);
    let b = drain(&mut f);
    let a2 = follower_attempt(&b);
    assert_ne!(a, a2);
    assert_eq!(
        b.now,
        vec![out(
            1,
            Msg::FollowerInfo {
                accepted_epoch: 2,
                attempt: a2,
                observer: false,
                want_snap: false
            }
        )]
    );
    assert_eq!(
        f.role(),
        Role::Following {
            leader: 1,
            serving: false
        }
    );
}

#[test]
fn follower_with_an_uncommitted_tail_truncates() {
    let mut f = Replica::new(cfg(3), durable(1, vec![ent(1, 1), ent(1, 2), ent(1, 3)]), 0).unwrap();
    drain(&mut f);
    msg(&mut f, 0, 1, notif(1, 1, z(1, 2), 1, PeerState::Leading));
    msg(&mut f, 0, 2, notif(1, 1, z(1, 2), 1, PeerState::Following));
    let a = follower_attempt(&drain(&mut f));
    msg(
        &mut f,
        0,
        1,
        Msg::LeaderInfo {
            new_epoch: 2,
            attempt: a,
        },
    );
    drain(&mut f);
    msg(
        &mut f,
        0,
        1,
        Msg::Sync {
            epoch: 2,
            attempt: a,
            mode: SyncMode::Trunc,
            prev: z(1, 2),
            entries: vec![ent(2, 1)],
        },
    );
    msg(
        &mut f,
        0,
        1,
        Msg::NewLeader {
            epoch: 2,
            attempt: a,
            last_zxid: z(2, 1),
        },
    );
    let b = drain(&mut f);
    assert_eq!(
        b.writes,
        vec![
            Write::TruncateAfter(z(1, 2)),
            Write::Append(ent(2, 1)),
            Write::CurrentEpoch(2)
        ]
    );
    assert_eq!(
        b.after,
        vec![out(
            1,
            Msg::Ack {
                epoch: 2,
                zxid: z(2, 1)
            }
        )]
    );
    assert_eq!(
        f.log().iter().map(|e| e.zxid).collect::<Vec<_>>(),
        vec![z(1, 1), z(1, 2), z(2, 1)]
    );
}

#[test]
fn follower_snap_sync_resets_the_state_machine() {
    let (mut f, a) = follower_after_leaderinfo();
    let snap = Snapshot {
        zxid: z(1, 5),
        data: Bytes::from_static(b"S"),
    };
    msg(
        &mut f,
        1,
        1,
        Msg::Sync {
            epoch: 2,
            attempt: a,
            mode: SyncMode::Snap(snap.clone()),
            prev: z(1, 5),
            entries: vec![ent(1, 6)],
        },
    );
    msg(
        &mut f,
        1,
        1,
        Msg::NewLeader {
            epoch: 2,
            attempt: a,
            last_zxid: z(1, 6),
        },
    );
    let b = drain(&mut f);
    assert_eq!(
        b.writes,
        vec![
            Write::InstallSnapshot {
                snapshot: snap.clone(),
                entries: vec![ent(1, 6)]
            },
            Write::CurrentEpoch(2)
        ]
    );
    assert_eq!(b.apply, vec![Apply::Snapshot(snap)]);
}

#[test]
fn sync_that_does_not_fit_asks_for_a_snapshot() {
    let (mut f, a) = follower_after_leaderinfo();
    // DIFF from a zxid we do not end at.
    msg(
        &mut f,
        1,
        1,
        Msg::Sync {
            epoch: 2,
            attempt: a,
            mode: SyncMode::Diff,
            prev: z(1, 4),
            entries: vec![],
        },
    );
    let b = drain(&mut f);
    match &b.now[..] {
        [Outgoing {
            to: 1,
            msg: Msg::FollowerInfo {
                want_snap: true, ..
            },
        }] => {}
        other => panic!("expected a FollowerInfo asking for SNAP, got {other:?}"),
    }
}

#[test]
fn stale_epochs_are_refused() {
    // A follower that accepted epoch 5 refuses a leader offering 3.
    let mut f = Replica::new(cfg(2), durable(5, vec![]), 0).unwrap();
    drain(&mut f);
    msg(&mut f, 0, 1, notif(1, 1, z(5, 0), 5, PeerState::Looking));
    let a = follower_attempt(&drain(&mut f));
    msg(
        &mut f,
        0,
        1,
        Msg::LeaderInfo {
            new_epoch: 3,
            attempt: a,
        },
    );
    assert_eq!(f.role(), Role::Looking);
    // A LEADERINFO for an old attempt is ignored.
    let (mut f, a) = follower_after_leaderinfo();
    msg(
        &mut f,
        0,
        1,
        Msg::LeaderInfo {
            new_epoch: 9,
            attempt: a ^ 1,
        },
    );
    assert_eq!(drain(&mut f), Batch::default());
    // An already-accepted epoch is reported but does not count.
    let mut f = Replica::new(cfg(2), durable(2, vec![]), 0).unwrap();
    drain(&mut f);
    msg(&mut f, 0, 1, notif(1, 1, z(2, 0), 2, PeerState::Looking));
    let a = follower_attempt(&drain(&mut f));
    msg(
        &mut f,
        0,
        1,
        Msg::LeaderInfo {
            new_epoch: 2,
            attempt: a,
        },
    );
    assert_eq!(
        drain(&mut f).now,
        vec![out(
            1,
            Msg::AckEpoch {
                attempt: a,
                current_epoch: None,
                last_zxid: z(0, 0)
            }
        )]
    );
}

#[test]
fn observer_learns_commits_by_inform_and_never_acks() {
    let mut l = established_leader();
    let info = Msg::FollowerInfo {
        accepted_epoch: 0,
        attempt: 11,
        observer: true,
        want_snap: false,
    };
    msg(&mut l, 1, 4, info);
    drain(&mut l);
    let ack = Msg::AckEpoch {
        attempt: 11,
        current_epoch: Some(0),
        last_zxid: z(0, 0),
    };
    msg(&mut l, 1, 4, ack);
    let b = drain(&mut l);
    assert_eq!(
        b.now,
        vec![
            out(
                4,
                Msg::Sync {
                    epoch: 2,
                    attempt: 11,
                    mode: SyncMode::Diff,
                    prev: z(0, 0),
                    entries: vec![ent(1, 1), ent(1, 2)]
                }
            ),
            out(
                4,
                Msg::NewLeader {
                    epoch: 2,
                    attempt: 11,
                    last_zxid: z(1, 2)
                }
            ),
            out(
                4,
                Msg::UpToDate {
                    epoch: 2,
                    attempt: 11,
                    commit: z(1, 2)
                }
            ),
        ]
    );
    let x = l.propose(Bytes::from_static(b"x")).unwrap();
    let b = drain(&mut l);
    assert_eq!(
        b.now.len(),
        1,
        "proposals go to followers only: {:?}",
        b.now
    );
    msg(&mut l, 2, 2, Msg::Ack { epoch: 2, zxid: x });
    let e = Entry {
        zxid: x,
        payload: Bytes::from_static(b"x"),
    };
    assert_eq!(
        drain(&mut l).now,
        vec![
            out(2, Msg::Commit { epoch: 2, zxid: x }),
            out(
                4,
                Msg::Inform {
                    epoch: 2,
                    prev: z(1, 2),
                    entry: e.clone()
                }
            ),
        ]
    );

    // The observer's side.
    let mut o = Replica::new(cfg(4), DurableState::default(), 0).unwrap();
    assert_eq!(drain(&mut o).now.len(), 3, "observers ask the voters");
    msg(&mut o, 0, 1, notif(3, 1, z(1, 2), 1, PeerState::Leading));
    msg(&mut o, 0, 2, notif(3, 1, z(1, 2), 1, PeerState::Following));
    assert_eq!(
        o.role(),
        Role::Observing {
            leader: 1,
            serving: false
        }
    );
    let a = follower_attempt(&drain(&mut o));
    msg(
        &mut o,
        0,
        1,
        Msg::LeaderInfo {
            new_epoch: 2,
            attempt: a,
        },
    );
    drain(&mut o);
    let sync = Msg::Sync {
        epoch: 2,
        attempt: a,
        mode: SyncMode::Diff,
        prev: z(0, 0),
        entries: vec![ent(1, 1), ent(1, 2)],
    };
    msg(&mut o, 0, 1, sync);
    let nl = Msg::NewLeader {
        epoch: 2,
        attempt: a,
        last_zxid: z(1, 2),
    };
    msg(&mut o, 0, 1, nl);
    let utd = Msg::UpToDate {
        epoch: 2,
        attempt: a,
        commit: z(1, 2),
    };
    msg(&mut o, 0, 1, utd);
    let b = drain(&mut o);
    assert!(b.after.is_empty(), "observers never ack: {:?}", b.after);
    assert_eq!(b.apply.len(), 2);
    let inform = Msg::Inform {
        epoch: 2,
        prev: z(1, 2),
        entry: e.clone(),
    };
    msg(&mut o, 1, 1, inform);
    let b = drain(&mut o);
    assert_eq!(b.writes, vec![Write::Append(e.clone())]);
    assert_eq!(b.apply, vec![Apply::Entry(e)]);
    assert!(b.now.is_empty() && b.after.is_empty());
}

#[test]
fn liveness_by_ticks() {
    // A serving follower abandons a silent leader after syncLimit ticks.
    let (mut f, _) = serving_follower();
    f.step(6, Input::Tick);
    assert!(matches!(f.role(), Role::Following { .. }));
    f.step(7, Input::Tick);
    assert_eq!(f.role(), Role::Looking);

    // A leader that hears from no follower for syncLimit ticks steps down.
    let mut l = established_leader();
    l.step(2, Input::Tick);
    let b = drain(&mut l);
    assert_eq!(
        b.now,
        vec![out(
            2,
            Msg::Ping {
                epoch: 2,
                zxid: z(1, 2),
                last: z(1, 2)
            }
        )]
    );
    l.step(7, Input::Tick);
    assert_eq!(l.role(), Role::Looking);

    // A leader not established within initLimit gives up.
    let mut l = Replica::new(cfg(1), durable(1, vec![]), 0).unwrap();
    drain(&mut l);
    msg(&mut l, 0, 2, notif(1, 1, z(0, 0), 1, PeerState::Looking));
    assert!(matches!(l.role(), Role::Leading { .. }));
    l.step(11, Input::Tick);
    assert_eq!(l.role(), Role::Looking);
}

#[test]
fn follower_resyncs_when_a_ping_shows_missed_txns() {
    let (mut f, _) = serving_follower();
    let ping = Msg::Ping {
        epoch: 2,
        zxid: z(1, 2),
        last: z(2, 3),
    };
    msg(&mut f, 2, 1, ping);
    let b = drain(&mut f);
    assert_eq!(
        b.now[0],
        out(
            1,
            Msg::Ping {
                epoch: 2,
                zxid: z(1, 2),
                last: z(1, 2)
            }
        )
    );
    assert!(matches!(
        b.now[1].msg,
        Msg::FollowerInfo {
            want_snap: false,
            ..
        }
    ));
}

#[test]
fn zxid_counter_never_wraps_and_in_flight_is_bounded() {
    let mut l = established_leader();
    let too_big = Bytes::from(vec![0u8; (1 << 20) + 1]);
    assert_eq!(
        l.propose(too_big),
        Err(ZabError::PayloadTooLarge {
            len: (1 << 20) + 1,
            max: 1 << 20
        })
    );

    let mut c = cfg(1);
    c.zxid_counter_max = 2;
    c.in_flight_proposals_max = 5;
    let mut l = Replica::new(c, durable(1, vec![]), 0).unwrap();
    drain(&mut l);
    msg(&mut l, 0, 2, notif(1, 1, z(0, 0), 1, PeerState::Looking));
    let info = Msg::FollowerInfo {
        accepted_epoch: 1,
        attempt: 1,
        observer: false,
        want_snap: false,
    };
    msg(&mut l, 0, 2, info);
    drain(&mut l);
    let ack = Msg::AckEpoch {
        attempt: 1,
        current_epoch: Some(1),
        last_zxid: z(0, 0),
    };
    msg(&mut l, 0, 2, ack);
    drain(&mut l);
    msg(
        &mut l,
        0,
        2,
        Msg::Ack {
            epoch: 2,
            zxid: z(0, 0),
        },
    );
    drain(&mut l);
    assert_eq!(l.propose(Bytes::new()), Ok(z(2, 1)));
    assert_eq!(l.propose(Bytes::new()), Ok(z(2, 2)));
    assert_eq!(
        l.propose(Bytes::new()),
        Err(ZabError::ZxidExhausted { epoch: 2 })
    );
    assert_eq!(l.role(), Role::Looking);
    assert_eq!(l.propose(Bytes::new()), Err(ZabError::NotLeader));

    let mut c = cfg(1);
    c.in_flight_proposals_max = 1;
    let mut l = Replica::new(c, durable(1, vec![]), 0).unwrap();
    drain(&mut l);
    msg(&mut l, 0, 2, notif(1, 1, z(0, 0), 1, PeerState::Looking));
    let info = Msg::FollowerInfo {
        accepted_epoch: 1,
        attempt: 1,
        observer: false,
        want_snap: false,
    };
    msg(&mut l, 0, 2, info);
    drain(&mut l);
    let ack = Msg::AckEpoch {
        attempt: 1,
        current_epoch: Some(1),
        last_zxid: z(0, 0),
    };
    msg(&mut l, 0, 2, ack);
    drain(&mut l);
    msg(
        &mut l,
        0,
        2,
        Msg::Ack {
            epoch: 2,
            zxid: z(0, 0),
        },
    );
    drain(&mut l);
    assert_eq!(l.propose(Bytes::new()), Ok(z(2, 1)));
    assert_eq!(
        l.propose(Bytes::new()),
        Err(ZabError::InFlightFull { max: 1 })
    );
    drain(&mut l);
    msg(
        &mut l,
        0,
        2,
        Msg::Ack {
            epoch: 2,
            zxid: z(2, 1),
        },
    );
    drain(&mut l);
    assert_eq!(l.propose(Bytes::new()), Ok(z(2, 2)));
}

#[test]
fn restart_replays_the_snapshot_first() {
    let snap = Snapshot {
        zxid: z(1, 3),
        data: Bytes::from_static(b"S"),
    };
    let d = DurableState {
        accepted_epoch: 1,
        current_epoch: 1,
        snapshot: Some(snap.clone()),
        log: vec![ent(1, 4)],
    };
    let mut r = Replica::new(cfg(1), d, 0).unwrap();
    assert_eq!(r.applied(), z(1, 3));
    assert_eq!(r.last_zxid(), z(1, 4));
    assert_eq!(drain(&mut r).apply, vec![Apply::Snapshot(snap)]);
}

#[test]
#[should_panic(expected = "batch of another replica")]
fn a_batch_cannot_be_persisted_on_another_replica() {
    let mut a = Replica::new(cfg(1), DurableState::default(), 0).unwrap();
    let mut b = Replica::new(cfg(2), DurableState::default(), 0).unwrap();
    let rd = a.ready().unwrap();
    let _ = b.ready();
    b.advance(rd.persisted());
}

#[test]
fn durable_state_applies_writes_like_storage() {
    let mut d = DurableState::default();
    for w in [
        Write::AcceptedEpoch(2),
        Write::CurrentEpoch(2),
        Write::Append(ent(1, 1)),
        Write::Append(ent(1, 2)),
        Write::Append(ent(1, 3)),
        Write::TruncateAfter(z(1, 2)),
        Write::Compact(Snapshot {
            zxid: z(1, 1),
            data: Bytes::new(),
        }),
    ] {
        d.apply(&w);
    }
    assert_eq!((d.accepted_epoch, d.current_epoch), (2, 2));
    assert_eq!(d.log, vec![ent(1, 2)]);
    assert_eq!((d.base_zxid(), d.last_zxid()), (z(1, 1), z(1, 2)));
    d.apply(&Write::InstallSnapshot {
        snapshot: Snapshot {
            zxid: z(3, 3),
            data: Bytes::new(),
        },
        entries: vec![ent(3, 4)],
    });
    assert_eq!(d.log, vec![ent(3, 4)]);
    assert_eq!(d.base_zxid(), z(3, 3));
}

#[test]
fn long_syncs_are_chunked_and_reassembled() {
    let mut c = cfg(1);
    c.sync_entries_max = 2;
    let log: Vec<Entry> = (1..=5).map(|i| ent(1, i)).collect();
    let mut l = Replica::new(c, durable(1, log.clone()), 0).unwrap();
    drain(&mut l);
    msg(&mut l, 0, 2, notif(1, 1, z(1, 5), 1, PeerState::Looking));
    let info = Msg::FollowerInfo {
        accepted_epoch: 1,
        attempt: 3,
        observer: false,
        want_snap: false,
    };
    msg(&mut l, 0, 2, info);
    drain(&mut l);
    let ack = Msg::AckEpoch {
        attempt: 3,
        current_epoch: Some(1),
        last_zxid: z(0, 0),
    };
    msg(&mut l, 0, 2, ack);
    let sent = drain(&mut l).now;
    let sync = |mode, prev, entries: &[Entry]| Msg::Sync {
        epoch: 2,
        attempt: 3,
        mode,
        prev,
        entries: entries.to_vec(),
    };
    assert_eq!(
        sent.iter().map(|o| o.msg.clone()).collect::<Vec<_>>(),
        vec![
            sync(SyncMode::Diff, z(0, 0), &log[0..2]),
            sync(SyncMode::Diff, z(1, 2), &log[2..4]),
            sync(SyncMode::Diff, z(1, 4), &log[4..5]),
            Msg::NewLeader {
                epoch: 2,
                attempt: 3,
                last_zxid: z(1, 5)
            },
        ]
    );

    // The follower reassembles them.
    let mut f = Replica::new(cfg(2), durable(1, vec![]), 0).unwrap();
    drain(&mut f);
    msg(&mut f, 0, 1, notif(1, 1, z(1, 5), 1, PeerState::Looking));
    let a = follower_attempt(&drain(&mut f));
    msg(
        &mut f,
        0,
        1,
        Msg::LeaderInfo {
            new_epoch: 2,
            attempt: a,
        },
    );
    drain(&mut f);
    for o in sent {
        let m = match o.msg {
            Msg::Sync {
                mode,
                prev,
                entries,
                ..
            } => Msg::Sync {
                epoch: 2,
                attempt: a,
                mode,
                prev,
                entries,
            },
            Msg::NewLeader { last_zxid, .. } => Msg::NewLeader {
                epoch: 2,
                attempt: a,
                last_zxid,
            },
            other => other,
        };
        msg(&mut f, 0, 1, m);
    }
    let b = drain(&mut f);
    assert_eq!(
        b.after,
        vec![out(
            1,
            Msg::Ack {
                epoch: 2,
                zxid: z(1, 5)
            }
        )]
    );
    assert_eq!(f.log(), &log[..]);
}

#[test]
fn lost_connections() {
    // A follower whose leader's connection drops looks for a leader again.
    let (mut f, _) = serving_follower();
    f.step(2, Input::Disconnected { peer: 3 });
    assert!(matches!(f.role(), Role::Following { .. }));
    f.step(2, Input::Disconnected { peer: 1 });
    assert_eq!(f.role(), Role::Looking);
    let b = drain(&mut f);
    let mine = notif(2, 2, z(1, 2), 2, PeerState::Looking);
    assert_eq!(b.now, vec![out(1, mine.clone()), out(3, mine)]);

    // A leader forgets a disconnected learner: no more proposals to it.
    let mut l = established_leader();
    l.step(2, Input::Disconnected { peer: 2 });
    l.propose(Bytes::from_static(b"x")).unwrap();
    assert!(drain(&mut l).now.is_empty());
}

#[test]
fn hostile_peer_values_do_not_crash() {
    // A huge election round, epochs and zxids from a peer.
    let mut r = Replica::new(cfg(1), durable(1, vec![]), 0).unwrap();
    msg(
        &mut r,
        0,
        2,
        notif(u64::MAX, 2, Zxid(u64::MAX), u32::MAX, PeerState::Looking),
    );
    msg(
        &mut r,
        0,
        3,
        notif(u64::MAX, 2, Zxid(u64::MAX), u32::MAX, PeerState::Looking),
    );
    drain(&mut r);
    assert!(matches!(r.role(), Role::Following { leader: 2, .. }));
    r.step(0, Input::Disconnected { peer: 2 });
    drain(&mut r);
    assert_eq!(r.election_epoch(), u64::MAX);
    // A leader whose learners report the largest accepted epoch cannot pick a new one.
    let mut l = Replica::new(cfg(1), durable(1, vec![]), 0).unwrap();
    drain(&mut l);
    msg(&mut l, 0, 2, notif(1, 1, z(0, 0), 1, PeerState::Looking));
    let info = Msg::FollowerInfo {
        accepted_epoch: u32::MAX,
        attempt: 1,
        observer: false,
        want_snap: false,
    };
    msg(&mut l, 0, 2, info);
    assert_eq!(l.role(), Role::Looking);
    // Messages from strangers are ignored.
    msg(
        &mut l,
        0,
        99,
        Msg::Ack {
            epoch: 1,
            zxid: z(1, 1),
        },
    );
    msg(&mut l, 0, 99, notif(1, 99, z(9, 9), 9, PeerState::Leading));
    drain(&mut l);
}
