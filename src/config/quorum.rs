//! Ensemble membership as ZooKeeper 3.8 writes it down: the `server.N` value, the
//! QuorumVerifier (members + version) and its text, and `QuorumConfig`, the quorum
//! half of a `Config`. Pure: no IO, no clock, no DNS (`HostPort::resolve` is for
//! callers). zoo.cfg parsing builds these on the main thread at start-up (see
//! `ensemble.rs`); any core that receives a peer's config text (NEWLEADER,
//! notifications, reconfig) reads it with `QuorumVerifier::parse_text` and sends
//! its own with `to_text`.
//!
//! ```text
//!  "host:qp:ep[:type][;[host:]port]" ─ QuorumServer::parse ─► QuorumServer
//!  peer's config text ─ lex::properties ─ parse_text ─► QuorumVerifier ─ to_text ─► peer
//! ```
//!
//! Facts: PEER-PROTOCOL.md §2 (server line, distributed rule, the QuorumVerifier
//! string) and §11 (config versions).

use super::lex::{self, Entry};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use thiserror::Error;

/// The largest config text accepted from a peer or a dynamic file. The election
/// frame limit (512 KiB) and jute.maxbuffer already bound what arrives; this bounds
/// the member map parse_text builds from it.
pub const QV_TEXT_BYTES_MAX: usize = 1 << 20;

/// What a member does in the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerRole {
    /// Votes in elections and in quorums.
    Participant,
    /// Learns committed txns, never votes.
    Observer,
}

impl PeerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerRole::Participant => "participant",
            PeerRole::Observer => "observer",
        }
    }

    /// Case-insensitive, surrounding blanks ignored, as the reference reads it.
    pub(super) fn parse(s: &str) -> Option<PeerRole> {
        match s.trim().to_ascii_lowercase().as_str() {
            "participant" => Some(PeerRole::Participant),
            "observer" => Some(PeerRole::Observer),
            _ => None,
        }
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host as configured (a name, or an IP literal in the form Java prints it:
/// IPv6 in full, unbracketed) and a port. Resolving a name is the caller's business.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// The host as an IP address when it is an IP literal (no DNS).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The first address the host resolves to (does DNS for a name).
    pub fn resolve(&self) -> std::io::Result<SocketAddr> {
        use std::net::ToSocketAddrs;
        if let Some(ip) = self.ip() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("host `{}` has no address", self.host),
                )
            })
    }
}

/// `host:port`, the host bracketed when it holds a `:` (as Java's
/// `delimitedHostString` does).
impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One `server.N` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumServer {
    pub sid: u64,
    /// Where followers and observers connect to this server when it leads.
    pub quorum: HostPort,
    /// Where this server takes election connections.
    pub election: HostPort,
    pub role: PeerRole,
    /// The client address the line gives (`;[host:]port`); `None` when the line has
    /// none (the server's own address then comes from clientPort/clientPortAddress).
    pub client: Option<HostPort>,
}

/// Why a `server.N` value (or the text holding it) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServerLineError {
    #[error(
        "expected host:quorumPort:electionPort[:participant|observer][;[clientHost:]clientPort]"
    )]
    Shape,
    #[error("`{0}` starts with `[` but has no matching `]:`")]
    Bracket(String),
    #[error("`{0}` has no port after the colon")]
    NoPort(String),
    #[error("the host is missing")]
    NoHost,
    #[error("the {which} port `{text}` is not a port 0-65535")]
    Port { which: &'static str, text: String },
    #[error("unknown server type `{0}` (expected participant or observer)")]
    Role(String),
    #[error("the quorum port and the election port must differ")]
    SamePorts,
    #[error(
        "multiple address feature is disabled, but multiple addresses were specified \
         (set multiAddress.enabled=true)"
    )]
    MultiAddressDisabled,
    #[error("several `|` addresses (multiAddress) are not supported yet in corral")]
    MultiAddressUnsupported,
}

impl QuorumServer {
    /// Reads `host:quorumPort:electionPort[:type][|...][;[clientHost:]clientPort]`
    /// (PEER-PROTOCOL.md §2). No DNS.
    pub fn parse(
        sid: u64,
        value: &str,
        multi_address_enabled: bool,
    ) -> Result<QuorumServer, ServerLineError> {
        let value = value.trim();
        let halves = java_split(value, ';');
        if halves.is_empty() || halves.len() > 2 {
            return Err(ServerLineError::Shape);
        }
        let client = match halves.get(1) {
            Some(c) => Some(parse_client(c)?),
            None => None,
        };
        let addresses = java_split(halves[0], '|');
        if addresses.len() > 1 {
            return Err(if multi_address_enabled {
                ServerLineError::MultiAddressUnsupported
            } else {
                ServerLineError::MultiAddressDisabled
            });
        }
        let (quorum, election, role) = parse_address(addresses.first().copied().unwrap_or(""))?;
        Ok(QuorumServer {
            sid,
            quorum,
            election,
            role: role.unwrap_or(PeerRole::Participant),
            client,
        })
    }
}

/// The value part of the server's QuorumVerifier line:
/// `host:qport:eport:type[;clientHost:clientPort]`.
impl fmt::Display for QuorumServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.quorum, self.election.port, self.role)?;
        if let Some(c) = &self.client {
            write!(f, ";{c}")?;
        }
        Ok(())
    }
}

/// `host:qport:eport[:type]` → the two addresses and the type, if given.
fn parse_address(s: &str) -> Result<(HostPort, HostPort, Option<PeerRole>), ServerLineError> {
    let parts = host_and_port(s)?;
    if !(3..=4).contains(&parts.len()) {
        return Err(ServerLineError::Shape);
    }
    let host = java_host_string(parts[0].trim())?;
    let quorum = parse_port("quorum", parts[1])?;
    let election = parse_port("election", parts[2])?;
    if quorum == election {
        return Err(ServerLineError::SamePorts);
    }
    let role = match parts.get(3) {
        Some(t) => Some(PeerRole::parse(t).ok_or_else(|| ServerLineError::Role(t.to_string()))?),
        None => None,
    };
    let at = |port| HostPort {
        host: host.clone(),
        port,
    };
    Ok((at(quorum), at(election), role))
}

/// `port` (host 0.0.0.0) or `host:port`.
fn parse_client(s: &str) -> Result<HostPort, ServerLineError> {
    let parts = host_and_port(s.trim())?;
    let (host, port) = match parts.as_slice() {
        [port] => ("0.0.0.0", *port),
        [host, port] => (*host, *port),
        _ => return Err(ServerLineError::Shape),
    };
    Ok(HostPort {
        host: java_host_string(host.trim())?,
        port: parse_port("client", port)?,
    })
}

fn parse_port(which: &'static str, text: &str) -> Result<u16, ServerLineError> {
    text.trim().parse().map_err(|_| ServerLineError::Port {
        which,
        text: text.to_string(),
    })
}

/// Splits `host:port[:...]`, where the host may be an IPv6 literal in `[...]`.
fn host_and_port(s: &str) -> Result<Vec<&str>, ServerLineError> {
    let Some(inner) = s.strip_prefix('[') else {
        return Ok(java_split(s, ':'));
    };
    let Some(close) = inner.find(']') else {
        return Err(ServerLineError::Bracket(s.to_string()));
    };
    let (host, rest) = (&inner[..close], &inner[close + 1..]);
    if rest.is_empty() {
        return Ok(vec![host]);
    }
    let Some(ports) = rest.strip_prefix(':').filter(|p| !p.is_empty()) else {
        return Err(ServerLineError::NoPort(s.to_string()));
    };
    let mut parts = vec![host];
    parts.extend(java_split(ports, ':'));
    Ok(parts)
}

/// `String.split` as Java does it for a one-char pattern: trailing empty pieces
/// are dropped (so `"a:b:"` is two pieces and `";"` none).
fn java_split(s: &str, sep: char) -> Vec<&str> {
    if s.is_empty() {
        return vec![""];
    }
    let mut parts: Vec<&str> = s.split(sep).collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    parts
}

/// The host the way `InetSocketAddress.getHostString` shows it: a name as given; an
/// IPv6 literal in Java's full form (`0:0:0:0:0:0:0:1`, zone kept); an IPv4-mapped
/// IPv6 literal as IPv4.
fn java_host_string(host: &str) -> Result<String, ServerLineError> {
    if host.is_empty() {
        return Err(ServerLineError::NoHost);
    }
    let (addr, zone) = match host.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (host, None),
    };
    let Ok(v6) = addr.parse::<Ipv6Addr>() else {
        return Ok(host.to_string());
    };
    if let (Some(v4), None) = (v6.to_ipv4_mapped(), zone) {
        return Ok(v4.to_string());
    }
    let groups: Vec<String> = v6.segments().iter().map(|g| format!("{g:x}")).collect();
    let mut s = groups.join(":");
    if let Some(z) = zone {
        s.push('%');
        s.push_str(z);
    }
    Ok(s)
}

/// A configuration of the ensemble: its members and its version. This is what
/// peers exchange as text (PEER-PROTOCOL.md §2, "The QuorumVerifier string").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuorumVerifier {
    pub servers: BTreeMap<u64, QuorumServer>,
    /// 0 for the initial config; the zxid of the txn that made it otherwise (§2).
    pub version: i64,
}

/// Why a config text (from a peer, a dynamic file) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuorumTextError {
    #[error("config text is {len} bytes, more than {QV_TEXT_BYTES_MAX}")]
    TooLong { len: usize },
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
}

impl QuorumVerifier {
    /// The exact text the reference sends: one `server.N=...` line per member in
    /// ascending sid order, then `version=<lowercase hex>`, no trailing newline.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (sid, m) in &self.servers {
            s.push_str(&format!("server.{sid}={m}\n"));
        }
        // `{:x}` of an i64 is two's complement, as Java's Long.toHexString.
        s.push_str(&format!("version={:x}", self.version));
        s
    }

    /// Reads config text as the reference's `configFromString` does: Java properties,
    /// any order; `server.N` and `version` keys only (group/weight: hierarchical
    /// quorums, not supported yet). Membership rules are `check_membership`'s.
    pub fn parse_text(text: &str) -> Result<QuorumVerifier, QuorumTextError> {
        let entries = properties_bounded(text)?;
        fold_members(&entries, false, true)
            .map_err(|(line, why)| QuorumTextError::Line { line, why })
    }

    pub fn voters(&self) -> impl Iterator<Item = &QuorumServer> {
        self.servers
            .values()
            .filter(|s| s.role == PeerRole::Participant)
    }

    pub fn observers(&self) -> impl Iterator<Item = &QuorumServer> {
        self.servers
            .values()
            .filter(|s| s.role == PeerRole::Observer)
    }

    /// `QuorumMaj.containsQuorum`: more than half of the voters are in `acks`.
    pub fn contains_quorum(&self, acks: &BTreeSet<u64>) -> bool {
        let voters = self.voters().count();
        let in_set = self.voters().filter(|s| acks.contains(&s.sid)).count();
        in_set > voters / 2
    }

    /// `QuorumMaj.equals`: the same version, or else the same members.
    pub fn same_config(&self, other: &QuorumVerifier) -> bool {
        self.version == other.version || self.servers == other.servers
    }

    /// The reference's membership rules (`parseDynamicConfig`). On success, the
    /// warnings it would log.
    pub fn check_membership(&self, standalone_enabled: bool) -> Result<Vec<String>, String> {
        let voters = self.voters().count();
        let observers = self.observers().count();
        let mut warnings = Vec::new();
        if voters == 0 {
            if !standalone_enabled {
                return Err("standaloneEnabled=false needs at least one participant \
                            server.N line"
                    .into());
            }
            if observers > 0 {
                return Err("observers without participants is an invalid configuration".into());
            }
        } else if voters == 1 && standalone_enabled {
            if observers > 0 {
                return Err(
                    "observers without a quorum is an invalid configuration: with \
                            standaloneEnabled=true observers need at least 2 participants"
                        .into(),
                );
            }
            warnings.push(
                "only one participant server.N line and standaloneEnabled=true: running \
                 standalone, as the reference does"
                    .into(),
            );
        } else if voters <= 2 {
            warnings.push(
                "no server failure will be tolerated: you need at least 3 participants".into(),
            );
        } else if voters.is_multiple_of(2) {
            warnings
                .push("non-optimal configuration: consider an odd number of participants".into());
        }
        Ok(warnings)
    }
}

pub(super) fn properties_bounded(text: &str) -> Result<Vec<Entry>, QuorumTextError> {
    if text.len() > QV_TEXT_BYTES_MAX {
        return Err(QuorumTextError::TooLong { len: text.len() });
    }
    lex::properties(text).map_err(|e| QuorumTextError::Line {
        line: e.line,
        why: "malformed \\uxxxx escape".into(),
    })
}

/// `server.N` → N.
pub(super) fn server_id(key: &str) -> Option<u64> {
    key.strip_prefix("server.")?.parse().ok()
}

/// The reference takes every key starting `group` or `weight` for a hierarchical
/// quorum's.
pub(super) fn is_hierarchical_key(key: &str) -> bool {
    key.starts_with("group") || key.starts_with("weight")
}

pub(super) const HIERARCHICAL: &str =
    "hierarchical quorums (group/weight lines) are not supported yet";

/// In a dynamic file or config text, why a key other than `server.*` is refused.
pub(super) fn dynamic_key_refusal(key: &str) -> Option<String> {
    if is_hierarchical_key(key) {
        Some(format!("`{key}`: {HIERARCHICAL}"))
    } else if !key.starts_with("server.") {
        Some(format!("unknown key `{key}`"))
    } else {
        None
    }
}

/// Folds the entries of a dynamic file or a peer's text into a verifier:
/// `server.N` keys, and `version` where `version_allowed`; any other key is refused.
/// A key repeated with the same spelling replaces the earlier one (properties
/// semantics); the same id under two spellings (`server.1`, `server.01`) is refused.
/// Errors carry the line.
pub(super) fn fold_members(
    entries: &[Entry],
    multi_address_enabled: bool,
    version_allowed: bool,
) -> Result<QuorumVerifier, (usize, String)> {
    let mut qv = QuorumVerifier::default();
    let mut spelling: BTreeMap<u64, &str> = BTreeMap::new();
    for e in entries {
        let at = |why: String| (e.line, why);
        if e.key == "version" {
            if !version_allowed {
                return Err(at("must not contain `version=`: the version is the file \
                               name's hex suffix"
                    .into()));
            }
            qv.version = parse_version(&e.value).map_err(at)?;
            continue;
        }
        if let Some(why) = dynamic_key_refusal(&e.key) {
            return Err(at(why));
        }
        let sid = server_id(&e.key).ok_or_else(|| {
            at(format!(
                "`{}`: expected server.<id> with a numeric id",
                e.key
            ))
        })?;
        if let Some(first) = spelling.insert(sid, &e.key).filter(|f| *f != e.key) {
            return Err(at(format!(
                "`{}` names the same server as `{first}`",
                e.key
            )));
        }
        let server = QuorumServer::parse(sid, &e.value, multi_address_enabled)
            .map_err(|why| at(format!("`{}` has a bad value `{}`: {why}", e.key, e.value)))?;
        qv.servers.insert(sid, server);
    }
    Ok(qv)
}

/// A config version: hex, as `Long.parseLong(v, 16)` reads it.
pub(super) fn parse_version(v: &str) -> Result<i64, String> {
    i64::from_str_radix(v, 16)
        .map_err(|_| format!("`version` has a bad value `{v}`: expected a hex config version"))
}

/// The quorum setup of a Config (`Config::quorum`): who is in the ensemble, who we
/// are, and the ensemble keys of zoo.cfg. `None` on a Config with no `server.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// From `dataDir/myid`; always `Some` when the config is distributed.
    pub my_id: Option<u64>,
    /// Every member, participants and observers.
    pub servers: BTreeMap<u64, QuorumServer>,
    /// The config version (hex in text): the dynamic file's name suffix, or 0.
    pub version: i64,
    /// Our role: the server list's, whatever `peerType` says.
    pub peer_type: PeerRole,
    /// standaloneEnabled (default true).
    pub standalone_enabled: bool,
    /// reconfigEnabled (default false).
    pub reconfig_enabled: bool,
    /// quorumListenOnAllIPs (default false): bind the quorum and election ports on
    /// every address rather than the configured host.
    pub quorum_listen_on_all_ips: bool,
    /// syncEnabled (default true): observers log txns to disk.
    pub sync_enabled: bool,
    /// multiAddress.enabled (default false).
    pub multi_address_enabled: bool,
    /// connectToLearnerMasterLimit in ticks; 0 (the default) means initLimit.
    pub connect_to_learner_master_limit_ticks: u32,
    /// dynamicConfigFile, when the members came from one.
    pub dynamic_config_file: Option<PathBuf>,
    /// `<config file>.dynamic.next`: the last proposed, not yet committed config.
    pub last_seen: Option<QuorumVerifier>,
    /// The zoo.cfg these came from (`Config::load`'s path): where reconfig writes
    /// its files (`config::dynamic`). `None` for text parsed without a file.
    pub config_file: Option<PathBuf>,
}

impl QuorumConfig {
    /// The reference's `isDistributed`: standaloneEnabled=false, or more than one
    /// participant.
    pub fn is_distributed(&self) -> bool {
        !self.standalone_enabled
            || self
                .servers
                .values()
                .filter(|s| s.role == PeerRole::Participant)
                .count()
                > 1
    }

    /// Our own `server.N` entry.
    pub fn me(&self) -> Option<&QuorumServer> {
        self.servers.get(&self.my_id?)
    }

    /// Members and version as the verifier peers exchange.
    pub fn verifier(&self) -> QuorumVerifier {
        QuorumVerifier {
            servers: self.servers.clone(),
            version: self.version,
        }
    }

    /// The QuorumVerifier text of this config (see `QuorumVerifier::to_text`).
    pub fn to_text(&self) -> String {
        self.verifier().to_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(v: &str) -> Result<QuorumServer, ServerLineError> {
        QuorumServer::parse(1, v, false)
    }

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn ipv4_line_without_client_part() {
        let s = server("10.0.0.1:2888:3888").unwrap();
        assert_eq!(s.quorum, hp("10.0.0.1", 2888));
        assert_eq!(s.election, hp("10.0.0.1", 3888));
        assert_eq!(s.role, PeerRole::Participant);
        assert_eq!(s.client, None);
        assert_eq!(s.to_string(), "10.0.0.1:2888:3888:participant");
    }

    #[test]
    fn host_names_with_type_and_client_parts() {
        let s = server("zk1.example:2888:3888:OBSERVER;2181").unwrap();
        assert_eq!(s.quorum.host, "zk1.example");
        assert_eq!(s.role, PeerRole::Observer);
        assert_eq!(s.client, Some(hp("0.0.0.0", 2181)));
        let s = server("zk1:2888:3888:Participant;10.1.1.1:2181").unwrap();
        assert_eq!(s.role, PeerRole::Participant);
        assert_eq!(s.client, Some(hp("10.1.1.1", 2181)));
        assert_eq!(s.to_string(), "zk1:2888:3888:participant;10.1.1.1:2181");
        // Java's split drops trailing empty pieces.
        assert_eq!(server("h:1:2:").unwrap().election.port, 2);
        assert_eq!(server("h:1:2;").unwrap().client, None);
    }

    #[test]
    fn ipv6_literals_in_brackets_print_as_java_prints_them() {
        let s = server("[::1]:2888:3888:observer;[fe80::1%eth0]:2181").unwrap();
        assert_eq!(s.quorum, hp("0:0:0:0:0:0:0:1", 2888));
        assert_eq!(s.client, Some(hp("fe80:0:0:0:0:0:0:1%eth0", 2181)));
        assert_eq!(
            s.to_string(),
            "[0:0:0:0:0:0:0:1]:2888:3888:observer;[fe80:0:0:0:0:0:0:1%eth0]:2181"
        );
        assert_eq!(
            server("[::ffff:10.0.0.1]:1:2").unwrap().quorum.host,
            "10.0.0.1"
        );
        assert_eq!(
            server("[::1:2888:3888").unwrap_err(),
            ServerLineError::Bracket("[::1:2888:3888".into())
        );
        assert_eq!(
            server("[::1]:").unwrap_err(),
            ServerLineError::NoPort("[::1]:".into())
        );
        // Unbracketed IPv6 has too many pieces.
        assert_eq!(server("::1:2888:3888").unwrap_err(), ServerLineError::Shape);
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert_eq!(server("h:2888").unwrap_err(), ServerLineError::Shape);
        assert_eq!(
            server("h:1:2:observer:x").unwrap_err(),
            ServerLineError::Shape
        );
        assert_eq!(server("h:1:2;3;4").unwrap_err(), ServerLineError::Shape);
        assert_eq!(server(";").unwrap_err(), ServerLineError::Shape);
        assert_eq!(
            server("h:2888:2888").unwrap_err(),
            ServerLineError::SamePorts
        );
        assert_eq!(
            server("h:2888:3888:voter").unwrap_err(),
            ServerLineError::Role("voter".into())
        );
        assert_eq!(
            server("h:x:3888").unwrap_err(),
            ServerLineError::Port {
                which: "quorum",
                text: "x".into()
            }
        );
        assert_eq!(
            server("h:1:70000").unwrap_err(),
            ServerLineError::Port {
                which: "election",
                text: "70000".into()
            }
        );
        assert_eq!(
            server("h:1:2;a:b:c").unwrap_err(),
            ServerLineError::Shape,
            "client part with two colons"
        );
        assert_eq!(
            server("h:1:2;host:").unwrap_err(),
            ServerLineError::Port {
                which: "client",
                text: "host".into()
            },
            "`host:` splits to one piece: a port"
        );
        assert_eq!(server(":1:2").unwrap_err(), ServerLineError::NoHost);
    }

    #[test]
    fn several_addresses_need_multi_address_and_are_then_refused() {
        let v = "a:1:2|b:1:2";
        assert_eq!(
            QuorumServer::parse(1, v, false).unwrap_err(),
            ServerLineError::MultiAddressDisabled
        );
        assert_eq!(
            QuorumServer::parse(1, v, true).unwrap_err(),
            ServerLineError::MultiAddressUnsupported
        );
    }

    /// The [cap] sample of PEER-PROTOCOL.md §2; 0xba = 186 bytes in the captured
    /// notification (§13), which this text's length matches.
    const CAP: &str = "server.1=127.0.0.1:23192:23202:participant;127.0.0.1:23181\n\
                       server.2=127.0.0.1:23193:23203:participant;127.0.0.1:23182\n\
                       server.3=127.0.0.1:23194:23204:participant;127.0.0.1:23183\n\
                       version=0";

    #[test]
    fn the_captured_text_round_trips_byte_for_byte() {
        assert_eq!(CAP.len(), 0xba);
        let qv = QuorumVerifier::parse_text(CAP).unwrap();
        assert_eq!(qv.servers.len(), 3);
        assert_eq!(qv.version, 0);
        assert_eq!(qv.servers[&2].client, Some(hp("127.0.0.1", 23182)));
        assert_eq!(qv.to_text(), CAP);
    }

    #[test]
    fn text_is_read_as_properties_in_any_order() {
        let t = "# from a peer\nversion = 100000000\nserver.3 : h3:1:2:observer\n\
                 server.1=h1:1:2\n\nserver.2 h2:1:2:participant\n";
        let qv = QuorumVerifier::parse_text(t).unwrap();
        assert_eq!(qv.version, 0x1_0000_0000);
        assert_eq!(
            qv.to_text(),
            "server.1=h1:1:2:participant\nserver.2=h2:1:2:participant\n\
             server.3=h3:1:2:observer\nversion=100000000"
        );
        // Without a version line the version is 0; a negative version prints as Java.
        let mut qv = QuorumVerifier::parse_text("server.1=h:1:2").unwrap();
        assert_eq!(qv.version, 0);
        qv.version = -1;
        assert!(qv.to_text().ends_with("version=ffffffffffffffff"));
    }

    #[test]
    fn text_errors_name_the_line() {
        let e = |t: &str| QuorumVerifier::parse_text(t).unwrap_err().to_string();
        assert_eq!(e("server.1=h:1:2\nfoo=1"), "line 2: unknown key `foo`");
        assert_eq!(
            e("group.1=1:2"),
            "line 1: `group.1`: hierarchical quorums (group/weight lines) are not supported yet"
        );
        assert_eq!(
            e("server.x=h:1:2"),
            "line 1: `server.x`: expected server.<id> with a numeric id"
        );
        assert_eq!(
            e("server.1=h:1:1"),
            "line 1: `server.1` has a bad value `h:1:1`: the quorum port and the election \
             port must differ"
        );
        assert_eq!(
            e("version=0x1"),
            "line 1: `version` has a bad value `0x1`: expected a hex config version"
        );
        let big = "#".repeat(QV_TEXT_BYTES_MAX + 1);
        assert_eq!(
            QuorumVerifier::parse_text(&big).unwrap_err(),
            QuorumTextError::TooLong { len: big.len() }
        );
    }

    #[test]
    fn quorum_and_equality_rules_of_quorum_maj() {
        let qv = QuorumVerifier::parse_text(
            "server.1=h:1:2\nserver.2=h:3:4\nserver.3=h:5:6\nserver.4=h:7:8:observer",
        )
        .unwrap();
        let set = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<u64>>();
        assert!(!qv.contains_quorum(&set(&[1])));
        assert!(!qv.contains_quorum(&set(&[1, 4])), "observers do not count");
        assert!(qv.contains_quorum(&set(&[1, 3])));
        let mut other = qv.clone();
        other.servers.remove(&4);
        assert!(qv.same_config(&other), "same version");
        other.version = 7;
        assert!(!qv.same_config(&other));
    }

    #[test]
    fn membership_rules() {
        let qv = |t: &str| QuorumVerifier::parse_text(t).unwrap();
        let obs_only = qv("server.1=h:1:2:observer");
        assert!(obs_only
            .check_membership(true)
            .unwrap_err()
            .contains("without participants"));
        assert!(obs_only
            .check_membership(false)
            .unwrap_err()
            .contains("standaloneEnabled"));
        let one_plus_obs = qv("server.1=h:1:2\nserver.2=h:3:4:observer");
        assert!(one_plus_obs
            .check_membership(true)
            .unwrap_err()
            .contains("at least 2"));
        assert!(one_plus_obs.check_membership(false).is_ok());
        assert_eq!(
            qv("server.1=h:1:2").check_membership(true).unwrap().len(),
            1
        );
        assert!(qv("server.1=h:1:2\nserver.2=h:3:4\nserver.3=h:5:6")
            .check_membership(true)
            .unwrap()
            .is_empty());
        let four = qv("server.1=h:1:2\nserver.2=h:3:4\nserver.3=h:5:6\nserver.4=h:7:8");
        assert!(four.check_membership(true).unwrap()[0].contains("odd number"));
    }

    fn arb_server() -> impl proptest::strategy::Strategy<Value = QuorumServer> {
        use proptest::prelude::*;
        let host = prop_oneof![
            "[a-z][a-z0-9.-]{0,12}",
            any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
            // Java's full IPv6 form; a non-zero first group keeps it from being an
            // IPv4-mapped address (which prints as IPv4).
            any::<[u16; 8]>().prop_map(|mut g| {
                g[0] |= 1;
                g.iter()
                    .map(|x| format!("{x:x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }),
        ];
        (
            host.clone(),
            0u16..u16::MAX,
            any::<bool>(),
            proptest::option::of((host, any::<u16>())),
        )
            .prop_map(|(h, q, observer, client)| QuorumServer {
                sid: 0,
                quorum: hp(&h, q),
                election: hp(&h, q + 1),
                role: if observer {
                    PeerRole::Observer
                } else {
                    PeerRole::Participant
                },
                client: client.map(|(ch, cp)| hp(&ch, cp)),
            })
    }

    proptest::proptest! {
        #[test]
        fn text_round_trips(
            servers in proptest::collection::btree_map(0u64..1000, arb_server(), 0..8),
            version in 0..=i64::MAX,
        ) {
            let servers = servers
                .into_iter()
                .map(|(sid, s)| (sid, QuorumServer { sid, ..s }))
                .collect();
            let qv = QuorumVerifier { servers, version };
            proptest::prop_assert_eq!(QuorumVerifier::parse_text(&qv.to_text()), Ok(qv));
        }

        #[test]
        fn hostile_text_never_panics(t in "\\PC{0,200}") {
            let _ = QuorumVerifier::parse_text(&t);
        }

        #[test]
        fn hostile_server_lines_never_panic(t in "[\\[\\]:;|0-9a-z%.]{0,40}") {
            let _ = QuorumServer::parse(1, &t, true);
        }
    }
}
