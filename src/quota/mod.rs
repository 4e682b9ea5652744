//! Client quotas, Kafka's model: byte rates in and out, a share of request
//! handling time and a rate of partition mutations per user and/or client
//! id, and a connection creation rate per IP address.
//!
//! The values come from `quotas:` in `portcullis.yaml`, overlaid by what
//! AlterClientQuotas set (kept in `<data_dir>/client-quotas.json`, applied
//! at once). A client spends from the token bucket of the entity that
//! applies to it (Kafka's precedence, per key); when a bucket is in debt
//! the edge answers with `throttle_time_ms` and stops reading from the
//! connection for that long, as Kafka does. Nothing is ever dropped.

pub mod bucket;
pub mod model;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use bucket::Bucket;
pub use model::{Entity, EntityQuotas, Name, QuotaError, QuotaKey};

use crate::util::atomic_file::write_atomic;

pub const FILE_NAME: &str = "client-quotas.json";

/// Buckets kept at once. Client ids are chosen by clients, so under a
/// `<default>` client-id quota every new id would add one; idle (full)
/// buckets are dropped first, and past the bound newcomers share one.
const MAX_BUCKETS: usize = 65_536;

/// The keys a client (as opposed to an address) spends from.
const CLIENT_KEYS: [QuotaKey; 4] = [
    QuotaKey::ProducerByteRate,
    QuotaKey::ConsumerByteRate,
    QuotaKey::RequestPercentage,
    QuotaKey::ControllerMutationRate,
];

#[derive(Debug, thiserror::Error)]
pub enum QuotaStoreError {
    #[error("quotas in the config file, entry {index}: {source}")]
    Config { index: usize, source: QuotaError },
    #[error("cannot read {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The values in force, by entity.
#[derive(Default)]
struct QuotaSet {
    generation: u64,
    entries: HashMap<Entity, [Option<f64>; 5]>,
    /// Whether any user/client-id entity has a value (else a request
    /// resolves nothing).
    any_client: bool,
    any_ip: bool,
}

impl QuotaSet {
    fn value(&self, entity: &Entity, key: QuotaKey) -> Option<f64> {
        self.entries.get(entity).and_then(|v| v[key.index()])
    }
}

type Values = BTreeMap<QuotaKey, Option<f64>>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    key: QuotaKey,
    user: Option<String>,
    client: Option<String>,
}

pub struct Quotas {
    /// From the config file: the base layer.
    file: BTreeMap<Entity, Values>,
    /// Set through AlterClientQuotas; wins over the file.
    dynamic: Mutex<BTreeMap<Entity, Values>>,
    path: Option<PathBuf>,
    set: ArcSwap<QuotaSet>,
    buckets: Mutex<HashMap<BucketKey, Arc<Bucket>>>,
    /// Shared by the entities that found the bucket table full.
    overflow: [Arc<Bucket>; 5],
}

/// One change of AlterClientQuotas: set (`Some`) or remove (`None`).
pub type Change = (QuotaKey, Option<f64>);

impl Quotas {
    /// Quotas from the config file and, when `data_dir` is given, those
    /// set at runtime earlier.
    pub fn load(file: &[EntityQuotas], data_dir: Option<&Path>) -> Result<Quotas, QuotaStoreError> {
        let mut base: BTreeMap<Entity, Values> = BTreeMap::new();
        for (index, e) in file.iter().enumerate() {
            let bad = |source| QuotaStoreError::Config { index, source };
            let entity = e.entity().map_err(bad)?;
            for (k, v) in &e.values {
                if let Some(v) = v {
                    entity.check_value(*k, *v).map_err(bad)?;
                }
            }
            base.entry(entity).or_default().extend(e.values.clone());
        }
        let path = data_dir.map(|d| d.join(FILE_NAME));
        let mut dynamic = BTreeMap::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    let load = |reason: String| QuotaStoreError::Load {
                        path: p.clone(),
                        reason,
                    };
                    let list: Vec<EntityQuotas> =
                        serde_json::from_slice(&bytes).map_err(|e| load(e.to_string()))?;
                    for e in list {
                        let entity = e.entity().map_err(|e| load(e.to_string()))?;
                        dynamic.insert(entity, e.values);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(QuotaStoreError::Load {
                        path: p.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        let fresh = || Arc::new(Bucket::new(1.0));
        let quotas = Quotas {
            file: base,
            dynamic: Mutex::new(dynamic),
            path,
            set: ArcSwap::from_pointee(QuotaSet::default()),
            buckets: Mutex::new(HashMap::new()),
            overflow: [fresh(), fresh(), fresh(), fresh(), fresh()],
        };
        quotas.publish(&quotas.lock_dynamic(), 1);
        Ok(quotas)
    }

    /// No quotas at all (tests, tools).
    pub fn none() -> Quotas {
        Quotas::load(&[], None).expect("no entries cannot fail")
    }

    fn lock_dynamic(&self) -> std::sync::MutexGuard<'_, BTreeMap<Entity, Values>> {
        self.dynamic.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, dynamic: &BTreeMap<Entity, Values>, generation: u64) {
        let mut merged: BTreeMap<Entity, Values> = self.file.clone();
        for (entity, values) in dynamic {
            merged
                .entry(entity.clone())
                .or_default()
                .extend(values.clone());
        }
        let mut set = QuotaSet {
            generation,
            ..Default::default()
        };
        for (entity, values) in merged {
            let mut row = [None; 5];
            for (k, v) in values {
                row[k.index()] = v;
            }
            if row.iter().all(Option::is_none) {
                continue;
            }
            if entity.ip.is_some() {
                set.any_ip = true;
            } else {
                set.any_client = true;
            }
            set.entries.insert(entity, row);
        }
        self.set.store(Arc::new(set));
    }

    /// Every entity with a value in force, and its values.
    pub fn entries(&self) -> Vec<(Entity, Vec<(QuotaKey, f64)>)> {
        let set = self.set.load();
        let mut out: Vec<(Entity, Vec<(QuotaKey, f64)>)> = set
            .entries
            .iter()
            .map(|(e, row)| {
                let values = QuotaKey::ALL
                    .into_iter()
                    .filter_map(|k| Some((k, row[k.index()]?)))
                    .collect();
                (e.clone(), values)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Checks one entity's changes without applying them.
    pub fn validate(entity: &Entity, changes: &[Change]) -> Result<(), QuotaError> {
        entity.check()?;
        for (k, v) in changes {
            match v {
                Some(v) => entity.check_value(*k, *v)?,
                // Removing is allowed wherever setting is.
                None => entity.check_value(*k, 1.0)?,
            }
        }
        Ok(())
    }

    /// Applies the entities' changes (already validated) together and
    /// persists them; on a write failure nothing changes.
    pub fn alter(&self, changes: &[(Entity, Vec<Change>)]) -> Result<(), QuotaStoreError> {
        let mut dynamic = self.lock_dynamic();
        let mut next = dynamic.clone();
        for (entity, list) in changes {
            let values = next.entry(entity.clone()).or_default();
            for (k, v) in list {
                let in_file = self
                    .file
                    .get(entity)
                    .and_then(|f| f.get(k).copied().flatten())
                    .is_some();
                match v {
                    Some(v) => {
                        values.insert(*k, Some(*v));
                    }
                    // A removal hides the file's value; otherwise it is
                    // simply forgotten.
                    None if in_file => {
                        values.insert(*k, None);
                    }
                    None => {
                        values.remove(k);
                    }
                }
            }
            if values.is_empty() {
                next.remove(entity);
            }
        }
        if let Some(path) = &self.path {
            let list: Vec<EntityQuotas> = next
                .iter()
                .map(|(e, v)| EntityQuotas::of(e, v.clone()))
                .collect();
            let json = serde_json::to_vec_pretty(&list).expect("quotas serialize");
            write_atomic(path, &json, 0o644).map_err(|source| QuotaStoreError::Write {
                path: path.clone(),
                source,
            })?;
        }
        let generation = self.set.load().generation + 1;
        *dynamic = next;
        self.publish(&dynamic, generation);
        Ok(())
    }

    /// The bucket a connection from `ip` spends from, if any applies.
    /// Returns how long to hold the new connection before closing it when
    /// the address is over its rate (Kafka closes it after that delay).
    pub fn connection_created(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let set = self.set.load();
        if !set.any_ip {
            return None;
        }
        let key = QuotaKey::ConnectionCreationRate;
        let exact = Entity {
            ip: Some(Name::Named(ip.to_string())),
            ..Default::default()
        };
        let default = Entity {
            ip: Some(Name::Default),
            ..Default::default()
        };
        let rate = set
            .value(&exact, key)
            .or_else(|| set.value(&default, key))?;
        let bucket = self.bucket(
            BucketKey {
                key,
                user: Some(ip.to_string()),
                client: None,
            },
            rate,
        );
        let throttle = bucket.record(1.0, now);
        (!throttle.is_zero()).then_some(throttle)
    }

    /// Kafka's precedence: the first entity with a value for `key`.
    fn resolve(
        set: &QuotaSet,
        user: &str,
        client: &str,
        key: QuotaKey,
    ) -> Option<(BucketKey, f64)> {
        let named = |s: &str| Some(Name::Named(s.to_string()));
        let dflt = || Some(Name::Default);
        let order = [
            (named(user), named(client)),
            (named(user), dflt()),
            (named(user), None),
            (dflt(), named(client)),
            (dflt(), dflt()),
            (dflt(), None),
            (None, named(client)),
            (None, dflt()),
        ];
        order.into_iter().find_map(|(u, c)| {
            let bucket_key = BucketKey {
                key,
                user: u.is_some().then(|| user.to_string()),
                client: c.is_some().then(|| client.to_string()),
            };
            let entity = Entity {
                user: u,
                client_id: c,
                ip: None,
            };
            set.value(&entity, key).map(|v| (bucket_key, v))
        })
    }

    fn bucket(&self, key: BucketKey, rate: f64) -> Arc<Bucket> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.get(&key) {
            b.set_rate(rate);
            return b.clone();
        }
        if buckets.len() >= MAX_BUCKETS {
            // A full bucket nobody holds is the same as a new one.
            let now = Instant::now();
            buckets.retain(|_, b| Arc::strong_count(b) > 1 || !b.is_full(now));
        }
        if buckets.len() >= MAX_BUCKETS {
            let shared = self.overflow[key.key.index()].clone();
            shared.set_rate(rate);
            return shared;
        }
        let b = Arc::new(Bucket::new(rate));
        buckets.insert(key, b.clone());
        b
    }
}

fn slot(key: QuotaKey) -> Option<usize> {
    CLIENT_KEYS.iter().position(|k| *k == key)
}

/// One connection's quota state: the buckets its principal and client id
/// spend from (resolved once per quota change) and until when it is muted.
#[derive(Default)]
pub struct ConnectionQuota {
    generation: u64,
    principal: String,
    client_id: String,
    buckets: [Option<Arc<Bucket>>; 4],
    /// Not read from until then (Kafka mutes a throttled channel).
    pub muted_until: Option<tokio::time::Instant>,
}

impl ConnectionQuota {
    /// The buckets this request spends from.
    pub fn for_request(
        &mut self,
        quotas: &Quotas,
        principal: &str,
        client_id: &str,
    ) -> RequestQuota {
        let set = quotas.set.load();
        if !set.any_client {
            return RequestQuota::default();
        }
        if self.generation != set.generation
            || self.principal != principal
            || self.client_id != client_id
        {
            let user = principal.strip_prefix("User:").unwrap_or(principal);
            for (i, key) in CLIENT_KEYS.into_iter().enumerate() {
                self.buckets[i] = Quotas::resolve(&set, user, client_id, key)
                    .map(|(k, rate)| quotas.bucket(k, rate));
            }
            self.generation = set.generation;
            self.principal = principal.to_string();
            self.client_id = client_id.to_string();
        }
        RequestQuota {
            buckets: self.buckets.clone(),
            throttle_ms: Default::default(),
        }
    }

    /// Mutes the connection for `throttle` from now (or longer if already).
    pub fn mute_for(&mut self, throttle: Duration) {
        if throttle.is_zero() {
            return;
        }
        let until = tokio::time::Instant::now() + throttle;
        self.muted_until = Some(self.muted_until.map_or(until, |u| u.max(until)));
    }
}

/// What one request may spend from, and the throttle it has earned so far.
#[derive(Default)]
pub struct RequestQuota {
    buckets: [Option<Arc<Bucket>>; 4],
    /// The throttle each key asked for, in milliseconds.
    throttle_ms: [AtomicU64; 4],
}

/// Kafka's message for THROTTLING_QUOTA_EXCEEDED.
pub const MUTATION_REFUSED: &str = "The throttling quota has been exceeded.";

impl RequestQuota {
    fn get(&self, key: QuotaKey) -> Option<&Bucket> {
        self.buckets[slot(key)?].as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(Option::is_none)
    }

    /// Spends `amount` of `key`; the request's throttle grows to what the
    /// bucket's debt needs.
    pub fn spend(&self, key: QuotaKey, amount: f64) {
        if let Some(b) = self.get(key) {
            let t = b.record(amount, Instant::now());
            self.throttle(key, t);
        }
    }

    /// Whether `key`'s bucket is already in debt (nothing spent); if so
    /// the request's throttle is that debt.
    pub fn in_debt(&self, key: QuotaKey) -> bool {
        let owed = self
            .get(key)
            .map_or(Duration::ZERO, |b| b.debt(Instant::now()));
        self.throttle(key, owed);
        !owed.is_zero()
    }

    /// KIP-599's strict mode: refused when the bucket is already in debt,
    /// else spent (possibly into debt).
    pub fn mutate(&self, partitions: u32, strict: bool) -> Result<(), Duration> {
        let key = QuotaKey::ControllerMutationRate;
        let Some(b) = self.get(key) else {
            return Ok(());
        };
        let now = Instant::now();
        let owed = b.debt(now);
        if strict && !owed.is_zero() {
            self.throttle(key, owed);
            return Err(owed);
        }
        let t = b.record(f64::from(partitions), now);
        self.throttle(key, t);
        Ok(())
    }

    /// Whether a request-time quota applies (then handling time is measured).
    pub fn times_requests(&self) -> bool {
        self.get(QuotaKey::RequestPercentage).is_some()
    }

    /// Records `busy` handling time against `request_percentage`: a quota
    /// of N% is N/100 seconds of handling per second.
    pub fn spend_time(&self, busy: Duration) {
        self.spend(QuotaKey::RequestPercentage, busy.as_secs_f64() * 100.0);
    }

    fn throttle(&self, key: QuotaKey, t: Duration) {
        if let Some(i) = slot(key) {
            self.throttle_ms[i].fetch_max(bucket::throttle_ms(t), Ordering::Relaxed);
        }
    }

    /// The throttle this request earned, in milliseconds: the longest any
    /// quota asked for (Kafka's rule when several are violated).
    pub fn throttle_ms(&self) -> u64 {
        self.throttled().map(|(_, ms)| ms).max().unwrap_or(0)
    }

    /// Each quota that asked for a throttle, and how long.
    pub fn throttled(&self) -> impl Iterator<Item = (QuotaKey, u64)> + '_ {
        CLIENT_KEYS
            .into_iter()
            .zip(&self.throttle_ms)
            .map(|(k, ms)| (k, ms.load(Ordering::Relaxed)))
            .filter(|(_, ms)| *ms > 0)
    }
}

#[cfg(test)]
mod tests;
