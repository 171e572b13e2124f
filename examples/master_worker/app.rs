//! The ZooKeeper book's master–worker application (chapters 4 and 5) on the
//! `zookeeper-client` crate: the three roles and the znodes they share.
//!
//! Layout, as the book lays it out:
//! - `/master`: ephemeral, holds the active master's id. Backups watch it and
//!   run for master again when it vanishes.
//! - `/workers/<worker>`: one ephemeral per live worker.
//! - `/tasks/task-<seq>`: persistent sequential, submitted by clients.
//! - `/assign/<worker>/<task>`: a task the master gave a worker (the worker
//!   creates its own `/assign/<worker>`).
//! - `/status/<task>`: the task's result, created once by the worker that ran it.
//!
//! Runs on a tokio runtime (the `master_worker` example's `main`, or
//! `tests/master_worker.rs`, which includes this file). Every role is
//! level-triggered: it re-reads the znodes it cares about whenever a watch fires
//! and also every [`RECHECK_PAUSE`], so a watch lost with a connection only
//! delays it. Connection losses are retried ([`retry`]); a session expiry makes a
//! role start over with a new session (a master runs for master again, a
//! worker registers again).
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use tracing::{info, warn};
use zk::{Acls, CreateMode, MultiWriteError};
use zookeeper_client as zk;

pub const MASTER: &str = "/master";
pub const WORKERS: &str = "/workers";
pub const TASKS: &str = "/tasks";
pub const ASSIGN: &str = "/assign";
pub const STATUS: &str = "/status";

/// Attempts one operation gets across connection losses and elections
/// (about 30 s at [`RETRY_PAUSE`]; a longer loss has outlived any session
/// and the role starts over with a new one).
pub const RETRY_ATTEMPTS_COUNT_MAX: u32 = 150;
/// An attempt with no answer after this long counts as a lost connection.
pub const ATTEMPT_WAIT_MAX: Duration = Duration::from_secs(10);
/// Pause between two attempts of an operation that lost its connection.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Attempts to open a session before a role gives up.
pub const CONNECT_ATTEMPTS_COUNT_MAX: u32 = 100;
/// How often a role re-reads its znodes even when no watch fired.
pub const RECHECK_PAUSE: Duration = Duration::from_secs(1);

/// Where and how a role connects.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `host:port,host:port,...`
    pub servers: String,
    pub session_timeout: Duration,
    /// Leave the session open when the role's client is dropped, so that a
    /// role stopped in-process looks like a crashed process: its ephemerals
    /// stay until the session expires.
    pub detached: bool,
}

/// Opens a session, retrying while no server answers.
pub async fn connect(s: &Settings) -> Result<zk::Client, zk::Error> {
    let mut attempt = 0;
    loop {
        let mut connector = zk::Client::connector().with_session_timeout(s.session_timeout);
        if s.detached {
            connector = connector.with_detached();
        }
        match connector.connect(&s.servers).await {
            Ok(client) => return Ok(client),
            Err(e) if attempt + 1 < CONNECT_ATTEMPTS_COUNT_MAX => {
                warn!(error = %e, "connect failed; retrying");
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Errors after which the same operation may simply be tried again. The
/// crate reports a connection that broke under a request (a member killed:
/// "Connection reset by peer") as a `Custom` IO error rather than as
/// ConnectionLoss; it is one all the same.
fn is_transient(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::Custom(_)
    )
}

/// Runs `op` until it returns something other than a connection loss. An
/// operation that lost its connection may or may not have happened: callers
/// make their operations safe to repeat (NodeExists / NoNode after a retry
/// mean "already done").
pub async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, zk::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, zk::Error>>,
{
    let mut attempt = 0;
    loop {
        let outcome = tokio::time::timeout(ATTEMPT_WAIT_MAX, op()).await;
        match outcome.unwrap_or(Err(zk::Error::Timeout)) {
            Err(e) if is_transient(&e) && attempt + 1 < RETRY_ATTEMPTS_COUNT_MAX => {
                if attempt == 0 {
                    warn!(op = what, error = %e, "lost the connection; retrying");
                }
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

/// [`retry`] for a multi-op, whose connection loss is wrapped.
async fn retry_multi<T, F, Fut>(what: &str, mut op: F) -> Result<T, MultiWriteError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MultiWriteError>>,
{
    let mut attempt = 0;
    loop {
        let outcome = tokio::time::timeout(ATTEMPT_WAIT_MAX, op()).await;
        let no_answer = MultiWriteError::RequestFailed {
            source: zk::Error::Timeout,
        };
        match outcome.unwrap_or(Err(no_answer)) {
            Err(MultiWriteError::RequestFailed { source })
                if is_transient(&source) && attempt + 1 < RETRY_ATTEMPTS_COUNT_MAX =>
            {
                if attempt == 0 {
                    warn!(op = what, error = %source, "lost the connection; retrying");
                }
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

fn persistent() -> zk::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

/// Creates a persistent znode unless it exists.
async fn ensure_path(client: &zk::Client, path: &str) -> Result<(), zk::Error> {
    match retry(path, || client.create(path, b"", &persistent())).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The book's bootstrap: the four parents every role relies on.
pub async fn bootstrap(client: &zk::Client) -> Result<(), zk::Error> {
    for path in [WORKERS, TASKS, ASSIGN, STATUS] {
        ensure_path(client, path).await?;
    }
    Ok(())
}

/// Waits until a watch fires or [`RECHECK_PAUSE`] passes.
async fn wait_changed(watchers: Vec<zk::OneshotWatcher>) {
    let changed = futures::future::select_all(watchers.into_iter().map(|w| Box::pin(w.changed())));
    tokio::select! {
        _ = changed => {}
        _ = tokio::time::sleep(RECHECK_PAUSE) => {}
    }
}

/// Errors after which a role's session is of no more use: expired, closed,
/// or unreachable for longer than [`retry`] waits.
fn is_session_lost(e: &zk::Error) -> bool {
    is_transient(e)
        || matches!(
            e,
            zk::Error::SessionExpired | zk::Error::SessionMoved | zk::Error::ClientClosed
        )
}

/// Runs a role's session body again with a fresh session each time its
/// session is lost.
async fn with_sessions<F, Fut>(s: &Settings, role: &str, mut body: F) -> Result<(), zk::Error>
where
    F: FnMut(zk::Client) -> Fut,
    Fut: Future<Output = Result<(), zk::Error>>,
{
    loop {
        let client = connect(s).await?;
        info!(role, session = %client.session_id(), "connected");
        match body(client).await {
            Err(e) if is_session_lost(&e) => {
                warn!(role, error = %e, "session lost; starting over with a new one");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

// ------------------------------------------------------------------ master

/// The master role: runs for master; while a backup, waits for `/master` to
/// vanish; once elected, assigns tasks until its session ends. Never returns
/// `Ok` (stop it by dropping the future or killing the process).
pub async fn run_master(s: &Settings, id: &str) -> Result<(), zk::Error> {
    with_sessions(s, "master", |client| async move {
        bootstrap(&client).await?;
        loop {
            if run_for_master(&client, id).await? {
                info!(master = id, "elected: I am the master");
                return lead(&client, id).await;
            }
            wait_master_gone(&client).await?;
            info!(master = id, "/master vanished: running for master");
        }
    })
    .await
}

/// Tries to create `/master`; true when this session holds it (also when a
/// create that lost its connection had in fact succeeded: the book's
/// checkMaster).
async fn run_for_master(client: &zk::Client, id: &str) -> Result<bool, zk::Error> {
    loop {
        match retry("create /master", || {
            client.create(MASTER, id.as_bytes(), &ephemeral())
        })
        .await
        {
            Ok(_) => return Ok(true),
            Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
        match retry("get /master", || client.get_data(MASTER)).await {
            Ok((data, stat)) => {
                if stat.ephemeral_owner == client.session_id().0 {
                    return Ok(true);
                }
                let holder = String::from_utf8_lossy(&data).into_owned();
                info!(master = id, active = %holder, "backup: another master is active");
                return Ok(false);
            }
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Watches `/master` until it does not exist.
async fn wait_master_gone(client: &zk::Client) -> Result<(), zk::Error> {
    loop {
        let (stat, watcher) =
            retry("exists /master", || client.check_and_watch_stat(MASTER)).await?;
        if stat.is_none() {
            return Ok(());
        }
        wait_changed(vec![watcher]).await;
    }
}

/// The elected master's loop: recover from what the previous master left,
/// then keep `/tasks` empty by assigning, and requeue the tasks of workers
/// that vanished.
async fn lead(client: &zk::Client, id: &str) -> Result<(), zk::Error> {
    let mut next_worker = 0usize;
    let mut first = true;
    loop {
        let (workers, _, workers_watch) =
            retry("list /workers", || client.get_and_watch_children(WORKERS)).await?;
        let requeued = requeue_dead_workers(client, &workers).await?;
        let (mut tasks, _, tasks_watch) =
            retry("list /tasks", || client.get_and_watch_children(TASKS)).await?;
        tasks.sort();
        if first {
            info!(
                master = id,
                workers = workers.len(),
                pending = tasks.len(),
                requeued,
                "recovered: re-read /workers, /tasks and /assign"
            );
            first = false;
        }
        assign_all(client, &workers, &tasks, &mut next_worker).await?;
        wait_changed(vec![workers_watch, tasks_watch]).await;
    }
}

/// Moves the tasks of every `/assign/<worker>` whose worker is gone back to
/// `/tasks` and deletes that dir. Returns how many tasks went back.
async fn requeue_dead_workers(client: &zk::Client, live: &[String]) -> Result<usize, zk::Error> {
    let dirs = retry("list /assign", || client.list_children(ASSIGN)).await?;
    let mut requeued = 0;
    for worker in dirs.iter().filter(|w| !live.contains(w)) {
        // It may have registered since /workers was listed.
        let registration = format!("{WORKERS}/{worker}");
        if retry("exists worker", || client.check_stat(&registration))
            .await?
            .is_some()
        {
            continue;
        }
        let dir = format!("{ASSIGN}/{worker}");
        let tasks = match retry("list assignments", || client.list_children(&dir)).await {
            Ok(tasks) => tasks,
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        for task in &tasks {
            requeued += usize::from(requeue(client, worker, task).await?);
        }
        match retry("delete assign dir", || client.delete(&dir, None)).await {
            Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::NotEmpty) => {}
            Err(e) => return Err(e),
        }
        info!(worker = %worker, tasks = tasks.len(), "worker gone: its tasks go back to /tasks");
    }
    Ok(requeued)
}

/// Moves one task from a dead worker's dir back to `/tasks`. False when the
/// assignment was already gone.
async fn requeue(client: &zk::Client, worker: &str, task: &str) -> Result<bool, zk::Error> {
    let from = format!("{ASSIGN}/{worker}/{task}");
    let moved = move_znode(client, &from, &format!("{TASKS}/{task}")).await?;
    if moved {
        info!(task, from = worker, "reassigned: back to /tasks");
    }
    Ok(moved)
}

/// Moves a znode (its data) from `from` to `to` in one multi-op: create `to`,
/// delete `from` at the version read, so a concurrent change to `from` fails
/// the whole move. False when `from` was gone or changed, or `to` (or its
/// parent) was not there to be created; the next round looks again.
async fn move_znode(client: &zk::Client, from: &str, to: &str) -> Result<bool, zk::Error> {
    let (data, stat) = match retry("get", || client.get_data(from)).await {
        Ok(found) => found,
        Err(zk::Error::NoNode) => return Ok(false),
        Err(e) => return Err(e),
    };
    let moved = retry_multi("move", || {
        let mut multi = client.new_multi_writer();
        let ops = multi
            .add_create(to, &data, &persistent())
            .and_then(|_| multi.add_delete(from, Some(stat.version)));
        let commit = ops.map(|_| multi.commit());
        async move { commit?.await }
    })
    .await;
    match moved {
        Ok(_) => Ok(true),
        Err(MultiWriteError::OperationFailed {
            source: zk::Error::NodeExists | zk::Error::NoNode | zk::Error::BadVersion,
            ..
        }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Assigns every pending task, round robin over the live workers.
async fn assign_all(
    client: &zk::Client,
    workers: &[String],
    tasks: &[String],
    next_worker: &mut usize,
) -> Result<(), zk::Error> {
    if workers.is_empty() {
        if !tasks.is_empty() {
            info!(pending = tasks.len(), "no workers yet: tasks wait");
        }
        return Ok(());
    }
    for task in tasks {
        let worker = &workers[*next_worker % workers.len()];
        *next_worker += 1;
        assign(client, worker, task).await?;
    }
    Ok(())
}

/// Moves one task from `/tasks` to `/assign/<worker>`. A task already gone
/// (or a worker dir gone) is left to the next round.
async fn assign(client: &zk::Client, worker: &str, task: &str) -> Result<(), zk::Error> {
    let from = format!("{TASKS}/{task}");
    if move_znode(client, &from, &format!("{ASSIGN}/{worker}/{task}")).await? {
        info!(task, worker, "assigned");
    }
    Ok(())
}

// ------------------------------------------------------------------ worker

/// The worker role: registers under `/workers`, then runs whatever appears
/// under `/assign/<id>`, each task taking `work` (the book's workers "execute"
/// a task; ours sleep and answer). Never returns `Ok`.
pub async fn run_worker(s: &Settings, id: &str, work: Duration) -> Result<(), zk::Error> {
    with_sessions(s, "worker", |client| async move {
        bootstrap(&client).await?;
        register(&client, id).await?;
        let dir = format!("{ASSIGN}/{id}");
        loop {
            let (mut tasks, _, watch) =
                match retry("list my tasks", || client.get_and_watch_children(&dir)).await {
                    Ok(found) => found,
                    // The master removed it while we looked dead: make it again.
                    Err(zk::Error::NoNode) => {
                        ensure_path(&client, &dir).await?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
            tasks.sort();
            for task in &tasks {
                run_task(&client, id, task, work).await?;
            }
            wait_changed(vec![watch]).await;
        }
    })
    .await
}

/// Creates `/workers/<id>` (waiting out an older session's copy) and then
/// `/assign/<id>`: in that order, so a master never sees the dir of a worker
/// that has not registered yet and takes it for dead.
async fn register(client: &zk::Client, id: &str) -> Result<(), zk::Error> {
    let me = format!("{WORKERS}/{id}");
    loop {
        match retry("register", || client.create(&me, b"idle", &ephemeral())).await {
            Ok(_) => break,
            Err(zk::Error::NodeExists) => {
                let (stat, watch) = retry("exists me", || client.check_and_watch_stat(&me)).await?;
                if stat.is_some_and(|s| s.ephemeral_owner == client.session_id().0) {
                    break;
                }
                warn!(
                    worker = id,
                    "an older registration is still there; waiting for it to go"
                );
                wait_changed(vec![watch]).await;
            }
            Err(e) => return Err(e),
        }
    }
    ensure_path(client, &format!("{ASSIGN}/{id}")).await?;
    info!(worker = id, "registered");
    Ok(())
}

/// Runs one assigned task and records it: one multi-op creates
/// `/status/<task>` and deletes the assignment at the version read. When the
/// status exists already (a copy of a task reassigned after a suspected crash
/// ran elsewhere), this copy is dropped: a task is recorded once.
async fn run_task(
    client: &zk::Client,
    id: &str,
    task: &str,
    work: Duration,
) -> Result<(), zk::Error> {
    let assignment = format!("{ASSIGN}/{id}/{task}");
    let status = format!("{STATUS}/{task}");
    let (data, stat) = match retry("get assignment", || client.get_data(&assignment)).await {
        Ok(found) => found,
        Err(zk::Error::NoNode) => return Ok(()),
        Err(e) => return Err(e),
    };
    tokio::time::sleep(work).await;
    let result = format!("{} done by {id}", String::from_utf8_lossy(&data));
    let recorded = retry_multi("record status", || {
        let mut multi = client.new_multi_writer();
        let ops = multi
            .add_create(&status, result.as_bytes(), &persistent())
            .and_then(|_| multi.add_delete(&assignment, Some(stat.version)));
        let commit = ops.map(|_| multi.commit());
        async move { commit?.await }
    })
    .await;
    match recorded {
        Ok(_) => info!(task, worker = id, "done"),
        Err(MultiWriteError::OperationFailed {
            index: 0,
            source: zk::Error::NodeExists,
        }) => {
            let ran = Assignment {
                path: assignment,
                version: stat.version,
                result,
            };
            drop_copy(client, id, task, &ran).await?
        }
        // The assignment changed or went (taken back by the master, or our
        // own earlier attempt that lost its connection went through).
        Err(MultiWriteError::OperationFailed { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// `/status/<task>` exists already: either our own record went through before
/// a connection loss (the status holds our result, and the same multi-op
/// deleted the assignment), or another copy of a reassigned task recorded it:
/// then this copy's assignment is deleted unrecorded.
async fn drop_copy(
    client: &zk::Client,
    id: &str,
    task: &str,
    assignment: &Assignment,
) -> Result<(), zk::Error> {
    let status = format!("{STATUS}/{task}");
    let recorded = match retry("get status", || client.get_data(&status)).await {
        Ok((data, _)) => String::from_utf8_lossy(&data).into_owned(),
        Err(zk::Error::NoNode) => String::new(),
        Err(e) => return Err(e),
    };
    if recorded == assignment.result {
        info!(
            task,
            worker = id,
            "done (recorded before the connection dropped)"
        );
        return Ok(());
    }
    info!(task, worker = id, recorded = %recorded, "already recorded by another copy: dropping mine");
    let (path, version) = (&assignment.path, assignment.version);
    match retry("drop copy", || client.delete(path, Some(version))).await {
        Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A task a worker ran: its `/assign` znode, the version read, the result.
struct Assignment {
    path: String,
    version: i32,
    result: String,
}

// ------------------------------------------------------------------ client

/// The client role: submits `count` tasks as persistent sequential znodes
/// under `/tasks`, then watches `/status/<task>` of each until all are done.
/// Returns the task names with their results.
pub async fn run_client(s: &Settings, count: usize) -> Result<Vec<(String, String)>, zk::Error> {
    let mut client = connect(s).await?;
    bootstrap(&client).await?;
    let mut tasks = Vec::with_capacity(count);
    while tasks.len() < count {
        match submit(&client, tasks.len()).await {
            Ok(task) => tasks.push(task),
            Err(e) if is_session_lost(&e) => client = reconnect(s, &e).await?,
            Err(e) => return Err(e),
        }
    }
    info!(
        tasks = count,
        "submitted every task; waiting for their status"
    );
    let mut results = Vec::with_capacity(count);
    while results.len() < tasks.len() {
        let task = &tasks[results.len()];
        match wait_status(&client, task).await {
            Ok(result) => results.push((task.clone(), result)),
            Err(e) if is_session_lost(&e) => client = reconnect(s, &e).await?,
            Err(e) => return Err(e),
        }
    }
    info!(tasks = count, "every task is done");
    Ok(results)
}

/// A client's tasks are persistent: after losing its session it simply goes
/// on with a new one.
async fn reconnect(s: &Settings, lost: &zk::Error) -> Result<zk::Client, zk::Error> {
    warn!(role = "client", error = %lost, "session lost; going on with a new one");
    connect(s).await
}

/// Submits one task. A create that lost its connection is sent again, so
/// (as the book warns) the task may then exist twice under two names.
async fn submit(client: &zk::Client, i: usize) -> Result<String, zk::Error> {
    let prefix = format!("{TASKS}/task-");
    let data = format!("task {i}");
    let options = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
    let (_, seq) = retry("submit", || {
        client.create(&prefix, data.as_bytes(), &options)
    })
    .await?;
    let task = format!("task-{seq}");
    info!(task = %task, "submitted");
    Ok(task)
}

/// Watches `/status/<task>` until it exists; returns its data.
async fn wait_status(client: &zk::Client, task: &str) -> Result<String, zk::Error> {
    let status = format!("{STATUS}/{task}");
    loop {
        let (stat, watch) = retry("exists status", || client.check_and_watch_stat(&status)).await?;
        if stat.is_some() {
            match retry("get status", || client.get_data(&status)).await {
                Ok((data, _)) => {
                    let result = String::from_utf8_lossy(&data).into_owned();
                    info!(task, result = %result, "status");
                    return Ok(result);
                }
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(e),
            }
        }
        wait_changed(vec![watch]).await;
    }
}
