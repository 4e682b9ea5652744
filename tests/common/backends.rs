//! The back ends a client-compatibility check runs against (issue #14
//! item 4): embedded Portcullis, or Portcullis in gateway mode in front of
//! a real Apache Kafka from the harness. Both are a [`Broker`] (the real
//! `portcullis` binary, SASL_SSL with SCRAM-SHA-512, its own CA, the test
//! ACL file that gives every user all on topics, groups and transactional
//! ids), so a check is written once and pointed at either.
//!
//! Included by the matrix suites with `#[path]` next to `compat.rs`.
#![allow(dead_code)]

use std::path::Path;

use crate::common::kafka::{KafkaCluster, KafkaOpts, Listener};
use crate::common::Broker;
use crate::compat::Column;

/// The gateway's service user on the Kafka side.
const SERVICE: (&str, &str) = ("gateway-svc", "gateway-svc-Compat-Secret-9");

/// A back end under test. Dropped gateway first, then its Kafka.
pub struct Backend {
    pub broker: Broker,
    pub kafka: Option<KafkaCluster>,
    pub column: Column,
}

impl Backend {
    /// Embedded Portcullis in `dir`; `extra_yaml` is appended to its config.
    pub fn embedded(dir: &Path, extra_yaml: &str) -> Backend {
        Backend {
            broker: Broker::start_secure(dir, extra_yaml),
            kafka: None,
            column: Column::Embedded,
        }
    }

    /// Portcullis in gateway mode (config in `dir`) in front of an Apache
    /// Kafka cluster of `nodes` brokers (SASL_SSL, its own CA and SCRAM
    /// users, no authorizer: the gateway's edge is what authorizes the
    /// clients, and Kafka sees only the service user). With 3 nodes, topics
    /// created without a replication factor get 3 replicas
    /// (`min.insync.replicas` 2), so acks=all means what it means in
    /// production. Failover and rolling restarts are tests/gateway_kafka.rs.
    pub fn gateway(name: &str, dir: &Path, nodes: usize) -> Backend {
        let rf = nodes.min(3).to_string();
        let min_isr = if nodes >= 3 { "2" } else { "1" };
        let kafka = KafkaCluster::start(
            name,
            KafkaOpts {
                nodes,
                listeners: &[Listener::SaslSsl],
                users: &[SERVICE],
                props: &[
                    ("default.replication.factor", rf.as_str()),
                    ("min.insync.replicas", min_isr),
                ],
                ..Default::default()
            },
        );
        let upstream: Vec<String> = (0..kafka.nodes())
            .map(|i| format!("\"{}\"", kafka.addr(i, Listener::SaslSsl)))
            .collect();
        let yaml = format!(
            "backend: gateway\ngateway:\n  bootstrap_servers: [{}]\n  security_protocol: SASL_SSL\n  \
             tls:\n    ca_file: {}\n  sasl:\n    username: {}\n    password: {}\n",
            upstream.join(", "),
            kafka.ca_file().display(),
            SERVICE.0,
            SERVICE.1,
        );
        Backend {
            broker: Broker::start_secure(dir, &yaml),
            kafka: Some(kafka),
            column: Column::Gateway,
        }
    }

    /// The broker's log tail and, for a gateway, its Kafka's.
    pub fn logs_tail(&self, n: usize) -> String {
        let mut out = crate::common::log_tail(&self.broker, n);
        if let Some(k) = &self.kafka {
            out.push('\n');
            out.push_str(&k.logs_tail(n / 2));
        }
        out
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // The gateway before its upstream, so it never logs a torrent of
        // reconnects to a Kafka that is shutting down.
        self.broker.kill9();
        self.kafka.take();
    }
}

impl Backend {
    /// Adds a SCRAM user with Portcullis's CLI and waits until the broker
    /// loaded it: `users` is how many the store then holds (with `admin`).
    pub fn add_user(&self, name: &str, password: &str, users: usize) {
        self.broker.add_user(name, password);
        self.broker
            .wait_users_loaded(users, std::time::Duration::from_secs(60));
    }
}
