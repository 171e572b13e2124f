//! Between the replication core's typed packets (`zab::Packet`, `zab::Notification`)
//! and the reference's bytes (`proto::quorum::QuorumPacket`, `proto::election`).
//! Pure; used by the peer transport on the sequencer core.
//!
//! Two packets share a type code and differ by direction: PING (the leader's has
//! null data, a learner's carries touched sessions) and REVALIDATE (a learner asks,
//! the leader answers), so decoding needs to know which end of the link we are.
//!
//! A txn a leader sends (PROPOSAL, INFORM, INFORMANDACTIVATE) is checked here, before
//! the core logs or acknowledges it: it must decode as a txn entry whose header
//! carries the packet's zxid. The core treats payloads as opaque, and a txn that
//! only failed once committed could neither be applied nor skipped. A reconfig txn's
//! config is read here too and handed to the core with the entry.

use crate::proto::election::{Notification as WireNotification, ServerState};
use crate::proto::quorum::{
    self as q, AckEpoch, CommitAndActivate, InformAndActivate, LeaderInfo, LearnerRequest,
    NewLeaderConfig, PacketType, PingTouches, QuorumDecodeError, QuorumPacket, RevalidateReply,
    RevalidateRequest,
};
use crate::proto::DecodeError;
use crate::tree::{Txn, TxnOp};
use crate::zab::{
    Entry, Forwarded, LearnerInfo, Membership, MembershipError, Notification, Packet, PeerState,
    Vote, Zxid,
};
use bytes::Bytes;
use std::sync::Arc;

/// Why the bytes of a quorum packet are refused (the link is dropped).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Packet(#[from] QuorumDecodeError),
    #[error("{what} {zxid:#x} carries a txn that does not decode: {source}")]
    BadTxn {
        what: &'static str,
        zxid: i64,
        source: DecodeError,
    },
    #[error("{what} {zxid:#x} carries the txn of zxid {txn_zxid:#x}")]
    TxnZxid {
        what: &'static str,
        zxid: i64,
        txn_zxid: i64,
    },
    #[error("{what} {zxid:#x} is a reconfig whose config cannot be read: {source}")]
    BadConfig {
        what: &'static str,
        zxid: i64,
        source: MembershipError,
    },
}

/// Which end of a quorum link we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Leader,
    Learner,
}

fn zxid(z: i64) -> Zxid {
    Zxid(z as u64)
}

fn entry(what: &'static str, zxid_raw: i64, data: Option<Bytes>) -> Result<Entry, WireError> {
    let payload = data.ok_or(QuorumDecodeError::NullData { what })?;
    txn_entry(what, zxid_raw, payload)
}

/// A leader's txn: a whole txn entry for the packet's zxid; a reconfig's config
/// read for the core.
fn txn_entry(what: &'static str, zxid: i64, payload: Bytes) -> Result<Entry, WireError> {
    let (txn, _) =
        Txn::decode(&payload).map_err(|source| WireError::BadTxn { what, zxid, source })?;
    if txn.zxid != zxid {
        return Err(WireError::TxnZxid {
            what,
            zxid,
            txn_zxid: txn.zxid,
        });
    }
    let reconfig =
        reconfig_of(&txn.op).map_err(|source| WireError::BadConfig { what, zxid, source })?;
    Ok(Entry {
        zxid: Zxid(zxid as u64),
        payload,
        reconfig,
    })
}

/// The config a reconfig txn proposes (`None` for any other txn).
pub fn reconfig_of(op: &TxnOp) -> Result<Option<Arc<Membership>>, MembershipError> {
    match op {
        TxnOp::Reconfig { data, .. } => Ok(Some(Arc::new(Membership::parse(data)?))),
        _ => Ok(None),
    }
}

/// A packet as the reference writes it.
pub fn encode(p: &Packet) -> QuorumPacket {
    match p {
        Packet::LearnerInfo { info, observer } => {
            let li = q::LearnerInfo {
                sid: info.sid as i64,
                protocol_version: info.protocol_version,
                config_version: info.config_version,
            };
            if *observer {
                QuorumPacket::observer_info(info.accepted_epoch as i64, li)
            } else {
                QuorumPacket::follower_info(info.accepted_epoch as i64, li)
            }
        }
        Packet::LeaderInfo { new_epoch, .. } => QuorumPacket::leader_info(*new_epoch as i64),
        Packet::AckEpoch {
            last_zxid,
            current_epoch,
        } => QuorumPacket::ack_epoch(
            last_zxid.as_i64(),
            AckEpoch {
                current_epoch: current_epoch.map_or(AckEpoch::SAME_EPOCH, |e| e as i32),
            },
        ),
        Packet::Diff { zxid } => QuorumPacket::diff(zxid.as_i64()),
        Packet::Trunc { zxid } => QuorumPacket::trunc(zxid.as_i64()),
        Packet::Snap { zxid } => QuorumPacket::snap(zxid.as_i64()),
        Packet::Proposal(e) => QuorumPacket::proposal(e.zxid.as_i64(), e.payload.clone()),
        Packet::Commit { zxid } => QuorumPacket::commit(zxid.as_i64()),
        Packet::Inform(e) => QuorumPacket::inform(e.zxid.as_i64(), e.payload.clone()),
        Packet::CommitAndActivate {
            zxid,
            designated_leader,
        } => QuorumPacket::commit_and_activate(zxid.as_i64(), *designated_leader as i64),
        Packet::InformAndActivate {
            entry,
            designated_leader,
        } => QuorumPacket::inform_and_activate(
            entry.zxid.as_i64(),
            *designated_leader as i64,
            &entry.payload,
        ),
        Packet::NewLeader { zxid, config } => QuorumPacket::new(
            PacketType::NewLeader,
            zxid.as_i64(),
            Some(config.clone()),
            None,
        ),
        Packet::UpToDate => QuorumPacket::uptodate(),
        Packet::Ack { zxid } => QuorumPacket::ack(zxid.as_i64()),
        Packet::LeaderPing { zxid } => QuorumPacket::ping_from_leader(zxid.as_i64()),
        Packet::LearnerPing { zxid, touches } => {
            QuorumPacket::ping_from_learner(zxid.as_i64(), touches)
        }
        Packet::Request(f) => {
            let req = LearnerRequest {
                session_id: f.session_id,
                cxid: f.cxid,
                op: f.op,
                body: f.body.clone(),
            };
            QuorumPacket::request(&req, f.auth.clone())
        }
        Packet::RevalidateRequest {
            session_id,
            timeout_ms,
        } => QuorumPacket::revalidate_request(RevalidateRequest {
            session_id: *session_id,
            timeout_ms: *timeout_ms,
        }),
        Packet::RevalidateReply { session_id, valid } => {
            QuorumPacket::revalidate_reply(RevalidateReply {
                session_id: *session_id,
                valid: *valid,
            })
        }
        Packet::Sync => QuorumPacket::sync(),
    }
}

/// A packet as the core sees it. `side` is our end of the link.
pub fn decode(qp: QuorumPacket, side: Side) -> Result<Packet, WireError> {
    let d = qp.data.as_ref();
    Ok(match qp.kind {
        PacketType::FollowerInfo | PacketType::ObserverInfo => {
            let li = q::LearnerInfo::decode(d)?.ok_or(QuorumDecodeError::NullData {
                what: "FOLLOWERINFO/OBSERVERINFO",
            })?;
            if li.sid < 0 {
                return Err(QuorumDecodeError::OutOfRange {
                    what: "learner sid",
                    value: li.sid,
                }
                .into());
            }
            Packet::LearnerInfo {
                info: LearnerInfo {
                    sid: li.sid as u64,
                    accepted_epoch: (qp.zxid >> 32) as u32,
                    protocol_version: li.protocol_version,
                    config_version: li.config_version,
                },
                observer: qp.kind == PacketType::ObserverInfo,
            }
        }
        PacketType::LeaderInfo => Packet::LeaderInfo {
            new_epoch: (qp.zxid >> 32) as u32,
            protocol_version: LeaderInfo::decode(d)?.protocol_version,
        },
        PacketType::AckEpoch => {
            let a = AckEpoch::decode(d)?;
            Packet::AckEpoch {
                last_zxid: zxid(qp.zxid),
                current_epoch: (a.current_epoch != AckEpoch::SAME_EPOCH)
                    .then_some(a.current_epoch as u32),
            }
        }
        PacketType::Diff => Packet::Diff {
            zxid: zxid(qp.zxid),
        },
        PacketType::Trunc => Packet::Trunc {
            zxid: zxid(qp.zxid),
        },
        PacketType::Snap => Packet::Snap {
            zxid: zxid(qp.zxid),
        },
        PacketType::Proposal => Packet::Proposal(entry("PROPOSAL", qp.zxid, qp.data)?),
        PacketType::Commit => Packet::Commit {
            zxid: zxid(qp.zxid),
        },
        PacketType::Inform => Packet::Inform(entry("INFORM", qp.zxid, qp.data)?),
        PacketType::CommitAndActivate => Packet::CommitAndActivate {
            zxid: zxid(qp.zxid),
            designated_leader: CommitAndActivate::decode(d)?.designated_leader as u64,
        },
        PacketType::InformAndActivate => {
            let ia = InformAndActivate::decode(d)?;
            Packet::InformAndActivate {
                entry: txn_entry("INFORMANDACTIVATE", qp.zxid, ia.txn)?,
                designated_leader: ia.designated_leader as u64,
            }
        }
        PacketType::NewLeader => Packet::NewLeader {
            zxid: zxid(qp.zxid),
            config: NewLeaderConfig::decode(d)
                .map(Bytes::from)
                .unwrap_or_default(),
        },
        PacketType::UpToDate => Packet::UpToDate,
        PacketType::Ack => Packet::Ack {
            zxid: zxid(qp.zxid),
        },
        PacketType::Ping => match side {
            Side::Learner => Packet::LeaderPing {
                zxid: zxid(qp.zxid),
            },
            Side::Leader => Packet::LearnerPing {
                zxid: zxid(qp.zxid),
                touches: PingTouches::decode(d)?.0,
            },
        },
        PacketType::Request => {
            let r = LearnerRequest::decode(d)?;
            Packet::Request(Forwarded {
                session_id: r.session_id,
                cxid: r.cxid,
                op: r.op,
                body: r.body,
                auth: qp.auth,
            })
        }
        PacketType::Revalidate => match side {
            Side::Leader => {
                let r = RevalidateRequest::decode(d)?;
                Packet::RevalidateRequest {
                    session_id: r.session_id,
                    timeout_ms: r.timeout_ms,
                }
            }
            Side::Learner => {
                let r = RevalidateReply::decode(d)?;
                Packet::RevalidateReply {
                    session_id: r.session_id,
                    valid: r.valid,
                }
            }
        },
        PacketType::Sync => Packet::Sync,
    })
}

fn state_to_wire(s: PeerState) -> ServerState {
    match s {
        PeerState::Looking => ServerState::Looking,
        PeerState::Following => ServerState::Following,
        PeerState::Leading => ServerState::Leading,
        PeerState::Observing => ServerState::Observing,
    }
}

fn state_from_wire(s: ServerState) -> PeerState {
    match s {
        ServerState::Looking => PeerState::Looking,
        ServerState::Following => PeerState::Following,
        ServerState::Leading => PeerState::Leading,
        ServerState::Observing => PeerState::Observing,
    }
}

/// An election notification as the reference frames it (version 2).
pub fn encode_notification(n: &Notification, out: &mut Vec<u8>) {
    let config = String::from_utf8_lossy(&n.config).into_owned();
    WireNotification::new(
        state_to_wire(n.state),
        n.vote.leader,
        n.vote.zxid,
        n.election_epoch,
        n.vote.peer_epoch,
        config,
    )
    .encode_frame(out);
}

pub fn decode_notification(body: &[u8]) -> Result<Notification, QuorumDecodeError> {
    let w = WireNotification::decode(body)?;
    Ok(Notification {
        state: state_from_wire(w.state),
        vote: Vote {
            leader: w.leader,
            zxid: w.zxid,
            peer_epoch: w.peer_epoch,
        },
        election_epoch: w.election_epoch,
        config: w.config.map(Bytes::from).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Id;

    fn round_trip(p: Packet, side_of_receiver: Side) {
        let qp = encode(&p);
        let mut bytes = Vec::new();
        qp.encode(&mut bytes);
        let (back, n) = QuorumPacket::decode(&bytes, 1 << 20).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(decode(back, side_of_receiver).unwrap(), p);
    }

    /// A createSession txn entry for `zxid`, as a leader proposes it.
    fn txn_bytes(zxid: Zxid) -> Bytes {
        let mut b = Vec::new();
        crate::tree::create_session_txn(zxid.as_i64(), 1_000, 5, 30_000).encode(&mut b, None);
        Bytes::from(b)
    }

    #[test]
    fn every_packet_round_trips_through_the_references_bytes() {
        let e = Entry::new(Zxid::new(1, 2), txn_bytes(Zxid::new(1, 2)));
        let info = LearnerInfo {
            sid: 3,
            accepted_epoch: 7,
            protocol_version: 0x10000,
            config_version: 0x1_0000_0000,
        };
        use Side::*;
        for (p, side) in [
            (
                Packet::LearnerInfo {
                    info,
                    observer: false,
                },
                Leader,
            ),
            (
                Packet::LearnerInfo {
                    info,
                    observer: true,
                },
                Leader,
            ),
            (
                Packet::LeaderInfo {
                    new_epoch: 8,
                    protocol_version: 0x10000,
                },
                Learner,
            ),
            (
                Packet::AckEpoch {
                    last_zxid: Zxid::new(7, 3),
                    current_epoch: Some(7),
                },
                Leader,
            ),
            (
                Packet::AckEpoch {
                    last_zxid: Zxid::new(7, 3),
                    current_epoch: None,
                },
                Leader,
            ),
            (
                Packet::Diff {
                    zxid: Zxid::new(1, 9),
                },
                Learner,
            ),
            (
                Packet::Trunc {
                    zxid: Zxid::new(1, 9),
                },
                Learner,
            ),
            (
                Packet::Snap {
                    zxid: Zxid::new(1, 9),
                },
                Learner,
            ),
            (Packet::Proposal(e.clone()), Learner),
            (Packet::Commit { zxid: e.zxid }, Learner),
            (Packet::Inform(e.clone()), Learner),
            (
                Packet::CommitAndActivate {
                    zxid: e.zxid,
                    designated_leader: 2,
                },
                Learner,
            ),
            (
                Packet::InformAndActivate {
                    entry: e.clone(),
                    designated_leader: 2,
                },
                Learner,
            ),
            (
                Packet::NewLeader {
                    zxid: Zxid::new(8, 0),
                    config: Bytes::from_static(b"version=0"),
                },
                Learner,
            ),
            (Packet::UpToDate, Learner),
            (Packet::Ack { zxid: e.zxid }, Leader),
            (Packet::LeaderPing { zxid: e.zxid }, Learner),
            (
                Packet::LearnerPing {
                    zxid: e.zxid,
                    touches: vec![(5, 30000)],
                },
                Leader,
            ),
            (
                Packet::LearnerPing {
                    zxid: e.zxid,
                    touches: vec![],
                },
                Leader,
            ),
            (
                Packet::Request(Forwarded {
                    session_id: 9,
                    cxid: 4,
                    op: 1,
                    body: Bytes::from_static(b"body"),
                    auth: Some(Arc::new(vec![Id::new("ip", "127.0.0.1")])),
                }),
                Leader,
            ),
            (
                Packet::RevalidateRequest {
                    session_id: 9,
                    timeout_ms: 30000,
                },
                Leader,
            ),
            (
                Packet::RevalidateReply {
                    session_id: 9,
                    valid: true,
                },
                Learner,
            ),
            (Packet::Sync, Learner),
        ] {
            round_trip(p, side);
        }
    }

    fn decoded_proposal(zxid: Zxid, payload: Bytes) -> Result<Packet, WireError> {
        let qp = QuorumPacket::proposal(zxid.as_i64(), payload);
        let mut bytes = Vec::new();
        qp.encode(&mut bytes);
        let (back, _) = QuorumPacket::decode(&bytes, 1 << 20).unwrap().unwrap();
        decode(back, Side::Learner)
    }

    #[test]
    fn a_txn_that_does_not_decode_is_refused() {
        let z = Zxid::new(1, 2);
        let good = txn_bytes(z);
        // Garbage after a valid header (session, cxid, zxid, time, type).
        let mut garbage = good[..32].to_vec();
        garbage.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x01]);
        let truncated = good.slice(..good.len() - 2);
        let mut trailing = good.to_vec();
        trailing.push(0x42);
        for bad in [Bytes::from(garbage), truncated, Bytes::from(trailing)] {
            let e = decoded_proposal(z, bad).unwrap_err();
            assert!(matches!(e, WireError::BadTxn { .. }), "{e}");
            assert!(e
                .to_string()
                .starts_with("PROPOSAL 0x100000002 carries a txn"));
        }
        assert!(decoded_proposal(z, good).is_ok());
    }

    #[test]
    fn a_txn_of_another_zxid_is_refused() {
        let e = decoded_proposal(Zxid::new(1, 2), txn_bytes(Zxid::new(1, 1))).unwrap_err();
        assert!(matches!(e, WireError::TxnZxid { .. }), "{e}");
    }

    /// A reconfig txn proposing `text`, as a leader writes it.
    fn reconfig_bytes(zxid: Zxid, text: &str) -> Bytes {
        let txn = Txn {
            session_id: 5,
            cxid: 3,
            zxid: zxid.as_i64(),
            time_ms: 1_000,
            op: TxnOp::Reconfig {
                data: text.as_bytes().to_vec(),
                version: -1,
            },
        };
        let mut b = Vec::new();
        txn.encode(&mut b, Some(7));
        Bytes::from(b)
    }

    #[test]
    fn a_reconfig_txn_reaches_the_core_with_its_config() {
        let z = Zxid::new(1, 3);
        let text = "server.1=127.0.0.1:2888:3888:participant\n\
                    server.2=127.0.0.1:2889:3889:observer\nversion=100000003";
        let Packet::Proposal(e) = decoded_proposal(z, reconfig_bytes(z, text)).unwrap() else {
            panic!("a proposal");
        };
        let m = e.reconfig.expect("marked as a reconfig");
        assert_eq!(m.text().as_ref(), text.as_bytes());
        assert!(m.is_voter(1) && m.is_observer(2));
        // An ordinary txn is not one; a config that cannot be read drops the link.
        let Packet::Proposal(e) = decoded_proposal(z, txn_bytes(z)).unwrap() else {
            panic!("a proposal");
        };
        assert_eq!(e.reconfig, None);
        let e = decoded_proposal(z, reconfig_bytes(z, "server.1=nonsense")).unwrap_err();
        assert!(matches!(e, WireError::BadConfig { .. }), "{e}");
        // INFORMANDACTIVATE carries it too.
        let qp = QuorumPacket::inform_and_activate(z.as_i64(), 2, &reconfig_bytes(z, text));
        let Packet::InformAndActivate {
            entry,
            designated_leader,
        } = decode(qp, Side::Learner).unwrap()
        else {
            panic!("INFORMANDACTIVATE");
        };
        assert_eq!(designated_leader, 2);
        assert!(entry.reconfig.is_some());
    }

    #[test]
    fn notifications_round_trip() {
        let n = Notification {
            state: PeerState::Looking,
            vote: Vote {
                leader: 2,
                zxid: 0x1_0000_0005,
                peer_epoch: 1,
            },
            election_epoch: 3,
            config: Bytes::from_static(b"server.1=127.0.0.1:1:2:participant\nversion=0"),
        };
        let mut out = Vec::new();
        encode_notification(&n, &mut out);
        let body = &out[4..];
        assert_eq!(decode_notification(body).unwrap(), n);
    }
}
