//! The executor never sleeps while a task is ready to run (owner: the test thread; no
//! server). glommio 0.9.0's `LocalExecutor::run` parked when its preempt timer had fired
//! before the first task-queue check of a turn (a thread descheduled for longer than the
//! timer, 5 ms in corral): no task ran, the loop took that for "nothing to do", and the
//! executor slept with runnable tasks until the next timer or IO event. corral builds
//! against the patched copy in `vendor/glommio` (vendor/glommio/CORRAL-PATCH.md); this
//! test fails on an unpatched glommio.

use std::sync::mpsc;
use std::time::Duration;

/// How long the worker may take for all its runs before the test calls it stuck. A
/// bound on a hang, not a timing: the runs take milliseconds.
const HANG_BOUND: Duration = Duration::from_secs(120);

/// A preempt timer that has always fired by the executor's first check: every turn
/// starts "preempted", which is the descheduled thread's case made certain.
#[test]
fn runnable_tasks_run_when_the_preempt_timer_fired_first() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let ex = glommio::LocalExecutorBuilder::default()
            .preempt_timer(Duration::from_nanos(1))
            .make()
            .expect("executor");
        let mut sum = 0u64;
        for i in 0..1_000u64 {
            sum += ex.run(async move {
                // A task of its own, woken from another: the case a server turn has.
                let child = glommio::spawn_local(async move { i }).detach();
                glommio::executor().yield_now().await;
                child.await.unwrap_or(0)
            });
        }
        let _ = done_tx.send(sum);
    });
    let sum = done_rx
        .recv_timeout(HANG_BOUND)
        .expect("the executor parked with runnable tasks and never woke");
    assert_eq!(sum, (0..1_000u64).sum::<u64>());
}
