//! The fault-injection harness (issue 11): client workloads recording their
//! histories ([`workload`], [`history`]), a seeded nemesis that kills, pauses,
//! partitions ensemble members ([`nemesis`]) through a fault-injecting TCP
//! proxy between peers ([`proxy`]), fills their disks and tears their last log
//! record ([`disk`]), and the checkers that judge the histories and the final
//! trees ([`checker`]).
//!
//! Everything runs inside the `faults` test binary: the test thread drives the
//! nemesis and the final checks, the workload clients and the proxy have
//! threads of their own. Flow: configure the ensemble, route its peer traffic
//! through the proxy, launch; start the workloads; run the schedule; heal;
//! stop the workloads; read every member's tree; check. (As root, every
//! member's data/ and datalog/ are tmpfs mounts of their own, made before launch.)

pub mod checker;
pub mod disk;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod workload;
