//! loadgen against a real server process (see `common` for which one): the
//! counts it reports add up, with each other and with the server's own tree;
//! errors are counted and shown; a server that dies mid-run ends the run with a
//! clear message instead of a hang.

mod common;

use std::time::Duration;

use common::{loadgen, start_server, unique_root};
use corral::proto::{op, JuteWrite, Reader};
use loadgen::setup::SyncClient;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn json(out: &common::Output) -> Value {
    assert!(
        out.status.success(),
        "loadgen failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}", out.stdout))
}

fn by_op(v: &Value, op: &str) -> Value {
    v["by_op"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == op)
        .cloned()
        .unwrap_or_else(|| panic!("no {op} row in {v}"))
}

fn children(addr: &str, path: &str) -> Vec<String> {
    let mut c = SyncClient::connect(addr, Duration::from_secs(5)).unwrap();
    let mut body = Vec::new();
    body.put_str(path);
    body.put_bool(false);
    let r = c.batch(&[(op::GET_CHILDREN, body)]).unwrap();
    assert_eq!(r[0].0, 0, "getChildren {path}");
    let names = Reader::new(&r[0].1).strings().unwrap();
    c.close().unwrap();
    names
}

#[test]
fn counts_add_up_with_each_other_and_with_the_tree() {
    let Some(srv) = start_server() else { return };
    let root = unique_root("counts");
    // Exactly 3 connections x 150 persistent creates, then the run ends by itself.
    let out = loadgen(
        &[
            "-s",
            &srv.addr,
            "--root",
            &root,
            "-c",
            "3",
            "-o",
            "8",
            "-w",
            "0",
            "-d",
            "30",
            "--requests",
            "150",
            "--mix",
            "create",
            "--keys",
            "10",
            "--json",
        ],
        LIMIT,
    );
    let v = json(&out);
    assert_eq!(v["ops"], 450, "{v}");
    assert_eq!(v["errors_total"], 0, "{v}");
    assert_eq!(by_op(&v, "create")["count"], 450);
    assert_eq!(v["all"]["count"], 450);
    let made = children(&srv.addr, &format!("{root}/n"));
    assert_eq!(
        made.len(),
        450,
        "the server holds every node loadgen counted"
    );

    // A mixed run: the per-op rows sum to the total.
    let out = loadgen(
        &[
            "-s", &srv.addr, "--root", &root, "-c", "4", "-o", "4", "-w", "0", "-d", "10",
            "--requests", "400", "--keys", "50", "--json", "--mix",
            "get:4,set:2,exists:1,create-eph:1,create-seq:1,create-eph-seq:1,delete:3,multi:1,watch:2",
        ],
        LIMIT,
    );
    let v = json(&out);
    let rows = v["by_op"].as_array().unwrap();
    let sum: u64 = rows
        .iter()
        .filter(|o| o["op"] != "watch-event")
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    assert_eq!(v["ops"].as_u64().unwrap(), sum, "{v}");
    assert_eq!(v["errors_total"], 0, "{v}");
    // 1600 mix draws; a watch draw is two requests (getData+watch, then setData).
    let watch_pairs = v["watches_set"].as_u64().unwrap();
    assert!(watch_pairs > 0);
    assert_eq!(sum, 1600 + watch_pairs, "{v}");
    assert_eq!(
        by_op(&v, "watch-fire")["count"].as_u64().unwrap(),
        watch_pairs
    );
    assert!(
        v["watch_events"].as_u64().unwrap() <= watch_pairs,
        "no watch fires twice"
    );
    for kind in [
        "get",
        "set",
        "exists",
        "create-eph",
        "create-seq",
        "create-eph-seq",
        "delete",
        "multi",
    ] {
        assert!(by_op(&v, kind)["count"].as_u64().unwrap() > 0, "{kind} ran");
    }
    assert!(v["loadgen_cpu"]["us_per_op"].as_f64().unwrap() > 0.0);
}

#[test]
fn errors_are_counted_and_shown() {
    let Some(srv) = start_server() else { return };
    let root = unique_root("errors");
    // Skip setup: every key is missing, so every get and set answers NoNode.
    let args = [
        "-s",
        &srv.addr,
        "--root",
        &root,
        "--skip-setup",
        "-c",
        "2",
        "-w",
        "0",
        "-d",
        "30",
        "--requests",
        "100",
        "-r",
        "50",
    ];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let v = json(&loadgen(&with_json, LIMIT));
    assert_eq!(v["ops"], 200);
    assert_eq!(v["errors_total"], 200, "{v}");
    let errs = v["errors"].as_array().unwrap();
    assert!(
        errs.iter()
            .all(|e| e["code"] == -101 && e["name"] == "NoNode"),
        "{v}"
    );
    let counted: u64 = errs.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 200);
    let text = loadgen(&args, LIMIT);
    assert!(text.status.success());
    assert!(
        text.stdout.contains("NoNode (-101)"),
        "text report shows errors:\n{}",
        text.stdout
    );
}

#[test]
fn ping_and_paced_runs() {
    let Some(srv) = start_server() else { return };
    let v = json(&loadgen(
        &[
            "-s",
            &srv.addr,
            "--ping",
            "-c",
            "2",
            "-o",
            "16",
            "-w",
            "0",
            "-d",
            "30",
            "--requests",
            "500",
            "--json",
        ],
        LIMIT,
    ));
    assert_eq!(by_op(&v, "ping")["count"], 1000);
    assert_eq!(v["errors_total"], 0);
    // Open loop: 300 requests at 1000/s over 3 connections take about 0.3 s, not less.
    let out = loadgen(
        &[
            "-s",
            &srv.addr,
            "--root",
            &unique_root("paced"),
            "-c",
            "3",
            "-w",
            "0",
            "-d",
            "30",
            "--requests",
            "100",
            "--rate",
            "1000",
            "--json",
        ],
        LIMIT,
    );
    let v = json(&out);
    assert_eq!(v["ops"], 300);
    let window = v["settings"]["duration_s"].as_f64().unwrap();
    assert!(window >= 0.25, "paced run finished in {window} s");
}

/// `--write-per-request`: every frame (handshake, getData/ping, closeSession) goes
/// out in a `write` of its own, as the report's write counters show; the default
/// mode puts a connection's pipelined requests into fewer writes than frames.
#[test]
fn write_per_request_issues_one_write_per_frame() {
    let Some(srv) = start_server() else { return };
    let root = unique_root("perwrite");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "-s",
            &srv.addr,
            "--root",
            &root,
            "-c",
            "2",
            "-o",
            "8",
            "-w",
            "0",
            "-d",
            "30",
            "--requests",
            "400",
            "-r",
            "100",
            "--keys",
            "10",
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&loadgen(&args, LIMIT))
    };
    let v = run(&["--write-per-request"]);
    assert_eq!(v["ops"], 800, "{v}");
    assert_eq!(v["settings"]["write_per_request"], true);
    let io = &v["io"];
    // 2 connections: handshake + 400 getData + closeSession each.
    assert_eq!(io["frames_written"], 2 * (1 + 400 + 1), "{io}");
    assert_eq!(io["write_calls"], io["frames_written"], "{io}");
    let v = run(&[]);
    let io = &v["io"];
    assert_eq!(io["frames_written"], 2 * (1 + 400 + 1), "{io}");
    assert!(
        io["write_calls"].as_u64().unwrap() < io["frames_written"].as_u64().unwrap(),
        "pipelined requests share writes by default: {io}"
    );
}

#[test]
fn a_server_that_dies_mid_run_ends_the_run_with_a_message() {
    let Some(mut srv) = start_server() else {
        return;
    };
    let addr = srv.addr.clone();
    let root = unique_root("dies");
    let runner = std::thread::spawn(move || {
        loadgen(
            &[
                "-s",
                &addr,
                "--root",
                &root,
                "-c",
                "4",
                "-w",
                "0",
                "-d",
                "40",
                "--stall-timeout",
                "5",
            ],
            LIMIT,
        )
    });
    // Let the run get going, then kill the server under it.
    std::thread::sleep(Duration::from_secs(3));
    srv.kill();
    let out = runner.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains("closed connection") || out.stderr.contains("stopped answering"),
        "clear message expected, got:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&srv.addr),
        "names the server:\n{}",
        out.stderr
    );
    assert!(
        out.elapsed < Duration::from_secs(20),
        "ended promptly, took {:?}",
        out.elapsed
    );
}

/// Every watch loadgen sets is fired exactly once, and the event comes before the
/// reply of the setData that fired it. Passes against the reference
/// (`LOADGEN_TEST_SERVER=zookeeper`). It found corral serving a deferred getData from a
/// tree that already held the same session's later setData (fixed in af3412e).
#[test]
fn every_watch_set_fires_once_before_the_reply() {
    let Some(srv) = start_server() else { return };
    let out = loadgen(
        &[
            "-s",
            &srv.addr,
            "--root",
            &unique_root("watch"),
            "-c",
            "4",
            "-o",
            "4",
            "-w",
            "0",
            "-d",
            "10",
            "--requests",
            "300",
            "--mix",
            "watch:1,get:1",
            "--json",
        ],
        LIMIT,
    );
    let v = json(&out);
    let set = v["watches_set"].as_u64().unwrap();
    assert!(set > 0);
    assert_eq!(
        v["watch_events"].as_u64().unwrap(),
        set,
        "every watch fired once: {v}"
    );
    assert_eq!(
        v["watch_events_after_reply"], 0,
        "events precede the firing reply: {v}"
    );
}
