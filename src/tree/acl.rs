//! ACL rules as the reference applies them: validating and expanding the ACL of a
//! create or setACL (`PrepRequestProcessor.fixupACL`), permission checks
//! (`ZooKeeperServer.checkACL`) with the `world`, `digest`, `ip`, `sasl` and `x509`
//! schemes and the super bypass, and the digest helper for the shard's auth handling.
//! Pure; runs on the sequencer (prepare) and on shard cores (reads).
//!
//! An `x509` id is a certificate subject as Java prints it (RFC 2253, see
//! `server::tls`); it matches an ACL id equal to it, as the reference's
//! X509AuthenticationProvider matches. An ACL's x509 id must parse as Java's
//! `X500Principal(String)` parses a name (`valid_x509_id`).

use base64::Engine as _;
use sha1::Digest as _;

use crate::proto::{Acl, ErrorCode, Id};

/// Who is asking, for ACL checks. `ids` are the caller's authenticated ids (the shard
/// adds `ip:<addr>` for the connection and `digest:user:hash` after a digest auth);
/// `is_super` is set when the caller authenticated as the configured super digest.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub session_id: i64,
    pub ids: &'a [Id],
    pub is_super: bool,
}

impl Caller<'static> {
    /// A session with no authenticated identity and no superuser rights.
    pub fn unauthenticated(session_id: i64) -> Self {
        Caller {
            session_id,
            ids: &[],
            is_super: false,
        }
    }
}

/// The scheme of the stand-in ACL a node gets when a ZooKeeper snapshot names an ACL
/// index its ACL map lacks. The reference's snapshots are fuzzy: the map is written
/// before the nodes, so a node created (or given new ACLs) with a new list while the
/// snapshot was being written names an index the map does not have. The reference
/// loads such a node anyway and its replay of that create (or setACL) assigns the
/// index (`DataTree.createNode` interns the ACL before it finds the node exists).
/// corral keeps the index in this stand-in, which grants nobody anything (only a
/// super user passes), and the replayed txn puts the real list in its place
/// ([`Tree::resolve_stand_in_acl`](super::Tree)). No client can set it: fixupACL
/// refuses unknown schemes.
pub(crate) const STAND_IN_ACL_SCHEME: &str = "corral-unresolved-acl-index";

/// The stand-in list for a snapshot's unknown ACL `index` (see [`STAND_IN_ACL_SCHEME`]).
pub(crate) fn stand_in_acl(index: i64) -> Vec<Acl> {
    vec![Acl {
        perms: 0,
        id: Id {
            scheme: STAND_IN_ACL_SCHEME.to_string(),
            id: index.to_string(),
        },
    }]
}

/// True for a list [`stand_in_acl`] made.
pub(crate) fn is_stand_in_acl(acl: &[Acl]) -> bool {
    matches!(acl, [a] if a.perms == 0 && a.id.scheme == STAND_IN_ACL_SCHEME)
}

/// The hash of digest ids: `DigestAuthenticationProvider.digestAlg`, SHA1 unless
/// set, as on the reference (which takes any name Java's `MessageDigest` knows;
/// these are those of Java 17's own provider but the obsolete MD2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DigestAlg {
    Md5,
    #[default]
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Sha512_224,
    Sha512_256,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
}

/// The OIDs Java 17 takes as MessageDigest names (bare or after `OID.`).
const DIGEST_OIDS: &[(&str, DigestAlg)] = &[
    ("1.3.14.3.2.26", DigestAlg::Sha1),
    ("2.16.840.1.101.3.4.2.4", DigestAlg::Sha224),
    ("2.16.840.1.101.3.4.2.1", DigestAlg::Sha256),
    ("2.16.840.1.101.3.4.2.2", DigestAlg::Sha384),
    ("2.16.840.1.101.3.4.2.3", DigestAlg::Sha512),
    ("2.16.840.1.101.3.4.2.5", DigestAlg::Sha512_224),
    ("2.16.840.1.101.3.4.2.6", DigestAlg::Sha512_256),
    ("2.16.840.1.101.3.4.2.7", DigestAlg::Sha3_224),
    ("2.16.840.1.101.3.4.2.8", DigestAlg::Sha3_256),
    ("2.16.840.1.101.3.4.2.9", DigestAlg::Sha3_384),
    ("2.16.840.1.101.3.4.2.10", DigestAlg::Sha3_512),
];

impl DigestAlg {
    /// The algorithm a Java 17 `MessageDigest` name means: any case, the standard
    /// names and their aliases (`SHA`/`SHA1` for SHA-1, `SHA256` and the other
    /// SHA-2 names without the hyphen), and the OIDs, bare or after `OID.`.
    pub fn from_java_name(name: &str) -> Option<DigestAlg> {
        use DigestAlg::*;
        let upper = name.to_ascii_uppercase();
        let oid = upper.strip_prefix("OID.").unwrap_or(&upper);
        if let Some((_, alg)) = DIGEST_OIDS.iter().find(|(o, _)| *o == oid) {
            return Some(*alg);
        }
        Some(match upper.as_str() {
            "MD5" => Md5,
            "SHA" | "SHA1" | "SHA-1" => Sha1,
            "SHA-224" | "SHA224" => Sha224,
            "SHA-256" | "SHA256" => Sha256,
            "SHA-384" | "SHA384" => Sha384,
            "SHA-512" | "SHA512" => Sha512,
            "SHA-512/224" | "SHA512/224" => Sha512_224,
            "SHA-512/256" | "SHA512/256" => Sha512_256,
            "SHA3-224" => Sha3_224,
            "SHA3-256" => Sha3_256,
            "SHA3-384" => Sha3_384,
            "SHA3-512" => Sha3_512,
            _ => return None,
        })
    }

    fn hash(self, bytes: &[u8]) -> Vec<u8> {
        use DigestAlg::*;
        match self {
            Md5 => md5::Md5::digest(bytes).to_vec(),
            Sha1 => sha1::Sha1::digest(bytes).to_vec(),
            Sha224 => sha2::Sha224::digest(bytes).to_vec(),
            Sha256 => sha2::Sha256::digest(bytes).to_vec(),
            Sha384 => sha2::Sha384::digest(bytes).to_vec(),
            Sha512 => sha2::Sha512::digest(bytes).to_vec(),
            Sha512_224 => sha2::Sha512_224::digest(bytes).to_vec(),
            Sha512_256 => sha2::Sha512_256::digest(bytes).to_vec(),
            Sha3_224 => sha3::Sha3_224::digest(bytes).to_vec(),
            Sha3_256 => sha3::Sha3_256::digest(bytes).to_vec(),
            Sha3_384 => sha3::Sha3_384::digest(bytes).to_vec(),
            Sha3_512 => sha3::Sha3_512::digest(bytes).to_vec(),
        }
    }
}

/// `user:base64(sha1("user:password"))` for `user:password`, as the reference's
/// `DigestAuthenticationProvider.generateDigest` makes it by default.
pub fn digest_id(user_and_password: &str) -> String {
    digest_id_with(DigestAlg::Sha1, user_and_password)
}

/// [`digest_id`] with the hash `alg` (digestAlg) in place of SHA1.
pub fn digest_id_with(alg: DigestAlg, user_and_password: &str) -> String {
    let user = user_and_password
        .split_once(':')
        .map(|(u, _)| u)
        .unwrap_or(user_and_password);
    let hash = alg.hash(user_and_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// Schemes whose ids count as authenticated for the `auth` expansion
/// (`isAuthenticated()` is true for digest, sasl and x509; false for ip).
fn is_authenticated_scheme(scheme: &str) -> bool {
    matches!(scheme, "digest" | "sasl" | "x509")
}

/// Java's `String.split(":")` piece count (trailing empty pieces dropped).
fn java_split_count(s: &str, sep: char) -> usize {
    let pieces: Vec<&str> = s.split(sep).collect();
    let mut n = pieces.len();
    while n > 0 && pieces[n - 1].is_empty() {
        n -= 1;
    }
    n
}

fn valid_digest_id(id: &str) -> bool {
    java_split_count(id, ':') == 2
}

/// An IPv4 address as the reference parses it (four dot-separated decimal parts,
/// each 0..=255; Java's parseInt accepts a leading sign).
fn parse_v4(addr: &str) -> Option<[u8; 4]> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut b = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        let v: i32 = p.parse().ok()?;
        if !(0..=255).contains(&v) {
            return None;
        }
        b[i] = v as u8;
    }
    Some(b)
}

/// `addr[/bits]` → (address, bits).
fn parse_ip_expr(expr: &str) -> Option<([u8; 4], u32)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let a = parse_v4(addr)?;
    let bits = match bits {
        None => 32,
        Some(b) => {
            let v: i32 = b.parse().ok()?;
            if !(0..=32).contains(&v) {
                return None;
            }
            v as u32
        }
    };
    Some((a, bits))
}

fn valid_ip_id(id: &str) -> bool {
    parse_ip_expr(id).is_some()
}

/// A `sasl` ACL id is valid as the reference's KerberosName parses it: a plain
/// name, or `service[/host]@REALM`.
fn valid_sasl_id(id: &str) -> bool {
    !id.contains('@') || crate::auth::sasl::is_principal(id)
}

/// `SASLAuthenticationProvider.matches`: the caller's sasl id equals the ACL's,
/// or is `super`, which matches every sasl ACL.
fn sasl_matches(caller_id: &str, acl_id: &str) -> bool {
    caller_id == "super" || caller_id == acl_id
}

/// Attribute keywords Java's X500Principal accepts in a name (`AVAKeyword`).
const X500_KEYWORDS: &[&str] = &[
    "CN",
    "C",
    "L",
    "S",
    "ST",
    "O",
    "OU",
    "T",
    "IP",
    "STREET",
    "DC",
    "DNQUALIFIER",
    "DNQ",
    "SURNAME",
    "GIVENNAME",
    "INITIALS",
    "GENERATION",
    "EMAIL",
    "EMAILADDRESS",
    "UID",
    "SERIALNUMBER",
];

/// Does `id` parse as a distinguished name, as `new X500Principal(id)` would (the
/// reference's `X509AuthenticationProvider.isValid`)? RDNs split on `,` or `;`,
/// attributes on `+`, outside quotes and escapes; the empty name is valid.
fn valid_x509_id(id: &str) -> bool {
    if id.is_empty() {
        return true;
    }
    split_unescaped(id, &[',', ';']).is_some_and(|rdns| {
        rdns.iter().all(|rdn| {
            split_unescaped(rdn, &['+']).is_some_and(|avas| avas.iter().all(|a| valid_ava(a)))
        })
    })
}

/// Splits at `seps` outside quotes and escapes; `None` if a piece is blank or a quote
/// is left open.
fn split_unescaped<'a>(s: &'a str, seps: &[char]) -> Option<Vec<&'a str>> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if !quoted && seps.contains(&c) => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    let blank = out.iter().any(|p| p.trim().is_empty());
    (!quoted && !blank).then_some(out)
}

/// `keyword=value`: a known keyword or a dotted OID (optionally `OID.`-prefixed).
fn valid_ava(ava: &str) -> bool {
    let Some((key, value)) = ava.split_once('=') else {
        return false;
    };
    let key = key.trim();
    let oid = key
        .strip_prefix("OID.")
        .or_else(|| key.strip_prefix("oid."))
        .unwrap_or(key);
    let known = if oid.starts_with(|c: char| c.is_ascii_digit()) {
        let arcs: Vec<&str> = oid.split('.').collect();
        arcs.len() >= 2
            && arcs
                .iter()
                .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
    } else {
        X500_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(key))
    };
    known && valid_x500_value(value.trim_start())
}

/// A `#hex` DER value, a quoted string, or a string with RFC 2253 escapes.
fn valid_x500_value(v: &str) -> bool {
    if let Some(hex) = v.strip_prefix('#') {
        let hex = hex.trim_end();
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        return bytes.is_some_and(|b| {
            !b.is_empty() && <der::asn1::AnyRef as der::Decode>::from_der(&b).is_ok()
        });
    }
    if let Some(rest) = v.strip_prefix('"') {
        return match rest.rfind('"') {
            Some(end) => rest[end + 1..].trim().is_empty(),
            None => false,
        };
    }
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '<' | '>' => return false,
            '\\' => match chars.next() {
                Some(e) if ",=+<>#;\"\\ ".contains(e) => {}
                Some(h) if h.is_ascii_hexdigit() => {
                    if !chars.next().is_some_and(|l| l.is_ascii_hexdigit()) {
                        return false;
                    }
                }
                _ => return false,
            },
            _ => {}
        }
    }
    true
}

/// Does the caller's `ip` id fall in the ACL's `addr/bits` range?
fn ip_matches(caller_addr: &str, acl_expr: &str) -> bool {
    let Some((acl_addr, bits)) = parse_ip_expr(acl_expr) else {
        return false;
    };
    let Some(remote) = parse_v4(caller_addr) else {
        return false;
    };
    let mask: u32 = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from_be_bytes(acl_addr) & mask) == (u32::from_be_bytes(remote) & mask)
}

/// Validates and expands the ACL of a create or setACL, as `fixupACL` does:
/// duplicates removed, `world:anyone` kept, `auth` replaced by the caller's
/// authenticated ids (InvalidACL if there are none), `digest`, `ip`, `sasl` and `x509` ids
/// checked for form, any other scheme or an empty list → InvalidACL. (The reference
/// knows `sasl` only with its SASLAuthenticationProvider configured; corral always.)
pub(crate) fn fixup_acl(caller: &Caller, acl: &[Acl]) -> Result<Vec<Acl>, ErrorCode> {
    let mut uniq: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::with_capacity(uniq.len());
    for a in uniq {
        let Id { scheme, id } = &a.id;
        if scheme == "world" && id == "anyone" {
            out.push(a.clone());
        } else if scheme == "auth" {
            let mut any = false;
            for cid in caller.ids {
                if is_authenticated_scheme(&cid.scheme) {
                    any = true;
                    out.push(Acl {
                        perms: a.perms,
                        id: cid.clone(),
                    });
                }
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else {
            let valid = match scheme.as_str() {
                "digest" => valid_digest_id(id),
                "ip" => valid_ip_id(id),
                "sasl" => valid_sasl_id(id),
                "x509" => valid_x509_id(id),
                _ => false,
            };
            if !valid {
                return Err(ErrorCode::InvalidAcl);
            }
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// Grants if any ACL entry with one of the `perm` bits matches the caller
/// (`ZooKeeperServer.checkACL`). An empty ACL and the super user always pass.
pub(crate) fn check_acl(acl: &[Acl], perm: i32, caller: &Caller) -> Result<(), ErrorCode> {
    if caller.is_super || acl.is_empty() || caller.ids.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        let Id { scheme, id } = &a.id;
        if scheme == "world" && id == "anyone" {
            return Ok(());
        }
        let matched = match scheme.as_str() {
            "ip" => caller
                .ids
                .iter()
                .any(|c| c.scheme == "ip" && ip_matches(&c.id, id)),
            "sasl" => caller
                .ids
                .iter()
                .any(|c| c.scheme == "sasl" && sasl_matches(&c.id, id)),
            "digest" | "x509" => caller
                .ids
                .iter()
                .any(|c| c.scheme == *scheme && c.id == *id),
            _ => false,
        };
        if matched {
            return Ok(());
        }
    }
    Err(ErrorCode::NoAuth)
}

/// getACL without ADMIN: digest ids lose their hash (`user:x`), as the reference does.
pub(crate) fn redact(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == "digest" {
                let id = match a.id.id.split_once(':') {
                    Some((u, _)) => format!("{u}:x"),
                    None => a.id.id.clone(),
                };
                Acl {
                    perms: a.perms,
                    id: Id {
                        scheme: a.id.scheme.clone(),
                        id,
                    },
                }
            } else {
                a.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::perms;

    fn caller(ids: &[Id]) -> Caller<'_> {
        Caller {
            session_id: 1,
            ids,
            is_super: false,
        }
    }

    #[test]
    fn digest_matches_the_reference() {
        // Known value: ZooKeeper docs / DigestAuthenticationProvider for super:test.
        assert_eq!(
            digest_id("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
        assert_eq!(digest_id("user:pass"), "user:smGaoVKd/cQkjm7b88GyorAUz20=");
        // sha256("user:pass") and sha3-256("user:pass"), base64.
        let sha256 = DigestAlg::from_java_name("sha-256").unwrap();
        assert_eq!(
            digest_id_with(sha256, "user:pass"),
            format!(
                "user:{}",
                base64::engine::general_purpose::STANDARD
                    .encode(sha2::Sha256::digest(b"user:pass"))
            )
        );
        assert_eq!(DigestAlg::from_java_name("SHA"), Some(DigestAlg::Sha1));
        assert_eq!(
            DigestAlg::from_java_name("SHA3-256"),
            Some(DigestAlg::Sha3_256)
        );
        assert_eq!(DigestAlg::from_java_name("SHA256"), Some(DigestAlg::Sha256));
        assert_eq!(
            DigestAlg::from_java_name("sha512/224"),
            Some(DigestAlg::Sha512_224)
        );
        assert_eq!(
            DigestAlg::from_java_name("oid.2.16.840.1.101.3.4.2.8"),
            Some(DigestAlg::Sha3_256)
        );
        assert_eq!(
            DigestAlg::from_java_name("1.3.14.3.2.26"),
            Some(DigestAlg::Sha1)
        );
        // Java 17 knows MD2 (corral does not) and no SHA3 name without the hyphen.
        assert_eq!(DigestAlg::from_java_name("MD2"), None);
        assert_eq!(DigestAlg::from_java_name("SHA3256"), None);
        assert_eq!(digest_id("user:"), "user:kd7q5xGKLW+18xQTfO8iqRaFvsM=");
    }

    #[test]
    fn digest_id_form() {
        assert!(valid_digest_id("a:b"));
        assert!(valid_digest_id("a:b:"));
        assert!(valid_digest_id(":b"));
        assert!(!valid_digest_id("a:"));
        assert!(!valid_digest_id("a"));
        assert!(!valid_digest_id("a::b"));
        assert!(!valid_digest_id(":"));
        assert!(!valid_digest_id(""));
    }

    #[test]
    fn ip_forms_and_matching() {
        assert!(valid_ip_id("10.0.0.1"));
        assert!(valid_ip_id("10.0.0.0/8"));
        assert!(valid_ip_id("0.0.0.0/0"));
        assert!(!valid_ip_id("10.0.0"));
        assert!(!valid_ip_id("10.0.0.256"));
        assert!(!valid_ip_id("10.0.0.0/33"));
        assert!(!valid_ip_id("10.0.0.0/x"));
        assert!(!valid_ip_id("host"));
        assert!(ip_matches("10.1.2.3", "10.0.0.0/8"));
        assert!(!ip_matches("11.1.2.3", "10.0.0.0/8"));
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        assert!(!ip_matches("127.0.0.2", "127.0.0.1"));
        assert!(ip_matches("1.2.3.4", "0.0.0.0/0"));
        assert!(ip_matches("192.168.1.130", "192.168.1.128/25"));
        assert!(!ip_matches("192.168.1.127", "192.168.1.128/25"));
    }

    /// Each name as Java 17's `new X500Principal(name)` takes or refuses it.
    #[test]
    fn x509_ids_parse_as_java_parses_names() {
        for ok in [
            "CN=foo",
            "",
            "CN=a,O=b",
            "cn=a",
            "OID.2.5.4.3=x",
            "oid.2.5.4.3=x",
            "2.5.4.3=#0c0141",
            "CN=a+OU=b",
            "CN=a\\,b",
            "CN=\"quoted, x\"",
            " CN = a ",
            "CN=a;O=b",
            "CN=",
            "EMAILADDRESS=x@y",
            "S=x",
            "T=x",
            "DNQ=x",
            "1.2=x",
            "CN=a\\41",
            "CN=a=b",
            "CN=a + OU=b",
            "CN=é",
            "CN=a\nb",
            "UID=1,DC=x",
            "CN=a\\ ",
            "CN=a\\00",
            "1.2.840.113549.1.9.1=#16056140622e63,CN=\\ lead \\#1\\ ,OU=Dev+UID=u1",
        ] {
            assert!(valid_x509_id(ok), "{ok:?}");
        }
        for bad in [
            "foo",
            "FOO=bar",
            "2.5.4.3=#0c01",
            "2.5.4.3=#0c014",
            "CN=a,b",
            "CN=a,",
            "CN=#zz",
            "1=x",
            "2.5.4.3.=x",
            "CN=a\\",
            "CN=a\\zz",
            "CN=a\"b",
            "=x",
            "CN=a,,O=b",
            ",",
            "C N=x",
            "CN=a+",
            "CN=a<b",
            "CN=\"a",
            "CN=\"a\"b",
        ] {
            assert!(!valid_x509_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn x509_acls_match_the_subject_exactly() {
        let ids = [
            Id::new("ip", "127.0.0.1"),
            Id::new("x509", "CN=alice,O=corral"),
        ];
        let c = caller(&ids);
        let acl = fixup_acl(&c, &[Acl::new(perms::ALL, "x509", "CN=alice,O=corral")]).unwrap();
        assert!(check_acl(&acl, perms::READ, &c).is_ok());
        let other = [Id::new("x509", "CN=alice, O=corral")];
        assert_eq!(
            check_acl(&acl, perms::READ, &caller(&other)),
            Err(ErrorCode::NoAuth)
        );
        // `auth` expands to the x509 id, as it is an authenticated scheme.
        assert_eq!(
            fixup_acl(&c, &[Acl::new(perms::READ, "auth", "")]).unwrap(),
            vec![Acl::new(perms::READ, "x509", "CN=alice,O=corral")]
        );
        assert_eq!(
            fixup_acl(&c, &[Acl::new(perms::ALL, "x509", "alice")]),
            Err(ErrorCode::InvalidAcl)
        );
    }

    #[test]
    fn fixup_expands_auth_and_rejects_bad_acls() {
        let ids = [Id::new("ip", "127.0.0.1"), Id::new("digest", "u:h")];
        let c = caller(&ids);
        assert_eq!(
            fixup_acl(&c, &[Acl::new(perms::ALL, "auth", "")]).unwrap(),
            vec![Acl::new(perms::ALL, "digest", "u:h")]
        );
        let ip_only = [Id::new("ip", "127.0.0.1")];
        assert_eq!(
            fixup_acl(&caller(&ip_only), &[Acl::new(perms::ALL, "auth", "")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup_acl(&c, &[]), Err(ErrorCode::InvalidAcl));
        for bad in [
            Acl::new(1, "world", "someone"),
            Acl::new(1, "nope", "x"),
            Acl::new(1, "digest", "nohash"),
            Acl::new(1, "ip", "1.2.3"),
            Acl::new(1, "super", ""),
        ] {
            assert_eq!(
                fixup_acl(&c, std::slice::from_ref(&bad)),
                Err(ErrorCode::InvalidAcl),
                "{bad:?}"
            );
        }
        // Duplicates collapse.
        let open = Acl::open();
        let twice = [open[0].clone(), open[0].clone()];
        assert_eq!(fixup_acl(&c, &twice).unwrap(), open);
    }

    #[test]
    fn checks() {
        let ids = [Id::new("ip", "10.0.0.5"), Id::new("digest", "u:h")];
        let c = caller(&ids);
        let acl = vec![
            Acl::new(perms::READ, "digest", "u:h"),
            Acl::new(perms::WRITE, "ip", "10.0.0.0/24"),
            Acl::new(perms::DELETE, "digest", "other:h"),
        ];
        assert!(check_acl(&acl, perms::READ, &c).is_ok());
        assert!(check_acl(&acl, perms::WRITE, &c).is_ok());
        assert_eq!(check_acl(&acl, perms::DELETE, &c), Err(ErrorCode::NoAuth));
        assert_eq!(check_acl(&acl, perms::ADMIN, &c), Err(ErrorCode::NoAuth));
        assert!(check_acl(&acl, perms::READ | perms::ADMIN, &c).is_ok());
        assert!(check_acl(&[], perms::ADMIN, &c).is_ok());
        let sup = Caller {
            is_super: true,
            ..c
        };
        assert!(check_acl(&acl, perms::ADMIN, &sup).is_ok());
        assert!(check_acl(&Acl::open(), perms::ADMIN, &caller(&[])).is_ok());
    }

    #[test]
    fn sasl_ids_form_and_matching() {
        let ids = [Id::new("ip", "127.0.0.1"), Id::new("sasl", "bob")];
        let c = caller(&ids);
        for ok in ["bob", "zk/host@REALM", "bob@REALM", "a/b"] {
            let acl = [Acl::new(perms::ALL, "sasl", ok)];
            assert_eq!(fixup_acl(&c, &acl).unwrap(), acl.to_vec(), "{ok}");
        }
        for bad in ["a@b@c", "a/b/c@R", "a@b/c"] {
            let acl = [Acl::new(perms::ALL, "sasl", bad)];
            assert_eq!(fixup_acl(&c, &acl), Err(ErrorCode::InvalidAcl), "{bad}");
        }
        // `auth` expands to the sasl id too.
        assert_eq!(
            fixup_acl(&c, &[Acl::new(perms::READ, "auth", "")]).unwrap(),
            vec![Acl::new(perms::READ, "sasl", "bob")]
        );
        let acl = vec![Acl::new(perms::READ, "sasl", "bob")];
        assert!(check_acl(&acl, perms::READ, &c).is_ok());
        assert_eq!(check_acl(&acl, perms::WRITE, &c), Err(ErrorCode::NoAuth));
        let eve = [Id::new("sasl", "eve"), Id::new("digest", "bob")];
        assert_eq!(
            check_acl(&acl, perms::READ, &caller(&eve)),
            Err(ErrorCode::NoAuth)
        );
        // The SASL user `super` matches every sasl ACL (not other schemes).
        let sup = [Id::new("sasl", "super")];
        assert!(check_acl(&acl, perms::READ, &caller(&sup)).is_ok());
        let digest_only = vec![Acl::new(perms::READ, "digest", "bob:h")];
        assert_eq!(
            check_acl(&digest_only, perms::READ, &caller(&sup)),
            Err(ErrorCode::NoAuth)
        );
    }

    #[test]
    fn redaction() {
        let acl = vec![
            Acl::new(1, "digest", "user:hash="),
            Acl::new(1, "world", "anyone"),
        ];
        assert_eq!(
            redact(&acl),
            vec![
                Acl::new(1, "digest", "user:x"),
                Acl::new(1, "world", "anyone")
            ]
        );
    }
}
