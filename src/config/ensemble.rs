//! The quorum side of zoo.cfg: gathers the ensemble keys while `Config::parse` reads
//! the lines (`Staged::apply`), then judges them together (`build`): members inline
//! or from `dynamicConfigFile`, `dataDir/myid`, the reference's membership and
//! distributed-mode rules, our client address from our own `server.N`, and our role.
//! Pure: side files arrive through `ConfigFiles`. Runs once, on the main thread.
//!
//! ```text
//!  zoo.cfg entries ─ Staged::apply ─► Staged ──┐
//!  dynamicConfigFile, <cfg>.dynamic.next ──────┼─ build ─► Option<QuorumConfig>
//!  dataDir/myid ───────────────────────────────┘           (+ client address and
//!                                                            warnings on Config)
//! ```
//!
//! Facts: PEER-PROTOCOL.md §2; the reference's QuorumPeerConfig (parseProperties,
//! parseDynamicConfig, setupMyId, setupClientPort, setupPeerType, checkValidity).

use super::lex::Entry;
use super::quorum::{
    fold_members, is_hierarchical_key, parse_version, properties_bounded, server_id, PeerRole,
    QuorumConfig, QuorumServer, QuorumVerifier, HIERARCHICAL,
};
use super::{Config, ConfigError, ConfigFiles};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The quorum keys of one zoo.cfg, gathered in file order and judged together by
/// `build` once every line is read (the reference reads zoo.cfg as an unordered map,
/// so e.g. multiAddress.enabled applies to server lines above it).
#[derive(Debug)]
pub(super) struct Staged {
    /// By key as written; a repeated key replaces the earlier line.
    servers: BTreeMap<String, Entry>,
    hierarchical: Option<Entry>,
    version: Option<Entry>,
    init_limit: Option<u32>,
    sync_limit: Option<u32>,
    connect_to_learner_master_limit: u32,
    peer_type: Option<(usize, PeerRole)>,
    standalone_enabled: bool,
    reconfig_enabled: bool,
    quorum_listen_on_all_ips: bool,
    sync_enabled: bool,
    multi_address_enabled: bool,
    dynamic_config_file: Option<PathBuf>,
    /// clientPort / clientPortAddress were written in zoo.cfg (not defaults).
    pub(super) client_port_set: bool,
    pub(super) client_port_address_set: bool,
}

impl Default for Staged {
    fn default() -> Self {
        Staged {
            servers: BTreeMap::new(),
            hierarchical: None,
            version: None,
            init_limit: None,
            sync_limit: None,
            connect_to_learner_master_limit: 0,
            peer_type: None,
            standalone_enabled: true,
            reconfig_enabled: false,
            quorum_listen_on_all_ips: false,
            sync_enabled: true,
            multi_address_enabled: false,
            dynamic_config_file: None,
            client_port_set: false,
            client_port_address_set: false,
        }
    }
}

impl Staged {
    /// Takes the ensemble keys; `Ok(false)` for a key that is not one.
    pub(super) fn apply(&mut self, e: &Entry) -> Result<bool, ConfigError> {
        match e.key.as_str() {
            "initLimit" => self.init_limit = Some(e.num("expected ticks")?),
            "syncLimit" => self.sync_limit = Some(e.num("expected ticks")?),
            "connectToLearnerMasterLimit" => {
                self.connect_to_learner_master_limit = e.num("expected ticks")?
            }
            "electionAlg" => {
                if e.value.parse::<i32>().ok() != Some(3) {
                    return Err(e.bad("only 3 (fast leader election) is supported"));
                }
            }
            "peerType" => {
                let role = PeerRole::parse(&e.value)
                    .ok_or_else(|| e.bad("expected participant or observer"))?;
                self.peer_type = Some((e.line, role));
            }
            "standaloneEnabled" => self.standalone_enabled = e.parse_boolean()?,
            "reconfigEnabled" => self.reconfig_enabled = e.parse_boolean()?,
            "quorumListenOnAllIPs" => self.quorum_listen_on_all_ips = e.parse_boolean()?,
            "syncEnabled" => self.sync_enabled = e.parse_boolean()?,
            "multiAddress.enabled" => self.multi_address_enabled = e.parse_boolean()?,
            "dynamicConfigFile" => {
                if e.value.is_empty() {
                    return Err(e.bad("expected a file"));
                }
                self.dynamic_config_file = Some(PathBuf::from(&e.value));
            }
            "version" => self.version = Some(e.clone()),
            k if k.starts_with("server.") => {
                server_id(k).ok_or_else(|| e.bad("expected server.<id> with a numeric id"))?;
                self.servers.insert(k.to_string(), e.clone());
            }
            k if is_hierarchical_key(k) => {
                self.hierarchical.get_or_insert_with(|| e.clone());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The last phase of parsing: members (inline or from the dynamic file), myid, the
/// distributed-mode checks, our client address and role. `None` when zoo.cfg names
/// no ensemble.
pub(super) fn build(
    c: &mut Config,
    s: Staged,
    config_path: Option<&Path>,
    files: &dyn ConfigFiles,
) -> Result<Option<QuorumConfig>, ConfigError> {
    c.init_limit_ticks = s.init_limit.unwrap_or(c.init_limit_ticks);
    c.sync_limit_ticks = s.sync_limit.unwrap_or(c.sync_limit_ticks);
    let Some(members) = members(&s, config_path, files)? else {
        if !s.standalone_enabled {
            return Err(ConfigError::Invalid(
                "standaloneEnabled=false needs at least one participant server.N line".into(),
            ));
        }
        return Ok(None);
    };
    let warnings = members
        .current
        .check_membership(s.standalone_enabled)
        .map_err(ConfigError::Invalid)?;
    for w in warnings {
        c.warn(format!("config: {w}"));
    }
    let mut q = QuorumConfig {
        my_id: read_my_id(&c.data_dir, files)?,
        servers: members.current.servers,
        version: members.current.version,
        peer_type: PeerRole::Participant,
        standalone_enabled: s.standalone_enabled,
        reconfig_enabled: s.reconfig_enabled,
        quorum_listen_on_all_ips: s.quorum_listen_on_all_ips,
        sync_enabled: s.sync_enabled,
        multi_address_enabled: s.multi_address_enabled,
        connect_to_learner_master_limit_ticks: s.connect_to_learner_master_limit,
        dynamic_config_file: s.dynamic_config_file.clone(),
        last_seen: members.next,
        config_file: config_path.map(Path::to_path_buf),
    };
    adopt_client_address(c, &s, &q)?;
    q.peer_type = role_by_server_list(c, &s, &q);
    if q.is_distributed() {
        check_distributed(c, &s, &q)?;
    }
    Ok(Some(q))
}

/// The members in force and the last proposed ones (`.dynamic.next`).
struct Members {
    current: QuorumVerifier,
    next: Option<QuorumVerifier>,
}

fn members(
    s: &Staged,
    config_path: Option<&Path>,
    files: &dyn ConfigFiles,
) -> Result<Option<Members>, ConfigError> {
    let Some(path) = &s.dynamic_config_file else {
        let current = inline_members(s)?;
        return Ok(current.map(|current| Members {
            current,
            next: None,
        }));
    };
    refuse_static_members(s)?;
    let current = read_dynamic_file(path, s.multi_address_enabled, files)?;
    let next = read_next_file(config_path, files)?;
    Ok(Some(Members { current, next }))
}

/// With dynamicConfigFile set, the members must live in that file only.
fn refuse_static_members(s: &Staged) -> Result<(), ConfigError> {
    let first = s
        .servers
        .values()
        .chain(s.hierarchical.iter())
        .min_by_key(|e| e.line);
    match first {
        Some(e) => Err(ConfigError::Misplaced {
            line: e.line,
            key: e.key.clone(),
            why: "must be in the dynamic config file, as dynamicConfigFile is set".into(),
        }),
        None => Ok(()),
    }
}

/// `server.N` lines (and `version`) written in zoo.cfg itself.
fn inline_members(s: &Staged) -> Result<Option<QuorumVerifier>, ConfigError> {
    if let Some(e) = &s.hierarchical {
        return Err(ConfigError::Misplaced {
            line: e.line,
            key: e.key.clone(),
            why: HIERARCHICAL.into(),
        });
    }
    if s.servers.is_empty() {
        return Ok(None);
    }
    let mut qv = QuorumVerifier::default();
    let mut by_sid: BTreeMap<u64, &Entry> = BTreeMap::new();
    let mut lines: Vec<&Entry> = s.servers.values().collect();
    lines.sort_by_key(|e| e.line);
    for e in lines {
        let sid = server_id(&e.key).expect("Staged::apply checked the id");
        if let Some(first) = by_sid.insert(sid, e) {
            return Err(ConfigError::Misplaced {
                line: e.line,
                key: e.key.clone(),
                why: format!(
                    "names the same server as `{}` (line {})",
                    first.key, first.line
                ),
            });
        }
        let server = QuorumServer::parse(sid, &e.value, s.multi_address_enabled)
            .map_err(|why| e.bad(&why.to_string()))?;
        qv.servers.insert(sid, server);
    }
    if let Some(e) = &s.version {
        qv.version = parse_version(&e.value).map_err(|_| e.bad("expected a hex config version"))?;
    }
    Ok(Some(qv))
}

/// The dynamic config file: `server.N` lines only; the version is the file name's
/// hex suffix (`zoo.cfg.dynamic.100000000`), 0 without one.
fn read_dynamic_file(
    path: &Path,
    multi: bool,
    files: &dyn ConfigFiles,
) -> Result<QuorumVerifier, ConfigError> {
    let text = read_side_file(path, files)?.ok_or_else(|| ConfigError::Read {
        path: path.to_path_buf(),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    let file_err = |why: String| {
        ConfigError::Invalid(format!("dynamic config file {}: {why}", path.display()))
    };
    let line_err = |(line, why)| ConfigError::Dynamic {
        path: path.to_path_buf(),
        line,
        why,
    };
    let version = version_from_file_name(path).map_err(file_err)?;
    let entries = properties_bounded(&text).map_err(|e| file_err(e.to_string()))?;
    let mut qv = fold_members(&entries, multi, false).map_err(line_err)?;
    qv.version = version;
    Ok(qv)
}

/// `getVersionFromFilename`: the text after the last `.` of the path, read as hex;
/// 0 when that is not hex.
fn version_from_file_name(path: &Path) -> Result<i64, String> {
    let name = path.to_string_lossy();
    let Some(at) = name.rfind('.') else {
        return Ok(0);
    };
    let suffix = &name[at + 1..];
    match i64::from_str_radix(suffix, 16) {
        Ok(v) if v < 0 => Err(format!(
            "the file name's version suffix `{suffix}` is negative"
        )),
        Ok(v) => Ok(v),
        Err(_) => Ok(0),
    }
}

/// `<config file>.dynamic.next`, if there is one: read leniently, as the reference
/// reads it (members and `version`; other keys ignored).
fn read_next_file(
    config_path: Option<&Path>,
    files: &dyn ConfigFiles,
) -> Result<Option<QuorumVerifier>, ConfigError> {
    let Some(cfg) = config_path else {
        return Ok(None);
    };
    let mut name = cfg.as_os_str().to_os_string();
    name.push(".dynamic.next");
    let path = PathBuf::from(name);
    let Some(text) = read_side_file(&path, files)? else {
        return Ok(None);
    };
    let line_err = |(line, why)| ConfigError::Dynamic {
        path: path.clone(),
        line,
        why,
    };
    let entries = properties_bounded(&text).map_err(|e| {
        ConfigError::Invalid(format!("dynamic config file {}: {e}", path.display()))
    })?;
    let members: Vec<Entry> = entries
        .into_iter()
        .filter(|e| {
            e.key == "version" || e.key.starts_with("server.") || is_hierarchical_key(&e.key)
        })
        .collect();
    fold_members(&members, false, true)
        .map(Some)
        .map_err(line_err)
}

fn read_side_file(path: &Path, files: &dyn ConfigFiles) -> Result<Option<String>, ConfigError> {
    files.read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `dataDir/myid`: a decimal id on the first line (blanks around it ignored). `None`
/// when there is no file. Read only when zoo.cfg names an ensemble: the reference
/// also reads it for a plain standalone config and fails on a garbled one; corral
/// leaves a standalone dataDir's myid alone.
fn read_my_id(data_dir: &Path, files: &dyn ConfigFiles) -> Result<Option<u64>, ConfigError> {
    let path = data_dir.join("myid");
    let text = files.read(&path).map_err(|e| ConfigError::MyId {
        path: path.clone(),
        why: format!("cannot be read: {e}"),
    })?;
    let Some(text) = text else {
        return Ok(None);
    };
    let first = text.split(['\n', '\r']).next().unwrap_or("").trim();
    first.parse().map(Some).map_err(|_| ConfigError::MyId {
        path,
        why: format!("line 1: `{first}` is not a server id (expected a decimal number)"),
    })
}

/// `setupClientPort`: our own line's client address, when it has one, is where
/// clients connect; a different clientPort/clientPortAddress in zoo.cfg is an error.
fn adopt_client_address(c: &mut Config, s: &Staged, q: &QuorumConfig) -> Result<(), ConfigError> {
    let Some(me) = q.me() else {
        return Ok(());
    };
    let Some(client) = &me.client else {
        return Ok(());
    };
    let Some(ip) = client.ip() else {
        return Err(ConfigError::Invalid(format!(
            "server.{}: the client address `{client}` must be an IP address in corral \
             (host names are not supported there yet)",
            me.sid
        )));
    };
    if s.client_port_set {
        // As the reference: without clientPortAddress the static address is the
        // wildcard, and only the ports are compared.
        let static_ip = match s.client_port_address_set {
            true => c.client_port_address,
            false => IpAddr::from([0, 0, 0, 0]),
        };
        let differs = match static_ip.is_unspecified() {
            true => c.client_port != client.port,
            false => (static_ip, c.client_port) != (ip, client.port),
        };
        if differs {
            return Err(ConfigError::Invalid(format!(
                "client address for this server (id {}) is {} in clientPort/clientPortAddress \
                 but {client} in server.{}",
                me.sid,
                SocketAddr::new(static_ip, c.client_port),
                me.sid
            )));
        }
    }
    c.client_port = client.port;
    c.client_port_address = ip;
    Ok(())
}

/// `setupPeerType`: the server list decides; a disagreeing peerType is a warning.
fn role_by_server_list(c: &mut Config, s: &Staged, q: &QuorumConfig) -> PeerRole {
    let role = match q.me() {
        Some(me) if me.role == PeerRole::Observer => PeerRole::Observer,
        _ => PeerRole::Participant,
    };
    if let Some((line, said)) = s.peer_type.filter(|(_, said)| *said != role) {
        c.warn(format!(
            "config line {line}: peerType={said} disagrees with the server list, which \
             makes this server a {role}; using {role}"
        ));
    }
    role
}

/// `checkValidity` and the start-up check of `QuorumPeer`: a distributed config
/// needs initLimit, syncLimit and a myid that is in the server list.
fn check_distributed(c: &Config, s: &Staged, q: &QuorumConfig) -> Result<(), ConfigError> {
    for (key, set) in [("initLimit", s.init_limit), ("syncLimit", s.sync_limit)] {
        if set.unwrap_or(0) == 0 {
            return Err(ConfigError::Missing {
                key: key.into(),
                why: "a distributed config (server.N lines) needs it, in ticks".into(),
            });
        }
    }
    let path = c.data_dir.join("myid");
    let Some(id) = q.my_id else {
        return Err(ConfigError::MyId {
            path,
            why: "is missing: a distributed config needs this server's id there".into(),
        });
    };
    if !q.servers.contains_key(&id) {
        let list: Vec<String> = q.servers.keys().map(|s| format!("server.{s}")).collect();
        return Err(ConfigError::MyId {
            path,
            why: format!(
                "says my id is {id}, which is not in the peer list ({})",
                list.join(", ")
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_versions_are_hex_suffixes() {
        let v = |p: &str| version_from_file_name(Path::new(p));
        assert_eq!(v("/c/zoo.cfg.dynamic.100000000"), Ok(0x1_0000_0000));
        assert_eq!(v("/c/zoo.cfg.dynamic"), Ok(0));
        assert_eq!(v("dyn"), Ok(0));
        assert!(v("zoo.cfg.dynamic.-5").is_err());
    }
}
