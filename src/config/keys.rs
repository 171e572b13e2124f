//! The explicit table of ZooKeeper 3.8 zoo.cfg keys that corral accepts but does
//! not act on yet. Pure data and one lookup; used once per key on the main thread
//! while `Config::parse` runs.
//!
//! The reference turns every key it does not know into the system property
//! `zookeeper.<key>`, so a real zoo.cfg may carry any key from zookeeperAdmin.md and
//! any `zookeeper.*` property (written without the `zookeeper.` prefix). corral
//! accepts those with one warning each, and still refuses a key in neither this
//! table nor the keys it implements, so a misspelt key stops start-up.
//!
//! Flow: `Config::apply` tries the implemented key groups first; a key none of them
//! owns is looked up here (`no_effect`); a miss is `ConfigError::UnknownKey`.

/// Exact key names (as written in zoo.cfg).
const KEYS: &[&str] = &[
    // Client connections and sessions.
    "serverCnxnFactory",
    "outstandingHandshake.limit",
    "netty.server.outstandingHandshake.limit",
    "netty.server.earlyDropSecureConnectionHandshakes",
    "netty.advancedFlowControl.enabled",
    "advancedFlowControlEnabled",
    "nio.numSelectorThreads",
    "nio.numWorkerThreads",
    "nio.directBufferBytes",
    "nio.sessionlessCnxnTimeout",
    "nio.shutdownTimeout",
    // Storage, snapshots and the request pipeline.
    "commitLogCount",
    "txnLogSizeLimitInKb",
    "snapshot.compression.method",
    "snapshot.trust.empty",
    "snapshotSizeFactor",
    "datadir.autocreate",
    "db.autocreate",
    "digest.enabled",
    "closeSessionTxn.enabled",
    "intBufferStartingSizeBytes",
    "flushDelay",
    "maxWriteQueuePollTime",
    "maxBatchSize",
    "maxResponseCacheSize",
    "maxGetChildrenResponseCacheSize",
    "commitProcessor.numWorkerThreads",
    "commitProcessor.maxReadBatchSize",
    "commitProcessor.maxCommitBatchSize",
    "commitProcessor.shutdownTimeout",
    "jute.maxbuffer.extrasize",
    "emulate353TTLNodes",
    "enableEagerACLCheck",
    "request.timeout",
    // Watches.
    "watchManagerName",
    "watcherCleanThreadsNum",
    "watcherCleanThreshold",
    "watcherCleanIntervalInSeconds",
    "maxInProcessingDeadWatchers",
    "bitHashCacheSize",
    // Containers: the reference reads these as unprefixed system properties only;
    // corral's equivalent is corral.containerCheckIntervalMs.
    "znode.container.checkIntervalMs",
    "znode.container.maxPerMinute",
    "znode.container.maxNeverUsedIntervalMs",
    // Throttling (the documented names and the property names they stand for).
    "connectionMaxTokens",
    "connectionTokenFillTime",
    "connectionTokenFillCount",
    "connectionFreezeTime",
    "connectionDropIncrease",
    "connectionDropDecrease",
    "connectionDecreaseRatio",
    "connection_throttle_tokens",
    "connection_throttle_fill_time",
    "connection_throttle_fill_count",
    "connection_throttle_freeze_time",
    "connection_throttle_drop_increase",
    "connection_throttle_drop_decrease",
    "connection_throttle_decrease_ratio",
    "connection_throttle_weight_enabled",
    "connection_throttle_global_session_weight",
    "connection_throttle_local_session_weight",
    "connection_throttle_renew_session_weight",
    "requestThrottleLimit",
    "requestThrottleStallTime",
    "requestThrottleDropStale",
    "requestStaleLatencyCheck",
    "requestStaleConnectionCheck",
    "request_throttle_max_requests",
    "request_throttle_stall_time",
    "request_throttle_drop_stale",
    "request_stale_latency_check",
    "request_stale_connection_check",
    "request_throttler.shutdownTimeout",
    "throttledOpWaitTime",
    "throttled_op_wait_time",
    "largeRequestMaxBytes",
    "largeRequestThreshold",
    // Ensemble tuning.
    "observerMasterPort",
    "observerMaster.sizeLimit",
    "maxTimeToWaitForEpoch",
    "leader.maxTimeToWaitForEpoch",
    "leaderServes",
    "cnxTimeout",
    "quorumCnxnTimeoutMs",
    "quorum.cnxn.threads.size",
    "electionPortBindRetry",
    "fastleader.minNotificationInterval",
    "fastleader.maxNotificationInterval",
    "observer.reconnectDelayMs",
    "observer.election.DelayMs",
    "observer.syncEnabled",
    "maxConcurrentSnapSyncs",
    "maxConcurrentDiffSyncs",
    "leader.maxConcurrentSnapSyncs",
    "leader.maxConcurrentDiffSyncs",
    "leader.closeSocketAsync",
    "leader.ackLoggingFrequency",
    "leaderConnectDelayDuringRetryMs",
    "learner.closeSocketAsync",
    "learner.asyncSending",
    "forward_learner_requests_to_commit_processor_disabled",
    "follower.skipLearnerRequestToNextProcessor",
    "multiAddress.reachabilityCheckEnabled",
    "multiAddress.reachabilityCheckTimeoutMs",
    "oraclePath",
    // Authentication and authorisation.
    "ensembleAuthName",
    "kerberos.removeHostFromPrincipal",
    "kerberos.removeRealmFromPrincipal",
    "kerberos.canonicalizeHostNames",
    // Observability.
    "audit.enable",
    "audit.impl.class",
    "messageTracker.BufferSize",
    "messageTracker.Enabled",
    "jvm.pause.monitor",
    "jvm.pause.sleep.time.ms",
    "jvm.pause.warn-threshold.ms",
    "jvm.pause.info-threshold.ms",
];

/// Key families, matched by prefix (something must follow the prefix).
const PREFIXES: &[&str] = &[
    "ssl.",
    "authProvider.",
    "admin.",
    "metricsProvider.",
    "pathStats.",
];

/// Keys whose absence of effect weakens security: their warning says so.
const SECURITY: &[&str] = &["ssl.", "authProvider.", "sslQuorum"];

/// If `key` is a 3.8 key corral accepts without acting on it, the warning to log.
/// The `zookeeper.`-prefixed spelling of such a key (as zookeeperAdmin.md lists some
/// of them) is accepted the same way.
pub(super) fn no_effect(line: usize, key: &str) -> Option<String> {
    let bare = key.strip_prefix("zookeeper.").unwrap_or(key);
    let known = KEYS.contains(&bare)
        || PREFIXES
            .iter()
            .any(|p| bare.len() > p.len() && bare.starts_with(p));
    if !known {
        return None;
    }
    let security = SECURITY.iter().any(|s| bare.starts_with(s));
    let tail = if security {
        "; corral does not enforce it"
    } else {
        ""
    };
    Some(format!(
        "config line {line}: `{key}` is accepted but has no effect yet in corral{tail}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_keys_prefixes_and_the_zookeeper_prefix() {
        assert!(no_effect(1, "observerMasterPort").is_some());
        assert!(no_effect(1, "zookeeper.nio.numWorkerThreads").is_some());
        assert!(no_effect(1, "ssl.keyStore.location").is_some());
        assert!(no_effect(1, "metricsProvider.httpPort").is_some());
        // A prefix alone, or a misspelling, is not a key.
        assert!(no_effect(1, "ssl.").is_none());
        assert!(no_effect(1, "localSessionEnabled").is_none());
        assert!(no_effect(1, "zookeeper.bogus").is_none());
    }

    #[test]
    fn security_keys_say_they_are_not_enforced() {
        let w = no_effect(7, "authProvider.2=com.example.Own").unwrap();
        assert_eq!(
            w,
            "config line 7: `authProvider.2=com.example.Own` is accepted but has no effect \
             yet in corral; corral does not enforce it"
        );
        // Quorum SASL's keys are all taken (config::quorum_sasl): a misspelt one
        // is refused.
        assert!(no_effect(1, "quorum.auth.enableSas1").is_none());
        let w = no_effect(2, "flushDelay").unwrap();
        assert_eq!(
            w,
            "config line 2: `flushDelay` is accepted but has no effect yet in corral"
        );
    }

    #[test]
    fn the_table_has_no_duplicates_and_no_implemented_keys() {
        let mut seen = std::collections::BTreeSet::new();
        for k in KEYS {
            assert!(seen.insert(*k), "{k} listed twice");
        }
        // Implemented keys never appear here.
        for k in [
            "maxCnxns",
            "globalOutstandingLimit",
            "tickTime",
            "syncEnabled",
            "multiAddress.enabled",
            "admin.enableServer",
            "secureClientPort",
            "secureClientPortAddress",
            "X509AuthenticationProvider.superUser",
            "enforceQuota",
        ] {
            assert!(!KEYS.contains(&k), "{k}");
        }
    }
}
