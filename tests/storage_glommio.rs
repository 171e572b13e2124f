//! The log driven the way the sequencer drives it: on a glommio executor, with the
//! sync of each batch on the blocking pool while the executor keeps appending.

use std::cell::RefCell;
use std::rc::Rc;

use corral::storage::{read_log, Log, LogConfig, SyncMode};
use glommio::LocalExecutorBuilder;

#[test]
fn appends_continue_while_a_sync_is_out_and_join_the_next_batch() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let durable = LocalExecutorBuilder::default()
        .spawn(move || async move {
            let tail = read_log(&dir, 0, |_| {}).unwrap();
            let cfg = LogConfig {
                segment_bytes: 1 << 20,
                sync: SyncMode::Fdatasync,
            };
            let log = Rc::new(RefCell::new(Log::open(&dir, cfg, tail).unwrap()));
            for z in 1..=3 {
                log.borrow_mut().append(z, 1, b"first batch").unwrap();
            }
            let job = log.borrow_mut().begin_sync().unwrap().unwrap();
            // The job waits on a gate the executor opens only after it appended
            // more: if the executor were blocked by the sync, this would deadlock.
            let (open_gate, gate) = std::sync::mpsc::channel::<()>();
            let sync = glommio::executor().spawn_blocking(move || {
                gate.recv().unwrap();
                job.run()
            });
            let appender = {
                let log = log.clone();
                glommio::spawn_local(async move {
                    for z in 4..=10 {
                        log.borrow_mut()
                            .append(z, 1, b"arrived during the sync")
                            .unwrap();
                        glommio::yield_if_needed().await;
                    }
                    assert!(
                        log.borrow_mut().begin_sync().unwrap().is_none(),
                        "one job at a time"
                    );
                    open_gate.send(()).unwrap();
                })
            };
            appender.await;
            let done = sync.await;
            let mut log = Rc::try_unwrap(log)
                .ok()
                .expect("appender finished")
                .into_inner();
            assert_eq!(
                log.durable_zxid(),
                0,
                "nothing is durable before finish_sync"
            );
            let first = log.finish_sync(done).unwrap().zxid();
            // The records that arrived meanwhile form the next batch.
            let job = log.begin_sync().unwrap().unwrap();
            assert_eq!(job.upto_zxid(), 10);
            let done = glommio::executor().spawn_blocking(move || job.run()).await;
            let second = log.finish_sync(done).unwrap().zxid();
            (first, second)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(durable, (3, 10));
    let mut n = 0;
    read_log(d.path(), 0, |_| n += 1).unwrap();
    assert_eq!(n, 10);
}
