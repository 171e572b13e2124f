//! The AdminServer's commands: names, aliases and JSON answers as the reference's
//! 3.8 `Commands` (keys and shapes taken from its command classes and checked
//! against a running reference). Pure: a command renders a [`View`] into JSON; the
//! admin thread ([`super::http`]) gathers the view and performs the one side effect
//! a command has (the stat resets) by message to the cores.
//!
//! ```text
//!  GET <commandURL>/<name> ─► find(name) ─► (gather View if needs_reports) ─► respond
//!                              └─ none: {"command": name, "error": "Unknown command: name"}
//! ```
//!
//! Commands of the reference left out, as they have no meaning in corral:
//! `get_trace_mask` / `set_trace_mask` (corral has no trace mask).

use super::{dir_size, View, NOT_SERVING, VERSION};
use crate::server::msg::ConnSummary;
use crate::server::stats::{Mode, SizeSnapshot};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering::Relaxed;

/// What running a command asks the cores to do besides answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// `connection_stat_reset`: every shard resets its connection counters.
    ResetConnections,
    /// `stat_reset`: the server's counters.
    ResetServerStats,
}

/// One command: its names (the primary first), whether it answers only while the
/// server serves, whether it needs reports from the cores, and its body.
pub struct Command {
    pub names: &'static [&'static str],
    pub server_required: bool,
    pub needs_reports: bool,
    pub effect: Effect,
    body: fn(&View) -> Map<String, Value>,
}

impl Command {
    pub fn primary(&self) -> &'static str {
        self.names[0]
    }
}

const fn cmd(
    names: &'static [&'static str],
    server_required: bool,
    needs_reports: bool,
    body: fn(&View) -> Map<String, Value>,
) -> Command {
    Command {
        names,
        server_required,
        needs_reports,
        effect: Effect::None,
        body,
    }
}

/// Every command, as registered by the reference's `Commands`.
pub static COMMANDS: &[Command] = &[
    Command {
        effect: Effect::ResetConnections,
        ..cmd(&["connection_stat_reset", "crst"], true, false, empty)
    },
    cmd(&["configuration", "conf", "config"], true, false, conf),
    cmd(&["connections", "cons"], true, true, cons),
    cmd(&["hash"], true, true, hash),
    cmd(&["dirs"], true, false, dirs),
    cmd(&["dump"], true, true, dump),
    cmd(&["environment", "env", "envi"], false, false, environment),
    cmd(
        &["initial_configuration", "icfg"],
        true,
        false,
        initial_configuration,
    ),
    cmd(&["is_read_only", "isro"], true, false, is_read_only),
    cmd(&["last_snapshot", "lsnp"], true, false, last_snapshot),
    cmd(&["leader", "lead"], true, true, leader),
    cmd(&["monitor", "mntr"], false, true, monitor),
    cmd(
        &["observer_connection_stat_reset", "orst"],
        true,
        false,
        empty,
    ),
    cmd(&["ruok"], true, false, empty),
    cmd(&["server_stats", "srvr"], true, true, server_stats),
    cmd(&["stats", "stat"], true, true, stats),
    Command {
        effect: Effect::ResetServerStats,
        ..cmd(&["stat_reset", "srst"], true, false, empty)
    },
    cmd(&["observers", "obsr"], true, true, observers),
    cmd(
        &["system_properties", "sysp"],
        false,
        false,
        system_properties,
    ),
    cmd(&["voting_view"], true, true, voting_view),
    cmd(&["watches", "wchc"], true, true, watches),
    cmd(&["watches_by_path", "wchp"], true, true, watches_by_path),
    cmd(&["watch_summary", "wchs"], true, true, watch_summary),
    cmd(&["zabstate"], false, true, zabstate),
];

/// The command a name or alias stands for.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.names.contains(&name))
}

/// Primary names, sorted (the command list's order).
pub fn primary_names() -> Vec<&'static str> {
    let mut v: Vec<_> = COMMANDS.iter().map(Command::primary).collect();
    v.sort_unstable();
    v
}

/// The reference's command list page: one link per primary name.
pub fn links_page(command_url: &str) -> String {
    primary_names()
        .into_iter()
        .map(|n| format!("<a href=\"{command_url}/{n}\">{n}</a>\n<br/>\n"))
        .collect()
}

/// The whole JSON answer to `name` (which the caller has looked up with [`find`],
/// or not: an unknown name answers the reference's error).
pub fn respond(name: &str, v: &View) -> Value {
    let error = |msg: String| {
        let mut m = Map::new();
        m.insert("command".into(), json!(name));
        m.insert("error".into(), json!(msg));
        Value::Object(m)
    };
    let Some(c) = find(name) else {
        return error(format!("Unknown command: {name}"));
    };
    if c.server_required && !v.stats.serving() {
        return error(NOT_SERVING.into());
    }
    let mut m = (c.body)(v);
    // As the reference: an alias answers under the command's primary name.
    m.insert("command".into(), json!(c.primary()));
    if !m.contains_key("error") {
        m.insert("error".into(), Value::Null);
    }
    Value::Object(m)
}

fn obj(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn empty(_: &View) -> Map<String, Value> {
    Map::new()
}

fn conf(v: &View) -> Map<String, Value> {
    let c = v.cfg;
    let server_id = c.quorum.as_ref().and_then(|q| q.my_id).unwrap_or(0);
    obj(vec![
        ("client_port", json!(c.client_port)),
        ("data_dir", json!(c.data_dir.display().to_string())),
        ("data_log_dir", json!(c.log_dir().display().to_string())),
        ("tick_time", json!(c.tick_time_ms)),
        ("max_client_cnxns", json!(c.max_client_cnxns)),
        ("min_session_timeout", json!(c.min_session_timeout())),
        ("max_session_timeout", json!(c.max_session_timeout())),
        ("server_id", json!(server_id)),
        // clientPortListenBacklog has no effect in corral: the reference's "unset".
        ("client_port_listen_backlog", json!(-1)),
    ])
}

fn connection(c: &ConnSummary, full: bool) -> Value {
    let mut m = obj(vec![
        ("remote_socket_address", json!(c.peer)),
        ("interest_ops", json!(1)),
        ("outstanding_requests", json!(c.queued)),
        ("packets_received", json!(c.received)),
        ("packets_sent", json!(c.sent)),
    ]);
    if full {
        for (k, v) in [
            ("session_id", json!(c.session_id)),
            ("last_operation", json!(c.last_operation)),
            ("established", json!(c.established_ms)),
            ("session_timeout", json!(c.timeout_ms)),
            ("last_cxid", json!(c.last_cxid)),
            ("last_zxid", json!(c.last_zxid)),
            ("last_response_time", json!(c.last_response_ms)),
            ("last_latency", json!(c.last_latency_ms)),
            ("min_latency", json!(c.min_latency_ms)),
            ("avg_latency", json!(c.avg_latency_ms)),
            ("max_latency", json!(c.max_latency_ms)),
        ] {
            m.insert(k.into(), v);
        }
    }
    Value::Object(m)
}

fn connection_list(v: &View, full: bool) -> Value {
    let all: Vec<Value> = v
        .shards
        .iter()
        .flat_map(|s| s.connections.iter())
        .map(|c| connection(c, full))
        .collect();
    Value::Array(all)
}

fn cons(v: &View) -> Map<String, Value> {
    // One list: corral's shards serve plaintext and TLS clients alike.
    obj(vec![
        ("connections", connection_list(v, true)),
        ("secure_connections", json!([])),
    ])
}

fn hash(v: &View) -> Map<String, Value> {
    let log = v.sequencer.as_ref().map_or(&[][..], |s| &s.digest_log[..]);
    let digests: Vec<Value> = log
        .iter()
        .map(|(zxid, digest)| json!({"zxid": zxid, "digestVersion": 2, "digest": digest}))
        .collect();
    obj(vec![("digests", Value::Array(digests))])
}

fn dirs(v: &View) -> Map<String, Value> {
    obj(vec![
        ("datadir_size", json!(dir_size(&v.cfg.data_dir))),
        ("logdir_size", json!(dir_size(v.cfg.log_dir()))),
    ])
}

fn dump(v: &View) -> Map<String, Value> {
    let seq = v.sequencer.clone().unwrap_or_default();
    let mut by_expiry: Map<String, Value> = Map::new();
    for (at, id) in &seq.expiries {
        let ids = by_expiry.entry(at.to_string()).or_insert_with(|| json!([]));
        if let Value::Array(a) = ids {
            a.push(json!(id));
        }
    }
    let ephemerals: Map<String, Value> = seq
        .sessions
        .iter()
        .filter(|s| !s.2.is_empty())
        .map(|(id, _, paths)| (id.to_string(), json!(paths)))
        .collect();
    obj(vec![
        ("expiry_time_to_session_ids", Value::Object(by_expiry)),
        ("session_id_to_ephemeral_paths", Value::Object(ephemerals)),
    ])
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn os_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn user_name() -> String {
    std::env::var("USER").unwrap_or_default()
}

fn user_dir() -> String {
    std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default()
}

/// The reference's `Environment.list()` where corral has the same fact (no JVM).
fn environment(_: &View) -> Map<String, Value> {
    obj(vec![
        ("zookeeper.version", json!(VERSION)),
        ("host.name", json!(host_name())),
        ("os.name", json!("Linux")),
        ("os.arch", json!(std::env::consts::ARCH)),
        ("os.version", json!(os_release())),
        ("user.name", json!(user_name())),
        (
            "user.home",
            json!(std::env::var("HOME").unwrap_or_default()),
        ),
        ("user.dir", json!(user_dir())),
    ])
}

fn initial_configuration(v: &View) -> Map<String, Value> {
    obj(vec![("initial_configuration", json!(v.cfg.initial_text))])
}

fn is_read_only(v: &View) -> Map<String, Value> {
    obj(vec![("read_only", json!(v.stats.mode() == Mode::ReadOnly))])
}

/// The newest `snapshot.<zxid>` in the data dir and its time (seconds), as the
/// reference's `getLastSnapshotInfo`; `-1`s when there is none.
fn last_snapshot(v: &View) -> Map<String, Value> {
    let newest = std::fs::read_dir(&v.cfg.data_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let zxid = u64::from_str_radix(name.strip_prefix("snapshot.")?, 16).ok()?;
            let secs = e
                .metadata()
                .ok()?
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            Some((zxid, secs as i64))
        })
        .max();
    let (zxid, ts) = newest.unwrap_or((u64::MAX, -1));
    obj(vec![
        ("zxid", json!(format!("{zxid:x}"))),
        ("timestamp", json!(ts)),
    ])
}

fn leader(v: &View) -> Map<String, Value> {
    let Some(q) = v.sequencer.as_ref().and_then(|s| s.quorum.as_ref()) else {
        return obj(vec![("error", json!("server is not initialized"))]);
    };
    use crate::zab::Role;
    let (is_leader, id) = match q.role {
        Role::Leading { .. } => (true, Some(q.my_id)),
        Role::Following { leader, .. } | Role::Observing { leader, .. } => (false, Some(leader)),
        Role::Looking => (false, None),
    };
    let ip = id
        .and_then(|id| q.servers.iter().find(|s| s.sid == id))
        .map(|s| s.quorum.host.clone())
        .unwrap_or_default();
    obj(vec![
        ("is_leader", json!(is_leader)),
        ("leader_id", json!(id.map_or(-1, |i| i as i64))),
        ("leader_ip", json!(ip)),
    ])
}

fn monitor(v: &View) -> Map<String, Value> {
    use super::MonitorValue;
    v.monitor_values()
        .into_iter()
        .map(|(k, val)| {
            let j = match val {
                MonitorValue::Str(s) => json!(s),
                MonitorValue::Int(i) => json!(i),
                MonitorValue::Float(f) => json!(f),
            };
            (k, j)
        })
        .collect()
}

/// A BufferStats as the reference's JSON shows it (-1s until a size is seen).
fn buffer_sizes(s: SizeSnapshot) -> Value {
    json!({"last_buffer_size": s.last, "min_buffer_size": s.min, "max_buffer_size": s.max})
}

fn server_stats(v: &View) -> Map<String, Value> {
    let (min, avg, max) = v.stats.latency_ms();
    let seq = v.sequencer.clone().unwrap_or_default();
    let s = v.stats;
    let responses = s.client_response_sizes();
    let inner = obj(vec![
        ("packets_sent", json!(s.sum(|c| &c.packets_sent))),
        ("packets_received", json!(s.sum(|c| &c.packets_received))),
        (
            "fsync_threshold_exceed_count",
            json!(s.fsync_threshold_exceed_count.load(Relaxed)),
        ),
        ("client_response_stats", buffer_sizes(responses)),
        ("data_dir_size", json!(dir_size(&v.cfg.data_dir))),
        ("log_dir_size", json!(dir_size(v.cfg.log_dir()))),
        ("provider_null", json!(false)),
        ("server_state", json!(s.mode().name())),
        ("last_processed_zxid", json!(v.zxid())),
        ("outstanding_requests", json!(s.sum(|c| &c.outstanding))),
        ("avg_latency", json!((avg * 10_000.0).round() / 10_000.0)),
        ("max_latency", json!(max as i64)),
        ("min_latency", json!(min as i64)),
        ("num_alive_client_connections", json!(v.connections())),
        ("uptime", json!(s.started.elapsed().as_millis() as u64)),
        ("auth_failed_count", json!(s.sum(|c| &c.auth_failed))),
        (
            "non_mtlsremote_conn_count",
            json!(s.sum(|c| &c.non_mtls_remote_conns)),
        ),
        (
            "non_mtlslocal_conn_count",
            json!(s.sum(|c| &c.non_mtls_local_conns)),
        ),
    ]);
    let mut m = obj(vec![
        ("version", json!(format!("{VERSION}, built for corral"))),
        ("read_only", json!(s.mode() == Mode::ReadOnly)),
        ("server_stats", Value::Object(inner)),
        ("client_response", buffer_sizes(responses)),
    ]);
    if seq.leader.is_some() {
        let proposals = buffer_sizes(s.proposal_bytes.snapshot());
        m.insert("proposal_stats".into(), proposals);
    }
    m.insert("node_count".into(), json!(seq.node_count));
    m
}

fn stats(v: &View) -> Map<String, Value> {
    let mut m = server_stats(v);
    m.insert("connections".into(), connection_list(v, false));
    m.insert("secure_connections".into(), json!([]));
    m
}

fn observers(v: &View) -> Map<String, Value> {
    let synced = v
        .sequencer
        .as_ref()
        .and_then(|s| s.leader.as_ref())
        .map_or(0, |l| l.synced_observers);
    // The reference's LearnerHandler.getLearnerHandlerInfo of each observer link.
    let list: Vec<Value> = (v.sequencer.iter())
        .flat_map(|s| s.observers.iter())
        .map(|(sid, l)| {
            let established = l
                .established
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            json!({
                "remote_socket_address": format!("/{}", l.remote),
                "sid": sid.map_or(-1, |s| s as i64),
                "established": established,
                "queued_packets": l.queued_packets,
                "queued_packets_size": l.queued_bytes,
                "packets_received": l.packets_received,
                "packets_sent": l.packets_sent,
                "requests": l.requests,
                "last_zxid": l.last_zxid,
            })
        })
        .collect();
    obj(vec![
        ("synced_observers", json!(synced)),
        ("observers", Value::Array(list)),
    ])
}

/// corral's counterpart of the JVM's system properties: the facts about the
/// process the reference lists there, and each zoo.cfg key the reference would
/// have turned into a `zookeeper.` property (those corral does not act on).
fn system_properties(v: &View) -> Map<String, Value> {
    let mut props: std::collections::BTreeMap<String, String> = [
        ("file.separator", "/".to_string()),
        ("line.separator", "\n".to_string()),
        ("os.arch", std::env::consts::ARCH.to_string()),
        ("os.name", "Linux".to_string()),
        ("os.version", os_release()),
        ("path.separator", ":".to_string()),
        ("user.dir", user_dir()),
        ("user.home", std::env::var("HOME").unwrap_or_default()),
        ("user.name", user_name()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for w in &v.cfg.warnings {
        if let Some(key) = w.split('`').nth(1).filter(|_| w.contains("no effect")) {
            let value = v
                .cfg
                .initial_text
                .lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, val)| val.trim().to_string())
                .unwrap_or_default();
            let bare = key.strip_prefix("zookeeper.").unwrap_or(key);
            props.insert(format!("zookeeper.{bare}"), value);
        }
    }
    props.into_iter().map(|(k, v)| (k, json!(v))).collect()
}

fn voting_view(v: &View) -> Map<String, Value> {
    let mut view = Map::new();
    if let Some(q) = v.sequencer.as_ref().and_then(|s| s.quorum.as_ref()) {
        for s in q
            .servers
            .iter()
            .filter(|s| s.role == crate::config::PeerRole::Participant)
        {
            let client = s.client.as_ref().map(|c| c.to_string()).unwrap_or_default();
            view.insert(
                s.sid.to_string(),
                json!({
                    "server_addresses": [s.quorum.to_string()],
                    "election_addresses": [s.election.to_string()],
                    "client_address": client,
                    "learner_type": "participant",
                }),
            );
        }
    }
    obj(vec![("current_config", Value::Object(view))])
}

fn watches(v: &View) -> Map<String, Value> {
    let mut m = Map::new();
    for s in &v.shards {
        for (sid, paths) in &s.watches_by_session {
            m.insert(sid.to_string(), json!(paths));
        }
    }
    obj(vec![("session_id_to_watched_paths", Value::Object(m))])
}

fn watches_by_path(v: &View) -> Map<String, Value> {
    let mut m = Map::new();
    for s in &v.shards {
        for (path, sids) in &s.watches_by_path {
            let entry = m.entry(path.clone()).or_insert_with(|| json!([]));
            if let Value::Array(a) = entry {
                a.extend(sids.iter().map(|s| json!(s)));
            }
        }
    }
    obj(vec![("path_to_session_ids", Value::Object(m))])
}

fn watch_summary(v: &View) -> Map<String, Value> {
    let sum = |f: fn(&crate::server::msg::ShardReport) -> usize| -> usize {
        v.shards.iter().map(f).sum()
    };
    obj(vec![
        ("num_connections", json!(sum(|s| s.watching_connections))),
        ("num_paths", json!(sum(|s| s.watch_paths))),
        ("num_total_watches", json!(v.data_watch_count())),
    ])
}

fn zabstate(v: &View) -> Map<String, Value> {
    let Some(q) = v.sequencer.as_ref().and_then(|s| s.quorum.as_ref()) else {
        return obj(vec![("voting", json!(false)), ("zabstate", json!(""))]);
    };
    let me = q.servers.iter().find(|s| s.sid == q.my_id);
    let addr = |f: fn(&crate::config::QuorumServer) -> String| me.map(f).unwrap_or_default();
    let zxid = v.zxid();
    obj(vec![
        ("myid", json!(q.my_id)),
        (
            "is_leader",
            json!(matches!(q.role, crate::zab::Role::Leading { .. })),
        ),
        ("quorum_address", json!(addr(|s| s.quorum.to_string()))),
        ("election_address", json!(addr(|s| s.election.to_string()))),
        (
            "client_address",
            json!(addr(|s| s
                .client
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default())),
        ),
        (
            "voting",
            json!(me.is_some_and(|s| s.role == crate::config::PeerRole::Participant)),
        ),
        ("last_zxid", json!(format!("0x{zxid:x}"))),
        ("zab_epoch", json!(zxid >> 32)),
        ("zab_counter", json!(zxid & 0xffff_ffff)),
        ("zabstate", json!(super::zab_state_of(&q.role))),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::server::msg::{SequencerReport, ShardReport};
    use crate::server::stats::ServerStats;

    fn view<'a>(cfg: &'a Config, stats: &'a ServerStats) -> View<'a> {
        View {
            cfg,
            stats,
            sequencer: Some(SequencerReport {
                last_zxid: 7,
                node_count: 6,
                sessions: vec![(0x11, 4000, vec!["/e".into()])],
                expiries: vec![(12_000, 0x11)],
                ..Default::default()
            }),
            shards: vec![ShardReport {
                watch_count: 2,
                watch_paths: 2,
                watching_connections: 1,
                watches_by_session: vec![(0x11, vec!["/a".into(), "/b".into()])],
                watches_by_path: vec![("/a".into(), vec![0x11]), ("/b".into(), vec![0x11])],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn names_aliases_and_the_reference_shapes() {
        let cfg = Config::embedded_default();
        let stats = ServerStats::new(1);
        let v = view(&cfg, &stats);
        assert_eq!(find("stat").unwrap().primary(), "stats");
        assert_eq!(find("srvr").unwrap().primary(), "server_stats");
        let r = respond("nosuch", &v);
        assert_eq!(
            r,
            json!({"command": "nosuch", "error": "Unknown command: nosuch"})
        );
        let r = respond("ruok", &v);
        assert_eq!(r, json!({"command": "ruok", "error": null}));
        let r = respond("wchs", &v);
        assert_eq!(r["num_total_watches"], json!(2));
        assert_eq!(r["command"], json!("watch_summary"));
        let r = respond("dump", &v);
        assert_eq!(r["expiry_time_to_session_ids"]["12000"], json!([0x11]));
        assert_eq!(r["session_id_to_ephemeral_paths"]["17"], json!(["/e"]));
        let r = respond("monitor", &v);
        assert_eq!(r["znode_count"], json!(6));
        assert_eq!(r["server_state"], json!("standalone"));
        let r = respond("leader", &v);
        assert_eq!(r["error"], json!("server is not initialized"));
        assert_eq!(respond("srvr", &v)["node_count"], json!(6));
        // Every primary name is listed, sorted.
        let names = primary_names();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert!(links_page("/commands").contains("<a href=\"/commands/zabstate\">zabstate</a>"));
    }
}
