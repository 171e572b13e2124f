//! What one client may hold on the server, and what happens at each bound: unread
//! replies (a client pipelining 1 MB reads that never reads its socket), unread
//! watch events (closed over the hard limit), requests in process server-wide
//! (globalOutstandingLimit throttles, never drops), connections in total (maxCnxns),
//! live sessions (corral.maxSessions) and watches per connection (every way to add
//! one, setWatches included).
//!
//! Each case starts real server processes (`common::Server`) and talks to them over
//! loopback with blocking raw clients (`common::RawClient`). Cases whose behaviour
//! the reference shares run against Apache ZooKeeper too; the memory case records
//! the reference's figures beside corral's. No timing assertions: every wait is a
//! bounded loop, and memory is read from /proc/<pid>/status while the case runs.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Decoded, Kind, RawClient, Server};
use corral::proto::{ConnectRequest, ErrorCode, Request, Response, SetWatches};

/// Data of the node the slow reader asks for: a maximal-ish reply (jute.maxbuffer
/// is 1 MiB − 1 on both servers).
const BIG_NODE_BYTES: usize = 1_000_000;
/// getData requests the slow reader pipelines (20 000 × 1 MB of replies: 20 GB if
/// the server buffered them).
const SLOW_READER_REQUESTS_MAX: usize = 20_000;
/// Requests per socket write of the slow reader.
const SLOW_READER_BATCH_COUNT: usize = 500;
/// getData calls of the well-behaved client while the slow reader sits there.
const NORMAL_CALLS_COUNT: usize = 40;
/// Pause between the well-behaved client's calls, so the run spans a few seconds.
const NORMAL_CALL_GAP: Duration = Duration::from_millis(50);
/// How often the sampler reads the server's VmRSS.
const RSS_SAMPLE_GAP: Duration = Duration::from_millis(20);
/// Upper bound on samples, so the sampler's loop is bounded whatever happens.
const RSS_SAMPLES_MAX: u64 = 30_000;
/// TARGETS.md: growth under 512 MB with a client that never reads.
const RSS_GROWTH_BYTES_TARGET_MAX: u64 = 512 << 20;
/// corral's own bound for this case. The slow reader's unsent replies stop at
/// corral.maxQueuedReplyBytesPerConnection (4 MiB) plus the one reply that crosses
/// it (1 MB); they sit in the connection's output and its writer's buffer, each of
/// which may have twice its length in capacity: ≤ 4 × 5 MiB = 20 MiB. The
/// well-behaved client adds at most as much, receive buffers 64 KiB each. 128 MiB
/// leaves room for the allocator keeping freed memory, and is still 4× under the
/// target: buffering per request (20 GB here) fails it at once.
const CORRAL_RSS_GROWTH_BYTES_MAX: u64 = 128 << 20;
const _: () = assert!(CORRAL_RSS_GROWTH_BYTES_MAX < RSS_GROWTH_BYTES_TARGET_MAX);
/// How long a case waits for the server to close a connection.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Bounded retries while the server notices a closed connection.
const RETRIES_MAX: usize = 100;
const RETRY_GAP: Duration = Duration::from_millis(100);

fn get_data(path: &str, watch: bool) -> Request {
    Request::GetData {
        path: path.into(),
        watch,
    }
}

fn must(c: &mut RawClient, req: &Request, what: &str) -> Response {
    match c.call_decoded(req) {
        Ok(Decoded::Ok(r)) => r,
        other => panic!("{what}: {}", common::short(&other)),
    }
}

/// The process's resident set in bytes, or `None` once it is gone.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples a process's VmRSS on its own thread until stopped; keeps the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            for _ in 0..RSS_SAMPLES_MAX {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(rss) = rss_bytes(pid) {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(RSS_SAMPLE_GAP);
            }
        });
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// A session that pipelines getData of `path` and never reads its socket. Sends
/// until `SLOW_READER_REQUESTS_MAX` are out or a write blocks past the raw
/// client's write timeout (the server stopped reading and the kernel's buffers are
/// full); the connection stays open until dropped.
fn slow_reader(addr: &str, path: &str) -> (RawClient, usize) {
    let (mut c, resp) = RawClient::handshake(addr, &ConnectRequest::new_session(20_000)).unwrap();
    assert_ne!(resp.session_id, 0, "slow reader's session");
    let mut sent = 0;
    while sent < SLOW_READER_REQUESTS_MAX {
        let mut chunk = Vec::new();
        for i in 0..SLOW_READER_BATCH_COUNT {
            chunk.extend_from_slice(&get_data(path, false).frame((sent + i + 1) as i32));
        }
        if c.send_raw(&chunk).is_err() {
            break;
        }
        sent += SLOW_READER_BATCH_COUNT;
    }
    (c, sent)
}

struct SlowReaderRun {
    baseline: u64,
    peak: u64,
    sent: usize,
}

/// The user's report: one client pipelines getData of a 1 MB node and never reads.
/// Meanwhile another client's getData calls must all be answered; the server's
/// VmRSS is sampled throughout.
fn slow_reader_case(server: &Server) -> SlowReaderRun {
    let addr = server.addr();
    let pid = server.pid().expect("server pid");
    let mut normal = RawClient::connect(&addr, 20_000);
    let big = vec![b'x'; BIG_NODE_BYTES];
    must(
        &mut normal,
        &Request::create_open("/big", &big),
        "create /big",
    );
    let Response::Data { data, .. } = must(&mut normal, &get_data("/big", false), "warm-up") else {
        panic!("getData /big: not a data reply");
    };
    assert_eq!(data.map_or(0, |d| d.len()), BIG_NODE_BYTES);
    let baseline = rss_bytes(pid).expect("server VmRSS");
    let sampler = RssSampler::start(pid);
    let a = addr.clone();
    let writer = std::thread::spawn(move || slow_reader(&a, "/big"));
    for i in 0..NORMAL_CALLS_COUNT {
        match must(
            &mut normal,
            &get_data("/big", false),
            "a normal client's getData",
        ) {
            Response::Data { data, .. } => {
                assert_eq!(data.map_or(0, |d| d.len()), BIG_NODE_BYTES, "call {i}")
            }
            other => panic!("call {i}: {}", common::short(&other)),
        }
        std::thread::sleep(NORMAL_CALL_GAP);
    }
    let (slow, sent) = writer.join().unwrap();
    // The slow reader's requests are all out (or the server stopped taking them):
    // the server is still serving others.
    for i in 0..NORMAL_CALLS_COUNT / 4 {
        must(
            &mut normal,
            &get_data("/big", false),
            &format!("after the writes, {i}"),
        );
        std::thread::sleep(NORMAL_CALL_GAP);
    }
    let peak = sampler.finish();
    assert!(server.is_running(), "the {} server died", server.kind);
    drop(slow);
    SlowReaderRun {
        baseline,
        peak,
        sent,
    }
}

fn report(kind: Kind, r: &SlowReaderRun) -> u64 {
    let growth = r.peak.saturating_sub(r.baseline);
    eprintln!(
        "[slow reader, {kind}] {} getData of {BIG_NODE_BYTES} B pipelined, unread; VmRSS \
         baseline {} MiB, peak {} MiB, growth {} MiB",
        r.sent,
        r.baseline >> 20,
        r.peak >> 20,
        growth >> 20
    );
    growth
}

#[test]
fn a_client_that_never_reads_is_bounded_and_others_are_served() {
    let corral = Server::corral("");
    let run = slow_reader_case(&corral);
    let growth = report(Kind::Corral, &run);
    assert!(
        growth < CORRAL_RSS_GROWTH_BYTES_MAX,
        "corral's VmRSS grew by {} MiB (bound {} MiB)",
        growth >> 20,
        CORRAL_RSS_GROWTH_BYTES_MAX >> 20
    );
    drop(corral);
    if !common::require_reference() {
        return;
    }
    // The reference, for the record (its heap is capped at 512 MiB by the harness).
    let reference = Server::reference("");
    let run = slow_reader_case(&reference);
    report(Kind::Reference, &run);
}

/// A connection that never reads, holding a recursive watch on nodes with long
/// paths: every setData queues an event of the path's size for it. Over
/// corral.maxQueuedBytesPerConnection it is closed, with one log line naming the
/// key; the writer and a new client carry on.
#[test]
fn unread_events_over_the_hard_limit_close_only_that_connection() {
    /// Bytes of the watched child's name: each event carries it.
    const NAME_BYTES: usize = 200_000;
    /// setData calls at most: 300 × 200 KB = 60 MB of events, far over the 2 MiB
    /// limit plus what the kernel's socket buffers hold.
    const WRITES_MAX: usize = 300;
    let server = Server::corral(
        "corral.maxQueuedReplyBytesPerConnection=65536\n\
         corral.maxQueuedBytesPerConnection=2097152\n",
    );
    let addr = server.addr();
    let mut writer = RawClient::connect(&addr, 20_000);
    must(&mut writer, &Request::create_open("/ev", b""), "create /ev");
    let child = format!("/ev/{}", "n".repeat(NAME_BYTES));
    must(
        &mut writer,
        &Request::create_open(&child, b""),
        "create the child",
    );
    let mut watcher = RawClient::connect(&addr, 20_000);
    let add = Request::AddWatch {
        path: "/ev".into(),
        mode: 1,
    };
    must(&mut watcher, &add, "addWatch recursive");
    let key = "corral.maxQueuedBytesPerConnection";
    let mut writes = 0;
    while writes < WRITES_MAX && !server.log().contains(key) {
        let set = Request::SetData {
            path: child.clone(),
            data: Some(vec![b'v'; 16]),
            version: -1,
        };
        must(&mut writer, &set, "setData");
        writes += 1;
    }
    assert!(
        server.log().contains(key),
        "no close after {writes} events of {NAME_BYTES} B; log:\n{}",
        server.log_tail()
    );
    // What the kernel already holds still arrives, then the close.
    watcher.wait_closed(CLOSE_WAIT).unwrap_or_else(|e| {
        panic!("the watcher's connection is still open after {writes} events: {e:?}")
    });
    assert_eq!(server.log().matches(key).count(), 1, "one log line");
    must(
        &mut writer,
        &get_data("/ev", false),
        "the writer after the close",
    );
    let mut fresh = RawClient::connect(&addr, 20_000);
    must(&mut fresh, &get_data("/ev", false), "a new client");
}

/// Requests pipelined by two clients with a global limit of 2 in process: every
/// one is answered, in order (throttled, not dropped).
fn pipelined_clients_get_every_reply(server: &Server) {
    /// Requests per client: writes and reads interleaved.
    const REQUESTS_COUNT: usize = 3000;
    let addr = server.addr();
    let mut setup = RawClient::connect(&addr, 20_000);
    must(
        &mut setup,
        &Request::create_open("/gol", b""),
        "create /gol",
    );
    let clients: Vec<_> = (0..2)
        .map(|n| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let path = format!("/gol/{n}");
                let mut c = RawClient::connect(&addr, 20_000);
                must(&mut c, &Request::create_open(&path, b""), "create");
                let mut bytes = Vec::new();
                for i in 0..REQUESTS_COUNT {
                    let req = if i % 2 == 0 {
                        Request::SetData {
                            path: path.clone(),
                            data: Some(i.to_string().into_bytes()),
                            version: -1,
                        }
                    } else {
                        get_data(&path, false)
                    };
                    bytes.extend_from_slice(&req.frame(1000 + i as i32));
                }
                c.send_raw(&bytes).unwrap();
                for i in 0..REQUESTS_COUNT {
                    let r = c.wait_reply().unwrap_or_else(|e| {
                        panic!("client {n}: reply {i} of {REQUESTS_COUNT}: {e:?}")
                    });
                    assert_eq!(
                        (r.xid, r.err),
                        (1000 + i as i32, 0),
                        "client {n}, reply {i}"
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

#[test]
fn global_outstanding_limit_throttles_without_dropping() {
    let cfg = "globalOutstandingLimit=2\n";
    pipelined_clients_get_every_reply(&Server::corral(cfg));
    if common::require_reference() {
        pipelined_clients_get_every_reply(&Server::reference(cfg));
    }
}

/// A handshake, retried while the server may still count a connection that just
/// closed (the start-up probes, or one this case dropped).
fn handshake_with_retries(addr: &str) -> RawClient {
    for _ in 0..RETRIES_MAX {
        if let Ok((c, resp)) = RawClient::handshake(addr, &ConnectRequest::new_session(20_000)) {
            if resp.session_id != 0 {
                return c;
            }
        }
        std::thread::sleep(RETRY_GAP);
    }
    panic!("no session on {addr} after {RETRIES_MAX} attempts");
}

fn max_cnxns_case(server: &Server) {
    const MAX: usize = 3;
    let addr = server.addr();
    let mut open: Vec<RawClient> = (0..MAX).map(|_| handshake_with_retries(&addr)).collect();
    // The (MAX+1)th is closed at accept: no answer to its handshake.
    let refused = RawClient::handshake(&addr, &ConnectRequest::new_session(20_000));
    assert!(
        refused.is_err(),
        "{}: connection {} was served with {MAX} open",
        server.kind,
        MAX + 1
    );
    // The open ones are unaffected.
    for c in &mut open {
        must(
            c,
            &Request::Exists {
                path: "/".into(),
                watch: false,
            },
            "exists",
        );
    }
    // One closes: a new one is accepted once the server has noticed.
    drop(open.pop());
    let mut again = handshake_with_retries(&addr);
    must(&mut again, &get_data("/", false), "the new connection");
}

#[test]
fn max_cnxns_refuses_the_next_connection_until_one_closes() {
    let cfg = "maxCnxns=3\n";
    let corral = Server::corral(cfg);
    max_cnxns_case(&corral);
    assert!(corral.log().contains("(maxCnxns)"), "{}", corral.log_tail());
    drop(corral);
    if common::require_reference() {
        max_cnxns_case(&Server::reference(cfg));
    }
}

#[test]
fn max_sessions_refuses_new_sessions_not_live_ones() {
    const MAX: usize = 3;
    let server = Server::corral(&format!("corral.maxSessions={MAX}\n"));
    let addr = server.addr();
    let mut live: Vec<RawClient> = (0..MAX)
        .map(|_| RawClient::connect(&addr, 20_000))
        .collect();
    // The next new session is refused as an unknown session is: id 0, then closed.
    let (mut refused, resp) =
        RawClient::handshake(&addr, &ConnectRequest::new_session(20_000)).unwrap();
    assert_eq!(resp.session_id, 0, "session {} was created", MAX + 1);
    refused
        .wait_closed(CLOSE_WAIT)
        .expect("the refused connection closes");
    assert!(
        server.log().contains("corral.maxSessions"),
        "{}",
        server.log_tail()
    );
    for c in &mut live {
        must(c, &get_data("/", false), "a live session");
    }
    // A live session may still move to a new connection.
    let first = &live[0];
    let reattach = ConnectRequest {
        session_id: first.session_id,
        passwd: first.passwd.clone(),
        ..ConnectRequest::new_session(20_000)
    };
    let (mut moved, resp) = RawClient::handshake(&addr, &reattach).unwrap();
    assert_eq!(resp.session_id, live[0].session_id, "reattach refused");
    must(&mut moved, &get_data("/", false), "the moved session");
    // One ends: a new session fits again.
    let r = live[1].close_session().unwrap();
    assert_eq!(r.err, 0, "closeSession");
    let mut fresh = RawClient::connect(&addr, 20_000);
    must(
        &mut fresh,
        &get_data("/", false),
        "a new session after one closed",
    );
}

/// corral.maxWatchesPerConnection = 1: after one watch, every way to add another
/// is refused, and setWatches restores only as many as fit.
#[test]
fn every_way_to_add_a_watch_obeys_the_per_connection_limit() {
    let server = Server::corral("corral.maxWatchesPerConnection=1\n");
    let addr = server.addr();
    let mut setup = RawClient::connect(&addr, 20_000);
    for p in ["/w1", "/w2", "/w3"] {
        must(&mut setup, &Request::create_open(p, b""), p);
    }
    let second_watch: Vec<(&str, Request)> = vec![
        (
            "exists",
            Request::Exists {
                path: "/w2".into(),
                watch: true,
            },
        ),
        ("getData", get_data("/w2", true)),
        (
            "getChildren",
            Request::GetChildren {
                path: "/w2".into(),
                watch: true,
            },
        ),
        (
            "getChildren2",
            Request::GetChildren2 {
                path: "/w2".into(),
                watch: true,
            },
        ),
        (
            "addWatch persistent",
            Request::AddWatch {
                path: "/w2".into(),
                mode: 0,
            },
        ),
        (
            "addWatch recursive",
            Request::AddWatch {
                path: "/w2".into(),
                mode: 1,
            },
        ),
    ];
    for (what, req) in second_watch {
        let mut c = RawClient::connect(&addr, 20_000);
        must(&mut c, &get_data("/w1", true), "the first watch");
        let r = c.call(&req).unwrap();
        assert_eq!(r.err, ErrorCode::Throttled.code(), "{what}: a second watch");
        must(
            &mut c,
            &get_data("/w3", false),
            &format!("{what}: the connection goes on"),
        );
    }
    // setWatches (what a client sends after reconnecting) restores one of three.
    let mut c = RawClient::connect(&addr, 20_000);
    must(&mut c, &get_data("/w1", false), "a read for the zxid");
    let sw = SetWatches {
        relative_zxid: c.last_zxid,
        data: vec!["/w1".into(), "/w2".into(), "/w3".into()],
        ..Default::default()
    };
    let r = c.call(&Request::SetWatches(sw)).unwrap();
    assert_eq!(r.err, 0, "setWatches");
    let held: Vec<bool> = ["/w1", "/w2", "/w3"]
        .iter()
        .map(|p| {
            let check = Request::CheckWatches {
                path: (*p).into(),
                watcher_type: 2,
            };
            c.call(&check).unwrap().err == 0
        })
        .collect();
    assert_eq!(held, [true, false, false], "watches held after setWatches");
    assert!(
        server.log().contains("corral.maxWatchesPerConnection"),
        "{}",
        server.log_tail()
    );
}

/// Requests sent right behind the ConnectRequest, in the same write, are held while
/// the handshake is at the sequencer and answered after it, without more input.
fn requests_behind_the_handshake_are_answered(server: &Server) {
    let mut bytes = Vec::new();
    let mut connect = Vec::new();
    ConnectRequest::new_session(20_000).encode(&mut connect);
    bytes.extend_from_slice(&(connect.len() as i32).to_be_bytes());
    bytes.extend_from_slice(&connect);
    for x in 1..=3 {
        bytes.extend_from_slice(&get_data("/", false).frame(x));
    }
    let stream = RawClient::connect_tcp(&server.addr()).unwrap();
    let mut c = RawClient::from_stream(stream);
    c.send_raw(&bytes).unwrap();
    c.read_frame().expect("the ConnectResponse");
    for x in 1..=3 {
        let r = c.recv_reply().unwrap_or_else(|e| {
            panic!("{}: no reply {x} behind the handshake: {e:?}", server.kind)
        });
        assert_eq!((r.xid, r.err), (x, 0), "{}", server.kind);
    }
}

#[test]
fn requests_sent_with_the_handshake_are_answered() {
    requests_behind_the_handshake_are_answered(&Server::corral(""));
    if common::require_reference() {
        requests_behind_the_handshake_are_answered(&Server::reference(""));
    }
}

/// A client that pipelines 1 MB reads between writes and reads its replies only
/// after sending everything: the server pauses at the reply-bytes limit (reads
/// queued behind a write included) and resumes as the client reads; every reply
/// arrives, in order, whole.
fn paused_replies_all_arrive_in_order(server: &Server) {
    /// Requests: every fifth a setData, the rest getData of the 1 MB node.
    const REQUESTS_COUNT: usize = 200;
    let addr = server.addr();
    let mut c = RawClient::connect(&addr, 20_000);
    must(
        &mut c,
        &Request::create_open("/big2", &vec![b'y'; BIG_NODE_BYTES]),
        "create",
    );
    must(&mut c, &Request::create_open("/w", b""), "create /w");
    let mut bytes = Vec::new();
    for i in 0..REQUESTS_COUNT {
        let req = if i % 5 == 0 {
            Request::SetData {
                path: "/w".into(),
                data: Some(i.to_string().into_bytes()),
                version: -1,
            }
        } else {
            get_data("/big2", false)
        };
        bytes.extend_from_slice(&req.frame(100 + i as i32));
    }
    c.send_raw(&bytes).unwrap();
    for i in 0..REQUESTS_COUNT {
        let r = c
            .recv_reply()
            .unwrap_or_else(|e| panic!("{}: reply {i}: {e:?}", server.kind));
        assert_eq!((r.xid, r.err), (100 + i as i32, 0), "{}", server.kind);
        if i % 5 != 0 {
            // data (4-byte length + 1 MB) and a Stat.
            assert!(
                r.body.len() > BIG_NODE_BYTES,
                "{}: reply {i} cut",
                server.kind
            );
        }
    }
}

#[test]
fn paused_replies_resume_in_order_as_the_client_reads() {
    paused_replies_all_arrive_in_order(&Server::corral(""));
    if common::require_reference() {
        paused_replies_all_arrive_in_order(&Server::reference(""));
    }
}
