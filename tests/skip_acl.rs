//! `skipACL=yes` (the reference's `zookeeper.skipACL`): no ACL is checked. One
//! session creates znodes only its digest identity may touch; another session,
//! unauthenticated, reads, lists, changes, deletes under and re-ACLs them. The
//! same script runs on the reference and on corral, and the outcomes must be the
//! same:
//! - standalone with `skipACL=yes`: every step succeeds on both;
//! - with any other value (`skipACL=true`) ACLs stay checked, as the reference
//!   reads only `yes` (corral says so in a warning);
//! - in ensembles where every member has `skipACL=yes`: the unauthenticated
//!   session on a follower, whose reads that member answers and whose writes the
//!   leader checks, a corral leader with a reference follower and the reverse.
//!
//! Runs on the test thread with blocking raw clients (`common::RawClient`).

mod common;

use common::ensemble::{Ensemble, Role};
use common::{digest_id, require_reference, Decoded, Kind, RawClient, Server};
use corral::proto::{perms, Acl, CreateKind, CreateRequest, Request, Response};

/// Session timeout asked for by the raw clients.
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// The owner's digest login.
const OWNER: (&str, &str) = ("owner", "ownerpw");
/// The zoo.cfg line under test.
const SKIP_ACL: &str = "skipACL=yes\n";
/// corral's warning for a value other than yes or no.
const STILL_CHECKED: &str = "ACLs are still checked (as on the reference, only `yes`";

/// The owner (authenticated as OWNER) creates `<root>` and `<root>/kid`, both
/// readable and writable by that identity alone, through `owner_addr`; then an
/// unauthenticated session on `other_addr` runs every kind of access against
/// them. One line per step: what it answered (data, ACL and children, or the
/// error code), comparable between servers.
fn script(owner_addr: &str, other_addr: &str, root: &str) -> Vec<String> {
    let mut owner = RawClient::connect(owner_addr, SESSION_TIMEOUT_MS);
    let auth = Request::Auth {
        auth_type: 0,
        scheme: "digest".into(),
        auth: format!("{}:{}", OWNER.0, OWNER.1).into_bytes(),
    };
    assert_eq!(owner.call(&auth).expect("addauth").err, 0);
    let only_owner = vec![Acl::new(perms::ALL, "digest", &digest_id(OWNER.0, OWNER.1))];
    for (path, data) in [(root.to_string(), "secret"), (format!("{root}/kid"), "k")] {
        let req = Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: path.clone(),
            data: Some(data.as_bytes().to_vec()),
            acl: only_owner.clone(),
            flags: 0,
            ttl: -1,
        });
        let r = owner.call(&req).expect("the owner's create");
        assert_eq!(r.err, 0, "the owner's create of {path}: {r:?}");
    }

    let mut other = RawClient::connect(other_addr, SESSION_TIMEOUT_MS);
    // Another member may not have applied the creates yet: sync first.
    let sync = Request::Sync {
        path: root.to_string(),
    };
    assert_eq!(other.call(&sync).expect("sync").err, 0);
    let steps = [
        Request::get_data_of(root),
        Request::GetAcl {
            path: root.to_string(),
        },
        Request::get_children2_of(root),
        Request::SetData {
            path: root.to_string(),
            data: Some(b"changed".to_vec()),
            version: -1,
        },
        Request::create_open(&format!("{root}/new"), b"n"),
        Request::Delete {
            path: format!("{root}/kid"),
            version: -1,
        },
        Request::SetAcl {
            path: root.to_string(),
            acl: Acl::open(),
            version: -1,
        },
        Request::get_data_of(root),
    ];
    steps
        .iter()
        .map(|req| match other.call_decoded(req) {
            Ok(Decoded::Ok(Response::Data { data, .. })) => {
                format!(
                    "data {:?}",
                    String::from_utf8_lossy(&data.unwrap_or_default())
                )
            }
            Ok(Decoded::Ok(Response::Acl { acl, .. })) => format!("acl {acl:?}"),
            Ok(Decoded::Ok(Response::Children2 { mut children, .. })) => {
                children.sort();
                format!("children {children:?}")
            }
            Ok(Decoded::Ok(_)) => "ok".to_string(),
            Ok(Decoded::Err(code, _)) => format!("error {code}"),
            other => panic!("{req:?} on {other_addr}: {other:?}"),
        })
        .collect()
}

/// The outcomes when every access is granted.
fn all_granted() -> Vec<String> {
    let acl = vec![Acl::new(perms::ALL, "digest", &digest_id(OWNER.0, OWNER.1))];
    vec![
        "data \"secret\"".to_string(),
        format!("acl {acl:?}"),
        "children [\"kid\"]".to_string(),
        "ok".to_string(),
        "ok".to_string(),
        "ok".to_string(),
        "ok".to_string(),
        "data \"changed\"".to_string(),
    ]
}

/// The script on one standalone server of `kind` with `cfg`; also its log.
fn standalone(kind: Kind, cfg: &str) -> (Vec<String>, String) {
    let server = Server::start(kind, cfg);
    let addr = server.addr();
    let out = script(&addr, &addr, "/locked");
    (out, server.log())
}

#[test]
fn skip_acl_yes_grants_every_access_as_on_the_reference() {
    if !require_reference() {
        return;
    }
    let (reference, _) = standalone(Kind::Reference, SKIP_ACL);
    let (corral, log) = standalone(Kind::Corral, SKIP_ACL);
    assert_eq!(reference, all_granted(), "the reference");
    assert_eq!(corral, reference, "corral against the reference");
    assert!(log.contains("skipACL=yes: no ACL is checked"), "{log}");
}

#[test]
fn skip_acl_other_than_yes_keeps_acls_checked() {
    if !require_reference() {
        return;
    }
    let cfg = "skipACL=true\n";
    let (reference, _) = standalone(Kind::Reference, cfg);
    let (corral, log) = standalone(Kind::Corral, cfg);
    assert_eq!(
        reference[0], "error -102",
        "the reference's getData: {reference:?}"
    );
    assert_eq!(corral, reference, "corral against the reference");
    assert!(log.contains(STILL_CHECKED), "{log}");
}

/// Every member with skipACL=yes (sid 3 leads); the owner on the leader, the
/// unauthenticated session on `other`, a follower.
fn ensemble(kinds: [Kind; 3], other: u64) {
    if !Ensemble::can_start(&kinds) {
        return;
    }
    let members = kinds.map(|k| (k, Role::Participant));
    let mut ens = Ensemble::start_cfg(&members, SKIP_ACL);
    let leader = ens.lead_by(3);
    let out = script(&ens.client_addr(leader), &ens.client_addr(other), "/locked");
    assert_eq!(
        out,
        all_granted(),
        "unauthenticated session on member {other}\n{}",
        ens.describe()
    );
}

/// A corral leader checks the writes a reference follower forwards with its own
/// setting.
#[test]
fn skip_acl_yes_in_an_ensemble_led_by_corral() {
    ensemble([Kind::Reference, Kind::Corral, Kind::Corral], 1);
}

/// A corral follower answers the reads itself and forwards the writes to a
/// reference leader.
#[test]
fn skip_acl_yes_in_an_ensemble_led_by_the_reference() {
    ensemble([Kind::Corral, Kind::Corral, Kind::Reference], 1);
}
