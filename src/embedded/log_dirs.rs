//! DescribeLogDirs: the one log directory, with the size of every
//! partition asked for (all when the request names none), as `kafka-log-dirs`
//! and `Admin.describeLogDirs` read it. There are no replicas to lag and no
//! future (moving) logs here.
//!
//! Each partition also carries its segment count, which Kafka's schema has
//! no field for, as the tagged field [`SEGMENT_COUNT_TAG`] (flexible
//! versions, v2 and later): `portcullis topic describe` shows it, and Kafka
//! clients skip tags they do not know.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use bytes::Bytes;

use crate::edge::RequestContext;
use crate::log::Topic;

/// Tag of the segment count (int32, big-endian, as Kafka encodes an int32
/// tagged field) on a DescribeLogDirsResponse partition. Far above any tag
/// Kafka's schema uses, so that a future Kafka field cannot collide.
pub const SEGMENT_COUNT_TAG: i32 = 10000;

pub fn describe(ctx: &RequestContext<'_>, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let logs = &ctx.broker.logs;
    let topics: Vec<DescribeLogDirsTopic> = match req.topics {
        None => logs
            .topics()
            .iter()
            .map(|t| entry(t, &(0..t.partition_count()).collect::<Vec<_>>()))
            .collect(),
        // Kafka leaves out what this broker does not host: unknown topics
        // and partitions are simply absent.
        Some(asked) => asked
            .iter()
            .filter_map(|a| logs.topic(&a.topic).map(|t| entry(&t, &a.partitions)))
            .filter(|t| !t.partitions.is_empty())
            .collect(),
    };
    let dir = logs.topics_dir();
    let (total, usable) = space(dir).unwrap_or((-1, -1));
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)])
}

fn entry(t: &Topic, partitions: &[i32]) -> DescribeLogDirsTopic {
    DescribeLogDirsTopic::default()
        .with_name(TopicName(StrBytes::from_string(t.name.to_string())))
        .with_partitions(
            partitions
                .iter()
                .filter_map(|&i| t.partition(i))
                .map(|p| {
                    let segments = i32::try_from(p.segment_count()).unwrap_or(i32::MAX);
                    // Written at every version: kafka-protocol leaves
                    // tagged fields out of the non-flexible ones (v0, v1).
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.index)
                        .with_partition_size(i64::try_from(p.size_bytes()).unwrap_or(i64::MAX))
                        .with_offset_lag(0)
                        .with_is_future_key(false)
                        .with_unknown_tagged_field(
                            SEGMENT_COUNT_TAG,
                            Bytes::copy_from_slice(&segments.to_be_bytes()),
                        )
                })
                .collect(),
        )
}

/// Total and usable bytes of the file system holding `dir` (v4 fields).
fn space(dir: &Path) -> Option<(i64, i64)> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a
    // valid NUL-terminated string for the duration of the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u128;
    let clamp = |blocks: u128| i64::try_from(blocks * block).unwrap_or(i64::MAX);
    Some((clamp(st.f_blocks as u128), clamp(st.f_bavail as u128)))
}
