//! The operators' HTTP surface side by side with the reference: the AdminServer's
//! commands (key sets and the values that must agree after the same operations),
//! the unknown-command answer, a malformed or oversized request refused while the
//! server keeps serving, `/metrics` parsed and carrying the reference's names, and
//! `mntr` key sets against the reference's (standalone and in a 3-member ensemble).
//!
//! Each test runs its servers as child processes on free loopback ports and talks
//! plain HTTP/1.0 over std sockets (bounded timeouts), so responses are never chunked.

mod common;

use common::ensemble::Ensemble;
use common::{
    four_letter_word, free_port, http_get as get, http_raw, require_reference, Kind, RawClient,
    Server,
};
use corral::proto::{Acl, CreateKind, CreateRequest, Request};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn command(addr: &str, name: &str) -> Value {
    let (status, body) = get(addr, &format!("/commands/{name}"));
    assert_eq!(status, 200, "{name}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"))
}

/// zoo.cfg lines that put corral's AdminServer on 127.0.0.1:`port`.
fn admin_cfg(port: u16) -> String {
    format!("admin.enableServer=true\nadmin.serverAddress=127.0.0.1\nadmin.serverPort={port}\n")
}

/// The reference and corral, each with its AdminServer on a free port:
/// (reference, its admin port, corral, its admin port).
fn both_with_admin() -> (Server, u16, Server, u16) {
    let ref_admin = free_port();
    let reference = Server::reference_with_admin(ref_admin, "");
    let corral_admin = free_port();
    let corral = Server::corral(&admin_cfg(corral_admin));
    (reference, ref_admin, corral, corral_admin)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The same few operations on either server: nodes, an ephemeral, two data
/// watches and a child watch, on one session that stays open.
fn operate(addr: &str) -> RawClient {
    let mut c = RawClient::connect(addr, 10_000);
    for (path, flags) in [("/a", 0), ("/a/b", 0), ("/e", 1)] {
        let create = Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: path.into(),
            data: Some(b"xy".to_vec()),
            acl: Acl::open(),
            flags,
            ttl: -1,
        });
        assert_eq!(c.call(&create).unwrap().err, 0, "create {path}");
    }
    for req in [
        Request::GetData {
            path: "/a".into(),
            watch: true,
        },
        Request::Exists {
            path: "/a/b".into(),
            watch: true,
        },
        Request::GetChildren {
            path: "/a".into(),
            watch: true,
        },
    ] {
        assert_eq!(c.call(&req).unwrap().err, 0, "{req:?}");
    }
    c
}

fn mntr_keys(addr: &str) -> BTreeSet<String> {
    four_letter_word(addr, "mntr")
        .unwrap()
        .lines()
        .filter_map(|l| l.split('\t').next())
        .map(str::to_string)
        .collect()
}

/// Commands corral answers; the reference's get_trace_mask / set_trace_mask are
/// left out (corral has no trace mask).
const COMMANDS: &[&str] = &[
    "configuration",
    "connections",
    "dirs",
    "dump",
    "environment",
    "hash",
    "initial_configuration",
    "is_read_only",
    "last_snapshot",
    "leader",
    "monitor",
    "observer_connection_stat_reset",
    "observers",
    "ruok",
    "server_stats",
    "stats",
    "system_properties",
    "voting_view",
    "watch_summary",
    "watches",
    "watches_by_path",
    "zabstate",
    "connection_stat_reset",
    "stat_reset",
];

/// Top-level keys whose sets differ by nature: the JVM's own entries, and the
/// monitor keys corral leaves out (it prints only what it measures).
fn comparable(cmd: &str) -> bool {
    !matches!(cmd, "environment" | "system_properties" | "monitor")
}

#[test]
fn every_command_answers_as_the_reference_does() {
    if !require_reference() {
        return;
    }
    let (reference, ref_admin, corral, corral_admin) = both_with_admin();
    let mut ref_client = operate(&reference.addr());
    let mut corral_client = operate(&corral.addr());
    let (ra, ca) = (
        format!("127.0.0.1:{ref_admin}"),
        format!("127.0.0.1:{corral_admin}"),
    );

    // The command list names the same commands (less the trace mask pair).
    let (_, ref_list) = get(&ra, "/commands");
    let (status, corral_list) = get(&ca, "/commands");
    assert_eq!(status, 200);
    for name in COMMANDS {
        let link = format!("<a href=\"/commands/{name}\">{name}</a>");
        assert!(ref_list.contains(&link), "reference lacks {name}");
        assert!(
            corral_list.contains(&link),
            "corral lacks {name}: {corral_list}"
        );
    }

    for name in COMMANDS {
        let (r, c) = (command(&ra, name), command(&ca, name));
        assert_eq!(c["command"], Value::from(*name), "{c}");
        assert_eq!(c["error"], r["error"], "{name}: {r} / {c}");
        if comparable(name) {
            assert_eq!(keys(&r), keys(&c), "{name}:\n{r}\n{c}");
        }
    }

    // Values that must agree after the same operations.
    let (r, c) = (command(&ra, "monitor"), command(&ca, "monitor"));
    for k in [
        "server_state",
        "znode_count",
        "watch_count",
        "ephemerals_count",
        "global_sessions",
        "num_alive_connections",
        "approximate_data_size",
        "local_sessions",
        "outstanding_requests",
        "last_client_response_size",
        "min_client_response_size",
        "max_client_response_size",
        "auth_failed_count",
        "bytes_received_count",
        "connection_request_count",
        "connection_rejected",
        "unsuccessful_handshake",
        "proposal_count",
        "commit_count",
        "digest_mismatches_count",
    ] {
        assert_eq!(r[k], c[k], "monitor {k}");
    }
    // Nothing under the reference's names that the reference does not have.
    let extra: Vec<_> = keys(&c).difference(&keys(&r)).cloned().collect();
    assert!(
        extra.is_empty(),
        "monitor keys the reference lacks: {extra:?}"
    );
    let (r, c) = (command(&ra, "wchs"), command(&ca, "wchs"));
    assert_eq!(r, c, "watch_summary (asked as wchs)");
    for name in [
        "is_read_only",
        "zabstate",
        "leader",
        "voting_view",
        "observers",
    ] {
        let (mut r, mut c) = (command(&ra, name), command(&ca, name));
        assert_eq!(
            r.as_object_mut().unwrap().remove("command"),
            c.as_object_mut().unwrap().remove("command")
        );
        assert_eq!(r, c, "{name}");
    }
    let path_sets = |v: &Value| -> Vec<Vec<Value>> {
        v.as_object()
            .unwrap()
            .values()
            .map(|p| p.as_array().unwrap().clone())
            .collect()
    };
    let (r, c) = (command(&ra, "watches"), command(&ca, "watches"));
    assert_eq!(
        path_sets(&r["session_id_to_watched_paths"]),
        path_sets(&c["session_id_to_watched_paths"])
    );
    let (r, c) = (command(&ra, "dump"), command(&ca, "dump"));
    assert_eq!(
        path_sets(&r["session_id_to_ephemeral_paths"]),
        path_sets(&c["session_id_to_ephemeral_paths"])
    );
    // stat_reset above cleared the reply sizes: two replies of known sizes.
    for client in [&mut ref_client, &mut corral_client] {
        for path in ["/a", "/nosuch"] {
            let get = Request::GetData {
                path: path.into(),
                watch: false,
            };
            client.call(&get).unwrap();
        }
    }
    let (r, c) = (command(&ra, "monitor"), command(&ca, "monitor"));
    assert_eq!(
        c["bytes_received_count"],
        Value::from(19 + 24),
        "two getData frames since stat_reset"
    );
    assert_eq!(r["bytes_received_count"], c["bytes_received_count"]);
    // A notification counts among reply sizes: the largest here is the deletion
    // event of a long path (header, type, state, path), larger than its create's
    // reply; the last is the delete's bare reply header (after its event).
    let long = format!("/{}", "l".repeat(100));
    for client in [&mut ref_client, &mut corral_client] {
        let create = Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: long.clone(),
            data: None,
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        });
        let watch = Request::Exists {
            path: long.clone(),
            watch: true,
        };
        let delete = Request::Delete {
            path: long.clone(),
            version: -1,
        };
        for req in [create, watch, delete] {
            assert_eq!(client.call(&req).unwrap().err, 0, "{req:?}");
        }
    }
    let (r, c) = (command(&ra, "srvr"), command(&ca, "srvr"));
    assert_eq!(r["node_count"], c["node_count"]);
    assert_eq!(keys(&r["server_stats"]), keys(&c["server_stats"]));
    // Reply sizes after the same requests (the HTTP commands are not replies).
    assert_eq!(r["client_response"], c["client_response"], "{r}\n{c}");
    assert_eq!(
        c["client_response"],
        serde_json::json!({"last_buffer_size": 16, "min_buffer_size": 16, "max_buffer_size": 16 + 4 + 4 + 4 + 101}),
        "a NoNode reply is a bare header; the largest is the NodeDeleted event"
    );
    assert_eq!(
        r["server_stats"]["client_response_stats"],
        c["server_stats"]["client_response_stats"]
    );
    let (r, c) = (command(&ra, "cons"), command(&ca, "cons"));
    let (rc, cc) = (keys(&r["connections"][0]), keys(&c["connections"][0]));
    assert_eq!(cc, rc, "cons entry keys");
    // connection_stat_reset ran above; then the same requests on each.
    for k in [
        "last_operation",
        "last_cxid",
        "packets_received",
        "packets_sent",
        "session_timeout",
        "outstanding_requests",
    ] {
        assert_eq!(
            r["connections"][0][k], c["connections"][0][k],
            "cons {k}:\n{r}\n{c}"
        );
    }
    assert_eq!(c["connections"][0]["last_operation"], Value::from("DELE"));
    let established = c["connections"][0]["established"].as_u64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        established > 0 && established <= now_ms,
        "established {established}"
    );
    // The four-letter cons: the same fields, in the reference's format.
    let field_names = |text: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.contains("sid=")).unwrap_or("");
        line.split(['(', ',', ')'])
            .skip(1)
            .filter_map(|f| f.split_once('=').map(|(k, _)| k.to_string()))
            .collect()
    };
    let (rt, ct) = (
        four_letter_word(&reference.addr(), "cons").unwrap(),
        four_letter_word(&corral.addr(), "cons").unwrap(),
    );
    assert_eq!(field_names(&rt), field_names(&ct), "{rt}\n{ct}");
    assert!(ct.contains(",lop=DELE,"), "{ct}");

    // An unknown command: 200 and the reference's error, on both.
    for addr in [&ra, &ca] {
        let v = command(addr, "nosuch");
        assert_eq!(v["error"], Value::from("Unknown command: nosuch"), "{v}");
    }

    // mntr: corral's keys are all the reference's, and the core ones are there.
    let (rk, ck) = (mntr_keys(&reference.addr()), mntr_keys(&corral.addr()));
    let extra: Vec<_> = ck.difference(&rk).collect();
    assert!(extra.is_empty(), "mntr keys the reference lacks: {extra:?}");
    for k in [
        "zk_version",
        "zk_server_state",
        "zk_znode_count",
        "zk_watch_count",
        "zk_p99_readlatency",
        "zk_avg_updatelatency",
        "zk_cnt_fsynctime",
        "zk_max_file_descriptor_count",
    ] {
        assert!(ck.contains(k), "corral's mntr lacks {k}");
    }
}

#[test]
fn a_malformed_or_oversized_request_is_refused_and_the_server_serves_on() {
    let port = free_port();
    let server = Server::corral(&admin_cfg(port));
    let addr = format!("127.0.0.1:{port}");
    // Not HTTP at all.
    let bad = http_raw(&addr, b"\x16\x03\x01 hello there\r\n\r\n");
    assert!(
        bad.as_ref().is_none_or(|(s, _)| *s == 400),
        "garbage got {bad:?}"
    );
    // A request head past the bound.
    let big = format!(
        "GET /commands/ruok HTTP/1.0\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = http_raw(&addr, big.as_bytes());
    assert!(
        answer.as_ref().is_none_or(|(s, _)| *s == 431),
        "oversized head got {answer:?}"
    );
    // Another method, another path.
    let post = http_raw(
        &addr,
        b"POST /commands/ruok HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(post.map(|p| p.0), Some(405));
    assert_eq!(get(&addr, "/elsewhere").0, 404);
    // Still serving, HTTP and clients.
    let v = command(&addr, "ruok");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(four_letter_word(&server.addr(), "ruok").unwrap(), "imok");
}

/// A tiny parser of the Prometheus/OpenMetrics text format: every metric family's
/// type, and every sample's name and value.
struct Exposition {
    types: std::collections::BTreeMap<String, String>,
    samples: Vec<(String, f64)>,
}

fn parse_exposition(text: &str) -> Exposition {
    let mut types = std::collections::BTreeMap::new();
    let mut samples = Vec::new();
    assert!(text.ends_with("# EOF\n"), "no EOF marker");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name_labels, value) = line.rsplit_once(' ').expect("sample value");
        let name = name_labels.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line}"
        );
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        samples.push((name.to_string(), v));
    }
    Exposition { types, samples }
}

#[test]
fn metrics_parse_and_carry_the_reference_names() {
    let port = free_port();
    let server = Server::corral(&format!(
        "metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
         metricsProvider.httpHost=127.0.0.1\nmetricsProvider.httpPort={port}\n"
    ));
    let _c = operate(&server.addr());
    let (status, text) = get(&format!("127.0.0.1:{port}"), "/metrics");
    assert_eq!(status, 200);
    let m = parse_exposition(&text);
    let value = |n: &str| {
        m.samples
            .iter()
            .find(|(name, _)| name == n)
            .map(|s| s.1)
            .unwrap_or_else(|| panic!("no sample {n}:\n{text}"))
    };
    for (name, kind) in [
        ("znode_count", "gauge"),
        ("watch_count", "gauge"),
        ("num_alive_connections", "gauge"),
        ("outstanding_requests", "gauge"),
        ("ephemerals_count", "gauge"),
        ("approximate_data_size", "gauge"),
        ("global_sessions", "gauge"),
        ("readlatency", "summary"),
        ("updatelatency", "summary"),
        ("fsynctime", "summary"),
        ("corral_commit_batch_size", "histogram"),
        ("corral_log_sync_seconds", "histogram"),
        ("corral_snapshot_seconds", "histogram"),
        ("corral_inbox_depth", "gauge"),
        ("bytes_received_count", "unknown"),
        ("connection_request_count", "unknown"),
        ("auth_failed_count", "gauge"),
        ("last_client_response_size", "gauge"),
    ] {
        assert_eq!(m.types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    assert_eq!(
        value("znode_count"),
        8.0,
        "/, /zookeeper (+3 inside), /a, /a/b, /e"
    );
    assert_eq!(value("ephemerals_count"), 1.0);
    assert_eq!(value("watch_count"), 3.0);
    assert_eq!(value("global_sessions"), 1.0);
    assert_eq!(value("connection_request_count"), 1.0);
    assert!(value("bytes_received_count") > 0.0);
    assert!(value("max_client_response_size") >= value("min_client_response_size"));
    assert!(value("updatelatency_count") >= 3.0);
    assert!(value("corral_commit_batch_size_count") >= 1.0);
    // Only /metrics lives on that port.
    assert_eq!(get(&format!("127.0.0.1:{port}"), "/commands").0, 404);
}

/// mntr polls while a follower applies a write.
const FOLLOWER_POLLS_MAX: u32 = 100;

#[test]
fn mntr_keys_in_an_ensemble_are_the_reference_ones() {
    if !Ensemble::can_start(&[Kind::Reference, Kind::Corral]) {
        return;
    }
    let keys_by_role = |kind: Kind| {
        let e = Ensemble::start(&[kind; 3]);
        let leader = e.wait_leader();
        let follower = e.sids().into_iter().find(|&s| s != leader).unwrap();
        e.wait_serving(follower);
        // One write through the leader: its proposal's size (TxnHeader, CreateTxn
        // and digest, as serialized for the PROPOSAL packet).
        let mut c = RawClient::connect(&e.client_addr(leader), 10_000);
        let create = Request::Create(CreateRequest {
            kind: CreateKind::Create,
            path: "/p".into(),
            data: Some(b"xy".to_vec()),
            acl: Acl::open(),
            flags: 0,
            ttl: -1,
        });
        assert_eq!(c.call(&create).unwrap().err, 0);
        // The follower counts the PROPOSAL and COMMIT of the session's creation and
        // of the create, and timed its election and its sync with the leader. The
        // create's COMMIT may reach the follower after the leader's answer, so the
        // polls wait for each count's least value, not for any value.
        let least = [
            ("zk_learner_proposal_received_count", 2),
            ("zk_learner_commit_received_count", 2),
            ("zk_cnt_election_time", 1),
            ("zk_cnt_follower_sync_time", 1),
        ];
        let follower_counts = || {
            let text = four_letter_word(&e.client_addr(follower), "mntr").unwrap();
            least.map(|(k, want)| {
                let v = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}\t")))
                    .and_then(|v| v.trim().parse::<u64>().ok());
                (k, v.filter(|n| *n >= want))
            })
        };
        let mut counts = follower_counts();
        for _ in 0..FOLLOWER_POLLS_MAX {
            if counts.iter().all(|(_, v)| v.is_some()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            counts = follower_counts();
        }
        let text = four_letter_word(&e.client_addr(follower), "mntr").unwrap();
        let shown: Vec<&str> = (text.lines())
            .filter(|l| l.contains("election") || l.contains("sync_time") || l.contains("learner"))
            .collect();
        for (k, v) in counts {
            assert!(
                v.is_some(),
                "{kind:?} follower: {k} below its least value: {shown:?}"
            );
        }
        // Received in the broadcast phase: the session's creation and the create.
        let received = [counts[0].1, counts[1].1];
        let mntr = four_letter_word(&e.client_addr(leader), "mntr").unwrap();
        let last_proposal = mntr
            .lines()
            .find_map(|l| l.strip_prefix("zk_last_proposal_size\t"))
            .map(str::to_string);
        (
            mntr_keys(&e.client_addr(leader)),
            mntr_keys(&e.client_addr(follower)),
            last_proposal,
            received,
        )
    };
    let (ref_leader, ref_follower, ref_proposal, ref_received) = keys_by_role(Kind::Reference);
    let (leader, follower, proposal, received) = keys_by_role(Kind::Corral);
    assert_eq!(
        received, ref_received,
        "PROPOSALs and COMMITs a follower counted for a new session and one create"
    );
    assert!(ref_proposal.is_some(), "the reference's leader mntr");
    assert_eq!(
        proposal, ref_proposal,
        "last_proposal_size after one create"
    );
    for (role, r, c) in [
        ("leader", &ref_leader, &leader),
        ("follower", &ref_follower, &follower),
    ] {
        let extra: Vec<_> = c.difference(r).collect();
        assert!(
            extra.is_empty(),
            "{role} mntr keys the reference lacks: {extra:?}"
        );
        assert!(c.contains("zk_peer_state"), "{role}: {c:?}");
        assert!(c.contains("zk_quorum_size"), "{role}: {c:?}");
    }
    for k in [
        "zk_learners",
        "zk_synced_followers",
        "zk_pending_syncs",
        "zk_leader_uptime",
        "zk_quorum_size",
        "zk_last_proposal_size",
    ] {
        assert!(leader.contains(k), "corral's leader mntr lacks {k}");
    }
}

#[test]
fn hash_logs_the_digest_of_every_128th_zxid_as_the_reference() {
    if !require_reference() {
        return;
    }
    let (reference, ref_admin, corral, corral_admin) = both_with_admin();
    let zxids = |admin: u16, addr: &str| -> (Vec<Value>, String) {
        let v = command(&format!("127.0.0.1:{admin}"), "hash");
        let zxids = v["digests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["zxid"].clone())
            .collect();
        (zxids, four_letter_word(addr, "hash").unwrap())
    };
    for (admin, addr) in [(ref_admin, reference.addr()), (corral_admin, corral.addr())] {
        let (none, _) = zxids(admin, &addr);
        assert!(none.is_empty(), "{addr}: no zxid 128 yet: {none:?}");
        // The session is zxid 1; 130 creates take it past 128.
        let mut c = RawClient::connect(&addr, 10_000);
        for i in 0..130 {
            let create = Request::Create(CreateRequest {
                kind: CreateKind::Create,
                path: format!("/n{i}"),
                data: None,
                acl: Acl::open(),
                flags: 0,
                ttl: -1,
            });
            assert_eq!(c.call(&create).unwrap().err, 0);
        }
    }
    let (r, r_text) = zxids(ref_admin, &reference.addr());
    let (c, c_text) = zxids(corral_admin, &corral.addr());
    assert_eq!(r, vec![Value::from(128)]);
    assert_eq!(c, r);
    assert!(r_text.starts_with("80: "), "{r_text}");
    assert!(
        c_text.starts_with("80: ") && c_text.lines().count() == 1,
        "{c_text}"
    );
    // The log is rebuilt from the replayed txns, as the reference's DataTree
    // logs them while it loads (its snapshot then holds none of them here).
    let corral_admin = free_port();
    let corral = corral.restart_corral(&admin_cfg(corral_admin));
    let (after, after_text) = zxids(corral_admin, &corral.addr());
    assert_eq!(after, r, "after a restart");
    assert_eq!(after_text, c_text, "after a restart");
}

/// Reads from `s` until the server closes it; `Err` with what was read if it is
/// still open after `limit`.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Result<String, String> {
    let deadline = std::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset is a close too.
            Err(_) => return Ok(String::from_utf8_lossy(&got).into_owned()),
        }
    }
    Err(String::from_utf8_lossy(&got).into_owned())
}

#[test]
fn an_idle_keep_alive_admin_connection_is_closed_after_admin_idle_timeout() {
    const IDLE_MS: u64 = 300;
    let port = free_port();
    let _server = Server::corral(&format!("{}admin.idleTimeout={IDLE_MS}\n", admin_cfg(port)));
    let addr = format!("127.0.0.1:{port}");
    // Bounded: closed within 20 × the idle timeout (no finer timing is asserted).
    let limit = Duration::from_millis(20 * IDLE_MS);
    // Answered, kept alive (HTTP/1.1), then left idle.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /commands/ruok HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut s, limit)
        .unwrap_or_else(|open| panic!("still open after {limit:?}: {open}"));
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        got.contains("\"command\""),
        "answered before the close: {got}"
    );
    // Connected and silent from the start.
    let mut silent = TcpStream::connect(&addr).unwrap();
    let got = read_until_closed(&mut silent, limit)
        .unwrap_or_else(|open| panic!("silent connection open after {limit:?}: {open}"));
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    // The endpoint serves on.
    assert_eq!(command(&addr, "ruok")["error"], Value::Null);
}

/// The keys of each entry of the reference's `observers` list
/// (LearnerHandler.getLearnerHandlerInfo in 3.8.0).
const OBSERVER_INFO_KEYS: [&str; 9] = [
    "remote_socket_address",
    "sid",
    "established",
    "queued_packets",
    "queued_packets_size",
    "packets_received",
    "packets_sent",
    "requests",
    "last_zxid",
];

/// Admin polls while the observer's link and counters settle.
const OBSERVER_POLLS_MAX: u32 = 100;

/// A corral leader lists its observer's link as the reference's leader does:
/// the observer's id, its address, and the packets and forwarded writes it
/// carried (each write through the observer is one REQUEST).
#[test]
fn the_leader_lists_its_observers_links() {
    use common::ensemble::Role;
    if !Ensemble::can_start(&[Kind::Corral]) {
        return;
    }
    let members = [
        (Kind::Corral, Role::Participant),
        (Kind::Corral, Role::Participant),
        (Kind::Corral, Role::Observer),
    ];
    let mut e = Ensemble::configure(&members, "");
    let admin: Vec<u16> = e.sids().iter().map(|_| free_port()).collect();
    for (sid, port) in e.sids().into_iter().zip(&admin) {
        let path = e.member_dir(sid).join("zoo.cfg");
        let cfg = std::fs::read_to_string(&path).unwrap().replace(
            "admin.enableServer=false",
            &format!("admin.enableServer=true\nadmin.serverPort={port}"),
        );
        std::fs::write(&path, cfg).unwrap();
    }
    e.launch_all();
    let leader = e.wait_leader();
    e.wait_serving(3);
    let mut c = RawClient::connect(&e.client_addr(3), 10_000);
    let create = Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: "/via-observer".into(),
        data: Some(b"x".to_vec()),
        acl: Acl::open(),
        flags: 0,
        ttl: -1,
    });
    let reply = c.call(&create).unwrap();
    assert_eq!(reply.err, 0);
    let leader_admin = format!("127.0.0.1:{}", admin[leader as usize - 1]);
    let mut last = Value::Null;
    for _ in 0..OBSERVER_POLLS_MAX {
        last = command(&leader_admin, "observers");
        let entry = &last["observers"][0];
        if entry["requests"].as_u64() >= Some(2) && entry["last_zxid"].as_i64() >= Some(reply.zxid)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let list = last["observers"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{last}");
    let o = &list[0];
    let want: BTreeSet<String> = OBSERVER_INFO_KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(keys(o), want, "{o}");
    assert_eq!(o["sid"], 3, "{o}");
    assert!(
        o["remote_socket_address"]
            .as_str()
            .unwrap()
            .starts_with("/127.0.0.1:"),
        "{o}"
    );
    // Forwarded: the session's creation, then the create.
    assert_eq!(o["requests"], 2, "{o}");
    assert!(
        o["last_zxid"].as_i64().unwrap() >= reply.zxid,
        "{o} vs {}",
        reply.zxid
    );
    assert!(o["packets_sent"].as_u64().unwrap() > 0, "{o}");
    assert!(o["packets_received"].as_u64().unwrap() > 0, "{o}");
    assert_eq!(last["synced_observers"], 1, "{last}");
    // A follower has no observers of its own (no observer master).
    let follower = e
        .sids()
        .into_iter()
        .find(|&s| s != leader && s != 3)
        .unwrap();
    let f = command(
        &format!("127.0.0.1:{}", admin[follower as usize - 1]),
        "observers",
    );
    assert_eq!(f["observers"], serde_json::json!([]), "{f}");
}

/// The events setWatches sends at once (a watched node changed while the client
/// was away) count as the reference counts them: one packet each, among the
/// reply sizes, before the reply.
#[test]
fn set_watches_events_count_as_packets_as_the_reference() {
    if !require_reference() {
        return;
    }
    let (reference, ref_admin, corral, corral_admin) = both_with_admin();
    let sent = |admin: u16, addr: &str| -> Vec<(u64, Value)> {
        let mut c = RawClient::connect(addr, 10_000);
        for path in ["/w1", "/w2"] {
            let create = Request::Create(CreateRequest {
                kind: CreateKind::Create,
                path: path.into(),
                data: Some(b"xy".to_vec()),
                acl: Acl::open(),
                flags: 0,
                ttl: -1,
            });
            assert_eq!(c.call(&create).unwrap().err, 0);
        }
        // Watches as of zxid 0: both nodes changed since, /gone never existed
        // (an exists watch is armed on it).
        let sw = corral::proto::SetWatches {
            relative_zxid: 0,
            data: vec!["/w1".into(), "/w2".into()],
            exist: vec!["/gone".into()],
            ..Default::default()
        };
        assert_eq!(c.call(&Request::SetWatches(sw)).unwrap().err, 0);
        let cons = command(&format!("127.0.0.1:{admin}"), "cons");
        let srvr = command(&format!("127.0.0.1:{admin}"), "srvr");
        let mine = (cons["connections"].as_array().unwrap().iter())
            .find(|e| e["last_operation"] == "SETW")
            .unwrap_or_else(|| panic!("no SETW connection: {cons}"))
            .clone();
        vec![
            (mine["packets_sent"].as_u64().unwrap(), mine),
            (0, srvr["client_response"].clone()),
        ]
    };
    let r = sent(ref_admin, &reference.addr());
    let c = sent(corral_admin, &corral.addr());
    assert_eq!(r[0].0, c[0].0, "packets sent:\n{}\n{}", r[0].1, c[0].1);
    assert_eq!(r[1].1, c[1].1, "reply sizes");
}
