//! The operators' HTTP surface keys: the AdminServer's `admin.*` (the reference
//! reads them as the system properties `zookeeper.admin.*`, which zoo.cfg spells
//! without the prefix; both spellings are taken) and the Prometheus provider's
//! `metricsProvider.*`. Pure parsing, run once on the main thread by
//! `Config::apply`; the admin thread (src/admin/http.rs) reads the result.
//!
//! Keys of these families corral does not act on (`admin.portUnification`,
//! `admin.forceHttps`, `metricsProvider.numWorkerThreads`, ...) fall through to
//! `keys::no_effect` and are accepted with a warning.

use super::{ConfigError, Entry};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The class name that turns the Prometheus endpoint on.
pub const PROMETHEUS_PROVIDER_CLASS: &str =
    "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";

/// The AdminServer (`/commands`), as the reference's JettyAdminServer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// admin.enableServer (the reference's default: true).
    pub enabled: bool,
    /// admin.serverAddress (0.0.0.0).
    pub address: IpAddr,
    /// admin.serverPort (8080).
    pub port: u16,
    /// admin.commandURL (`/commands`): the commands live under it.
    pub command_url: String,
    /// admin.idleTimeout in ms (30000): a connection silent this long is closed.
    pub idle_timeout_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8080,
            command_url: "/commands".into(),
            idle_timeout_ms: 30_000,
        }
    }
}

impl AdminConfig {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// The Prometheus endpoint (`/metrics`), as the reference's PrometheusMetricsProvider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// metricsProvider.className names the Prometheus provider.
    pub prometheus: bool,
    /// metricsProvider.httpHost (0.0.0.0).
    pub host: IpAddr,
    /// metricsProvider.httpPort (7000).
    pub port: u16,
    /// metricsProvider.exportJvmInfo: accepted; corral has no JVM to describe.
    pub export_jvm_info: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            prometheus: false,
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 7000,
            export_jvm_info: true,
        }
    }
}

impl MetricsConfig {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

/// One `admin.*` key; `Ok(false)` when the key is not one corral acts on.
pub(super) fn apply_admin(a: &mut AdminConfig, e: &Entry) -> Result<bool, ConfigError> {
    let key = e.key.strip_prefix("zookeeper.").unwrap_or(&e.key);
    match key {
        "admin.enableServer" => a.enabled = e.true_false()?,
        "admin.serverAddress" => a.address = e.num("expected an IP address such as 0.0.0.0")?,
        "admin.serverPort" => a.port = e.num("expected a port 0-65535")?,
        "admin.commandURL" => {
            if !e.value.starts_with('/') || e.value.len() < 2 {
                return Err(e.bad("expected a URL path such as /commands"));
            }
            a.command_url = e.value.trim_end_matches('/').to_string();
        }
        "admin.idleTimeout" => {
            a.idle_timeout_ms = e.num_where(
                |&n: &u64| n > 0,
                "expected a positive number of milliseconds",
            )?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// One `metricsProvider.*` key; `Ok(false)` when the key is not one corral acts on.
pub(super) fn apply_metrics(m: &mut MetricsConfig, e: &Entry) -> Result<bool, ConfigError> {
    match e.key.as_str() {
        "metricsProvider.className" => m.prometheus = e.value.trim() == PROMETHEUS_PROVIDER_CLASS,
        "metricsProvider.httpHost" => m.host = e.num("expected an IP address such as 0.0.0.0")?,
        "metricsProvider.httpPort" => m.port = e.num("expected a port 0-65535")?,
        "metricsProvider.exportJvmInfo" => m.export_jvm_info = e.true_false()?,
        _ => return Ok(false),
    }
    Ok(true)
}
