//! Pooled upstream connections, one pool per upstream broker. A client
//! connection borrows one while it has requests unanswered on it, and
//! sends its next requests on the same one (pipelined, in order); once all
//! are answered, the connection goes back to the pool for any client.
//! Clients do not share a connection at once: brokers answer a
//! connection's requests in order, so one client's long poll would hold
//! up every other client's answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::api_versions_response::ApiVersion;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::pipe::{Answer, Expect, Pending, Pipe};
use super::upstream::{Link, UpstreamError};

/// Where to send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A specific upstream broker (the client talked to its gateway port).
    Node(i32),
    /// Any upstream broker (the client talked to the bootstrap listener):
    /// the configured bootstrap servers first, then every broker learned
    /// since.
    Any,
}

struct NodePool {
    addr: Mutex<String>,
    idle: Mutex<Vec<Pipe>>,
    permits: Arc<Semaphore>,
    backoff: Mutex<Backoff>,
}

/// After a failed connect or login, new connections to that broker wait:
/// a wrong service password must not become one upstream login attempt
/// per client request.
#[derive(Default)]
struct Backoff {
    failures: u32,
    until: Option<std::time::Instant>,
    last_error: String,
}

const BACKOFF_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(5);

impl Backoff {
    /// `Some(reason)` while connects to the broker are held back.
    fn holding(&self) -> Option<String> {
        self.until
            .filter(|u| std::time::Instant::now() < *u)
            .map(|_| self.last_error.clone())
    }

    fn failed(&mut self, e: &UpstreamError) {
        self.failures = self.failures.saturating_add(1);
        let wait = BACKOFF_FIRST
            .saturating_mul(1 << self.failures.min(6).saturating_sub(1))
            .min(BACKOFF_MAX);
        self.until = Some(std::time::Instant::now() + wait);
        self.last_error = e.to_string();
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

/// Connects to upstream brokers, for the metrics and `/readyz`.
#[derive(Default)]
struct ConnectStats {
    ok: AtomicU64,
    failed: AtomicU64,
    /// 1 after a successful connect, 0 after a failed one, -1 before any.
    last: AtomicI8,
}

pub struct Pool {
    link: Link,
    connects: ConnectStats,
    bootstrap: Vec<String>,
    nodes: Mutex<HashMap<Target, Arc<NodePool>>>,
    /// The upstream's API version ranges, from the last connection made.
    versions: Mutex<Vec<ApiVersion>>,
}

/// One upstream connection lent out: to a client connection while its
/// requests are unanswered on it, or to the gateway for a request of its
/// own. Dropped, the connection goes back to the pool when it is still
/// sound, has nothing in flight and its broker did not move.
pub struct Lease {
    /// Always there until the lease is dropped.
    pipe: Option<Pipe>,
    node: Arc<NodePool>,
    addr: String,
    target: Target,
    reused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(link: Link) -> Pool {
        let bootstrap = link.settings().bootstrap_servers.clone();
        Pool {
            link,
            connects: ConnectStats {
                last: AtomicI8::new(-1),
                ..Default::default()
            },
            bootstrap,
            nodes: Mutex::new(HashMap::new()),
            versions: Mutex::new(Vec::new()),
        }
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Connect outcomes and idle connections, for the metrics.
    pub fn snapshot(&self) -> crate::metrics::UpstreamSnapshot {
        let idle = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|n| n.idle.lock().unwrap_or_else(|p| p.into_inner()).len() as u64)
            .sum();
        crate::metrics::UpstreamSnapshot {
            reachable: match self.connects.last.load(Ordering::Relaxed) {
                1 => Some(true),
                0 => Some(false),
                _ => None,
            },
            connects_ok: self.connects.ok.load(Ordering::Relaxed),
            connects_failed: self.connects.failed.load(Ordering::Relaxed),
            idle_connections: idle,
        }
    }

    pub fn upstream_versions(&self) -> Vec<ApiVersion> {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records (or updates) where an upstream node lives.
    pub fn set_node_address(&self, node: i32, addr: String) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        match nodes.get(&Target::Node(node)) {
            Some(p) => {
                let mut a = p.addr.lock().unwrap_or_else(|p| p.into_inner());
                if *a != addr {
                    tracing::info!(node, from = %a, to = %addr, "upstream broker moved");
                    *a = addr;
                    // Connections to the old address are not reused.
                    p.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
            }
            None => {
                nodes.insert(Target::Node(node), self.node_pool(addr));
            }
        }
    }

    pub fn knows(&self, node: i32) -> bool {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&Target::Node(node))
    }

    fn node_pool(&self, addr: String) -> Arc<NodePool> {
        Arc::new(NodePool {
            addr: Mutex::new(addr),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(
                self.link.settings().max_connections_per_broker,
            )),
            backoff: Mutex::new(Backoff::default()),
        })
    }

    /// Borrows a connection to `target`: an idle one if there is, else a
    /// new one. Waits while the broker's connection limit is reached.
    pub async fn lease(&self, target: Target) -> Result<Lease, UpstreamError> {
        let node = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            match nodes.get(&target) {
                Some(p) => p.clone(),
                None if target == Target::Any => {
                    let p = self.node_pool(String::new());
                    nodes.insert(Target::Any, p.clone());
                    p
                }
                None => return Err(UpstreamError::NoBroker),
            }
        };
        let permit = tokio::time::timeout(
            self.link.request_timeout(),
            node.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| UpstreamError::Timeout(self.link.request_timeout()))?
        .map_err(|_| UpstreamError::NoBroker)?;
        let addr = node.addr.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let idle = {
            let mut idle = node.idle.lock().unwrap_or_else(|p| p.into_inner());
            // Those whose broker closed them while they sat here are gone.
            idle.retain(|p| !p.is_broken());
            idle.pop()
        };
        if let Some(pipe) = idle {
            return Ok(Lease {
                pipe: Some(pipe),
                node,
                addr,
                target,
                reused: true,
                _permit: permit,
            });
        }
        if let Some(reason) = node
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .holding()
        {
            return Err(UpstreamError::BackingOff(reason));
        }
        let candidates: Vec<String> = if target == Target::Any {
            self.any_candidates()
        } else {
            vec![addr.clone()]
        };
        let mut last = UpstreamError::NoBroker;
        for a in candidates {
            match self.link.connect(&a).await {
                Ok((pipe, versions)) => {
                    self.connects.ok.fetch_add(1, Ordering::Relaxed);
                    self.connects.last.store(1, Ordering::Relaxed);
                    node.backoff
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .succeeded();
                    *self.versions.lock().unwrap_or_else(|p| p.into_inner()) = versions;
                    return Ok(Lease {
                        pipe: Some(pipe),
                        node,
                        addr: if target == Target::Any {
                            String::new()
                        } else {
                            a
                        },
                        target,
                        reused: false,
                        _permit: permit,
                    });
                }
                Err(e) => {
                    tracing::warn!(upstream = %a, "{e}");
                    self.connects.failed.fetch_add(1, Ordering::Relaxed);
                    self.connects.last.store(0, Ordering::Relaxed);
                    last = e;
                }
            }
        }
        node.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed(&last);
        Err(last)
    }

    /// Where a connection to any broker may go: the configured bootstrap
    /// servers, then the brokers learned from the cluster's own answers
    /// (by node id). Like a Kafka client, which bootstraps once and then
    /// asks the brokers it knows: the cluster may have grown, and the
    /// configured servers may all be down or gone for good while the
    /// cluster runs on.
    fn any_candidates(&self) -> Vec<String> {
        let mut learned: Vec<(i32, String)> = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(t, p)| match t {
                Target::Node(id) => Some((
                    *id,
                    p.addr.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                )),
                Target::Any => None,
            })
            .collect();
        learned.sort();
        let mut out = self.bootstrap.clone();
        for (_, addr) in learned {
            if !addr.is_empty() && !out.contains(&addr) {
                out.push(addr);
            }
        }
        out
    }

    /// Sends one request frame to `target`: on `earlier`, the connection
    /// the client connection's unanswered requests went on, when there is
    /// one (the broker then sees them in the order sent), else on an idle
    /// or a new connection. A pooled connection that turns out dead when
    /// written to (the upstream restarted meanwhile) is replaced once by a
    /// fresh one. Returns the connection, to be held until the answer
    /// came, and the answer to come.
    pub async fn send(
        &self,
        earlier: Option<Arc<Lease>>,
        target: Target,
        frame: &[u8],
        expect: Expect,
        timeout: std::time::Duration,
    ) -> Result<(Arc<Lease>, Option<Pending>), UpstreamError> {
        let lease = match earlier.filter(|l| l.target == target && !l.is_broken()) {
            Some(l) => l,
            None => Arc::new(self.lease(target).await?),
        };
        match lease.pipe()?.send(frame, expect, timeout).await {
            Ok(pending) => Ok((lease, pending)),
            Err(e) if lease.reused && is_stale(&e) => {
                tracing::debug!("pooled upstream connection was dead ({e}); reconnecting");
                drop(lease);
                self.drop_idle(target);
                let lease = Arc::new(self.lease(target).await?);
                let pending = lease.pipe()?.send(frame, expect, timeout).await?;
                Ok((lease, pending))
            }
            Err(e) => Err(e),
        }
    }

    /// After one pooled connection proved dead, the others to the same
    /// broker most likely are too.
    fn drop_idle(&self, target: Target) {
        if let Some(p) = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&target)
        {
            p.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

/// Errors that mean "this pooled connection was already closed".
fn is_stale(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionAborted
        ),
        _ => false,
    }
}

impl Lease {
    fn pipe(&self) -> Result<&Pipe, UpstreamError> {
        self.pipe.as_ref().ok_or(UpstreamError::NoBroker)
    }

    fn is_broken(&self) -> bool {
        self.pipe.as_ref().is_none_or(Pipe::is_broken)
    }

    /// A request of the gateway's own on the leased connection.
    pub async fn call<
        Q: kafka_protocol::protocol::Encodable,
        R: kafka_protocol::protocol::Decodable,
    >(
        &self,
        api: kafka_protocol::messages::ApiKey,
        version: i16,
        req: &Q,
        timeout: std::time::Duration,
    ) -> Result<R, UpstreamError> {
        self.pipe()?.call(api, version, req, timeout).await
    }

    /// Waits for the answer to a request sent on the leased connection
    /// ([`Pipe::answer`]).
    pub async fn answer(&self, pending: Pending, timeout: std::time::Duration) -> Answer {
        self.pipe()?.answer(pending, timeout).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(pipe) = self.pipe.take() else { return };
        // Answers still owed would reach whoever borrowed it next.
        if pipe.is_broken() || pipe.in_flight() > 0 {
            return;
        }
        let current = self
            .node
            .addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if current == self.addr {
            self.node
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(pipe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_broker_is_a_bootstrap_server_or_a_learned_one() {
        let settings: crate::gateway::GatewaySettings =
            serde_yaml_ng::from_str("bootstrap_servers: [\"10.0.0.1:9092\", \"10.0.0.2:9092\"]")
                .unwrap();
        let pool = Pool::new(Link::new(&settings).unwrap());
        pool.set_node_address(7, "10.0.0.7:9092".into());
        pool.set_node_address(2, "10.0.0.2:9092".into());
        pool.set_node_address(4, "10.0.0.4:9092".into());
        assert_eq!(
            pool.any_candidates(),
            [
                "10.0.0.1:9092",
                "10.0.0.2:9092",
                "10.0.0.4:9092",
                "10.0.0.7:9092"
            ]
        );
    }

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut b = Backoff::default();
        assert!(b.holding().is_none());
        let e = UpstreamError::NoBroker;
        let mut waits = Vec::new();
        for _ in 0..10 {
            b.failed(&e);
            waits.push(b.until.unwrap() - std::time::Instant::now());
        }
        assert!(b.holding().is_some_and(|r| r.contains("no upstream")));
        assert!(
            waits[0] <= BACKOFF_FIRST && waits[1] > BACKOFF_FIRST,
            "{waits:?}"
        );
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX), "{waits:?}");
        assert!(waits[9] > BACKOFF_MAX / 2, "{waits:?}");
        b.succeeded();
        assert!(b.holding().is_none());
    }
}
