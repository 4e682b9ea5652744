//! Copies audit records into a topic on this broker (like Redpanda's audit
//! topic). The writer thread appends directly to the log, so these writes
//! are not requests and are not audited again: no loop. Only super users may
//! read the topic (enforced in `RequestContext`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::log::{batch, LogManager};

use super::event::AuditEvent;
use super::sink::Mirror;

pub fn mirror(logs: Arc<LogManager>, topic: String) -> Mirror {
    Box::new(move |events: &[AuditEvent]| {
        let Some(t) = logs.topic(&topic) else { return };
        let Some(p) = t.partition(0) else { return };
        let now = crate::log::segment::now_ms();
        let records: Vec<Record> = events
            .iter()
            .enumerate()
            .filter_map(|(i, ev)| {
                let json = serde_json::to_vec(ev).ok()?;
                Some(Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: -1,
                    timestamp: now,
                    key: ev.principal.as_ref().map(|p| Bytes::from(p.clone())),
                    value: Some(Bytes::from(json)),
                    headers: IndexMap::new(),
                })
            })
            .collect();
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        if let Err(e) = RecordBatchEncoder::encode(&mut buf, records.iter(), &opts) {
            tracing::error!("cannot encode audit records for the topic: {e}");
            return;
        }
        let cfg = t.config();
        let result = batch::validate_produce_records(&buf, usize::MAX)
            .and_then(|spans| p.append(&buf, &spans, &cfg));
        match result {
            Ok(_) => logs.notify_appended(),
            Err(e) => tracing::error!("cannot append to audit topic {topic}: {e}"),
        }
    })
}
