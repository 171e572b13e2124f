//! The quorum port, read as the peer transport reads it (`Peers::read_quorum`): bytes
//! arrive in pieces, `QuorumPacket::decode` takes whole packets off the front, each
//! goes to `server::peer::wire::decode` for our side of the link (the control byte
//! picks leader or learner), and on a learner a SNAP packet hands the bytes after it
//! to a `ZkSnapDecoder` until the snapshot is whole. Properties: no panic; a packet
//! that decodes is undecided (`Ok(None)`) on every shorter prefix and re-encodes to
//! itself; a typed packet re-encoded decodes to a fixed point; decoding in pieces
//! sees the same packets as decoding everything at once; allocation bounded by the
//! input.

#![no_main]

use corral::proto::quorum::PacketType;
use corral::proto::QuorumPacket;
use corral::server::peer::wire::{self, Side};
use corral::server::peer::QUORUM_DATA_BYTES_MAX;
use corral::tree::zksnap::{ZkSnapDecoder, ZkSnapKind};
use corral_fuzz::Pieces;
use libfuzzer_sys::fuzz_target;

corral_fuzz::bounded_allocator!();

/// Prefixes checked per packet: all of them for a small one, a spread for a big one.
const PREFIXES_CHECKED_MAX: usize = 64;

fuzz_target!(|data: &[u8]| {
    let _armed = corral_fuzz::arm(data.len());
    let (control, stream) = corral_fuzz::split_control(data);
    let side = if control & 1 == 0 {
        Side::Learner
    } else {
        Side::Leader
    };
    let whole = read_link(stream, side, stream.len().max(1), control);
    let pieces = read_link(stream, side, 1 + (control >> 1) as usize * 5, control);
    assert_eq!(whole, pieces, "whole vs in pieces");
});

/// What the transport did with the link: one line per event, then how it ended.
fn read_link(stream: &[u8], side: Side, piece_bytes_max: usize, seed: u8) -> Vec<String> {
    let mut log = Vec::new();
    let mut pieces = Pieces::new(u64::from(seed) | 0x51_00, piece_bytes_max);
    let mut buf: Vec<u8> = Vec::new();
    let mut arrived = 0;
    let mut snap: Option<ZkSnapDecoder> = None;
    loop {
        let mut at = 0;
        loop {
            if let Some(dec) = snap.as_mut() {
                match dec.feed(&buf[at..]) {
                    Ok(used) => at += used,
                    Err(e) => {
                        log.push(format!("refused: bad snapshot after SNAP: {e}"));
                        return log;
                    }
                }
                if !dec.is_done() {
                    break;
                }
                match snap.take().unwrap().finish() {
                    Ok((tree, sessions)) => log.push(format!(
                        "snapshot: {} nodes, digest {:#x}, {} sessions",
                        tree.node_count(),
                        tree.digest(),
                        sessions.len()
                    )),
                    Err(e) => {
                        log.push(format!("refused: bad snapshot: {e}"));
                        return log;
                    }
                }
                continue;
            }
            match QuorumPacket::decode(&buf[at..], QUORUM_DATA_BYTES_MAX) {
                Ok(Some((qp, used))) => {
                    check_packet(&buf[at..at + used], &qp);
                    at += used;
                    if side == Side::Learner && qp.kind == PacketType::Snap {
                        snap = Some(ZkSnapDecoder::new(ZkSnapKind::Snap, qp.zxid));
                        log.push(format!("SNAP {:#x}", qp.zxid));
                        continue;
                    }
                    match on_packet(qp, side) {
                        Ok(line) => log.push(line),
                        Err(e) => {
                            log.push(format!("refused: bad packet: {e}"));
                            return log;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log.push(format!("refused: bad packet: {e}"));
                    return log;
                }
            }
        }
        buf.drain(..at);
        if arrived == stream.len() {
            log.push(format!("eof with {} bytes pending", buf.len()));
            return log;
        }
        let n = pieces.next_len().min(stream.len() - arrived);
        buf.extend_from_slice(&stream[arrived..arrived + n]);
        arrived += n;
    }
}

/// The packet took `bytes`: no shorter prefix decides, and it re-encodes to itself.
fn check_packet(bytes: &[u8], qp: &QuorumPacket) {
    let step = (bytes.len() / PREFIXES_CHECKED_MAX).max(1);
    for k in (0..bytes.len()).step_by(step) {
        let got = QuorumPacket::decode(&bytes[..k], QUORUM_DATA_BYTES_MAX);
        assert_eq!(
            got,
            Ok(None),
            "prefix of {k} of a {}-byte packet",
            bytes.len()
        );
    }
    let mut out = Vec::new();
    qp.encode(&mut out);
    let back = QuorumPacket::decode(&out, QUORUM_DATA_BYTES_MAX);
    assert_eq!(back, Ok(Some((qp.clone(), out.len()))));
}

/// Typed decoding for our side; a packet that decodes is re-encoded (as the other
/// side would send it) and must decode to a fixed point.
fn on_packet(qp: QuorumPacket, side: Side) -> Result<String, wire::WireError> {
    let p = wire::decode(qp, side)?;
    let once = through_wire(&p, side);
    let twice = through_wire(&once, side);
    assert_eq!(twice, once, "typed packet {p:?} is not a fixed point");
    Ok(format!("{p:?}"))
}

fn through_wire(p: &corral::zab::Packet, side: Side) -> corral::zab::Packet {
    let mut out = Vec::new();
    wire::encode(p).encode(&mut out);
    let (qp, used) = QuorumPacket::decode(&out, QUORUM_DATA_BYTES_MAX)
        .expect("our own packet decodes")
        .expect("our own packet is whole");
    assert_eq!(used, out.len());
    wire::decode(qp, side).unwrap_or_else(|e| panic!("our own {p:?} is refused: {e}"))
}
