//! The ZooKeeper book's master–worker application (examples/master_worker,
//! whose `app.rs` is included here as a module) on a 3-member corral
//! ensemble, through the `zookeeper-client` crate.
//!
//! The roles run as tasks on one tokio runtime; the test thread drives the
//! ensemble (blocking) and watches progress through an observer session.
//! Roles use detached sessions, so aborting a role's task is a crash: its
//! ephemerals stay until its session expires. Flow: master-1 is elected, then
//! master-2 (a backup), three workers and a client submitting [`TASK_COUNT`]
//! tasks start; midway master-1 is killed (master-2 must take over), then a
//! worker (its tasks must be reassigned), then the ensemble's leader. Every
//! task must end with its one `/status/<task>`, and nothing left pending.
//! Every wait is a bounded poll; nothing asserts on durations.
//!
//! The recipes (examples/recipes, `recipes.rs` included here too) run on one
//! corral: each demo returns what its participants saw, and the test checks
//! the recipe's promise (one lock holder, one leader at a time, nobody past
//! the barrier early, every queued item taken once).

mod common;

#[path = "../examples/master_worker/app.rs"]
mod app;
#[path = "../examples/recipes/recipes.rs"]
mod recipes;

use std::time::Duration;

use common::ensemble::Ensemble;
use common::{Kind, Server};
use zookeeper_client as zk;

/// Tasks the client submits.
const TASK_COUNT: usize = 200;
/// Time a worker spends on one task.
const WORK: Duration = Duration::from_millis(20);
/// The ensemble's largest session timeout (20 ticks of 200 ms), so a crashed
/// role's ephemerals go quickly.
const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// Pause between two progress polls.
const POLL: Duration = Duration::from_millis(200);
/// Progress polls before a wait gives up (about 5 minutes).
const POLLS_MAX: u32 = 1_500;

struct Harness {
    rt: tokio::runtime::Runtime,
    observer: zk::Client,
}

impl Harness {
    /// Polls `cond` until it holds; panics (the ensemble then dumps its logs)
    /// when it never does.
    fn wait_until(&self, what: &str, mut cond: impl FnMut(&Harness) -> bool) {
        for _ in 0..POLLS_MAX {
            if cond(self) {
                eprintln!("master_worker test: {what}");
                return;
            }
            std::thread::sleep(POLL);
        }
        panic!("gave up waiting for: {what}");
    }

    /// Children of `path`, after a sync so the observer's member is current.
    fn children(&self, path: &str) -> Vec<String> {
        self.rt.block_on(async {
            app::retry("sync", || self.observer.sync(path))
                .await
                .expect("sync");
            match app::retry("list", || self.observer.list_children(path)).await {
                Ok(children) => children,
                Err(zk::Error::NoNode) => Vec::new(),
                Err(e) => panic!("list {path}: {e}"),
            }
        })
    }

    /// The active master's id, if any.
    fn master(&self) -> Option<String> {
        self.rt.block_on(async {
            app::retry("sync", || self.observer.sync(app::MASTER))
                .await
                .expect("sync");
            match app::retry("get", || self.observer.get_data(app::MASTER)).await {
                Ok((data, _)) => Some(String::from_utf8_lossy(&data).into_owned()),
                Err(zk::Error::NoNode) => None,
                Err(e) => panic!("get /master: {e}"),
            }
        })
    }

    fn done_count(&self) -> usize {
        self.children(app::STATUS).len()
    }

    /// Tasks still pending or assigned.
    fn unfinished(&self) -> Vec<String> {
        let mut left = self.children(app::TASKS);
        for worker in self.children(app::ASSIGN) {
            let dir = format!("{}/{worker}", app::ASSIGN);
            left.extend(
                self.children(&dir)
                    .into_iter()
                    .map(|t| format!("{worker}/{t}")),
            );
        }
        left
    }
}

/// Installs the log subscriber once: the roles' story (elected, assigned,
/// done, reassigned) on stderr with --nocapture; RUST_LOG overrides.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,zookeeper_client=warn".into()),
        )
        .try_init();
}

/// Masters and workers run until aborted: one that ends says why.
fn report_end(role: &str, outcome: Result<(), zk::Error>) {
    eprintln!("master_worker test: role {role} ended: {outcome:?}");
}

#[test]
fn master_worker_survives_master_worker_and_leader_kills() {
    init_logs();
    let mut ens = Ensemble::start(&[Kind::Corral; 3]);
    let servers: Vec<String> = ens.sids().iter().map(|&s| ens.client_addr(s)).collect();
    let roles = app::Settings {
        servers: servers.join(","),
        session_timeout: SESSION_TIMEOUT,
        detached: true,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let observer_settings = app::Settings {
        detached: false,
        session_timeout: Duration::from_secs(10),
        ..roles.clone()
    };
    let observer = rt
        .block_on(app::connect(&observer_settings))
        .expect("observer session");
    rt.block_on(app::bootstrap(&observer)).expect("bootstrap");
    let h = Harness { rt, observer };

    let spawn_master = |id: &'static str| {
        let s = roles.clone();
        h.rt.spawn(async move { report_end(id, app::run_master(&s, id).await) })
    };
    let master_1 = spawn_master("master-1");
    h.wait_until("master-1 is elected", |h| {
        h.master().as_deref() == Some("master-1")
    });
    let master_2 = spawn_master("master-2");
    let workers: Vec<_> = (1..=3)
        .map(|i| {
            let s = roles.clone();
            let id = format!("worker-{i}");
            h.rt.spawn(async move { report_end(&id, app::run_worker(&s, &id, WORK).await) })
        })
        .collect();
    let client = {
        let s = roles.clone();
        h.rt.spawn(async move { app::run_client(&s, TASK_COUNT).await })
    };

    h.wait_until("a quarter of the tasks are done", |h| {
        h.done_count() >= TASK_COUNT / 4
    });
    master_1.abort();
    eprintln!("master_worker test: killed master-1");
    h.wait_until("master-2 took over", |h| {
        h.master().as_deref() == Some("master-2")
    });

    h.wait_until("half of the tasks are done", |h| {
        h.done_count() >= TASK_COUNT / 2
    });
    workers[0].abort();
    eprintln!("master_worker test: killed worker-1");

    h.wait_until("three quarters of the tasks are done", |h| {
        h.done_count() >= TASK_COUNT * 3 / 4
    });
    let leader = ens.wait_leader();
    ens.kill(leader);
    eprintln!("master_worker test: killed the ensemble's leader, member {leader}");

    h.wait_until("the client saw every status", |_| client.is_finished());
    let results =
        h.rt.block_on(client)
            .expect("client task")
            .expect("client role");
    h.wait_until("nothing is left pending or assigned", |h| {
        h.unfinished().is_empty()
    });

    assert_eq!(results.len(), TASK_COUNT);
    let recorded = h.children(app::STATUS);
    for (task, result) in &results {
        assert!(recorded.contains(task), "{task} has no /status");
        assert!(
            result.starts_with("task ") && result.contains(" done by worker-"),
            "{task}: unexpected result {result:?}"
        );
    }
    // A create that lost its connection may have submitted a task twice (the
    // book's caveat); such a copy is done and recorded like any other.
    assert!(recorded.len() >= TASK_COUNT, "{} statuses", recorded.len());
    assert_eq!(h.master().as_deref(), Some("master-2"));

    // Masters and workers run until aborted: none that was not killed ended
    // (one whose error slipped past its retries would have).
    assert!(!master_2.is_finished(), "master-2 ended");
    for (i, w) in workers.iter().enumerate().skip(1) {
        assert!(!w.is_finished(), "worker-{} ended", i + 1);
    }

    master_2.abort();
    workers.iter().for_each(|w| w.abort());
}

#[test]
fn recipes_keep_their_promises() {
    init_logs();
    let server = Server::corral("");
    let servers = server.addr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let setup = recipes::connect(&servers).await.expect("connect");
        recipes::ensure_path(&setup, "/recipes")
            .await
            .expect("root");

        let count = recipes::lock_demo(&servers, "/recipes/lock", 4, 10)
            .await
            .expect("lock demo");
        assert_eq!(count, 40, "every increment under the lock counted once");

        let mut order = recipes::election_demo(&servers, "/recipes/election", 4)
            .await
            .expect("election demo");
        order.sort();
        assert_eq!(order, vec![0, 1, 2, 3], "every candidate led once");

        let seen = recipes::barrier_demo(&servers, "/recipes/barrier", 4)
            .await
            .expect("barrier demo");
        assert_eq!(seen, vec![4; 4], "nobody entered before all arrived");

        let mut taken = recipes::queue_demo(&servers, "/recipes/queue", 2, 3, 25)
            .await
            .expect("queue demo");
        taken.sort();
        let mut expected: Vec<String> = (0..2)
            .flat_map(|p| (0..25).map(move |i| format!("p{p}-{i}")))
            .collect();
        expected.sort();
        assert_eq!(taken, expected, "every item taken exactly once");
    });
}
