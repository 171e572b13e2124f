//! Four-letter words on a real corral process: each whitelisted word answers on the
//! client port and the connection closes; a word outside the whitelist answers the
//! reference's refusal; state shows up where an operator looks for it (a session in
//! `cons` and `dump`, a watch in `wchs`/`wchc`/`wchp`, node counts in `mntr`).

mod common;

use common::{RawClient, Server};
use corral::proto::{Acl, CreateKind, CreateRequest, Request};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn ask(addr: &str, word: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(word.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .expect("the server answers and closes");
    out
}

#[test]
fn every_word_answers_and_shows_the_state() {
    let server = Server::corral("4lw.commands.whitelist=*\n");
    let addr = server.addr();
    let mut c = RawClient::connect(&addr, 10_000);
    let create = Request::Create(CreateRequest {
        kind: CreateKind::Create,
        path: "/fourlw".into(),
        data: Some(b"x".to_vec()),
        acl: Acl::open(),
        flags: 1, // ephemeral: shows in dump
        ttl: -1,
    });
    assert_eq!(c.call(&create).unwrap().err, 0);
    let watch = Request::GetData {
        path: "/fourlw".into(),
        watch: true,
    };
    assert_eq!(c.call(&watch).unwrap().err, 0);
    let sid = format!("{:#x}", c.session_id);

    assert_eq!(ask(&addr, "ruok"), "imok");
    assert_eq!(ask(&addr, "isro"), "rw");
    let srvr = ask(&addr, "srvr");
    assert!(srvr.contains("Mode: standalone"), "{srvr}");
    assert!(srvr.contains("Node count: "), "{srvr}");
    let stat = ask(&addr, "stat");
    assert!(
        stat.contains("Clients:") && stat.contains("Mode: standalone"),
        "{stat}"
    );
    let mntr = ask(&addr, "mntr");
    assert!(mntr.contains("zk_server_state\tstandalone"), "{mntr}");
    assert!(mntr.contains("zk_ephemerals_count\t1"), "{mntr}");
    assert!(mntr.contains("zk_watch_count\t1"), "{mntr}");
    assert!(ask(&addr, "cons").contains(&format!("sid={sid}")));
    let dump = ask(&addr, "dump");
    assert!(dump.contains(&sid) && dump.contains("\t/fourlw"), "{dump}");
    assert!(ask(&addr, "wchs").contains("1 connections watching 1 paths"));
    let wchc = ask(&addr, "wchc");
    assert!(wchc.contains(&sid) && wchc.contains("\t/fourlw"), "{wchc}");
    let wchp = ask(&addr, "wchp");
    assert!(wchp.contains("/fourlw\n") && wchp.contains(&sid), "{wchp}");
    assert!(
        ask(&addr, "conf").contains(&format!("clientPort={}", addr.rsplit(':').next().unwrap()))
    );
    assert!(ask(&addr, "envi").starts_with("Environment:"));
    assert!(ask(&addr, "dirs").contains("datadir_size: "));
    assert_eq!(ask(&addr, "crst"), "Connection stats reset.\n");
    assert_eq!(ask(&addr, "srst"), "Server stats reset.\n");
    // The digest log takes every 128th zxid: none yet, as on the reference.
    assert_eq!(ask(&addr, "hash"), "");
    // The session is untouched by all this.
    assert_eq!(
        c.call(&Request::Exists {
            path: "/fourlw".into(),
            watch: false
        })
        .unwrap()
        .err,
        0
    );
    let _ = c.close_session();
}

#[test]
fn words_outside_the_whitelist_are_refused() {
    let server = Server::corral("4lw.commands.whitelist=ruok\n");
    let addr = server.addr();
    assert_eq!(ask(&addr, "ruok"), "imok");
    assert_eq!(
        ask(&addr, "mntr"),
        "mntr is not executed because it is not in the whitelist.\n"
    );
}
