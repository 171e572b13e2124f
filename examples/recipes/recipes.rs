//! The ZooKeeper recipes (zookeeper-docs' recipes page, the book's chapter 2)
//! on the `zookeeper-client` crate: a lock without herd effect, leader
//! election, a double barrier and a queue, each with a small demo that runs
//! several participants, one session each, as tasks of one tokio runtime.
//!
//! Runs on tokio (the `recipes` example's `main`, or `tests/master_worker.rs`,
//! which includes this file). Lock and election share one building block,
//! [`wait_turn`]: a participant's ephemeral sequential znode waits until it is
//! the lowest, watching only the znode just before it, so a release wakes one
//! waiter, not all of them. Connection losses are retried ([`retry`]); a
//! sequential create that lost its connection is found again by the random
//! token in its name.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use zk::{Acls, CreateMode};
use zookeeper_client as zk;

/// Attempts one operation gets across connection losses.
pub const RETRY_ATTEMPTS_COUNT_MAX: u32 = 600;
/// Pause between two attempts of an operation that lost its connection.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How often a waiter re-reads even when no watch fired.
pub const RECHECK_PAUSE: Duration = Duration::from_secs(1);

/// Runs `op` until it returns something other than a connection loss.
pub async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, zk::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, zk::Error>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            // A broken connection may surface as a `Custom` IO error.
            Err(zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::Custom(_))
                if attempt + 1 < RETRY_ATTEMPTS_COUNT_MAX =>
            {
                if attempt == 0 {
                    warn!(op = what, "lost the connection; retrying");
                }
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

pub async fn connect(servers: &str) -> Result<zk::Client, zk::Error> {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(servers)
        .await
}

fn options(mode: CreateMode) -> zk::CreateOptions<'static> {
    mode.with_acls(Acls::anyone_all())
}

/// Creates a persistent znode unless it exists.
pub async fn ensure_path(client: &zk::Client, path: &str) -> Result<(), zk::Error> {
    match retry(path, || {
        client.create(path, b"", &options(CreateMode::Persistent))
    })
    .await
    {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Waits until `watch` fires or [`RECHECK_PAUSE`] passes.
async fn wait_changed(watch: zk::OneshotWatcher) {
    tokio::select! {
        _ = watch.changed() => {}
        _ = tokio::time::sleep(RECHECK_PAUSE) => {}
    }
}

/// The sequence number ZooKeeper appended to a sequential znode's name.
fn sequence_of(name: &str) -> Option<u64> {
    let digits = name.len().checked_sub(10)?;
    name.get(digits..)?.parse().ok()
}

/// `names` ordered by their sequence numbers (names without one are left out).
fn by_sequence(names: Vec<String>) -> Vec<String> {
    let mut numbered: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|n| Some((sequence_of(&n)?, n)))
        .collect();
    numbered.sort();
    numbered.into_iter().map(|(_, n)| n).collect()
}

// ------------------------------------------------------- the herd-free turn

/// A participant's place in line: its ephemeral sequential znode under `dir`.
pub struct Ticket {
    pub dir: String,
    /// The znode's name (without `dir`).
    pub name: String,
}

impl Ticket {
    pub fn path(&self) -> String {
        format!("{}/{}", self.dir, self.name)
    }
}

/// Creates `dir/<prefix>-<token>-<seq>` (ephemeral sequential). After a
/// connection loss the znode may exist already: the token finds it.
pub async fn take_ticket(
    client: &zk::Client,
    dir: &str,
    prefix: &str,
) -> Result<Ticket, zk::Error> {
    let token = format!("{prefix}-{:016x}-", rand::random::<u64>());
    let path = format!("{dir}/{token}");
    let opts = options(CreateMode::EphemeralSequential);
    loop {
        match client.create(&path, b"", &opts).await {
            Ok((_, seq)) => {
                return Ok(Ticket {
                    dir: dir.to_string(),
                    name: format!("{token}{seq}"),
                })
            }
            Err(zk::Error::ConnectionLoss | zk::Error::Custom(_)) => {
                tokio::time::sleep(RETRY_PAUSE).await;
                let children = retry("list", || client.list_children(dir)).await?;
                if let Some(name) = children.into_iter().find(|c| c.starts_with(&token)) {
                    return Ok(Ticket {
                        dir: dir.to_string(),
                        name,
                    });
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until `ticket` is the lowest in its dir, watching only the ticket
/// just before it (no herd effect: a release wakes one waiter).
pub async fn wait_turn(client: &zk::Client, ticket: &Ticket) -> Result<(), zk::Error> {
    loop {
        let line = by_sequence(retry("list", || client.list_children(&ticket.dir)).await?);
        let Some(mine) = line.iter().position(|n| *n == ticket.name) else {
            // Our ephemeral is gone: our session expired.
            return Err(zk::Error::SessionExpired);
        };
        if mine == 0 {
            return Ok(());
        }
        let before = format!("{}/{}", ticket.dir, line[mine - 1]);
        let (stat, watch) = retry("exists", || client.check_and_watch_stat(&before)).await?;
        if stat.is_some() {
            wait_changed(watch).await;
        }
    }
}

/// Leaves the line (releases a lock, resigns a leadership).
pub async fn drop_ticket(client: &zk::Client, ticket: &Ticket) -> Result<(), zk::Error> {
    match retry("delete", || client.delete(&ticket.path(), None)).await {
        Ok(()) | Err(zk::Error::NoNode) => Ok(()),
        Err(e) => Err(e),
    }
}

// ------------------------------------------------------------------- lock

/// Lock demo: `participants` sessions each add 1 to the counter in
/// `dir/counter` `rounds` times, each read-modify-write under the lock. The
/// write is conditional on the version read, so a lock that let two holders
/// in would fail with BadVersion. Returns the final count
/// (`participants * rounds`).
pub async fn lock_demo(
    servers: &str,
    dir: &str,
    participants: usize,
    rounds: usize,
) -> Result<u64, zk::Error> {
    let setup = connect(servers).await?;
    ensure_path(&setup, dir).await?;
    let counter = format!("{dir}/counter");
    ensure_path(&setup, &counter).await?;
    retry("reset", || setup.set_data(&counter, b"0", None)).await?;
    let mut handles = Vec::new();
    for p in 0..participants {
        let (servers, dir, counter) = (servers.to_string(), dir.to_string(), counter.clone());
        handles.push(tokio::spawn(async move {
            let client = connect(&servers).await?;
            for _ in 0..rounds {
                let ticket = take_ticket(&client, &dir, "lock").await?;
                wait_turn(&client, &ticket).await?;
                let value = increment(&client, &counter).await?;
                info!(
                    participant = p,
                    value, "holding the lock: counter incremented"
                );
                drop_ticket(&client, &ticket).await?;
            }
            Ok::<(), zk::Error>(())
        }));
    }
    join_all(handles).await?;
    let (data, _) = retry("get", || setup.get_data(&counter)).await?;
    Ok(parse_count(&data))
}

fn parse_count(data: &[u8]) -> u64 {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Adds one to a decimal counter, conditional on the version read.
async fn increment(client: &zk::Client, counter: &str) -> Result<u64, zk::Error> {
    let (data, stat) = retry("get", || client.get_data(counter)).await?;
    let value = parse_count(&data) + 1;
    let text = value.to_string();
    match retry("set", || {
        client.set_data(counter, text.as_bytes(), Some(stat.version))
    })
    .await
    {
        Ok(_) => Ok(value),
        // After a connection loss our own write may have landed.
        Err(zk::Error::BadVersion) => {
            let (now, _) = retry("get", || client.get_data(counter)).await?;
            if parse_count(&now) == value {
                Ok(value)
            } else {
                Err(zk::Error::BadVersion)
            }
        }
        Err(e) => Err(e),
    }
}

async fn join_all<T>(
    handles: Vec<tokio::task::JoinHandle<Result<T, zk::Error>>>,
) -> Result<Vec<T>, zk::Error> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .map_err(|e| zk::Error::UnexpectedError(e.to_string()))??,
        );
    }
    Ok(out)
}

// -------------------------------------------------------- leader election

/// Election demo: `candidates` sessions volunteer under `dir`; the lowest
/// leads, "works" a moment, then resigns (closes its session), and the next
/// takes over. Returns the candidates in the order they led.
pub async fn election_demo(
    servers: &str,
    dir: &str,
    candidates: usize,
) -> Result<Vec<usize>, zk::Error> {
    let setup = connect(servers).await?;
    ensure_path(&setup, dir).await?;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Leaders in office right now: never more than one.
    let leading = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for c in 0..candidates {
        let (servers, dir, order) = (servers.to_string(), dir.to_string(), order.clone());
        let leading = leading.clone();
        handles.push(tokio::spawn(async move {
            let client = connect(&servers).await?;
            let ticket = take_ticket(&client, &dir, "candidate").await?;
            info!(candidate = c, ticket = %ticket.name, "volunteered");
            wait_turn(&client, &ticket).await?;
            info!(candidate = c, "elected leader");
            if leading.fetch_add(1, Ordering::SeqCst) != 0 {
                return Err(zk::Error::UnexpectedError(format!(
                    "candidate {c}: two leaders at once"
                )));
            }
            order.lock().expect("order").push(c);
            tokio::time::sleep(Duration::from_millis(50)).await;
            info!(candidate = c, "resigning");
            leading.fetch_sub(1, Ordering::SeqCst);
            // Dropping the only client closes the session: the ephemeral goes.
            drop(client);
            Ok::<(), zk::Error>(())
        }));
    }
    join_all(handles).await?;
    let order = order.lock().expect("order").clone();
    Ok(order)
}

// ---------------------------------------------------------- double barrier

/// A double barrier under `dir` for `size` participants: nobody starts
/// before all have entered, nobody finishes before all have left.
pub struct Barrier {
    pub dir: String,
    pub size: usize,
}

impl Barrier {
    fn ready(&self) -> String {
        format!("{}/ready", self.dir)
    }

    fn members(children: Vec<String>) -> Vec<String> {
        children.into_iter().filter(|c| c != "ready").collect()
    }

    /// Joins as `name` (an ephemeral) and waits until `size` have joined: the
    /// one that completes the count creates `ready`, which the rest watch.
    pub async fn enter(&self, client: &zk::Client, name: &str) -> Result<(), zk::Error> {
        let me = format!("{}/{name}", self.dir);
        match retry("join", || {
            client.create(&me, b"", &options(CreateMode::Ephemeral))
        })
        .await
        {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
        loop {
            let (stat, watch) = retry("exists ready", || {
                client.check_and_watch_stat(&self.ready())
            })
            .await?;
            if stat.is_some() {
                return Ok(());
            }
            let members = Self::members(retry("list", || client.list_children(&self.dir)).await?);
            if members.len() >= self.size {
                ensure_path(client, &self.ready()).await?;
                return Ok(());
            }
            wait_changed(watch).await;
        }
    }

    /// Leaves, then waits until every participant has left.
    pub async fn leave(&self, client: &zk::Client, name: &str) -> Result<(), zk::Error> {
        let me = format!("{}/{name}", self.dir);
        match retry("leave", || client.delete(&me, None)).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
        loop {
            let (children, _, watch) =
                retry("list", || client.get_and_watch_children(&self.dir)).await?;
            if Self::members(children).is_empty() {
                // Everyone entered and left: reset the barrier for a next
                // round (several leavers may race to do it).
                return match retry("reset", || client.delete(&self.ready(), None)).await {
                    Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                    Err(e) => Err(e),
                };
            }
            wait_changed(watch).await;
        }
    }
}

/// Barrier demo: `size` sessions arrive one after another, enter, "compute",
/// leave. Returns, per participant, how many had arrived when its `enter`
/// returned (all `size`, when the barrier holds).
pub async fn barrier_demo(servers: &str, dir: &str, size: usize) -> Result<Vec<usize>, zk::Error> {
    let setup = connect(servers).await?;
    ensure_path(&setup, dir).await?;
    let arrived = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for p in 0..size {
        let (servers, dir, arrived) = (servers.to_string(), dir.to_string(), arrived.clone());
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30 * p as u64)).await;
            let client = connect(&servers).await?;
            let barrier = Barrier { dir, size };
            let name = format!("p{p}");
            arrived.fetch_add(1, Ordering::SeqCst);
            info!(participant = p, "arrived");
            barrier.enter(&client, &name).await?;
            let seen = arrived.load(Ordering::SeqCst);
            info!(participant = p, seen, "entered: everyone is here");
            barrier.leave(&client, &name).await?;
            info!(participant = p, "left: everyone is done");
            Ok::<usize, zk::Error>(seen)
        }));
    }
    join_all(handles).await
}

// ------------------------------------------------------------------ queue

/// Appends an item: a persistent sequential znode under `dir`.
pub async fn enqueue(client: &zk::Client, dir: &str, item: &[u8]) -> Result<(), zk::Error> {
    let prefix = format!("{dir}/item-");
    let opts = options(CreateMode::PersistentSequential);
    retry("enqueue", || client.create(&prefix, item, &opts)).await?;
    Ok(())
}

/// Takes the head item, if any: reads the lowest item and deletes it at the
/// version read; when another consumer got it first (NoNode), tries the next.
pub async fn dequeue(client: &zk::Client, dir: &str) -> Result<Option<Vec<u8>>, zk::Error> {
    let items = by_sequence(retry("list", || client.list_children(dir)).await?);
    for name in items {
        let path = format!("{dir}/{name}");
        let (data, stat) = match retry("get", || client.get_data(&path)).await {
            Ok(found) => found,
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        match client.delete(&path, Some(stat.version)).await {
            Ok(()) => return Ok(Some(data)),
            Err(zk::Error::NoNode) => continue,
            // Unknown whether our delete landed: leave it to the next pass
            // (an item may then be lost, never taken twice).
            Err(zk::Error::ConnectionLoss | zk::Error::Custom(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Queue demo: `producers` sessions enqueue `items` each while `consumers`
/// sessions dequeue until the queue is empty and every producer is done.
/// Returns every item taken (each of the `producers * items` exactly once
/// when the queue holds).
pub async fn queue_demo(
    servers: &str,
    dir: &str,
    producers: usize,
    consumers: usize,
    items: usize,
) -> Result<Vec<String>, zk::Error> {
    let setup = connect(servers).await?;
    ensure_path(&setup, dir).await?;
    let producers_done = Arc::new(AtomicUsize::new(0));
    let mut producing = Vec::new();
    for p in 0..producers {
        let (servers, dir, done) = (servers.to_string(), dir.to_string(), producers_done.clone());
        producing.push(tokio::spawn(async move {
            let client = connect(&servers).await?;
            for i in 0..items {
                enqueue(&client, &dir, format!("p{p}-{i}").as_bytes()).await?;
            }
            info!(producer = p, items, "produced");
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<(), zk::Error>(())
        }));
    }
    let mut consuming = Vec::new();
    for c in 0..consumers {
        let (servers, dir, done) = (servers.to_string(), dir.to_string(), producers_done.clone());
        consuming.push(tokio::spawn(async move {
            let client = connect(&servers).await?;
            let mut mine = Vec::new();
            loop {
                // Read before the dequeue: an empty queue after every
                // producer finished is the end.
                let all_produced = done.load(Ordering::SeqCst) == producers;
                match dequeue(&client, &dir).await? {
                    Some(item) => mine.push(String::from_utf8_lossy(&item).into_owned()),
                    None if all_produced => break,
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            info!(consumer = c, items = mine.len(), "consumed");
            Ok::<Vec<String>, zk::Error>(mine)
        }));
    }
    join_all(producing).await?;
    Ok(join_all(consuming).await?.into_iter().flatten().collect())
}
