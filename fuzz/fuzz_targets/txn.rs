//! A txn entry (`tree::Txn::decode`), as a leader's PROPOSAL/INFORM carries it, a
//! DIFF replays it and corral's log or a reference txn log stores it. Properties: no
//! panic; what decodes re-encodes (with its digest) into bytes that decode to the same
//! txn and digest; allocation bounded by the input.
//!
//! One exception is the reference's own: a string with a character outside the BMP
//! is written as CESU-8 and read back as U+FFFD, so such a txn is compared after one
//! more round (the second encoding must be a fixed point).

#![no_main]

use corral::tree::{Txn, TxnOp};
use libfuzzer_sys::fuzz_target;

corral_fuzz::bounded_allocator!();

fuzz_target!(|data: &[u8]| {
    let _armed = corral_fuzz::arm(data.len());
    let Ok((txn, digest)) = Txn::decode(data) else {
        return;
    };
    let _ = txn.is_change();
    let (again, again_digest) = round(&txn, digest);
    if !has_non_bmp(&txn) {
        assert_eq!(again, txn);
        assert_eq!(again_digest, digest.filter(|_| txn.carries_digest()));
        return;
    }
    let (third, third_digest) = round(&again, again_digest);
    assert_eq!(third, again);
    assert_eq!(third_digest, again_digest);
});

/// Encodes with the digest and decodes; the result must decode.
fn round(txn: &Txn, digest: Option<u64>) -> (Txn, Option<u64>) {
    let mut out = Vec::new();
    txn.encode(&mut out, digest);
    let mut split = Vec::new();
    txn.encode(&mut split, None);
    if let Some(d) = digest.filter(|_| txn.carries_digest()) {
        Txn::encode_digest(&mut split, d);
    }
    assert_eq!(
        split, out,
        "encode then encode_digest must equal encode with it"
    );
    Txn::decode(&out).unwrap_or_else(|e| panic!("re-decode of {txn:?} failed: {e}"))
}

fn has_non_bmp(txn: &Txn) -> bool {
    op_has_non_bmp(&txn.op)
}

fn non_bmp(s: &str) -> bool {
    s.chars().any(|c| c as u32 > 0xffff)
}

fn op_has_non_bmp(op: &TxnOp) -> bool {
    match op {
        TxnOp::Create(c) => {
            non_bmp(&c.path)
                || c.acl
                    .iter()
                    .any(|a| non_bmp(&a.id.scheme) || non_bmp(&a.id.id))
        }
        TxnOp::SetAcl { path, acl, .. } => {
            non_bmp(path)
                || acl
                    .iter()
                    .any(|a| non_bmp(&a.id.scheme) || non_bmp(&a.id.id))
        }
        TxnOp::Delete { path }
        | TxnOp::DeleteContainer { path }
        | TxnOp::SetData { path, .. }
        | TxnOp::Check { path, .. } => non_bmp(path),
        TxnOp::Multi(ops) => ops.iter().any(op_has_non_bmp),
        TxnOp::CloseSession { paths } => paths.iter().any(|p| non_bmp(p)),
        TxnOp::Error(_) | TxnOp::CreateSession { .. } | TxnOp::Reconfig { .. } => false,
    }
}
