//! Control batches that end a transaction on a partition (Kafka's
//! EndTransactionMarker): key = version 0 + type (0 abort, 1 commit),
//! value = version 0 + coordinator epoch.

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::txn_index::Marker;
use super::LogError;

pub fn encode(producer_id: i64, epoch: i16, marker: Marker) -> Result<Bytes, LogError> {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(match marker {
        Marker::Abort => 0,
        Marker::Commit => 1,
    });
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(0);
    let rec = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: super::segment::now_ms(),
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, std::iter::once(&rec), &opts)
        .map_err(|e| LogError::InvalidRecord(format!("cannot encode a transaction marker: {e}")))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::txn_index::parse_marker;

    #[test]
    fn markers_round_trip_and_are_control_batches() {
        for m in [Marker::Commit, Marker::Abort] {
            let b = encode(42, 3, m).unwrap();
            let h = crate::log::batch::check_batch(&b).unwrap();
            assert!(h.is_control());
            assert_eq!((h.producer_id, h.producer_epoch), (42, 3));
            assert_eq!(parse_marker(&b), Some(m));
        }
    }
}
