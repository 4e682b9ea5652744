//! Start-up: builds the broker's state, its back end (the embedded engine
//! or an upstream cluster), the edge in front of it and the listeners.
//! `start` returns once every listener is bound.

use std::sync::Arc;

use crate::acl::AclStore;
use crate::audit::{AuditEvent, Auditor, EventKind};
use crate::broker::{random_password, Broker};
use crate::config::Config;
use crate::edge::backend::Backend;
use crate::edge::Edge;
use crate::log::{retention, LogError, LogManager};
use crate::security::credentials::{CredentialError, CredentialStore};
use crate::security::scram;
use crate::server::{listener, BoundListener};
use crate::tls::{TlsAcceptorHandle, TlsError, TlsWatcher};
use crate::util::hot_reload::{ReloadHandle, ReloadReport, Reporter};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot open the log in {dir}: {source}")]
    Log {
        dir: std::path::PathBuf,
        source: LogError,
    },
    #[error("{0}")]
    Acl(#[from] crate::acl::file::AclFileError),
    #[error("cannot start the audit log {path}: {source}")]
    Audit {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("consumer groups: {0}")]
    Groups(String),
    #[error("producer id block: {source}")]
    ProducerIds { source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("policies: {0}")]
    Policy(#[from] crate::policy::PolicyFileError),
    #[error("client quotas: {0}")]
    Quotas(#[from] crate::quota::QuotaStoreError),
    #[error("credential store: {0}")]
    Credentials(#[from] CredentialError),
    #[error("cannot watch {what}: {source}")]
    Watch {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("dynamic broker configs: {0}")]
    DynamicConfig(#[from] crate::dynamic_config::DynamicConfigError),
    #[error("group configs: {0}")]
    GroupConfig(#[from] crate::group_config::GroupConfigError),
    #[error("gateway")]
    Gateway(#[from] crate::gateway::UpstreamError),
    #[error("{0}")]
    Ops(#[from] crate::ops::OpsError),
    #[error("cannot bind listener {name} on {address}: {source}")]
    Bind {
        name: String,
        address: String,
        source: std::io::Error,
    },
}

/// What start-up did that a person should be told about once.
#[derive(Debug, Default)]
pub struct StartupNotes {
    pub generated_certs: Option<crate::tls::CertsReport>,
    /// Password of the bootstrap `admin` user, created on first start.
    pub admin_password: Option<String>,
    /// The default ACL file, created (with no rules) on first start.
    pub created_acl_file: Option<std::path::PathBuf>,
}

pub struct RunningBroker {
    pub broker: Arc<Broker>,
    gateway: Option<Arc<crate::gateway::Gateway>>,
    pub listeners: Vec<BoundListener>,
    /// The ops listener's URL (`http://127.0.0.1:9644`), when enabled.
    pub ops_url: Option<String>,
    pub notes: StartupNotes,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cleaner: crate::log::cleaner::CleanerHandle,
    _tls_watcher: Option<TlsWatcher>,
    _credentials_watcher: Option<ReloadHandle>,
    _acl_watcher: ReloadHandle,
    _policy_watcher: ReloadHandle,
}

impl RunningBroker {
    /// Stops accepting, records the stop, drains the audit queue, then
    /// fsyncs every partition.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(g) = &self.gateway {
            g.shutdown();
        }
        self.broker.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self
            .broker
            .active_connections
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Repeated login failures counted since the last window.
        self.broker.login_failures.flush(&self.broker.auditor).await;
        self.broker
            .policy_violations
            .flush(&self.broker.auditor)
            .await;
        self.broker
            .auditor
            .submit(AuditEvent::new(EventKind::BrokerStop))
            .await;
        let auditor = self.broker.auditor.clone();
        let _ = tokio::task::spawn_blocking(move || auditor.close()).await;
        // Before the flush: no segment swap after the clean-shutdown
        // snapshot, nor while a next broker opens the same directory.
        let cleaner = self.cleaner;
        let _ = tokio::task::spawn_blocking(move || cleaner.stop()).await;
        let logs = self.broker.logs.clone();
        let _ = tokio::task::spawn_blocking(move || logs.flush_all()).await;
    }
}

pub async fn start(config: Config) -> Result<RunningBroker, BrokerError> {
    if crate::alloc_guard::strict_overcommit() {
        tracing::warn!(
            "vm.overcommit_memory=2: hostile array counts in requests can exhaust address-space accounting"
        );
    }
    // Dynamic broker configs persisted by an earlier run override the file,
    // as in Kafka.
    let dynamic = crate::dynamic_config::DynamicConfigs::load(&config.data_dir)?;
    let effective = dynamic.layers().apply(&config)?;
    let group_configs = Arc::new(crate::group_config::GroupConfigs::load(
        &config.data_dir,
        config.groups.clone(),
    )?);
    let connections = connection_limits(&effective);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let dir = config.data_dir.clone();
    let log_cfg = effective.log.clone();
    let logs = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || LogManager::open(&dir, log_cfg)
    });
    let logs = match logs.await {
        Ok(r) => r.map_err(|source| BrokerError::Log {
            dir: dir.clone(),
            source,
        })?,
        Err(e) => {
            return Err(BrokerError::Log {
                dir,
                source: LogError::io("", std::io::Error::other(e.to_string())),
            })
        }
    };
    let mut notes = StartupNotes::default();
    let needs_tls = config
        .listeners
        .iter()
        .any(|l| l.security_protocol.uses_tls());
    let needs_sasl = config
        .listeners
        .iter()
        .any(|l| l.security_protocol.uses_sasl());
    let tls = match (&config.tls, needs_tls) {
        (Some(settings), true) => {
            if config.certs.auto_generate {
                notes.generated_certs =
                    crate::tls::ensure_dev_certs(&config.certs.dir, &config.certs.hosts)?;
            }
            Some(TlsAcceptorHandle::load(settings)?)
        }
        _ => None,
    };
    let credentials = if needs_sasl {
        let store = CredentialStore::open_or_init(&config.sasl.credentials)?;
        if config.sasl.bootstrap_admin && store.snapshot().is_empty() {
            let password = random_password();
            store.modify(|f| f.add_user("admin", &password, scram::DEFAULT_ITERATIONS))?;
            notes.admin_password = Some(password);
        }
        Some(store)
    } else {
        None
    };
    notes.created_acl_file = ensure_default_acl_file(&config)?;
    let acls = AclStore::open(
        &config.acl.file,
        config.super_users.clone(),
        config.acl.allow_missing,
    )?;
    let offsets = {
        let logs = logs.clone();
        tokio::task::spawn_blocking(move || crate::group::OffsetStore::open(logs))
            .await
            .map_err(|e| BrokerError::Groups(e.to_string()))?
            .map_err(|e| BrokerError::Groups(e.to_string()))?
    };
    let offsets = Arc::new(offsets);
    let txns = {
        let (logs, offsets) = (logs.clone(), offsets.clone());
        tokio::task::spawn_blocking(move || {
            crate::txn::coordinator::TxnCoordinator::open(logs, offsets)
        })
        .await
        .map_err(|e| BrokerError::Groups(e.to_string()))?
        .map_err(|e| BrokerError::Groups(format!("transactions: {e}")))?
    };
    let groups = crate::group::Coordinator::new(crate::group::GroupSettings {
        min_session_timeout_ms: config.groups.min_session_timeout_ms,
        max_session_timeout_ms: config.groups.max_session_timeout_ms,
        initial_rebalance_delay_ms: config.groups.initial_rebalance_delay_ms,
        consumer: crate::group::consumer::ConsumerSettings {
            heartbeat_interval_ms: config.groups.consumer_heartbeat_interval_ms,
            session_timeout_ms: config.groups.consumer_session_timeout_ms,
        },
    });
    // KIP-848 groups run with their own group configs (Kafka's
    // consumer.session.timeout.ms / consumer.heartbeat.interval.ms), read
    // at each heartbeat and session check, so a change applies live.
    groups.consumer.use_group_settings(Arc::new({
        let configs = group_configs.clone();
        move |group: &str| crate::group::consumer::ConsumerSettings {
            heartbeat_interval_ms: configs.consumer_heartbeat_interval_ms(group),
            session_timeout_ms: configs.consumer_session_timeout_ms(group),
        }
    }));
    let mirror = match &config.audit.topic {
        Some(topic) if config.audit.enabled => {
            if logs.topic(topic).is_none() {
                logs.create_topic(topic, 1, Default::default(), false)
                    .map_err(|source| BrokerError::Log {
                        dir: config.data_dir.clone(),
                        source,
                    })?;
            }
            Some(crate::audit::topic_mirror::mirror(
                logs.clone(),
                topic.clone(),
            ))
        }
        _ => None,
    };
    let auditor =
        Arc::new(
            Auditor::start(&config.audit, mirror).map_err(|source| BrokerError::Audit {
                path: config.audit.file.clone(),
                source,
            })?,
        );
    {
        let a = auditor.clone();
        acls.set_reload_hook(move |ev| {
            let mut rec = AuditEvent::new(EventKind::AclReload);
            let crate::acl::store::ReloadEvent::Accepted { rules } = ev;
            rec.decision = Some("accepted".into());
            rec.details = Some(serde_json::json!({ "rules": rules }));
            a.submit_sync(rec);
        });
    }
    let reporter = reload_reporter(auditor.clone(), metrics.clone());
    let acl_watcher = acls
        .spawn_watcher(Some(reporter.clone()))
        .map_err(|source| BrokerError::Watch {
            what: "the ACL file",
            source,
        })?;
    let tls_watcher = match &tls {
        Some(handle) => Some(handle.spawn_watcher(Some(reporter.clone()))?),
        None => None,
    };
    let policies = crate::policy::PolicyStore::from_config(&config)?;
    let policy_watcher = policies
        .spawn_watcher(Some(reporter.clone()))
        .map_err(|source| BrokerError::Watch {
            what: "the policy file",
            source,
        })?;
    let credentials_watcher = match &credentials {
        Some(store) => {
            Some(
                store
                    .spawn_watcher(Some(reporter))
                    .map_err(|source| BrokerError::Watch {
                        what: "the credential store",
                        source,
                    })?,
            )
        }
        None => None,
    };
    let gateway = match (&config.backend, &config.gateway) {
        (crate::config::Backend::Gateway, Some(settings)) => {
            Some(crate::gateway::Gateway::new(settings)?)
        }
        _ => None,
    };
    let quotas = Arc::new(crate::quota::Quotas::load(
        &config.quotas,
        Some(&config.data_dir),
    )?);
    let broker = Arc::new(Broker {
        config: config.clone(),
        quotas,
        policies,
        policy_violations: Arc::new(crate::audit::policy_violations::PolicyViolations::new(
            config.sasl.login_throttle.audit_max_keys,
            config.sasl.login_throttle.audit_window_ms,
        )),
        dynamic,
        group_configs,
        logs: logs.clone(),
        credentials,
        tls,
        acls,
        auditor: auditor.clone(),
        groups: groups.clone(),
        offsets: offsets.clone(),
        producer_ids: crate::txn::producer_ids::ProducerIds::open(&config.data_dir)
            .map_err(|source| BrokerError::ProducerIds { source })?,
        txns: txns.clone(),
        shutdown: tokio::sync::watch::channel(false).0,
        active_connections: std::sync::atomic::AtomicUsize::new(0),
        connections,
        login_throttle: crate::security::throttle::LoginThrottle::new(&config.sasl.login_throttle),
        login_failures: Arc::new(crate::audit::login_failures::LoginFailures::new(
            config.sasl.login_throttle.audit_max_keys,
            config.sasl.login_throttle.audit_window_ms,
        )),
        metrics: metrics.clone(),
    });
    let embedded = gateway.is_none();
    metrics.attach(crate::metrics::Sources {
        logs: embedded.then(|| logs.clone()),
        offsets: embedded.then(|| offsets.clone()),
        auditor: auditor.clone(),
        tls: broker.tls.clone(),
        upstream: gateway
            .clone()
            .map(|g| Box::new(move || g.snapshot()) as Box<dyn Fn() -> _ + Send + Sync>),
    });

    // Where the edge sends what it allows.
    let backend: Arc<dyn Backend> = match &gateway {
        Some(g) => g.clone(),
        None => Arc::new(crate::embedded::Engine),
    };
    let edge = Arc::new(Edge {
        broker: broker.clone(),
        backend,
    });

    let mut tasks = vec![retention::spawn(logs.clone()), groups.spawn_ticker()];
    // Its own thread: a pass reads and writes whole segments, paced by
    // log.cleaner_io_max_bytes_per_second, and must not hold a runtime worker.
    let cleaner = crate::log::cleaner::spawn(&logs).map_err(|e| BrokerError::Log {
        dir: config.data_dir.clone(),
        source: LogError::io("log-cleaner thread", e),
    })?;
    tasks.push(broker.login_failures.clone().spawn_flusher(auditor.clone()));
    tasks.push(
        broker
            .policy_violations
            .clone()
            .spawn_flusher(auditor.clone()),
    );
    tasks.push(spawn_offset_expiry(broker.clone()));
    tasks.push(txns.spawn_expiry());
    if let Some(store) = &broker.credentials {
        tasks.push(spawn_credential_audit(store.clone(), auditor.clone()));
    }
    // Bound before the Kafka listeners, so that a taken ops port stops the
    // start before any client could connect; served once all is up.
    let ops = match config.ops.enabled {
        true => Some(crate::ops::bind(&config.ops, broker.tls.clone()).await?),
        false => None,
    };
    let mut bound = Vec::new();
    for (index, lc) in config.listeners.iter().enumerate() {
        let (l, mut info) = listener::bind(lc)
            .await
            .map_err(|source| BrokerError::Bind {
                name: lc.display_name(),
                address: lc.address.clone(),
                source,
            })?;
        info.index = index;
        tasks.push(listener::spawn_accept_loop(
            l,
            Arc::new(info.clone()),
            edge.clone(),
        ));
        bound.push(info);
    }
    if let Some(g) = &gateway {
        g.attach(&edge).await;
    }
    // Last, so that a /readyz that answers saw everything above done.
    let ops_url = if let Some(ops) = ops {
        let url = format!("{}://{}", ops.scheme(), ops.bound);
        let flag = |b: bool| std::sync::atomic::AtomicBool::new(b);
        let readiness = Arc::new(crate::ops::Readiness {
            listeners: flag(true),
            log: embedded.then(|| flag(true)),
            acls: flag(true),
            credentials: broker.credentials.as_ref().map(|_| flag(true)),
            upstream: gateway.clone(),
        });
        tasks.push(crate::ops::spawn(
            ops,
            Arc::new(crate::ops::OpsState::new(metrics.clone(), readiness)),
        ));
        Some(url)
    } else {
        None
    };
    let mut start = AuditEvent::new(EventKind::BrokerStart);
    start.details = Some(serde_json::json!({
        "listeners": bound.iter().map(|l| format!("{}://{}", l.protocol, l.bound)).collect::<Vec<_>>(),
        "version": env!("CARGO_PKG_VERSION"),
    }));
    auditor.submit(start).await;
    Ok(RunningBroker {
        broker,
        gateway,
        listeners: bound,
        ops_url,
        notes,
        tasks,
        cleaner,
        _tls_watcher: tls_watcher,
        _credentials_watcher: credentials_watcher,
        _acl_watcher: acl_watcher,
        _policy_watcher: policy_watcher,
    })
}

/// Lifts the open-file limit as far as the process may, then derives the
/// connection limits the config leaves unset from it: connections must never
/// take the descriptors the log, the audit log and an admin need.
fn connection_limits(config: &Config) -> Arc<crate::server::limits::ConnectionTracker> {
    use crate::server::limits::{raise_fd_limit, ConnectionTracker, Limits, RESERVED_FDS};
    let fd_limit = match raise_fd_limit() {
        Ok((before, after)) => {
            if after > before {
                tracing::info!(
                    "raised the open-file limit from {before} to {after} (the hard limit)"
                );
            }
            after
        }
        Err(e) => {
            tracing::warn!("cannot read or raise the open-file limit: {e}; assuming 1024");
            1024
        }
    };
    // The log's segment-file cache is sized from the same (raised) limit;
    // connections get what neither it nor the broker's own files need.
    let (log_files, _) = crate::log::files::FileCache::effective_limit(config.log.max_open_files);
    let limits = Limits::derive(
        &config.connections,
        fd_limit,
        RESERVED_FDS + log_files as u64,
    );
    tracing::info!(
        open_file_limit = fd_limit,
        max_connections = limits.max_connections,
        max_connections_per_ip = limits.max_connections_per_ip,
        "connection limits"
    );
    ConnectionTracker::with_base(limits, (fd_limit, RESERVED_FDS + log_files as u64))
}

/// First start with the default ACL path (a fresh clone run from another
/// directory): write a file with no rules, so everyone but the super users
/// is denied, instead of refusing to start. Any other missing path is
/// refused by `AclStore::open` unless `acl.allow_missing`.
fn ensure_default_acl_file(
    config: &Config,
) -> Result<Option<std::path::PathBuf>, crate::acl::file::AclFileError> {
    let path = &config.acl.file;
    if config.acl.allow_missing
        || *path != crate::config::AclConfig::default().file
        || path.exists()
    {
        return Ok(None);
    }
    let write = |source| crate::acl::file::AclFileError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(crate::util::atomic_file::parent_dir(path)).map_err(write)?;
    crate::util::atomic_file::write_atomic(path, crate::acl::store::DEFAULT_FILE.as_bytes(), 0o644)
        .map_err(write)?;
    Ok(Some(path.clone()))
}

/// Audit records for the reload loops: every failed attempt (the version in
/// force stays), every version put in force, and the return to sync after
/// failures. Never the files' content: errors carry positions and kinds.
fn reload_reporter(auditor: Arc<Auditor>, metrics: Arc<crate::metrics::Metrics>) -> Reporter {
    Arc::new(move |r: &ReloadReport<'_>| {
        let (what, path) = match r {
            ReloadReport::Applied { what, path, .. }
            | ReloadReport::InSync { what, path, .. }
            | ReloadReport::Failed { what, path, .. } => (*what, *path),
        };
        // The ACL file keeps its own event kind (and `rules` count).
        let (kind, count_key, file) = match what {
            "ACL file" => (EventKind::AclReload, "rules", "acl"),
            "credential file" => (EventKind::FileReload, "users", "credentials"),
            "policy file" => (EventKind::FileReload, "rules", "policy"),
            _ => (EventKind::FileReload, "entries", "tls"),
        };
        metrics.reload(
            file,
            match r {
                ReloadReport::Applied { .. } => "applied",
                ReloadReport::InSync { .. } => "in_sync",
                ReloadReport::Failed { .. } => "failed",
            },
        );
        let mut rec = AuditEvent::new(kind);
        let mut details = serde_json::json!({ "file": path.display().to_string(), "what": what });
        match r {
            ReloadReport::Applied {
                version,
                entries,
                failed_attempts,
                ..
            } => {
                rec.decision = Some("accepted".into());
                details[count_key] = (*entries).into();
                details["generation"] = version.generation.into();
                details["sha256"] = crate::util::hot_reload::hex(&version.sha256).into();
                details["failed_attempts"] = (*failed_attempts).into();
            }
            ReloadReport::InSync {
                version,
                failed_attempts,
                ..
            } => {
                rec.decision = Some("in_sync".into());
                details["generation"] = version.generation.into();
                details["sha256"] = crate::util::hot_reload::hex(&version.sha256).into();
                details["failed_attempts"] = (*failed_attempts).into();
            }
            ReloadReport::Failed {
                error,
                attempt,
                retry_in,
                ..
            } => {
                rec.decision = Some("refused".into());
                rec.reason = Some(error.to_string());
                details["attempt"] = (*attempt).into();
                details["retry_in_ms"] = (retry_in.as_millis() as u64).into();
            }
        }
        rec.details = Some(details);
        auditor.submit_sync(rec);
    })
}

/// Expires the committed offsets of groups that have been empty for longer
/// than `groups.offsets_retention_ms` (Kafka 2.1+ semantics).
fn spawn_offset_expiry(broker: Arc<Broker>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let retention = broker.config.groups.offsets_retention_ms;
        if retention < 0 {
            return;
        }
        let retention = std::time::Duration::from_millis(retention as u64);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(1000));
        loop {
            tick.tick().await;
            // An empty group with no offsets is gone (Kafka's Dead state).
            for g in broker.groups.group_ids() {
                let empty = broker
                    .groups
                    .snapshot(&g)
                    .is_some_and(|v| v.state == crate::group::GroupState::Empty);
                if empty && broker.offsets.group(&g).is_empty() {
                    let _ = broker.groups.delete_if_empty(&g);
                }
            }
            for g in broker.offsets.groups_with_offsets() {
                let expired = match broker.groups.snapshot(&g) {
                    Some(v) => {
                        v.state == crate::group::GroupState::Empty
                            && v.empty_for.is_some_and(|d| d >= retention)
                    }
                    // Known only from offsets (e.g. after a restart): the
                    // newest commit tells how long it has been idle.
                    None => broker
                        .offsets
                        .group(&g)
                        .iter()
                        .map(|(_, _, c)| c.commit_ms)
                        .max()
                        .is_some_and(|ms| {
                            crate::log::segment::now_ms() - ms >= retention.as_millis() as i64
                        }),
                };
                if expired {
                    let _ = broker.groups.delete_if_empty(&g);
                    let tombstones = broker.offsets.deletions(&g, None);
                    let n = tombstones.len();
                    match broker.offsets.commit(tombstones).await {
                        Ok(()) => {
                            tracing::info!(group = %g, partitions = n, "committed offsets expired")
                        }
                        Err(e) => tracing::warn!(group = %g, "offset expiry failed: {e}"),
                    }
                }
            }
        }
    })
}

/// Records every change to the credential store, whoever made it (the CLI,
/// an editor, or AlterUserScramCredentials): users added, removed, or with
/// a new password. Names only, never key material.
fn spawn_credential_audit(
    store: Arc<CredentialStore>,
    auditor: Arc<Auditor>,
) -> tokio::task::JoinHandle<()> {
    use std::collections::BTreeMap;
    let fingerprints = |s: &CredentialStore| -> BTreeMap<String, Option<u64>> {
        s.snapshot()
            .users()
            .into_iter()
            .map(|(u, _, _)| {
                let fp = s.fingerprint_of(&u);
                (u, fp)
            })
            .collect()
    };
    tokio::spawn(async move {
        let mut generation = store.generation();
        let mut known = fingerprints(&store);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tick.tick().await;
            let g = store.generation();
            if g == generation {
                continue;
            }
            generation = g;
            let now = fingerprints(&store);
            let added: Vec<&String> = now.keys().filter(|u| !known.contains_key(*u)).collect();
            let removed: Vec<&String> = known.keys().filter(|u| !now.contains_key(*u)).collect();
            let changed: Vec<&String> = now
                .iter()
                .filter(|(u, fp)| known.get(*u).is_some_and(|old| old != *fp))
                .map(|(u, _)| u)
                .collect();
            if !(added.is_empty() && removed.is_empty() && changed.is_empty()) {
                let mut ev = AuditEvent::new(EventKind::CredentialChange);
                ev.details = Some(serde_json::json!({
                    "added": added, "removed": removed, "password_changed": changed,
                }));
                auditor.submit(ev).await;
            }
            known = now;
        }
    })
}
