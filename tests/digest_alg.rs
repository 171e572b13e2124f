//! `DigestAuthenticationProvider.digestAlg` (3.8): digest ids hashed with another
//! algorithm than SHA1. The same transcript on the reference and corral, for
//! SHA-256 and SHA3-256: `addauth digest` and whoAmI (which names the user), a
//! node whose ACL names the id hashed that way read by its owner, one whose ACL names the SHA1 id refused, and
//! the super user whose superDigest is hashed the same way reading it.
//!
//! `DigestAuthenticationProvider.enabled=false`: `addauth digest` fails and closes
//! the connection, an ACL naming the digest scheme is invalid, the super digest
//! no longer logs in; the same on both servers.
//!
//! Runs on the test thread with blocking raw clients (`common::RawClient`).

mod common;

use base64::Engine as _;
use common::{require_reference, Decoded, Kind, RawClient, Server};
use corral::proto::{perms, Acl, CreateKind, CreateRequest, Request, Response};

/// Session timeout asked for by the raw clients.
const SESSION_TIMEOUT_MS: i32 = 30_000;

/// `user:base64(hash(user:password))` with `hash`.
fn digest_with<D: sha2::Digest>(user: &str, password: &str) -> String {
    let hash = D::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

fn addauth(c: &mut RawClient, user_password: &str) -> i32 {
    let auth = Request::Auth {
        auth_type: 0,
        scheme: "digest".into(),
        auth: user_password.as_bytes().to_vec(),
    };
    c.call(&auth).expect("addauth").err
}

fn create(c: &mut RawClient, path: &str, digest_id: &str) -> i32 {
    let req = Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: path.into(),
        data: Some(b"d".to_vec()),
        acl: vec![Acl::new(perms::ALL, "digest", digest_id)],
        flags: 0,
        ttl: -1,
    });
    c.call(&req).expect("create").err
}

fn get(c: &mut RawClient, path: &str) -> String {
    match c.call_decoded(&Request::get_data_of(path)) {
        Ok(Decoded::Ok(Response::Data { .. })) => "read".into(),
        Ok(Decoded::Err(code, _)) => format!("error {code}"),
        other => format!("{other:?}"),
    }
}

fn who_am_i(c: &mut RawClient) -> String {
    match c.call_decoded(&Request::WhoAmI) {
        Ok(Decoded::Ok(Response::WhoAmI(mut ids))) => {
            ids.sort();
            format!("{ids:?}")
        }
        other => format!("{other:?}"),
    }
}

/// The transcript on one server started with `cfg`; `ours` is owner:ownerpw's id
/// under the configured algorithm.
fn transcript(kind: Kind, cfg: &str, ours: &str) -> Vec<String> {
    let server = Server::start(kind, cfg);
    let mut owner = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let mut out = vec![
        format!("addauth: {}", addauth(&mut owner, "owner:ownerpw")),
        format!("whoAmI: {}", who_am_i(&mut owner)),
        format!("create with our id: {}", create(&mut owner, "/ours", ours)),
        format!("owner reads it: {}", get(&mut owner, "/ours")),
    ];
    let sha1 = digest_with::<sha1::Sha1>("owner", "ownerpw");
    out.push(format!(
        "create with the SHA1 id: {}",
        create(&mut owner, "/sha1", &sha1)
    ));
    out.push(format!("owner reads that: {}", get(&mut owner, "/sha1")));
    let mut admin = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    out.push(format!(
        "addauth super: {}",
        addauth(&mut admin, "super:superpw")
    ));
    out.push(format!("super reads it: {}", get(&mut admin, "/sha1")));
    out
}

fn same_as_the_reference<D: sha2::Digest>(alg: &str) {
    if !require_reference() {
        return;
    }
    let cfg = format!(
        "DigestAuthenticationProvider.digestAlg={alg}\n\
         DigestAuthenticationProvider.superDigest={}\n",
        digest_with::<D>("super", "superpw")
    );
    let ours = digest_with::<D>("owner", "ownerpw");
    let reference = transcript(Kind::Reference, &cfg, &ours);
    let corral = transcript(Kind::Corral, &cfg, &ours);
    assert_eq!(
        reference[3], "owner reads it: read",
        "{alg}: {reference:#?}"
    );
    assert_eq!(
        reference[5], "owner reads that: error -102",
        "{alg}: {reference:#?}"
    );
    assert_eq!(
        reference[7], "super reads it: read",
        "{alg}: {reference:#?}"
    );
    assert_eq!(corral, reference, "{alg}");
}

#[test]
fn sha256_digest_ids_as_the_reference() {
    same_as_the_reference::<sha2::Sha256>("SHA-256");
}

#[test]
fn sha3_256_digest_ids_as_the_reference() {
    same_as_the_reference::<sha3::Sha3_256>("SHA3-256");
}

/// With the digest provider off: what addauth, a digest ACL and an open one give.
fn disabled_transcript(kind: Kind, cfg: &str) -> Vec<String> {
    let server = Server::start(kind, cfg);
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let mut out = vec![format!("addauth: {}", addauth(&mut c, "owner:ownerpw"))];
    out.push(format!("then: {:?}", c.call(&Request::Ping).map(|r| r.err)));
    let mut c = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    let sha1 = digest_with::<sha1::Sha1>("owner", "ownerpw");
    out.push(format!(
        "create with a digest ACL: {}",
        create(&mut c, "/d", &sha1)
    ));
    let open = Request::create_open("/open", b"o");
    out.push(format!(
        "create open: {}",
        c.call(&open).expect("create").err
    ));
    let mut admin = RawClient::connect(&server.addr(), SESSION_TIMEOUT_MS);
    out.push(format!(
        "addauth super: {}",
        addauth(&mut admin, "super:superpw")
    ));
    out
}

#[test]
fn digest_auth_disabled_as_the_reference() {
    if !require_reference() {
        return;
    }
    let cfg = format!(
        "DigestAuthenticationProvider.enabled=false\n\
         DigestAuthenticationProvider.superDigest={}\n",
        digest_with::<sha1::Sha1>("super", "superpw")
    );
    let reference = disabled_transcript(Kind::Reference, &cfg);
    let corral = disabled_transcript(Kind::Corral, &cfg);
    assert_eq!(
        reference,
        [
            "addauth: -115",
            "then: Err(Closed)",
            "create with a digest ACL: -114",
            "create open: 0",
            "addauth super: -115"
        ],
        "the reference"
    );
    assert_eq!(corral, reference);
}
