//! Copies audit records into a topic on this broker (like Redpanda's audit
//! topic). The writer thread appends directly to the log, so these writes
//! are not requests and are not audited again: no loop. Only super users may
//! read the topic (enforced in `RequestContext`).

use std::sync::Arc;

use bytes::Bytes;

use crate::log::internal::encode_batch;
use crate::log::{batch, LogManager};

use super::event::AuditEvent;
use super::sink::Mirror;

pub fn mirror(logs: Arc<LogManager>, topic: String) -> Mirror {
    Box::new(move |events: &[AuditEvent]| {
        let Some(t) = logs.topic(&topic) else { return };
        let Some(p) = t.partition(0) else { return };
        let entries = events
            .iter()
            .filter_map(|ev| {
                let json = serde_json::to_vec(ev).ok()?;
                let key = ev.principal.as_ref().map(|p| Bytes::from(p.clone()));
                Some((key, Some(Bytes::from(json))))
            })
            .collect();
        let buf = match encode_batch(entries) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cannot encode audit records for the topic: {e}");
                return;
            }
        };
        let cfg = t.config();
        let result = batch::validate_produce_records(&buf, usize::MAX)
            .and_then(|spans| p.append(&buf, &spans, &cfg));
        // The append itself wakes the fetches waiting on the partition.
        if let Err(e) = result {
            tracing::error!("cannot append to audit topic {topic}: {e}");
        }
    })
}
