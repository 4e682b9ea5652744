//! The transaction coordinator: transactional ids, their producer id and
//! epoch, the partitions and groups in the current transaction, and its
//! end (markers on every partition, staged offsets applied on commit).
//!
//! State changes are written durably to the internal topic
//! `__transaction_state` before they are acknowledged, so a restart resumes
//! (and finishes) whatever was in flight. Abandoned transactions are aborted
//! when their timeout passes, with an epoch bump that fences the zombie.

use kafka_protocol::ResponseError;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::group::offsets::{Committed, Key};
use crate::group::OffsetStore;
use crate::log::internal::InternalLog;
use crate::log::segment::now_ms;
use crate::log::{LogError, LogManager};

use super::producer_ids::ProducerIds;
use crate::log::txn_index::Marker;

pub const TXN_TOPIC: &str = "__transaction_state";

pub const MAX_TIMEOUT_MS: i32 = 900_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub groups: BTreeSet<String>,
    /// Offsets committed inside the transaction, applied on commit.
    pub pending_offsets: Vec<(Key, Committed)>,
    pub start_ms: i64,
    pub updated_ms: i64,
}

pub struct TxnCoordinator {
    txns: Mutex<HashMap<String, TxnMeta>>,
    log: InternalLog,
    logs: Arc<LogManager>,
    offsets: Arc<OffsetStore>,
    /// Serializes every read-modify-write of transaction state. Clients
    /// send AddPartitionsToTxn (to the transaction coordinator) and
    /// TxnOffsetCommit (to the group coordinator) on different connections
    /// at the same time; without this, one update could overwrite the
    /// other, e.g. lose the partitions a commit must write markers to.
    state_lock: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0}")]
    Codec(String),
}

type Res<T> = Result<T, i16>;

impl TxnCoordinator {
    pub fn open(
        logs: Arc<LogManager>,
        offsets: Arc<OffsetStore>,
    ) -> Result<Arc<TxnCoordinator>, TxnError> {
        let log = InternalLog::open(logs.clone(), TXN_TOPIC)?;
        let mut txns = HashMap::new();
        log.replay(|k, v| {
            let Some(id) = k.map(|k| String::from_utf8_lossy(k).into_owned()) else {
                return;
            };
            match v.and_then(|v| serde_json::from_slice::<TxnMeta>(v).ok()) {
                Some(m) => {
                    txns.insert(id, m);
                }
                None => {
                    txns.remove(&id);
                }
            }
        })?;
        Ok(Arc::new(TxnCoordinator {
            txns: Mutex::new(txns),
            log,
            logs,
            offsets,
            state_lock: tokio::sync::Mutex::new(()),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TxnMeta>> {
        self.txns.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn persist(&self, id: &str, meta: &TxnMeta) -> Result<(), TxnError> {
        let value = serde_json::to_vec(meta).map_err(|e| TxnError::Codec(e.to_string()))?;
        self.log
            .append(vec![(
                Bytes::from(id.to_string()),
                Some(Bytes::from(value)),
            )])
            .await?;
        Ok(())
    }

    async fn store(&self, id: &str, meta: TxnMeta) -> Res<()> {
        self.lock().insert(id.to_string(), meta.clone());
        self.persist(id, &meta).await.map_err(|e| {
            tracing::error!(
                transactional_id = id,
                "cannot persist transaction state: {e}"
            );
            ResponseError::KafkaStorageError.code()
        })
    }

    /// InitProducerId with a transactional id: a new producer id, or the
    /// next epoch of the existing one (fencing the previous instance),
    /// after aborting whatever it left open.
    pub async fn init_producer(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        ids: &ProducerIds,
    ) -> Res<(i64, i16)> {
        if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(ResponseError::InvalidTransactionTimeout.code());
        }
        let _g = self.state_lock.lock().await;
        let existing = self.lock().get(id).cloned();
        // KIP-360: a producer that names its id and epoch may only bump its
        // own current epoch; an older instance is fenced, not re-armed.
        if let (Some((pid, epoch)), Some(m)) = (expected, existing.as_ref()) {
            if pid != m.producer_id || epoch != m.epoch {
                return Err(ResponseError::ProducerFenced.code());
            }
        }
        let now = now_ms();
        let meta = match existing {
            Some(mut m) => {
                if matches!(m.state, TxnState::Ongoing | TxnState::PrepareAbort) {
                    self.write_markers(&m, m.epoch.saturating_add(1), Marker::Abort)
                        .await?;
                } else if m.state == TxnState::PrepareCommit {
                    self.finish_commit(&m).await?;
                }
                if m.epoch >= i16::MAX - 1 {
                    m.producer_id = ids
                        .next()
                        .map_err(|_| ResponseError::KafkaStorageError.code())?;
                    m.epoch = 0;
                } else {
                    m.epoch += 1;
                }
                m.state = TxnState::Empty;
                m.partitions.clear();
                m.groups.clear();
                m.pending_offsets.clear();
                m.timeout_ms = timeout_ms;
                m.updated_ms = now;
                m
            }
            None => TxnMeta {
                producer_id: ids
                    .next()
                    .map_err(|_| ResponseError::KafkaStorageError.code())?,
                epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                pending_offsets: Vec::new(),
                start_ms: now,
                updated_ms: now,
            },
        };
        let out = (meta.producer_id, meta.epoch);
        self.store(id, meta).await?;
        Ok(out)
    }

    fn check(&self, id: &str, pid: i64, epoch: i16) -> Res<TxnMeta> {
        let m = self
            .lock()
            .get(id)
            .cloned()
            .ok_or(ResponseError::InvalidProducerIdMapping.code())?;
        if m.producer_id != pid {
            return Err(ResponseError::InvalidProducerIdMapping.code());
        }
        if epoch < m.epoch {
            return Err(ResponseError::ProducerFenced.code());
        }
        if epoch > m.epoch {
            return Err(ResponseError::InvalidProducerEpoch.code());
        }
        if matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(ResponseError::ConcurrentTransactions.code());
        }
        Ok(m)
    }

    fn begin(m: &mut TxnMeta) {
        if m.state != TxnState::Ongoing {
            m.state = TxnState::Ongoing;
            m.start_ms = now_ms();
            m.partitions.clear();
            m.groups.clear();
            m.pending_offsets.clear();
        }
        m.updated_ms = now_ms();
    }

    pub async fn add_partitions(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[(String, i32)],
    ) -> Res<()> {
        let _g = self.state_lock.lock().await;
        let mut m = self.check(id, pid, epoch)?;
        for (t, p) in parts {
            if self.logs.partition(t, *p).is_none() {
                return Err(ResponseError::UnknownTopicOrPartition.code());
            }
        }
        Self::begin(&mut m);
        let before = m.partitions.len();
        m.partitions.extend(parts.iter().cloned());
        if m.partitions.len() == before && m.state == TxnState::Ongoing && before > 0 {
            self.lock().insert(id.to_string(), m);
            return Ok(());
        }
        self.store(id, m).await
    }

    pub async fn add_offsets(&self, id: &str, pid: i64, epoch: i16, group: &str) -> Res<()> {
        let _g = self.state_lock.lock().await;
        let mut m = self.check(id, pid, epoch)?;
        Self::begin(&mut m);
        m.groups.insert(group.to_string());
        self.store(id, m).await
    }

    /// Whether an open transaction has staged an offset for the partition.
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.lock().values().any(|m| {
            matches!(m.state, TxnState::Ongoing | TxnState::PrepareCommit)
                && m.pending_offsets
                    .iter()
                    .any(|(k, _)| k.partition == partition && k.topic == topic && k.group == group)
        })
    }

    pub async fn stage_offsets(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<(Key, Committed)>,
    ) -> Res<()> {
        let _g = self.state_lock.lock().await;
        let mut m = self.check(id, pid, epoch)?;
        if m.state != TxnState::Ongoing || !m.groups.contains(group) {
            return Err(ResponseError::InvalidTxnState.code());
        }
        m.pending_offsets
            .retain(|(k, _)| !offsets.iter().any(|(n, _)| n == k));
        m.pending_offsets.extend(offsets);
        self.store(id, m).await
    }

    async fn write_markers(&self, m: &TxnMeta, epoch: i16, marker: Marker) -> Res<()> {
        for (t, p) in &m.partitions {
            let (Some(topic), Some(part)) = (self.logs.topic(t), self.logs.partition(t, *p)) else {
                continue; // deleted meanwhile
            };
            let end = part
                .append_marker(m.producer_id, epoch, marker, &topic.config())
                .map_err(|_| ResponseError::KafkaStorageError.code())?;
            part.wait_durable(end)
                .await
                .map_err(|_| ResponseError::KafkaStorageError.code())?;
        }
        Ok(())
    }

    async fn finish_commit(&self, m: &TxnMeta) -> Res<()> {
        self.write_markers(m, m.epoch, Marker::Commit).await?;
        self.offsets
            .commit(
                m.pending_offsets
                    .iter()
                    .map(|(k, c)| (k.clone(), Some(c.clone())))
                    .collect(),
            )
            .await
            .map_err(|_| ResponseError::KafkaStorageError.code())
    }

    /// EndTxn: commit or abort the current transaction.
    pub async fn end(&self, id: &str, pid: i64, epoch: i16, commit: bool) -> Res<(i64, i16)> {
        let _g = self.state_lock.lock().await;
        let mut m = match self.check(id, pid, epoch) {
            Ok(m) => m,
            Err(e) => return Err(e),
        };
        match (m.state, commit) {
            // A retried EndTxn after the transaction already ended that way.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                return Ok((m.producer_id, m.epoch))
            }
            (TxnState::Empty, false) => return Ok((m.producer_id, m.epoch)),
            (TxnState::Ongoing, _) => {}
            _ => return Err(ResponseError::InvalidTxnState.code()),
        }
        m.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        m.updated_ms = now_ms();
        self.store(id, m.clone()).await?;
        if commit {
            self.finish_commit(&m).await?;
        } else {
            self.write_markers(&m, m.epoch, Marker::Abort).await?;
        }
        m.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        m.partitions.clear();
        m.groups.clear();
        m.pending_offsets.clear();
        m.updated_ms = now_ms();
        let out = (m.producer_id, m.epoch);
        self.store(id, m).await?;
        Ok(out)
    }

    /// Aborts transactions open longer than their timeout, bumping the
    /// epoch so the abandoned producer is fenced; finishes transactions a
    /// restart interrupted in a prepare state.
    pub async fn expire(&self) {
        let now = now_ms();
        let due: Vec<(String, TxnMeta)> = self
            .lock()
            .iter()
            .filter(|(_, m)| {
                (m.state == TxnState::Ongoing && now - m.start_ms > m.timeout_ms as i64)
                    || matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
            })
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        for (id, mut m) in due {
            let _g = self.state_lock.lock().await;
            // Re-check under the lock: the producer may have ended it.
            let Some(cur) = self.lock().get(&id).cloned() else {
                continue;
            };
            if cur.state != m.state || cur.epoch != m.epoch {
                continue;
            }
            let result = if m.state == TxnState::PrepareCommit {
                self.finish_commit(&m)
                    .await
                    .map(|_| TxnState::CompleteCommit)
            } else {
                // A timed-out transaction is aborted with a bumped epoch (the
                // zombie is fenced); an abort the client already asked for
                // is finished at its own epoch so its retry still succeeds.
                let bumped = if m.state == TxnState::Ongoing {
                    m.epoch.saturating_add(1)
                } else {
                    m.epoch
                };
                tracing::info!(transactional_id = %id, producer_id = m.producer_id, "aborting a transaction");
                let r = self.write_markers(&m, bumped, Marker::Abort).await;
                m.epoch = bumped;
                r.map(|_| TxnState::CompleteAbort)
            };
            match result {
                Ok(state) => {
                    m.state = state;
                    m.partitions.clear();
                    m.groups.clear();
                    m.pending_offsets.clear();
                    m.updated_ms = now_ms();
                    let _ = self.store(&id, m).await;
                }
                Err(code) => {
                    tracing::warn!(transactional_id = %id, code, "cannot finish transaction")
                }
            }
        }
    }

    pub fn spawn_expiry(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                t.tick().await;
                let Some(c) = weak.upgrade() else { return };
                c.expire().await;
            }
        })
    }

    pub fn describe(&self, id: &str) -> Option<TxnMeta> {
        self.lock().get(id).cloned()
    }

    pub fn list(&self) -> Vec<(String, TxnMeta)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
