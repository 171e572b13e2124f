//! A forwarded write's REQUEST costs the quorum links a fixed, small number of
//! allocations, whatever auth ids its session carries: a counting global
//! allocator (per thread) around the learner's side (`wire::encode` of a
//! `Packet::Request`, then `QuorumPacket::encode`, what a learner's link sends) and
//! the leader's side (`QuorumPacket::decode_cached` with the link's `AuthCache`,
//! then `wire::decode`, what a leader's link reader hands its core).
//!
//! The session's ids travel shared (`Arc`) from the learner's session to the
//! packet, and a leader's link decodes each distinct id vector once. Before that
//! (633ee84, counted the same way), a forwarded setData with one ip id took 8
//! allocations on the learner (the ids copied into pairs, then into the packet's
//! ids) and 7 on the leader (the ids decoded, then copied into the session's); now
//! 2 and 2.

mod counting;

use bytes::Bytes;
use corral::proto::quorum::{AuthCache, QuorumPacket};
use corral::proto::Id;
use corral::server::peer::wire::{self, Side};
use corral::zab::{Forwarded, Packet};
use counting::allocations;
use std::sync::Arc;

const ROUNDS: u64 = 50;
/// The learner's side: the REQUEST's data (its header and the client's body)
/// and the packet's bytes.
const LEARNER_ALLOCATIONS_MAX: u64 = 2;
/// The leader's side: the packet's data, copied out of the link's read buffer, and
/// the shared header `bytes` gives it when the request's body is sliced from it.
const LEADER_ALLOCATIONS_MAX: u64 = 2;

/// A setData of 100 bytes as a learner forwards it, with `ids` as its session's.
fn forwarded(ids: &Arc<Vec<Id>>, cxid: i32) -> Packet {
    let mut body = Vec::new();
    body.extend_from_slice(&(9i32).to_be_bytes());
    body.extend_from_slice(b"/loadgen/k/0000000042");
    body.extend_from_slice(&(100i32).to_be_bytes());
    body.extend_from_slice(&[b'x'; 100]);
    body.extend_from_slice(&(-1i32).to_be_bytes());
    Packet::Request(Forwarded {
        session_id: 0x100_0000_0001,
        cxid,
        op: 5,
        body: Bytes::from(body),
        auth: Some(Arc::clone(ids)),
    })
}

fn learner_sends(p: &Packet) -> Vec<u8> {
    let qp = wire::encode(p);
    let mut out = Vec::with_capacity(qp.encoded_len());
    qp.encode(&mut out);
    out
}

fn leader_reads(bytes: &[u8], cache: &mut AuthCache) -> Packet {
    let (qp, used) = QuorumPacket::decode_cached(bytes, 1 << 20, Some(cache))
        .expect("a valid packet")
        .expect("a whole packet");
    assert_eq!(used, bytes.len());
    wire::decode(qp, Side::Leader).expect("a REQUEST")
}

fn check(name: &str, ids: Vec<Id>) {
    let ids = Arc::new(ids);
    let mut cache = AuthCache::default();
    // Warm: the link's first REQUEST of these ids decodes and caches them.
    let first = leader_reads(&learner_sends(&forwarded(&ids, 0)), &mut cache);
    let mut learner = 0;
    let mut leader = 0;
    for cxid in 1..=ROUNDS as i32 {
        let p = forwarded(&ids, cxid);
        let (n, bytes) = allocations(|| learner_sends(&p));
        learner += n;
        let (n, back) = allocations(|| leader_reads(&bytes, &mut cache));
        leader += n;
        assert_eq!(back, p, "{name}: the leader reads what the learner sent");
        let (Packet::Request(a), Packet::Request(b)) = (&back, &first) else {
            unreachable!()
        };
        assert!(
            Arc::ptr_eq(a.auth.as_ref().unwrap(), b.auth.as_ref().unwrap()),
            "{name}: every REQUEST of the session shares the first one's ids"
        );
    }
    println!(
        "{name}: {:.2} allocations per REQUEST sent, {:.2} per REQUEST read",
        learner as f64 / ROUNDS as f64,
        leader as f64 / ROUNDS as f64
    );
    assert!(
        learner <= LEARNER_ALLOCATIONS_MAX * ROUNDS,
        "{name}: the learner made {learner} allocations for {ROUNDS} REQUESTs"
    );
    assert!(
        leader <= LEADER_ALLOCATIONS_MAX * ROUNDS,
        "{name}: the leader made {leader} allocations for {ROUNDS} REQUESTs"
    );
}

#[test]
fn a_forwarded_write_allocates_the_same_for_any_ids() {
    check("ip id", vec![Id::new("ip", "127.0.0.1")]);
    check(
        "ip and digest ids",
        vec![
            Id::new("ip", "10.1.2.3"),
            Id::new("digest", "bob:7n3Un2aDm9g1xQ2c6w5sGv5rKk0="),
            Id::new("sasl", "alice"),
        ],
    );
    check("no ids", vec![]);
}
