//! Config tests: the zoo.cfg keys the reference reads and how corral takes each (parsed,
//! acted on, warned about or refused, naming line and key), the embedded default, myid
//! and ensemble server lines, dynamic config files, TLS, SASL and quorum TLS keys.

use super::*;

#[test]
fn embedded_default_is_standalone_on_loopback() {
    let c = Config::embedded_default();
    assert_eq!(c.client_addr().to_string(), "127.0.0.1:2181");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.min_session_timeout(), 4000);
    assert_eq!(c.max_session_timeout(), 40000);
    assert!(c.four_letter_whitelist.allows("mntr"));
    assert_eq!(
        c.autopurge_purge_interval_hours, 1,
        "purging is on by default"
    );
    assert_eq!(c.autopurge_snap_retain_count, 3);
    assert!(c.admin.enabled, "the AdminServer is on, as the reference's");
    assert_eq!(c.admin.address.to_string(), "127.0.0.1", "but on loopback");
}

#[test]
fn autopurge_keys_read_as_the_reference_reads_them() {
    // Off unless a positive interval is given; negative is off, not an error.
    assert_eq!(Config::parse("").unwrap().autopurge_purge_interval_hours, 0);
    let c = Config::parse("autopurge.purgeInterval=-1\n").unwrap();
    assert_eq!(c.autopurge_purge_interval_hours, -1);
    let c = Config::parse("autopurge.purgeInterval=24\nautopurge.snapRetainCount=7\n").unwrap();
    let purge = (
        c.autopurge_purge_interval_hours,
        c.autopurge_snap_retain_count,
    );
    assert_eq!(purge, (24, 7));
    // Fewer than 3 retained snapshots is raised to 3 (with a warning), as there.
    let c = Config::parse("autopurge.snapRetainCount=1\n").unwrap();
    assert_eq!(c.autopurge_snap_retain_count, 3);
    let e = Config::parse("autopurge.purgeInterval=daily\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "config line 1: `autopurge.purgeInterval` has a bad value `daily`: expected hours"
    );
}

#[test]
fn reference_keys_parse() {
    let c = Config::parse(
        "tickTime=500\n# comment\n\ndataDir=/tmp/x\nclientPort=3000\n\
         maxSessionTimeout=9000\n4lw.commands.whitelist=ruok, srvr\njute.maxbuffer=2048\n\
         extendedTypesEnabled=true\nforceSync=no\ncorral.shardCores=1\nfsync.warningthresholdms=50\n",
    )
    .unwrap();
    assert_eq!(c.fsync_warning_threshold_ms, 50);
    assert_eq!(c.tick_time_ms, 500);
    assert_eq!(c.client_port, 3000);
    assert_eq!(c.min_session_timeout(), 1000);
    assert_eq!(c.max_session_timeout(), 9000);
    assert!(c.four_letter_whitelist.allows("ruok"));
    assert!(!c.four_letter_whitelist.allows("mntr"));
    assert!(c.extended_types_enabled && !c.force_sync);
    assert_eq!(c.shard_cores, 1);
}

#[test]
fn errors_name_the_line_and_key() {
    let e = Config::parse("tickTime=2000\nbogusKey=1\n").unwrap_err();
    assert_eq!(e.to_string(), "config line 2: unknown key `bogusKey`");
    let e = Config::parse("clientPort=99999\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "config line 1: `clientPort` has a bad value `99999`: expected a port 0-65535"
    );
    let e = Config::parse("just words\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "config line 1: expected `key=value`, got `just words`"
    );
    let e = Config::parse("minSessionTimeout=5000\nmaxSessionTimeout=4000\n").unwrap_err();
    assert!(e.to_string().contains("greater than maxSessionTimeout"));
    let e = Config::parse("4lw.commands.whitelist=ruok,nope\n").unwrap_err();
    assert!(e.to_string().contains("unknown four-letter word `nope`"));
}

// ---- Every existing error message, byte for byte ----

#[test]
fn every_existing_bad_value_message_is_unchanged() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "tickTime",
            "0",
            "expected a positive number of milliseconds",
        ),
        ("initLimit", "x", "expected ticks"),
        ("syncLimit", "-1", "expected ticks"),
        ("dataDir", "", "expected a directory"),
        ("dataLogDir", "", "expected a directory"),
        ("clientPort", "99999", "expected a port 0-65535"),
        (
            "clientPortAddress",
            "localhost",
            "expected an IP address such as 127.0.0.1",
        ),
        ("maxClientCnxns", "-1", "expected a count"),
        ("minSessionTimeout", "soon", "expected milliseconds"),
        ("maxSessionTimeout", "later", "expected milliseconds"),
        (
            "4lw.commands.whitelist",
            "ruok,nope",
            "unknown four-letter word `nope`",
        ),
        (
            "jute.maxbuffer",
            "10",
            "expected bytes between 1024 and 1073741824",
        ),
        (
            "extendedTypesEnabled",
            "maybe",
            "expected true/false or yes/no",
        ),
        ("forceSync", "1", "expected true/false or yes/no"),
        (
            "zookeeper.DigestAuthenticationProvider.superDigest",
            "super",
            "expected user:base64(sha1(user:password))",
        ),
        ("snapCount", "1", "expected a count of at least 2"),
        ("snapSizeLimitInKb", "big", "expected kilobytes"),
        ("autopurge.snapRetainCount", "all", "expected a count"),
        ("autopurge.purgeInterval", "daily", "expected hours"),
        ("preAllocSize", "-5", "expected kilobytes"),
        (
            "admin.enableServer",
            "on",
            "expected true or false (the reference reads anything but true as false)",
        ),
        ("admin.serverPort", "http", "expected a port 0-65535"),
        (
            "admin.commandURL",
            "commands",
            "expected a URL path such as /commands",
        ),
        ("metricsProvider.httpPort", "-1", "expected a port 0-65535"),
        (
            "server.x",
            "h:1:2",
            "expected server.<id> with a numeric id",
        ),
        ("corral.shardCores", "0", "expected 1 to 64"),
        ("corral.sequencerCore", "2", "expected `own` or `shard`"),
        ("corral.inlineSyncMaxMicros", "-1", "expected microseconds"),
        ("corral.cpuPinning", "2", "expected true/false or yes/no"),
        (
            "corral.ioMemoryBytes",
            "100",
            "expected bytes, at least 65536",
        ),
        ("corral.spinBeforeParkMicros", "-1", "expected microseconds"),
        ("corral.batchRequestsMax", "0", "expected a positive count"),
        (
            "corral.maxOutstandingPerConnection",
            "0",
            "expected a positive count",
        ),
        (
            "corral.maxWatchesPerConnection",
            "0",
            "expected a positive count",
        ),
        (
            "corral.containerCheckIntervalMs",
            "0",
            "expected positive milliseconds",
        ),
        (
            "corral.logSegmentBytes",
            "1024",
            "expected bytes, at least 1048576",
        ),
    ];
    for (key, value, why) in cases {
        let text = format!("# first\n{key}={value}\n");
        let e = Config::parse(&text).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("config line 2: `{key}` has a bad value `{value}`: {why}"),
            "{key}"
        );
    }
    let e = Config::parse("minSessionTimeout=5000\nmaxSessionTimeout=4000\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "config: minSessionTimeout (5000 ms) is greater than maxSessionTimeout (4000 ms)"
    );
}

/// The keys QuorumPeerConfig reads with its own parseBoolean: the reference
/// refuses to start on a value other than true or false (any case), and so does
/// corral, saying so; `yes` is no longer taken for the ensemble's keys.
#[test]
fn keys_the_reference_parses_strictly_take_only_true_or_false() {
    let keys = [
        "localSessionsEnabled",
        "localSessionsUpgradingEnabled",
        "standaloneEnabled",
        "reconfigEnabled",
        "quorumListenOnAllIPs",
        "syncEnabled",
        "multiAddress.enabled",
        "sslQuorum",
        "portUnification",
        "sslQuorumReloadCertFiles",
        "quorum.auth.enableSasl",
        "quorum.auth.learnerRequireSasl",
        "quorum.auth.serverRequireSasl",
    ];
    for key in keys {
        let e = Config::parse(&format!("# first\n{key}=yes\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "config line 2: `{key}` has a bad value `yes`: expected true or false (the \
                 reference refuses any other value)"
            ),
        );
        for ok in ["true", "FALSE", "True"] {
            if let Err(e) = Config::parse(&format!("{key}={ok}\n")) {
                assert!(!e.to_string().contains("bad value"), "{key}={ok}: {e}");
            }
        }
    }
}

#[test]
fn the_reference_spelling_of_super_digest_is_taken_too() {
    let c = Config::parse("DigestAuthenticationProvider.superDigest=super:abc=\n").unwrap();
    assert_eq!(c.super_digest.as_deref(), Some("super:abc="));
}

#[test]
fn keepalive_keys_take_true_or_false() {
    let c = Config::parse("clientTcpKeepAlive=true\nzookeeper.tcpKeepAlive=TRUE\n").unwrap();
    assert!(c.client_tcp_keep_alive && c.tcp_keep_alive && c.warnings.is_empty());
    let c = Config::parse("").unwrap();
    assert!(!c.client_tcp_keep_alive && !c.tcp_keep_alive);
    let e = Config::parse("tcpKeepAlive=yes\n").unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("tcpKeepAlive"), "{e}");
}

#[test]
fn enforced_auth_takes_the_schemes_this_server_has() {
    let c = Config::parse("enforce.auth.enabled=true\nenforce.auth.schemes=digest, ip\n").unwrap();
    assert_eq!(c.enforce_auth_schemes, ["digest", "ip"]);
    assert!(Config::parse("enforce.auth.schemes=digest\n")
        .unwrap()
        .enforce_auth_schemes
        .is_empty());
    // Java's split drops trailing empty pieces; unused schemes are not checked.
    let c = Config::parse("enforce.auth.enabled=true\nenforce.auth.schemes=digest,,\n").unwrap();
    assert_eq!(c.enforce_auth_schemes, ["digest"]);
    assert!(Config::parse("enforce.auth.schemes=nope,\n").is_ok());
    let sasl = format!(
        "authProvider.1={}\nsessionRequireClientSASLAuth=true\nenforce.auth.enabled=true\n\
         enforce.auth.schemes=digest\n",
        crate::auth::SASL_PROVIDER_CLASS
    );
    assert_eq!(Config::parse(&sasl).unwrap().enforce_auth_schemes, ["sasl"]);
    for (cfg, why) in [
        (
            "enforce.auth.enabled=true\n",
            "enforce.auth.schemes must be set",
        ),
        (
            "enforce.auth.enabled=true\nenforce.auth.schemes=digest,kerberos\n",
            "authentication scheme `kerberos` is not available",
        ),
        (
            "enforce.auth.enabled=true\nenforce.auth.schemes=digest,,ip\n",
            "authentication scheme `` is not available",
        ),
        (
            "sessionRequireClientSASLAuth=true\n",
            "scheme `sasl` is not available",
        ),
        (
            "enforce.auth.enabled=true\nenforce.auth.schemes=x509\n",
            "`x509` is not available",
        ),
        ("enforce.auth.enabled=yes\n", "expected true or false"),
    ] {
        let err = Config::parse(cfg).unwrap_err().to_string();
        assert!(err.contains(why), "{cfg:?}: {err}");
    }
}

#[test]
fn digest_alg_takes_java_digest_names() {
    use crate::tree::DigestAlg;
    assert_eq!(Config::parse("").unwrap().digest_alg, DigestAlg::Sha1);
    let c = Config::parse("zookeeper.DigestAuthenticationProvider.digestAlg=SHA-256\n").unwrap();
    assert_eq!((c.digest_alg, c.warnings.len()), (DigestAlg::Sha256, 0));
    let c = Config::parse("DigestAuthenticationProvider.digestAlg=sha3-512\n").unwrap();
    assert_eq!(c.digest_alg, DigestAlg::Sha3_512);
    let e = Config::parse("DigestAuthenticationProvider.digestAlg=NOPE\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 1") && e.contains("expected a Java MessageDigest name"),
        "{e}"
    );
}

#[test]
fn client_port_unification_needs_the_key_store_not_a_tls_port() {
    let c = Config::parse(
        "ssl.keyStore.location=/k.pem\nssl.clientAuth=none\nclient.portUnification=true\n",
    )
    .unwrap();
    let t = c.tls.as_ref().expect("TLS on the client port");
    assert!(t.unified_client_port && t.addr.is_none() && c.client_port_enabled);
    let e = Config::parse("client.portUnification=true\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ssl.keyStore.location") && e.contains("client.portUnification"),
        "{e}"
    );
    let c = Config::parse("client.portUnification=false\nssl.keyStore.location=/k.pem\n").unwrap();
    assert!(c.tls.is_none());
}

#[test]
fn digest_auth_can_be_turned_off() {
    assert!(Config::parse("").unwrap().digest_auth_enabled);
    let off = "DigestAuthenticationProvider.enabled=false\n";
    let c = Config::parse(off).unwrap();
    assert!(!c.digest_auth_enabled && c.warnings.is_empty());
    let enforced = format!("{off}enforce.auth.enabled=true\nenforce.auth.schemes=digest\n");
    let e = Config::parse(&enforced).unwrap_err().to_string();
    assert!(e.contains("scheme `digest` is not available"), "{e}");
}

#[test]
fn client_port_listen_backlog_is_taken_when_positive() {
    assert_eq!(Config::parse("").unwrap().client_port_listen_backlog, None);
    let c = Config::parse("clientPortListenBacklog=7\n").unwrap();
    assert_eq!(c.client_port_listen_backlog, Some(7));
    // As the reference: zero or less leaves the default.
    let c = Config::parse("clientPortListenBacklog=-1\n").unwrap();
    assert_eq!(c.client_port_listen_backlog, None);
    assert!(Config::parse("clientPortListenBacklog=lots\n").is_err());
}

#[test]
fn read_only_mode_is_off_unless_asked() {
    assert!(!Config::parse("").unwrap().read_only_mode);
    assert!(
        Config::parse("readonlymode.enabled=true\n")
            .unwrap()
            .read_only_mode
    );
    assert!(
        Config::parse("zookeeper.readonlymode.enabled=TRUE\n")
            .unwrap()
            .read_only_mode
    );
    assert!(
        !Config::parse("readonlymode.enabled=false\n")
            .unwrap()
            .read_only_mode
    );
    // Boolean.getBoolean would read `yes` as false: refused rather than guessed.
    assert!(Config::parse("readonlymode.enabled=yes\n").is_err());
}

#[test]
fn skip_acl_is_on_only_for_yes_as_on_the_reference() {
    let c = Config::parse("skipACL=yes\n").unwrap();
    assert!(c.skip_acl);
    assert_eq!(
        c.warnings,
        [
            "line 1: skipACL=yes: no ACL is checked, every client may read, change and \
          delete every znode"
        ]
    );
    assert!(Config::parse("zookeeper.skipACL=yes\n").unwrap().skip_acl);
    let c = Config::parse("skipACL=true\n").unwrap();
    assert!(!c.skip_acl);
    assert_eq!(
        c.warnings,
        [
            "line 1: skipACL=true: ACLs are still checked (as on the reference, only `yes` \
          turns them off)"
        ]
    );
    let c = Config::parse("skipACL=no\n").unwrap();
    assert!(!c.skip_acl && c.warnings.is_empty());
    assert!(!Config::parse("").unwrap().skip_acl);
}

// ---- Keys accepted with one warning; misspellings still refused ----

#[test]
fn each_group_of_keys_without_effect_is_accepted_with_one_warning() {
    let keys = [
        "ssl.quorum.context.supplier.class=com.example.OwnContext",
        "ssl.quorum.handshakeDetectionTimeoutMillis=100",
        "authProvider.1=com.example.OwnAuthenticationProvider",
        "admin.portUnification=true",
        "metricsProvider.numWorkerThreads=2",
        "observerMasterPort=2191",
        "digest.enabled=false",
        "snapshot.trust.empty=true",
        "fastleader.minNotificationInterval=200",
        "znode.container.checkIntervalMs=1000",
        "zookeeper.nio.numWorkerThreads=8",
        "connection_throttle_tokens=100",
        "jvm.pause.monitor=true",
        "multiAddress.reachabilityCheckEnabled=false",
    ];
    let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.warnings.len(), keys.len(), "{:#?}", c.warnings);
    for (i, (w, k)) in c.warnings.iter().zip(keys).enumerate() {
        let key = k.split('=').next().unwrap();
        assert!(
            w.starts_with(&format!(
                "config line {}: `{key}` is accepted but has no effect yet in corral",
                i + 1
            )),
            "{w}"
        );
    }
    assert!(c.quorum.is_none());
}

#[test]
fn a_misspelt_key_still_stops_start_up_with_its_line() {
    for (text, key) in [
        (
            "tickTime=2000\n\nlocalSesionsEnabled=true\n",
            "localSesionsEnabled",
        ),
        (
            "tickTime=2000\n\nzookeeper.snapCount=5\n",
            "zookeeper.snapCount",
        ),
        (
            "tickTime=2000\n\nstandaloneEnable=false\n",
            "standaloneEnable",
        ),
        ("tickTime=2000\n\nmaxCnxn=10\n", "maxCnxn"),
    ] {
        let e = Config::parse(text).unwrap_err();
        assert_eq!(e.to_string(), format!("config line 3: unknown key `{key}`"));
    }
}

// ---- SASL ----

const JAAS: &str = "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
                    user_bob=\"bobsecret\";\n};\n";

#[test]
fn sasl_keys_as_the_reference_reads_them() {
    let files = Files(vec![(PathBuf::from("/etc/jaas.conf"), JAAS.into())]);
    let text = "java.security.auth.login.config=/etc/jaas.conf\n\
                authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n\
                zookeeper.allowSaslFailedClients=true\n\
                superUser=bob\n\
                zookeeper.superUser.2=alice\n\
                SASLAuthenticationProvider.superPassword=s3cret\n";
    let c = Config::parse_with(text, None, &files).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let s = &c.sasl;
    assert_eq!(s.jaas_path.as_deref(), Some(Path::new("/etc/jaas.conf")));
    assert_eq!(s.password("bob"), Some("bobsecret"));
    assert!(s.provider_enabled && s.allow_failed_clients);
    assert_eq!(s.super_users, vec!["bob".to_string(), "alice".to_string()]);
    assert!(s.is_super_user("alice") && !s.is_super_user("eve"));
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "passwords never print"
    );
    assert!(
        !format!("{c:?}").contains("bobsecret"),
        "passwords never print"
    );
    assert!(c
        .initial_text
        .contains("SASLAuthenticationProvider.superPassword=********\n"));
    // Off by default.
    let c = Config::parse("").unwrap();
    assert_eq!(c.sasl, crate::auth::SaslSettings::default());
}

#[test]
fn the_sasl_provider_without_a_jaas_file_warns_and_other_providers_have_no_effect() {
    let c = Config::parse(
        "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n\
         authProvider.2=com.example.Other\n",
    )
    .unwrap();
    assert!(c.sasl.provider_enabled);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("`authProvider.2` is accepted but has no effect"));
    assert!(c.warnings[1].contains("no SASL login can succeed"));
}

#[test]
fn a_bad_or_missing_jaas_file_stops_start_up_naming_file_and_line() {
    let key = "java.security.auth.login.config=/etc/jaas.conf\n";
    let bad = "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
               user_bob=\"x\"\n";
    let files = Files(vec![(PathBuf::from("/etc/jaas.conf"), bad.into())]);
    assert_eq!(
        parse(key, &files).unwrap_err(),
        "JAAS file /etc/jaas.conf (java.security.auth.login.config) line 4: \
         expected an option `key=value` or `;`, found the end of the file"
    );
    assert_eq!(
        parse(key, &Files(vec![])).unwrap_err(),
        "JAAS file /etc/jaas.conf (java.security.auth.login.config) does not exist or is not a file"
    );
    // A file without a Server section: logins off, with a warning.
    let client_only = "Client { org.apache.zookeeper.server.auth.DigestLoginModule required; };";
    let files = Files(vec![(PathBuf::from("/etc/jaas.conf"), client_only.into())]);
    let c = Config::parse_with(key, None, &files).unwrap();
    assert!(c.sasl.users.is_none());
    assert!(
        c.warnings[0].contains("no `Server` section"),
        "{:?}",
        c.warnings
    );
    // An empty Server section is no section (the JVM answers null for it): the same.
    let files = Files(vec![(
        PathBuf::from("/etc/jaas.conf"),
        "Server {\n};\n".into(),
    )]);
    let c = Config::parse_with(key, None, &files).unwrap();
    assert!(c.sasl.users.is_none());
    assert!(
        c.warnings[0].contains("no `Server` section with a login module"),
        "{:?}",
        c.warnings
    );
    let e = Config::parse("java.security.auth.login.config=\n").unwrap_err();
    assert!(
        e.to_string().contains("expected the path of a JAAS file"),
        "{e}"
    );
    let e = Config::parse("zookeeper.java.security.auth.login.config=/x\n").unwrap_err();
    assert!(e.to_string().contains("unknown key"), "{e}");
}

// ---- Ensembles ----

/// Side files by path, for `parse_with`.
struct Files(Vec<(PathBuf, String)>);

impl ConfigFiles for Files {
    fn read(&self, path: &Path) -> std::io::Result<Option<String>> {
        Ok(self
            .0
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, t)| t.clone()))
    }
}

fn myid(text: &str) -> Files {
    Files(vec![(PathBuf::from("/zk/myid"), text.into())])
}

const ENSEMBLE: &str = "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/zk\n\
                        server.1=127.0.0.1:2888:3888\n\
                        server.2=127.0.0.1:2889:3889\n\
                        server.3=127.0.0.1:2890:3890\n";

fn parse(text: &str, files: &Files) -> Result<Config, String> {
    Config::parse_with(text, None, files).map_err(|e| e.to_string())
}

#[test]
fn three_participants_with_a_myid_are_distributed() {
    let c = parse(ENSEMBLE, &myid("2\n")).unwrap();
    assert!(c.is_distributed());
    let q = c.quorum.as_ref().unwrap();
    assert_eq!(q.my_id, Some(2));
    assert_eq!(q.servers.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(q.me().unwrap().quorum.to_string(), "127.0.0.1:2889");
    assert_eq!(q.peer_type, PeerRole::Participant);
    assert_eq!(q.version, 0);
    assert!(q.standalone_enabled && !q.reconfig_enabled && q.sync_enabled);
    assert!(!q.quorum_listen_on_all_ips && !q.multi_address_enabled);
    assert_eq!((c.init_limit_ticks, c.sync_limit_ticks), (10, 5));
    // No client part on the lines: the client address stays the static one and the
    // text leaves it out.
    assert_eq!(c.client_addr().to_string(), "127.0.0.1:2181");
    assert_eq!(
        q.to_text(),
        "server.1=127.0.0.1:2888:3888:participant\nserver.2=127.0.0.1:2889:3889:participant\n\
         server.3=127.0.0.1:2890:3890:participant\nversion=0"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn the_captured_ensemble_gives_the_captured_text() {
    let cfg = "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/zk\nreconfigEnabled=true\n\
               server.1=127.0.0.1:23192:23202;127.0.0.1:23181\n\
               server.2=127.0.0.1:23193:23203:participant;127.0.0.1:23182\n\
               server.3=127.0.0.1:23194:23204;127.0.0.1:23183\n";
    let c = parse(cfg, &myid("1")).unwrap();
    let q = c.quorum.as_ref().unwrap();
    assert!(q.reconfig_enabled);
    assert_eq!(
        q.to_text(),
        "server.1=127.0.0.1:23192:23202:participant;127.0.0.1:23181\n\
         server.2=127.0.0.1:23193:23203:participant;127.0.0.1:23182\n\
         server.3=127.0.0.1:23194:23204:participant;127.0.0.1:23183\n\
         version=0"
    );
    assert_eq!(
        QuorumVerifier::parse_text(&q.to_text()).unwrap(),
        q.verifier()
    );
    // Our own line's client part is where clients connect.
    assert_eq!(c.client_addr().to_string(), "127.0.0.1:23181");
}

#[test]
fn myid_missing_garbage_or_not_in_the_list() {
    let none = Files(vec![]);
    assert_eq!(
        parse(ENSEMBLE, &none).unwrap_err(),
        "myid file /zk/myid is missing: a distributed config needs this server's id there"
    );
    assert_eq!(
        parse(ENSEMBLE, &myid("4\n")).unwrap_err(),
        "myid file /zk/myid says my id is 4, which is not in the peer list \
         (server.1, server.2, server.3)"
    );
    assert_eq!(
        parse(ENSEMBLE, &myid("one\n")).unwrap_err(),
        "myid file /zk/myid line 1: `one` is not a server id (expected a decimal number)"
    );
    assert_eq!(
        parse(ENSEMBLE, &myid("")).unwrap_err(),
        "myid file /zk/myid line 1: `` is not a server id (expected a decimal number)"
    );
    // The first line only; surrounding blanks do not matter.
    let c = parse(ENSEMBLE, &myid(" 3 \r\nignored")).unwrap();
    assert_eq!(c.quorum.unwrap().my_id, Some(3));
}

#[test]
fn init_and_sync_limits_are_required_when_distributed() {
    let without = |key: &str| ENSEMBLE.replace(&format!("{key}="), &format!("#{key}="));
    assert_eq!(
        parse(&without("initLimit"), &myid("1")).unwrap_err(),
        "config: `initLimit` is not set: a distributed config (server.N lines) needs it, in ticks"
    );
    assert_eq!(
        parse(&without("syncLimit"), &myid("1")).unwrap_err(),
        "config: `syncLimit` is not set: a distributed config (server.N lines) needs it, in ticks"
    );
    let zero = ENSEMBLE.replace("syncLimit=5", "syncLimit=0");
    assert!(parse(&zero, &myid("1"))
        .unwrap_err()
        .contains("`syncLimit` is not set"));
    // Standalone needs neither.
    assert!(Config::parse("dataDir=/zk\n").is_ok());
}

#[test]
fn one_participant_with_standalone_enabled_runs_standalone() {
    let one = "dataDir=/zk\nserver.1=127.0.0.1:2888:3888;127.0.0.1:2300\n";
    // No myid, no initLimit: fine, it is not distributed.
    let c = parse(one, &Files(vec![])).unwrap();
    assert!(!c.is_distributed());
    assert!(c.quorum.is_some());
    assert!(
        c.warnings[0].contains("running standalone"),
        "{:?}",
        c.warnings
    );
    assert_eq!(c.client_addr().to_string(), "127.0.0.1:2181");
    // With a myid naming that line, its client address is used, as the reference does.
    let c = parse(one, &myid("1")).unwrap();
    assert!(!c.is_distributed());
    assert_eq!(c.client_addr().to_string(), "127.0.0.1:2300");
    // standaloneEnabled=false makes even one participant an ensemble.
    let c = parse(
        &format!("{one}standaloneEnabled=false\ninitLimit=5\nsyncLimit=2\n"),
        &myid("1"),
    )
    .unwrap();
    assert!(c.is_distributed());
    assert!(!c.quorum.unwrap().standalone_enabled);
}

#[test]
fn observers_need_participants() {
    let obs = "dataDir=/zk\nserver.1=h:1:2:observer\n";
    assert_eq!(
        parse(obs, &myid("1")).unwrap_err(),
        "config: observers without participants is an invalid configuration"
    );
    let one_and_obs = "dataDir=/zk\ninitLimit=5\nsyncLimit=2\n\
                       server.1=h:1:2\nserver.2=h:3:4:observer\n";
    assert!(parse(one_and_obs, &myid("1"))
        .unwrap_err()
        .contains("observers need at least 2 participants"));
    let c = parse(
        &format!("{one_and_obs}standaloneEnabled=false\n"),
        &myid("2"),
    )
    .unwrap();
    assert!(c.is_distributed());
    assert_eq!(c.quorum.unwrap().peer_type, PeerRole::Observer);
    assert_eq!(
        Config::parse("standaloneEnabled=false\n")
            .unwrap_err()
            .to_string(),
        "config: standaloneEnabled=false needs at least one participant server.N line"
    );
}

#[test]
fn peer_type_disagreeing_with_the_list_is_a_warning() {
    let text = format!("{ENSEMBLE}peerType=observer\n");
    let c = parse(&text, &myid("1")).unwrap();
    assert_eq!(c.quorum.unwrap().peer_type, PeerRole::Participant);
    assert_eq!(
        c.warnings,
        vec![
            "config line 8: peerType=observer disagrees with the server list, which makes \
             this server a participant; using participant"
        ]
    );
    let e = Config::parse("peerType=leader\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "config line 1: `peerType` has a bad value `leader`: expected participant or observer"
    );
}

#[test]
fn election_alg_must_be_3() {
    assert!(Config::parse("electionAlg=3\n").is_ok());
    assert_eq!(
        Config::parse("electionAlg=0\n").unwrap_err().to_string(),
        "config line 1: `electionAlg` has a bad value `0`: only 3 (fast leader election) is \
         supported"
    );
}

#[test]
fn ensemble_keys_are_read() {
    let text = format!(
        "{ENSEMBLE}quorumListenOnAllIPs=true\nsyncEnabled=false\nconnectToLearnerMasterLimit=7\n\
         reconfigEnabled=true\nversion=100000000\n"
    );
    let q = parse(&text, &myid("1")).unwrap().quorum.unwrap();
    assert!(q.quorum_listen_on_all_ips && !q.sync_enabled && q.reconfig_enabled);
    assert_eq!(q.connect_to_learner_master_limit_ticks, 7);
    assert_eq!(q.version, 0x1_0000_0000);
}

#[test]
fn bad_server_lines_name_the_line_key_and_value() {
    let bad = |line: &str| {
        let text = format!("dataDir=/zk\n{line}\n");
        Config::parse(&text).unwrap_err().to_string()
    };
    assert_eq!(
        bad("server.1=h:2888:2888"),
        "config line 2: `server.1` has a bad value `h:2888:2888`: the quorum port and the \
         election port must differ"
    );
    assert_eq!(
        bad("server.1=h:2888"),
        "config line 2: `server.1` has a bad value `h:2888`: expected \
         host:quorumPort:electionPort[:participant|observer][;[clientHost:]clientPort]"
    );
    assert_eq!(
        bad("server.1=h:1:2:leader"),
        "config line 2: `server.1` has a bad value `h:1:2:leader`: unknown server type \
         `leader` (expected participant or observer)"
    );
    assert_eq!(
        bad("server.-1=h:1:2"),
        "config line 2: `server.-1` has a bad value `h:1:2`: expected server.<id> with a \
         numeric id"
    );
    assert_eq!(
        bad("server.1=a:1:2|b:1:2"),
        "config line 2: `server.1` has a bad value `a:1:2|b:1:2`: multiple address feature \
         is disabled, but multiple addresses were specified (set multiAddress.enabled=true)"
    );
    // multiAddress.enabled applies whatever the order of the lines; then it is refused.
    let e = Config::parse("server.1=a:1:2|b:1:2\nmultiAddress.enabled=true\n").unwrap_err();
    assert!(
        e.to_string().ends_with("are not supported yet in corral"),
        "{e}"
    );
    assert_eq!(
        bad("group.1=1:2:3"),
        "config line 2: `group.1`: hierarchical quorums (group/weight lines) are not \
         supported yet"
    );
    let e = Config::parse("server.1=h:1:2\nserver.01=h:3:4\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "config line 2: `server.01`: names the same server as `server.1` (line 1)"
    );
}

#[test]
fn ipv6_ensembles_parse() {
    let text = "dataDir=/zk\ninitLimit=5\nsyncLimit=2\n\
                server.1=[::1]:2888:3888;[::1]:2181\nserver.2=[::1]:2889:3889:participant\n\
                server.3=[::1]:2890:3890:observer\n";
    let c = parse(text, &myid("1")).unwrap();
    assert!(c.is_distributed());
    assert_eq!(c.client_addr().to_string(), "[::1]:2181");
    assert!(c
        .quorum
        .unwrap()
        .to_text()
        .starts_with("server.1=[0:0:0:0:0:0:0:1]:2888:3888:participant;[0:0:0:0:0:0:0:1]:2181\n"));
}

#[test]
fn our_client_address_must_agree_with_client_port() {
    let base = "dataDir=/zk\ninitLimit=5\nsyncLimit=2\nserver.2=h:3:4\nserver.3=h:5:6\n";
    let with = |extra: &str, line: &str| format!("{base}{extra}server.1={line}\n");
    // Only the port is compared when clientPortAddress is not set.
    let c = parse(
        &with("clientPort=2300\n", "h:1:2;127.0.0.5:2300"),
        &myid("1"),
    )
    .unwrap();
    assert_eq!(c.client_addr().to_string(), "127.0.0.5:2300");
    assert_eq!(
        parse(&with("clientPort=2181\n", "h:1:2;2300"), &myid("1")).unwrap_err(),
        "config: client address for this server (id 1) is 0.0.0.0:2181 in \
         clientPort/clientPortAddress but 0.0.0.0:2300 in server.1"
    );
    let both = "clientPort=2300\nclientPortAddress=127.0.0.1\n";
    assert!(parse(&with(both, "h:1:2;127.0.0.1:2300"), &myid("1")).is_ok());
    assert!(parse(&with(both, "h:1:2;127.0.0.2:2300"), &myid("1")).is_err());
    // A port-only client part listens on every address, as the reference does.
    let c = parse(&with("", "h:1:2;2400"), &myid("1")).unwrap();
    assert_eq!(c.client_addr().to_string(), "0.0.0.0:2400");
    assert_eq!(
        parse(&with("", "h:1:2;zk1:2400"), &myid("1")).unwrap_err(),
        "config: server.1: the client address `zk1:2400` must be an IP address in corral \
         (host names are not supported there yet)"
    );
    // Other servers' client parts may name hosts: they are only carried.
    let text = format!("{base}server.1=h:1:2\nserver.4=h:7:8;zk4:2181\n");
    assert!(parse(&text, &myid("1")).is_ok());
}

// ---- dynamicConfigFile, on disk ----

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(myid: &str) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/myid"), myid).unwrap();
        Dir { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes zoo.cfg pointing at `dynamic` (a file name in the dir) and loads it.
    fn load(&self, dynamic: &str, extra: &str) -> Result<Config, String> {
        let cfg = format!(
            "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\ndynamicConfigFile={}\n{extra}",
            self.path("data").display(),
            self.path(dynamic).display()
        );
        let zoo = self.write("zoo.cfg", &cfg);
        Config::load(&zoo).map_err(|e| e.to_string())
    }
}

const DYNAMIC: &str = "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n\
                       server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n\
                       server.3=127.0.0.1:2890:3890:participant;127.0.0.1:2183";

#[test]
fn dynamic_config_file_members_and_version_from_its_name() {
    let d = Dir::new("2\n");
    d.write("zoo.cfg.dynamic.100000000", DYNAMIC);
    let c = d.load("zoo.cfg.dynamic.100000000", "").unwrap();
    assert!(c.is_distributed());
    let q = c.quorum.as_ref().unwrap();
    assert_eq!(q.version, 0x1_0000_0000);
    assert_eq!(q.my_id, Some(2));
    assert_eq!(
        q.dynamic_config_file.as_deref(),
        Some(d.path("zoo.cfg.dynamic.100000000").as_path())
    );
    assert_eq!(q.to_text(), format!("{DYNAMIC}\nversion=100000000"));
    assert_eq!(c.client_addr().to_string(), "127.0.0.1:2182");
    assert_eq!(q.last_seen, None);
    // No hex suffix: version 0.
    d.write("zoo.cfg.dynamic", DYNAMIC);
    assert_eq!(
        d.load("zoo.cfg.dynamic", "")
            .unwrap()
            .quorum
            .unwrap()
            .version,
        0
    );
}

#[test]
fn dynamic_config_file_errors() {
    let d = Dir::new("1");
    d.write("dyn.1", &format!("{DYNAMIC}\nversion=1\n"));
    let dyn1 = d.path("dyn.1");
    assert_eq!(
        d.load("dyn.1", "").unwrap_err(),
        format!(
            "dynamic config file {} line 4: must not contain `version=`: the version is the \
             file name's hex suffix",
            dyn1.display()
        )
    );
    d.write("dyn.1", "server.1=h:1:2\nclientPort=5\n");
    assert_eq!(
        d.load("dyn.1", "").unwrap_err(),
        format!(
            "dynamic config file {} line 2: unknown key `clientPort`",
            dyn1.display()
        )
    );
    d.write("dyn.1", "server.1=h:1:2\nweight.1=3\n");
    assert!(d.load("dyn.1", "").unwrap_err().ends_with(
        "line 2: `weight.1`: hierarchical quorums (group/weight lines) are not supported yet"
    ));
    d.write("dyn.1", "server.1=h:1:1\n");
    assert!(d
        .load("dyn.1", "")
        .unwrap_err()
        .ends_with("line 1: `server.1` has a bad value `h:1:1`: the quorum port and the election port must differ"));
    // Server lines must not stay in zoo.cfg.
    d.write("dyn.1", DYNAMIC);
    assert_eq!(
        d.load("dyn.1", "server.4=h:1:2\n").unwrap_err(),
        "config line 6: `server.4`: must be in the dynamic config file, as dynamicConfigFile is set"
    );
    let e = d.load("missing.1", "").unwrap_err();
    assert!(
        e.starts_with(&format!(
            "cannot read config file {}:",
            d.path("missing.1").display()
        )),
        "{e}"
    );
}

#[test]
fn the_next_dynamic_file_is_the_last_seen_config() {
    let d = Dir::new("1");
    d.write("zoo.cfg.dynamic.100000000", DYNAMIC);
    d.write(
        "zoo.cfg.dynamic.next",
        "server.1=127.0.0.1:2888:3888:participant\nversion=100000003\n",
    );
    let q = d
        .load("zoo.cfg.dynamic.100000000", "")
        .unwrap()
        .quorum
        .unwrap();
    let next = q.last_seen.unwrap();
    assert_eq!(next.version, 0x1_0000_0003);
    assert_eq!(next.servers.len(), 1);
}

#[test]
fn load_reads_myid_from_the_data_dir() {
    let d = Dir::new("3\n");
    let cfg = format!("{}dataDir={}\n", ENSEMBLE, d.path("data").display());
    let zoo = d.write("zoo.cfg", &cfg);
    let c = Config::load(&zoo).unwrap();
    assert_eq!(c.quorum.unwrap().my_id, Some(3));
    std::fs::remove_file(d.path("data/myid")).unwrap();
    let e = Config::load(&zoo).unwrap_err().to_string();
    assert!(
        e.ends_with("myid is missing: a distributed config needs this server's id there"),
        "{e}"
    );
}

#[test]
fn the_conf_samples_parse() {
    let standalone = Config::parse(include_str!("../../conf/zoo.cfg")).unwrap();
    assert!(standalone.quorum.is_none() && standalone.warnings.is_empty());
    let samples = [
        include_str!("../../conf/ensemble/zoo1.cfg"),
        include_str!("../../conf/ensemble/zoo2.cfg"),
        include_str!("../../conf/ensemble/zoo3.cfg"),
    ];
    let mut texts = Vec::new();
    for (i, text) in samples.iter().enumerate() {
        let id = i as u64 + 1;
        let files = Files(vec![(
            PathBuf::from(format!("./data/zk{id}/myid")),
            format!("{id}\n"),
        )]);
        let c = parse(text, &files).unwrap();
        assert!(
            c.is_distributed() && c.warnings.is_empty(),
            "{:?}",
            c.warnings
        );
        assert_eq!(c.client_addr().to_string(), format!("127.0.0.1:218{id}"));
        assert_eq!(
            (c.admin.address.to_string(), c.admin.port),
            ("127.0.0.1".to_string(), 8080 + id as u16),
            "each member's AdminServer on its own loopback port"
        );
        texts.push(c.quorum.unwrap().to_text());
    }
    assert!(texts.iter().all(|t| *t == texts[0]), "one ensemble");
}

/// The standalone sequencer shares shard 0's executor on small machines (2 CPUs
/// measured) and has its own above; either can be asked for. An ensemble
/// member's quorum core always has its own.
#[test]
fn the_sequencer_sits_beside_shard_0_on_two_cpus_and_alone_above() {
    assert_eq!(SequencerCore::default_for(1), SequencerCore::Shard);
    assert_eq!(SequencerCore::default_for(2), SequencerCore::Shard);
    assert_eq!(SequencerCore::default_for(3), SequencerCore::Own);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        Config::default().sequencer_core,
        SequencerCore::default_for(cpus)
    );
    for (text, want) in [("own", SequencerCore::Own), ("shard", SequencerCore::Shard)] {
        let c = Config::parse(&format!("corral.sequencerCore={text}\n")).unwrap();
        assert_eq!(c.sequencer_core, want);
        assert_eq!(c.sequencer_placement(), want);
        assert_eq!(want.name(), text);
    }
    let member = parse(
        &format!("{ENSEMBLE}corral.sequencerCore=shard\n"),
        &myid("1"),
    )
    .unwrap();
    assert!(member.is_distributed());
    assert_eq!(member.sequencer_placement(), SequencerCore::Own);
    assert_eq!(member.executor_threads(), member.shard_cores + 1);
}

/// The shards take all CPUs but the sequencer's, and there is always at least one.
#[test]
fn shard_cores_default_to_one_less_than_the_cpus() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(Config::default().shard_cores, cpus.saturating_sub(1).max(1));
    assert_eq!(
        Config::parse("corral.shardCores=3\n").unwrap().shard_cores,
        3
    );
}

#[test]
fn client_bound_keys_parse_and_are_checked() {
    let d = Config::default();
    assert_eq!((d.max_cnxns, d.global_outstanding_limit), (0, 1000));
    let c = Config::parse(
        "maxCnxns=10\nglobalOutstandingLimit=5\ncorral.maxSessions=7\n\
         corral.maxQueuedReplyBytesPerConnection=65536\n\
         corral.maxQueuedBytesPerConnection=2097152\n",
    )
    .unwrap();
    assert_eq!(
        (c.max_cnxns, c.global_outstanding_limit, c.max_sessions),
        (10, 5, 7)
    );
    assert_eq!(c.max_queued_reply_bytes_per_connection, 65536);
    assert_eq!(c.max_queued_bytes_per_connection, 2097152);
    // The hard limit leaves room for one maximal reply past the soft one.
    let e = Config::parse(
        "corral.maxQueuedReplyBytesPerConnection=65536\n\
         corral.maxQueuedBytesPerConnection=1048576\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("+ jute.maxbuffer (1114111)"), "{e}");
    // Unset, it makes room for a large jute.maxbuffer by itself.
    let c = Config::parse("jute.maxbuffer=104857600\n").unwrap();
    assert_eq!(c.max_queued_bytes_per_connection, (4 << 20) + 2 * 104857600);
    let e = Config::parse("corral.maxQueuedReplyBytesPerConnection=100\n").unwrap_err();
    assert!(e.to_string().contains("at least 65536"), "{e}");
    let e = Config::parse("corral.maxQueuedBytesPerConnection=4194304\n").unwrap_err();
    assert!(e.to_string().contains("must be above"), "{e}");
    let e = Config::parse("maxCnxns=-1\n").unwrap_err();
    assert!(e.to_string().contains("`maxCnxns`"), "{e}");
}

// ---- TLS client port ----

const TLS_BASE: &str = "secureClientPort=2281\nssl.keyStore.location=/k/server.pem\n\
                        ssl.trustStore.location=/k/ca.pem\n";

#[test]
fn tls_port_with_pem_stores_and_the_reference_defaults() {
    let c = Config::parse(TLS_BASE).unwrap();
    let t = c.tls.as_ref().unwrap();
    assert_eq!(t.addr.unwrap().to_string(), "127.0.0.1:2281");
    assert_eq!(t.key_store.path, PathBuf::from("/k/server.pem"));
    assert_eq!(t.key_store.key, "ssl.keyStore.location");
    assert_eq!(
        t.trust_store.as_ref().unwrap().path,
        PathBuf::from("/k/ca.pem")
    );
    assert_eq!(t.client_auth, ClientAuth::Need);
    assert_eq!(t.protocols, vec![TlsProtocol::V1_2]);
    let names: Vec<&str> = t.suites.iter().map(|s| s.java_name()).collect();
    assert_eq!(
        names,
        [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        ]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // No clientPort line: TLS only, as the reference.
    assert!(!c.client_port_enabled);
    let c = Config::parse(&format!("clientPort=2181\n{TLS_BASE}")).unwrap();
    assert!(c.client_port_enabled);
    assert!(Config::parse("").unwrap().client_port_enabled);
}

#[test]
fn tls_keys_that_act() {
    let c = Config::parse(&format!(
        "{TLS_BASE}secureClientPortAddress=0.0.0.0\nssl.clientAuth=WANT\n\
         ssl.keyStore.password=pw\nssl.keyStore.type=pem\nssl.trustStore.type=PEM\n\
         ssl.enabledProtocols=TLSv1.3,TLSv1.2\n\
         ssl.ciphersuites=TLS_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,\
         TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256\n\
         X509AuthenticationProvider.superUser=CN=admin\n"
    ))
    .unwrap();
    let t = c.tls.as_ref().unwrap();
    assert_eq!(t.addr.unwrap().to_string(), "0.0.0.0:2281");
    assert_eq!(t.client_auth, ClientAuth::Want);
    assert_eq!(t.key_store.password, Some(Secret("pw".into())));
    assert!(
        !format!("{t:?}").contains("pw\""),
        "passwords are not printed"
    );
    assert_eq!(t.protocols, vec![TlsProtocol::V1_3, TlsProtocol::V1_2]);
    assert_eq!(
        t.suites,
        vec![
            TlsSuite::Tls13Aes256GcmSha384,
            TlsSuite::EcdheRsaChacha20Poly1305Sha256
        ]
    );
    assert_eq!(t.x509_super_user.as_deref(), Some("CN=admin"));
    // The CBC suite Java knows is skipped with one warning.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA not offered"));
    // ssl.protocol alone picks the one version; TLSv1.3 adds its suites by default.
    let c = Config::parse(&format!("{TLS_BASE}ssl.protocol=TLSv1.3\n")).unwrap();
    let t = c.tls.unwrap();
    assert_eq!(t.protocols, vec![TlsProtocol::V1_3]);
    assert!(t.suites.contains(&TlsSuite::Tls13Aes128GcmSha256));
    // clientAuth=none needs no trust store.
    let c = Config::parse(
        "secureClientPort=2281\nssl.keyStore.location=/k/s.pem\nssl.clientAuth=none\n",
    )
    .unwrap();
    assert_eq!(c.tls.unwrap().trust_store, None);
}

#[test]
fn tls_keys_that_only_warn() {
    let c = Config::parse(&format!(
        "{TLS_BASE}ssl.hostnameVerification=false\nssl.crl=true\nssl.ocsp=false\n\
         ssl.quorum.keyStore.location=/q.pem\n"
    ))
    .unwrap();
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("`ssl.hostnameVerification` has no effect"));
    assert!(c.warnings[1].contains("does not check certificate revocation"));
    assert!(c.warnings[2].contains(
        "`ssl.quorum.keyStore.location` (and any other ssl.quorum.* key) has no effect \
         without sslQuorum=true or portUnification=true"
    ));
    // ssl keys without a TLS port: one line says so.
    let c = Config::parse("ssl.keyStore.location=/k.pem\nssl.clientAuth=none\n").unwrap();
    assert!(c.tls.is_none());
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("has no effect without secureClientPort"));
}

#[test]
fn tls_errors_name_the_key() {
    let err = |extra: &str| {
        Config::parse(&format!("{TLS_BASE}{extra}"))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        Config::parse("secureClientPortAddress=127.0.0.1\n")
            .unwrap_err()
            .to_string(),
        "config line 1: `secureClientPortAddress`: secureClientPortAddress is set but \
         secureClientPort is not set"
    );
    let e = Config::parse("secureClientPort=2281\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config: `ssl.keyStore.location` is not set"),
        "{e}"
    );
    let e = Config::parse("secureClientPort=2281\nssl.keyStore.location=/k.pem\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config: `ssl.trustStore.location` is not set"),
        "{e}"
    );
    assert_eq!(
        err("ssl.clientAuth=maybe\n"),
        "config line 4: `ssl.clientAuth` has a bad value `maybe`: expected need, want or none"
    );
    assert!(err("ssl.enabledProtocols=TLSv2\n").contains("unknown protocol `TLSv2`"));
    assert!(err("ssl.enabledProtocols=TLSv1.1\n").contains("no protocol corral speaks"));
    assert!(err("ssl.ciphersuites=TLS_FOO\n").contains("unknown cipher suite `TLS_FOO`"));
    assert!(
        err("ssl.protocol=TLSv1.3\nssl.ciphersuites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n")
            .contains("no suite corral offers for TLSv1.3")
    );
    assert!(err("ssl.keyStore.type=XYZ\n").contains("expected PEM, JKS, PKCS12 or BCFKS"));
    let e = Config::parse("secureClientPort=1\nssl.keyStore.location=/k/server\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not end in .pem"), "{e}");
}

#[test]
fn jks_and_pkcs12_stores_are_refused_with_the_conversion() {
    let e = Config::parse(
        "secureClientPort=2281\nssl.keyStore.location=/k/server.jks\nssl.clientAuth=none\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "config line 2: `ssl.keyStore.location`: JKS stores are not supported: corral reads \
         PEM only; convert with `keytool -importkeystore -srckeystore /k/server.jks \
         -srcstoretype JKS -destkeystore /k/server.jks.p12 -deststoretype PKCS12` then \
         `openssl pkcs12 -in /k/server.jks.p12 -nodes -out server.pem` and set \
         ssl.keyStore.location to the PEM file (key and certificate chain) and \
         ssl.keyStore.type=PEM"
    );
    let e = Config::parse(&format!("{TLS_BASE}ssl.trustStore.type=PKCS12\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config line 4: `ssl.trustStore.type`: PKCS12 stores are not supported")
            && e.contains("`openssl pkcs12 -in /k/ca.pem -nokeys -out ca.pem`")
            && !e.contains("keytool"),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[test]
fn enforce_quota_takes_both_spellings_and_only_true_or_false() {
    assert!(!Config::parse("tickTime=500\n").unwrap().enforce_quota);
    assert!(Config::parse("enforceQuota=true\n").unwrap().enforce_quota);
    assert!(
        Config::parse("zookeeper.enforceQuota=TRUE\n")
            .unwrap()
            .enforce_quota
    );
    assert!(!Config::parse("enforceQuota=false\n").unwrap().enforce_quota);
    let e = Config::parse("enforceQuota=yes\n").unwrap_err();
    assert!(e.to_string().contains("expected true or false"), "{e}");
}

#[test]
fn admin_server_and_prometheus_keys() {
    let c = Config::parse("").unwrap();
    assert!(c.admin.enabled, "the reference's default");
    assert_eq!(c.admin.addr().to_string(), "0.0.0.0:8080");
    assert_eq!(c.admin.command_url, "/commands");
    assert_eq!(c.admin.idle_timeout_ms, 30_000);
    assert!(!c.metrics.prometheus);
    assert_eq!(c.metrics.addr().to_string(), "0.0.0.0:7000");
    let c = Config::parse(
        "admin.enableServer=false\nzookeeper.admin.serverPort=9090\n\
         admin.serverAddress=127.0.0.1\nadmin.commandURL=/cmds/\nadmin.idleTimeout=500\n\
         metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
         metricsProvider.httpHost=127.0.0.1\nmetricsProvider.httpPort=7001\n\
         metricsProvider.exportJvmInfo=false\n",
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(!c.admin.enabled);
    assert_eq!(c.admin.addr().to_string(), "127.0.0.1:9090");
    assert_eq!(c.admin.command_url, "/cmds");
    assert_eq!(c.admin.idle_timeout_ms, 500);
    assert!(c.metrics.prometheus);
    assert_eq!(c.metrics.addr().to_string(), "127.0.0.1:7001");
    assert!(!c.metrics.export_jvm_info);
    // Another provider class (the reference's default is the null provider): no endpoint.
    let c = Config::parse(
        "metricsProvider.className=org.apache.zookeeper.metrics.impl.NullMetricsProvider\n",
    )
    .unwrap();
    assert!(!c.metrics.prometheus);
}

// ---- Quorum TLS (sslQuorum, portUnification, ssl.quorum.*) ----

const QUORUM_TLS: &str = "sslQuorum=true\nssl.quorum.keyStore.location=/k/member.pem\n\
                          ssl.quorum.trustStore.location=/k/ca.pem\n";

#[test]
fn quorum_tls_with_pem_stores_and_the_reference_defaults() {
    let c = parse(&format!("{ENSEMBLE}{QUORUM_TLS}"), &myid("1")).unwrap();
    let t = c.quorum_tls.as_ref().unwrap();
    assert!(t.dial_tls && !t.accept_plaintext && t.hostname_verification);
    assert_eq!(t.key_store.path, PathBuf::from("/k/member.pem"));
    assert_eq!(t.key_store.key, "ssl.quorum.keyStore.location");
    assert_eq!(t.trust_store.path, PathBuf::from("/k/ca.pem"));
    assert_eq!(t.client_auth, ClientAuth::Need);
    assert_eq!(t.protocols, vec![TlsProtocol::V1_2]);
    assert_eq!(t.suites[0], TlsSuite::EcdheEcdsaAes128GcmSha256);
    // The client port's TLS is a separate family: untouched.
    assert!(c.tls.is_none());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn quorum_tls_options_and_port_unification() {
    let text = format!(
        "{ENSEMBLE}portUnification=true\nssl.quorum.keyStore.location=/k/m.pem\n\
         ssl.quorum.trustStore.location=/k/ca.pem\nssl.quorum.hostnameVerification=false\n\
         ssl.quorum.clientAuth=want\nssl.quorum.enabledProtocols=TLSv1.2,TLSv1.3\n\
         ssl.quorum.ciphersuites=TLS_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\n\
         ssl.quorum.ocsp=true\nsslQuorumReloadCertFiles=true\n"
    );
    let c = parse(&text, &myid("1")).unwrap();
    let t = c.quorum_tls.as_ref().unwrap();
    // portUnification alone: plaintext dials, both kinds taken.
    assert!(!t.dial_tls && t.accept_plaintext && !t.hostname_verification);
    assert_eq!(t.client_auth, ClientAuth::Want);
    assert_eq!(t.protocols, vec![TlsProtocol::V1_2, TlsProtocol::V1_3]);
    assert_eq!(t.suites, vec![TlsSuite::Tls13Aes256GcmSha384]);
    assert_eq!(c.warnings.len(), 3, "{:#?}", c.warnings);
    // Line by line first, then what the stores' build finds.
    assert!(c.warnings[0].contains("`ssl.quorum.ocsp=true` has no effect"));
    assert!(c.warnings[1].contains("`sslQuorumReloadCertFiles=true` has no effect"));
    assert!(c.warnings[2]
        .contains("`ssl.quorum.ciphersuites`: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA not offered"));
}

#[test]
fn quorum_tls_errors_name_the_key() {
    let err = |text: &str| parse(&format!("{ENSEMBLE}{text}"), &myid("1")).unwrap_err();
    assert_eq!(
        err("sslQuorum=true\nssl.quorum.trustStore.location=/k/ca.pem\n"),
        "config: `ssl.quorum.keyStore.location` is not set: quorum TLS (sslQuorum or \
         portUnification) needs this member's key and certificate chain (a PEM file), shown \
         to the other members"
    );
    assert_eq!(
        err("sslQuorum=true\nssl.quorum.keyStore.location=/k/m.pem\n"),
        "config: `ssl.quorum.trustStore.location` is not set: quorum TLS checks the other \
         members' certificates against the CA certificates in this PEM file"
    );
    let jks = err(&format!(
        "{QUORUM_TLS}ssl.quorum.trustStore.location=/k/ca.jks\n"
    ));
    assert!(
        jks.starts_with(
            "config line 11: `ssl.quorum.trustStore.location`: JKS stores are not supported"
        ) && jks.contains("-nokeys -out ca.pem`")
            && jks.contains("set ssl.quorum.trustStore.location to the PEM file (CA certificates)"),
        "{jks}"
    );
    assert!(err("sslQuorum=yes\n").contains("`sslQuorum`"));
    assert!(
        err(&format!("{QUORUM_TLS}ssl.quorum.hostnameVerification=no\n"))
            .contains("ssl.quorum.hostnameVerification")
    );
    assert!(err(&format!("{QUORUM_TLS}ssl.quorum.clientAuth=maybe\n"))
        .contains("`ssl.quorum.clientAuth`"));
}

#[test]
fn quorum_tls_keys_without_sslquorum_or_an_ensemble_only_warn() {
    // ssl.quorum.* without sslQuorum/portUnification: one line.
    let text =
        format!("{ENSEMBLE}ssl.quorum.keyStore.location=/k/m.pem\nssl.quorum.protocol=TLSv1.2\n");
    let c = parse(&text, &myid("1")).unwrap();
    assert!(c.quorum_tls.is_none());
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("config line 8: `ssl.quorum.keyStore.location` (and any other")
    );
    // A standalone server has no peer links.
    let c = Config::parse(QUORUM_TLS).unwrap();
    assert!(c.quorum_tls.is_none());
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("no effect on a standalone server"));
    // The client port's keys are not quorum keys, nor the reverse.
    let c = parse(&format!("{ENSEMBLE}{QUORUM_TLS}{TLS_BASE}"), &myid("1")).unwrap();
    assert_eq!(
        c.tls.as_ref().unwrap().key_store.path,
        PathBuf::from("/k/server.pem")
    );
    assert_eq!(
        c.quorum_tls.as_ref().unwrap().key_store.path,
        PathBuf::from("/k/member.pem")
    );
}

/// A JAAS file with both quorum sections (and the client port's), at /zk/jaas.conf.
fn quorum_jaas(learner: &str) -> Files {
    Files(vec![
        (PathBuf::from("/zk/myid"), "1\n".into()),
        (
            PathBuf::from("/zk/jaas.conf"),
            format!(
                "QuorumServer {{ org.apache.zookeeper.server.auth.DigestLoginModule required \
                 user_test=\"pw\"; }};\n\
                 QuorumLearner {{ org.apache.zookeeper.server.auth.DigestLoginModule required \
                 {learner}; }};\n"
            ),
        ),
    ])
}

const JAAS_LINE: &str = "java.security.auth.login.config=/zk/jaas.conf\n";

#[test]
fn quorum_sasl_reads_its_keys_and_both_jaas_sections() {
    let files = quorum_jaas("username=\"test\" password=\"pw\"");
    let c = parse(
        &format!(
            "{ENSEMBLE}{JAAS_LINE}quorum.auth.enableSasl=true\n\
             quorum.auth.learnerRequireSasl=TRUE\nquorum.auth.serverRequireSasl=true\n\
             quorum.auth.kerberos.servicePrincipal=zkquorum/localhost\n"
        ),
        &files,
    )
    .unwrap();
    let q = c.quorum_sasl.as_ref().unwrap();
    assert!(q.learner_require && q.server_require);
    let (user, pw) = q.learner.as_ref().unwrap();
    assert_eq!((user.as_str(), pw.expose()), ("test", "pw"));
    assert_eq!(q.server_users.password("test"), Some("pw"));
    // The client port's `Server` section is absent: said once, and only that.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("no `Server` section"),
        "{:?}",
        c.warnings
    );
    // Off unless enabled; named sections are looked up by their names.
    let c = parse(&format!("{ENSEMBLE}{JAAS_LINE}"), &files).unwrap();
    assert!(c.quorum_sasl.is_none());
    let e = parse(
        &format!("{ENSEMBLE}{JAAS_LINE}quorum.auth.enableSasl=true\nquorum.auth.server.saslLoginContext=Other\n"),
        &files,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "config: JAAS file /zk/jaas.conf has no `Other` section with a login module (the users \
         learners log in as); quorum SASL needs it"
    );
    // A section with no login module is no section, as the JVM's Configuration says
    // (it answers null for `QuorumLearner { };`, and the reference cannot start).
    let empty = Files(vec![
        (PathBuf::from("/zk/myid"), "1\n".into()),
        (
            PathBuf::from("/zk/jaas.conf"),
            "QuorumServer { org.apache.zookeeper.server.auth.DigestLoginModule required \
             user_test=\"pw\"; };\nQuorumLearner {\n};\n"
                .into(),
        ),
    ]);
    let e = parse(
        &format!("{ENSEMBLE}{JAAS_LINE}quorum.auth.enableSasl=true\n"),
        &empty,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "config: JAAS file /zk/jaas.conf has no `QuorumLearner` section with a login module \
         (this member's own login); quorum SASL needs it"
    );
}

#[test]
fn quorum_sasl_settings_the_reference_refuses_stop_start_up() {
    let files = quorum_jaas("username=\"test\" password=\"pw\"");
    for (lines, why) in [
        (
            "quorum.auth.serverRequireSasl=true\n",
            "quorum.auth.enableSasl is false: quorum.auth.serverRequireSasl cannot be true",
        ),
        (
            "quorum.auth.learnerRequireSasl=true\n",
            "quorum.auth.enableSasl is false: quorum.auth.learnerRequireSasl cannot be true",
        ),
        (
            "quorum.auth.enableSasl=true\nquorum.auth.serverRequireSasl=true\n",
            "quorum.auth.learnerRequireSasl is false: quorum.auth.serverRequireSasl cannot be true",
        ),
    ] {
        let e = parse(&format!("{ENSEMBLE}{JAAS_LINE}{lines}"), &files).unwrap_err();
        assert!(e.starts_with(&format!("config: {why}")), "{e}");
    }
    let e = parse(&format!("{ENSEMBLE}quorum.auth.enableSasl=true\n"), &files).unwrap_err();
    assert!(
        e.starts_with("config: quorum.auth.enableSasl=true needs java.security.auth.login.config"),
        "{e}"
    );
    let e = parse(
        &format!("{ENSEMBLE}{JAAS_LINE}quorum.auth.enableSasl=maybe\n"),
        &files,
    )
    .unwrap_err();
    assert!(e.contains("expected true or false"), "{e}");
    let e = parse(
        &format!("{ENSEMBLE}{JAAS_LINE}quorum.auth.enableSas1=true\n"),
        &files,
    )
    .unwrap_err();
    assert!(e.contains("unknown key `quorum.auth.enableSas1`"), "{e}");
    // A learner that must log in needs its login; one that need not, does not.
    let bare = quorum_jaas("");
    let e = parse(
        &format!("{ENSEMBLE}{JAAS_LINE}quorum.auth.enableSasl=true\nquorum.auth.learnerRequireSasl=true\n"),
        &bare,
    )
    .unwrap_err();
    assert!(
        e.contains("line 2: section `QuorumLearner` needs username"),
        "{e}"
    );
    let c = parse(
        &format!("{ENSEMBLE}{JAAS_LINE}quorum.auth.enableSasl=true\n"),
        &bare,
    )
    .unwrap();
    assert!(c.quorum_sasl.unwrap().learner.is_none());
}

#[test]
fn quorum_sasl_on_a_standalone_server_warns() {
    let c = parse(
        "dataDir=/zk\njava.security.auth.login.config=/zk/jaas.conf\nquorum.auth.enableSasl=true\n",
        &quorum_jaas(""),
    )
    .unwrap();
    assert!(c.quorum_sasl.is_none());
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("quorum.auth.enableSasl has no effect on a standalone server")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn local_session_keys_are_read_and_said_what_they_do() {
    let c = parse(
        &format!("{ENSEMBLE}localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=TRUE\n"),
        &myid("1"),
    )
    .unwrap();
    assert!(c.local_sessions_enabled && c.local_sessions_upgrading_enabled);
    assert!(
        c.warnings.is_empty(),
        "an ensemble does what they say: {:?}",
        c.warnings
    );
    let c = parse(
        &format!("{ENSEMBLE}localSessionsEnabled=false\n"),
        &myid("1"),
    )
    .unwrap();
    assert!(!c.local_sessions_enabled && c.warnings.is_empty());
    let c = Config::parse("localSessionsEnabled=true\n").unwrap();
    assert!(c.warnings[0].contains("no effect on a standalone server"));
    assert!(Config::parse("localSessionsEnabled=yes\n").is_err());
}
