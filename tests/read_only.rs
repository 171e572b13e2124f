//! Read-only mode (`readonlymode.enabled`): a member that has lost its quorum
//! serves read-only clients, as the reference's ReadOnlyZooKeeperServer does.
//! One sequence, run on three ensembles of three members: corral, the reference,
//! and a corral member among reference peers. The member left alone (sid 1, the
//! others killed) must:
//!
//! - say so (`isro` → `ro`, `srvr`/`stat` → `Mode: read-only` and the reference's
//!   READ-ONLY line, `mntr` → `zk_server_state read-only`);
//! - refuse a client that does not ask for read-only (connection closed), and a
//!   session of the ensemble (global) resuming here;
//! - give a read-only client a session flagged read-only, serve it the last
//!   committed tree, answer every change, `check` and `sync` NOTREADONLY, let it
//!   resume that session on a new connection and close it, and expire one whose
//!   client falls silent;
//! - serve kazoo with `read_only=True` and the Java client (zkCli `-r`), two
//!   third-party clients, the same way;
//! - leave the mode when the others come back: its read-only connections close,
//!   it serves read-write clients, and the data is whole.
//!
//! The reference reads the setting only as the JVM property
//! `-Dreadonlymode.enabled=true` (given to its members here), corral from zoo.cfg.
//! Reference 3.8.0 grants new read-only sessions only with
//! `localSessionsEnabled=true` (without it, its answer is a bare NOTREADONLY
//! header), so every member's zoo.cfg has it; corral ignores that key. The global
//! session is made so on both by creating an ephemeral (local sessions upgrade).
//!
//! No timing is asserted: the mode starts after a grace period of 2 s, waited for
//! with bounded polls.

mod common;

use common::ensemble::{call, create_req, CallError, Ensemble, Role, SESSION_TIMEOUT_MS};
use common::{
    four_letter_word, require_kazoo, run_client_program, zookeeper_cli_command, Kind, RawClient,
    ReadEnd,
};
use corral::proto::{ConnectRequest, CreateMode, ErrorCode, Request, Response};
use std::process::Command;
use std::time::Duration;

/// Polls of a member's `isro` while waiting for a mode (100 ms apart: ≈ 60 s).
const ISRO_POLLS_MAX: u32 = 600;
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(100);
/// The session timeout of the session left silent (the ensemble's minSessionTimeout).
const SHORT_TIMEOUT_MS: i32 = 1_000;
/// How long a connection the server should close may stay open.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// Waits (bounded) until `isro` on `addr` answers `want`.
fn wait_isro(ens: &Ensemble, addr: &str, want: &str) {
    let mut last = String::new();
    for _ in 0..ISRO_POLLS_MAX {
        last = four_letter_word(addr, "isro").unwrap_or_else(|e| format!("error: {e}"));
        if last == want {
            return;
        }
        std::thread::sleep(POLL);
    }
    panic!(
        "isro on {addr} never said {want:?} (last: {last:?})\n{}",
        ens.report()
    );
}

/// A handshake asking for a read-only session or not, resuming `session` if given.
fn handshake(
    addr: &str,
    read_only: bool,
    session: Option<(i64, Vec<u8>)>,
) -> std::io::Result<(RawClient, corral::proto::ConnectResponse)> {
    handshake_for(addr, read_only, session, SESSION_TIMEOUT_MS)
}

/// [`handshake`] asking for a session timeout of `timeout_ms`.
fn handshake_for(
    addr: &str,
    read_only: bool,
    session: Option<(i64, Vec<u8>)>,
    timeout_ms: i32,
) -> std::io::Result<(RawClient, corral::proto::ConnectResponse)> {
    let (session_id, passwd) = session.unwrap_or((0, vec![0; 16]));
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms,
        session_id,
        passwd,
        read_only: Some(read_only),
    };
    RawClient::handshake(addr, &req)
}

/// The handshake must end with the server closing the connection, unanswered.
fn assert_refused(addr: &str, read_only: bool, session: Option<(i64, Vec<u8>)>, what: &str) {
    match handshake(addr, read_only, session) {
        Err(_) => {}
        Ok((_, resp)) => panic!("{what}: answered {resp:?} instead of closing"),
    }
}

fn get(c: &mut RawClient, path: &str) -> Result<Vec<u8>, CallError> {
    let req = Request::GetData {
        path: path.into(),
        watch: false,
    };
    match call(c, &req)? {
        Response::Data { data, .. } => Ok(data.unwrap_or_default()),
        r => Err(CallError::Bad(format!("{r:?}"))),
    }
}

/// kazoo, `read_only=True`, against the read-only member: prints what it saw.
const KAZOO_SCRIPT: &str = r#"
import sys
from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
zk = KazooClient(hosts=sys.argv[1], read_only=True, timeout=10)
zk.start(timeout=30)
print("state", zk.client_state)
print("data", zk.get("/ro")[0].decode())
print("children", sorted(zk.get_children("/ro")))
try:
    zk.create("/ro/kazoo", b"x")
    print("create succeeded")
except NotReadOnlyCallError:
    print("create NotReadOnlyCallError")
try:
    zk.set("/ro", b"y")
    print("set succeeded")
except NotReadOnlyCallError:
    print("set NotReadOnlyCallError")
zk.stop()
zk.close()
"#;

fn read_only_member(members: &[(Kind, Role)]) {
    if !Ensemble::can_start(&members.iter().map(|m| m.0).collect::<Vec<_>>()) {
        return;
    }
    let kazoo = require_kazoo();
    let mut ens = Ensemble::configure(
        members,
        "readonlymode.enabled=true\nlocalSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true\n",
    );
    ens.set_reference_sysprops(&["-Dreadonlymode.enabled=true"]);
    ens.launch_all();
    let addr = ens.client_addr(1);
    assert_eq!(four_letter_word(&addr, "isro").unwrap(), "rw");

    // A global session (it owns an ephemeral) and the data, through member 1.
    let (mut rw, resp) = handshake(&addr, false, None).expect("read-write session");
    assert_ne!(resp.session_id, 0);
    let global = (resp.session_id, resp.passwd.clone());
    call(
        &mut rw,
        &create_req("/ro", b"before", CreateMode::Persistent),
    )
    .unwrap();
    call(
        &mut rw,
        &create_req("/ro/child", b"", CreateMode::Persistent),
    )
    .unwrap();
    call(&mut rw, &create_req("/ro/eph", b"", CreateMode::Ephemeral)).unwrap();
    drop(rw);

    // Member 1 alone: it looks for a leader, then serves read-only.
    ens.kill(2);
    ens.kill(3);
    wait_isro(&ens, &addr, "ro");
    for word in ["srvr", "stat"] {
        let text = four_letter_word(&addr, word).unwrap();
        assert!(text.contains("Mode: read-only\n"), "{word}: {text}");
        assert!(
            text.contains("READ-ONLY mode; serving only read-only clients\n"),
            "{word}: {text}"
        );
    }
    let mntr = four_letter_word(&addr, "mntr").unwrap();
    assert!(mntr.contains("zk_server_state\tread-only\n"), "{mntr}");

    assert_refused(&addr, false, None, "a read-write client");
    assert_refused(&addr, true, Some(global), "a global session resuming");

    let (mut ro, resp) = handshake(&addr, true, None).expect("read-only session");
    assert_ne!(resp.session_id, 0, "{resp:?}");
    assert_eq!(resp.read_only, Some(true), "{resp:?}");
    assert!(resp.timeout_ms > 0, "{resp:?}");
    let local = (resp.session_id, resp.passwd.clone());
    assert_eq!(get(&mut ro, "/ro").unwrap(), b"before");
    match call(
        &mut ro,
        &Request::GetChildren {
            path: "/ro".into(),
            watch: true,
        },
    ) {
        Ok(Response::Children(mut c)) => {
            c.sort();
            assert_eq!(c, ["child", "eph"]);
        }
        r => panic!("getChildren: {r:?}"),
    }
    let refused = [
        create_req("/ro/new", b"", CreateMode::Persistent),
        Request::SetData {
            path: "/ro".into(),
            data: Some(b"after".to_vec()),
            version: -1,
        },
        Request::Delete {
            path: "/ro/child".into(),
            version: -1,
        },
        Request::Sync { path: "/ro".into() },
        Request::Multi(vec![Request::Check {
            path: "/ro".into(),
            version: 0,
        }]),
    ];
    for req in &refused {
        let r = call(&mut ro, req);
        assert!(
            matches!(&r, Err(e) if e.is(ErrorCode::NotReadOnly)),
            "{req:?}: {r:?}"
        );
    }
    assert_eq!(get(&mut ro, "/ro").unwrap(), b"before", "nothing changed");

    // The local session moves to a new connection, then closes.
    drop(ro);
    let (mut ro, resp) = handshake(&addr, true, Some(local.clone())).expect("resume");
    assert_eq!(resp.session_id, local.0, "{resp:?}");
    assert_eq!(resp.read_only, Some(true), "{resp:?}");
    assert_eq!(get(&mut ro, "/ro/child").unwrap(), b"");
    let closed = ro.close_session().expect("closeSession answered");
    assert_eq!(closed.err, 0);
    let (_, resp) = handshake(&addr, true, Some(local)).expect("closed session");
    assert_eq!(resp.session_id, 0, "a closed session is expired: {resp:?}");

    // A read-only session whose client falls silent expires here: its connection
    // closes, and resuming it is answered "expired".
    let (mut silent, resp) =
        handshake_for(&addr, true, None, SHORT_TIMEOUT_MS).expect("short session");
    assert_eq!(resp.timeout_ms, SHORT_TIMEOUT_MS, "{resp:?}");
    let short = (resp.session_id, resp.passwd.clone());
    assert!(
        silent.wait_closed(CLOSE_WAIT).is_ok(),
        "a silent read-only session's connection stayed open"
    );
    let (_, resp) = handshake(&addr, true, Some(short)).expect("expired session");
    assert_eq!(resp.session_id, 0, "a silent session is expired: {resp:?}");

    if kazoo {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", KAZOO_SCRIPT, &addr]);
        let out = run_client_program(cmd, "");
        assert_eq!(
            out.stdout,
            "state CONNECTED_RO\ndata before\nchildren ['child', 'eph']\n\
             create NotReadOnlyCallError\nset NotReadOnlyCallError\n",
            "kazoo:\n{}",
            out.stderr
        );
    }

    // The Java client, asking for read-only (`-r`): connected read-only, reads
    // served, a create refused.
    let mut cli = zookeeper_cli_command(&addr, &[]);
    cli.arg("-r");
    let out = run_client_program(cli, "get /ro\ncreate /ro/cli x\nls /ro\nquit\n");
    let printed = format!("{}\n{}", out.stdout, out.stderr);
    for want in [
        "state:ConnectedReadOnly",
        "\nbefore\n",
        "Not a read-only call: /ro/cli",
        "[child, eph]",
    ] {
        assert!(
            printed.contains(want),
            "zkCli -r: no {want:?} in\n{printed}"
        );
    }

    // The others come back: the read-only connection closes, member 1 serves.
    let (mut ro, _) = handshake(&addr, true, None).expect("read-only session");
    ens.restart(2);
    ens.restart(3);
    match ro.wait_closed(CLOSE_WAIT) {
        Ok(_) => {}
        Err(ReadEnd::Timeout) => panic!("the read-only connection stayed open"),
        Err(e) => panic!("{e:?}"),
    }
    for sid in ens.sids() {
        ens.wait_serving(sid);
    }
    wait_isro(&ens, &addr, "rw");
    let (mut rw, resp) = handshake(&addr, false, None).expect("read-write session");
    assert_ne!(resp.session_id, 0);
    assert_eq!(resp.read_only, Some(false), "{resp:?}");
    call(
        &mut rw,
        &create_req("/ro/after", b"", CreateMode::Persistent),
    )
    .unwrap();
    assert_eq!(get(&mut rw, "/ro").unwrap(), b"before");
    ens.assert_same_tree();
}

#[test]
fn a_corral_member_without_quorum_serves_read_only_clients() {
    read_only_member(&[(Kind::Corral, Role::Participant); 3]);
}

#[test]
fn a_reference_member_without_quorum_serves_read_only_clients() {
    read_only_member(&[(Kind::Reference, Role::Participant); 3]);
}

#[test]
fn a_corral_member_of_a_reference_ensemble_serves_read_only_clients() {
    read_only_member(&[
        (Kind::Corral, Role::Participant),
        (Kind::Reference, Role::Participant),
        (Kind::Reference, Role::Participant),
    ]);
}
