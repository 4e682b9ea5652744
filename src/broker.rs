//! Wires the pieces together: the log engine, background tasks and the
//! listeners. `start` returns once every listener is bound.

use std::sync::Arc;

use crate::config::Config;
use crate::log::{retention, LogError, LogManager, Topic};
use crate::server::{listener, BoundListener};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot open the log in {dir}: {source}")]
    Log {
        dir: std::path::PathBuf,
        source: LogError,
    },
    #[error("cannot bind listener {name} on {address}: {source}")]
    Bind {
        name: String,
        address: String,
        source: std::io::Error,
    },
}

/// Shared state every connection sees.
pub struct Broker {
    pub config: Config,
    pub logs: Arc<LogManager>,
}

impl Broker {
    /// Creates `name` with the default partition count (auto-creation).
    /// Returns the topic if it exists afterwards.
    pub fn auto_create(&self, name: &str) -> Option<Arc<Topic>> {
        let parts = self.logs.defaults.default_partitions;
        match self
            .logs
            .create_topic(name, parts, Default::default(), false)
        {
            Ok(t) => {
                tracing::info!(topic = name, partitions = parts, "topic auto-created");
                t
            }
            Err(LogError::TopicExists(_)) => self.logs.topic(name),
            Err(e) => {
                tracing::debug!(topic = name, "auto-create refused: {e}");
                None
            }
        }
    }
}

pub struct RunningBroker {
    pub broker: Arc<Broker>,
    pub listeners: Vec<BoundListener>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningBroker {
    /// Stops accepting, then fsyncs every partition.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
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
    let dir = config.data_dir.clone();
    let log_cfg = config.log.clone();
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
    let broker = Arc::new(Broker {
        config: config.clone(),
        logs: logs.clone(),
    });
    let mut tasks = vec![retention::spawn(logs)];
    let mut bound = Vec::new();
    for lc in &config.listeners {
        let (l, info) = listener::bind(lc)
            .await
            .map_err(|source| BrokerError::Bind {
                name: lc.display_name(),
                address: lc.address.clone(),
                source,
            })?;
        tasks.push(listener::spawn_accept_loop(
            l,
            Arc::new(info.clone()),
            broker.clone(),
        ));
        bound.push(info);
    }
    Ok(RunningBroker {
        broker,
        listeners: bound,
        tasks,
    })
}
