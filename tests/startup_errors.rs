//! What an operator sees when corral cannot start: one line on stderr naming the
//! config line and key, the address, or the path, and a failing exit status —
//! run against the real binary.

use std::process::Command;
use std::time::{Duration, Instant};

fn run(cfg: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zoo.cfg");
    std::fs::write(&path, cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["server", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            return (out.status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("corral did not stop on a start-up error");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn corral_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("corral: "))
        .collect()
}

#[test]
fn an_unknown_key_names_the_line_and_the_key() {
    let (code, err) = run("tickTime=2000\nclientPort=1\nbogusKey=1\n");
    assert_eq!(code, Some(2));
    assert_eq!(
        corral_lines(&err),
        vec!["corral: config line 3: unknown key `bogusKey`"]
    );
}

#[test]
fn a_bad_value_names_the_key_and_the_value() {
    let (code, err) = run("clientPort=99999\n");
    assert_eq!(code, Some(2));
    assert_eq!(
        corral_lines(&err),
        vec![
            "corral: config line 1: `clientPort` has a bad value `99999`: expected a port 0-65535"
        ]
    );
}

#[test]
fn a_port_in_use_names_the_address() {
    // Held without SO_REUSEPORT, as another program would hold it.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let (code, err) = run(&format!(
        "clientPort={port}\nclientPortAddress=127.0.0.1\ndataDir={}\n",
        data.path().display()
    ));
    assert_eq!(code, Some(1));
    assert_eq!(
        corral_lines(&err),
        vec![format!(
            "corral: client port 127.0.0.1:{port} is already in use (clientPort / clientPortAddress)"
        )]
    );
}

#[test]
fn a_data_dir_that_is_a_file_names_the_path() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let (code, err) = run(&format!(
        "clientPort=0\nclientPortAddress=127.0.0.1\ndataDir={}\n",
        f.path().display()
    ));
    assert_eq!(code, Some(1));
    assert_eq!(
        corral_lines(&err),
        vec![format!(
            "corral: data directory {}: exists but is not a directory (dataDir / dataLogDir)",
            f.path().display()
        )]
    );
}

#[test]
fn a_distributed_config_without_myid_names_the_file() {
    let data = tempfile::tempdir().unwrap();
    let (code, err) = run(&format!(
        "dataDir={}\ninitLimit=10\nsyncLimit=5\nserver.1=127.0.0.1:2888:3888\n\
         server.2=127.0.0.1:2889:3889\nserver.3=127.0.0.1:2890:3890\n",
        data.path().display()
    ));
    assert_eq!(code, Some(2));
    assert_eq!(
        corral_lines(&err),
        vec![format!(
            "corral: myid file {} is missing: a distributed config needs this server's id there",
            data.path().join("myid").display()
        )]
    );
}

#[test]
fn a_quorum_key_store_that_cannot_be_read_names_the_key_and_the_file() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("myid"), "1\n").unwrap();
    let ca = data.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let missing = data.path().join("member.pem");
    // Ports free now (the member fails before it binds them).
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (quorum, election, client) = (free(), free(), free());
    let (code, err) = run(&format!(
        "dataDir={d}\nadmin.enableServer=false\nclientPort={client}\ninitLimit=10\nsyncLimit=5\n\
         server.1=127.0.0.1:{quorum}:{election}\nserver.2=127.0.0.1:2889:3889\nserver.3=127.0.0.1:2890:3890\n\
         sslQuorum=true\nssl.quorum.keyStore.location={k}\nssl.quorum.trustStore.location={c}\n",
        d = data.path().display(),
        k = missing.display(),
        c = ca.display()
    ));
    assert_eq!(code, Some(1), "{err}");
    // Before recovery or the election: nothing else is logged.
    assert!(!err.contains("LOOKING"), "{err}");
    let lines = corral_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains(&format!(
            "ssl.quorum.keyStore.location={}: cannot read it",
            missing.display()
        )),
        "{err}"
    );
}
