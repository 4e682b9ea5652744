//! ListOffsets (earliest, latest, by timestamp, max timestamp) and
//! DeleteRecords.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
};
use kafka_protocol::ResponseError;

use crate::log::{LogError, Partition};

use crate::edge::errors::code_for;
use crate::edge::RequestContext;

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL: i64 = -4;
pub const LATEST_TIERED: i64 = -5;

/// (offset, timestamp) for one ListOffsets query; (-1, -1) when no record
/// has a timestamp that late, as Kafka answers.
fn lookup(p: &Partition, ts: i64, read_committed: bool) -> Result<(i64, i64), LogError> {
    Ok(match ts {
        LATEST if read_committed => (p.last_stable_offset(), -1),
        LATEST => (p.end_offset(), -1),
        EARLIEST | EARLIEST_LOCAL => (p.log_start_offset(), -1),
        LATEST_TIERED => (-1, -1),
        MAX_TIMESTAMP => p.max_timestamp_offset()?.unwrap_or((-1, -1)),
        t if t >= 0 => p.offset_for_timestamp(t)?.unwrap_or((-1, -1)),
        _ => return Err(LogError::InvalidRecord(format!("invalid timestamp {ts}"))),
    })
}

pub fn list_offsets(ctx: &RequestContext<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let logs = &ctx.broker.logs;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = logs.topic(&t.name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|lp| {
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(lp.partition_index);
                    match topic.as_ref().and_then(|t| t.partition(lp.partition_index)) {
                        None => r.error_code = ResponseError::UnknownTopicOrPartition.code(),
                        Some(p) => match lookup(&p, lp.timestamp, req.isolation_level == 1) {
                            Ok((offset, ts)) => {
                                r.offset = offset;
                                r.timestamp = ts;
                                if ctx.version >= 4 {
                                    r.leader_epoch = 0;
                                }
                            }
                            Err(LogError::InvalidRecord(_)) => {
                                r.error_code = ResponseError::InvalidRequest.code()
                            }
                            Err(e) => r.error_code = code_for(&e),
                        },
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

pub fn delete_records(
    ctx: &RequestContext<'_>,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let logs = &ctx.broker.logs;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = logs.topic(&t.name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|dp| {
                    let mut r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(dp.partition_index)
                        .with_low_watermark(-1);
                    match topic.as_ref().and_then(|t| t.partition(dp.partition_index)) {
                        None => r.error_code = ResponseError::UnknownTopicOrPartition.code(),
                        Some(p) => match p.delete_records_before(dp.offset) {
                            Ok(low) => r.low_watermark = low,
                            Err(e) => r.error_code = code_for(&e),
                        },
                    }
                    r
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
