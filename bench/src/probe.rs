//! Produce ack latency at a fixed rate seen by a minimal client: one
//! connection, one pre-encoded Produce request (acks=1) sent every
//! millisecond, responses timed on their own task. It costs the client a
//! few percent of a core where librdkafka takes more than one, so on a
//! shared machine it shows what the broker itself adds to a produce.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

const PRODUCE_V: i16 = 9;
/// Where the correlation id sits in an encoded request frame: after the
/// size, the API key and the version.
const CORRELATION_AT: usize = 8;

pub struct ProbeResult {
    pub latency_us: Histogram<u64>,
    pub errors: u64,
    /// The error code of the first failed partition, to say why.
    pub first_error: Option<i16>,
    pub mb_per_s: f64,
}

/// One Produce frame per partition: `records_per_request` records of
/// `record_size` bytes each.
fn request_frames(
    topic: &str,
    partitions: i32,
    records_per_request: usize,
    record_size: usize,
) -> anyhow::Result<Vec<BytesMut>> {
    let value = Bytes::from(super::kafka::payload(record_size));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // One batch: kafka-protocol's encoder starts a new batch wherever
    // `offset - sequence` changes, so without a producer id the sequences
    // still step with the offsets (only the first, -1, is written). Kafka
    // refuses a Produce (v3+) whose partition holds more than one batch.
    let records: Vec<Record> = (0..records_per_request as i64)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32 - 1,
            timestamp: now,
            key: None,
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    let batch = batch.freeze();
    (0..partitions.max(1))
        .map(|p| {
            let req = ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(p)
                        .with_records(Some(batch.clone()))])]);
            Ok(portcullis::client::encode_request(
                ApiKey::Produce,
                PRODUCE_V,
                0,
                "portcullis-probe",
                &req,
            )?)
        })
        .collect()
}

/// Sends at `rate_mb` MB/s for `secs` over `stream` (already logged in).
pub async fn produce_latency<S>(
    stream: S,
    topic: &str,
    partitions: i32,
    record_size: usize,
    rate_mb: f64,
    secs: u64,
) -> anyhow::Result<ProbeResult>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    const TICK: Duration = Duration::from_millis(1);
    let per_request = ((rate_mb * 1e6 * TICK.as_secs_f64()) / record_size as f64)
        .round()
        .max(1.0) as usize;
    let mut frames = request_frames(topic, partitions, per_request, record_size)?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
    let total = (secs * 1000) as usize;

    let reader = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            let mut first_error = None;
            let mut buf = Vec::new();
            for _ in 0..total {
                let len = rd.read_i32().await?.max(0) as usize;
                buf.resize(len, 0);
                rd.read_exact(&mut buf).await?;
                let at = sent.lock().await.pop_front();
                if let Some(at) = at {
                    hist.record((at.elapsed().as_micros() as u64).max(1))?;
                }
                let mut b = Bytes::copy_from_slice(&buf);
                ResponseHeader::decode(&mut b, ApiKey::Produce.response_header_version(PRODUCE_V))?;
                let r = ProduceResponse::decode(&mut b, PRODUCE_V)?;
                let failed = r
                    .responses
                    .iter()
                    .flat_map(|t| &t.partition_responses)
                    .find(|p| p.error_code != 0);
                if let Some(p) = failed {
                    errors += 1;
                    first_error.get_or_insert(p.error_code);
                }
            }
            anyhow::Ok((hist, errors, first_error))
        })
    };

    let start = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let n_frames = frames.len();
    for i in 0..total {
        tick.tick().await;
        let frame = &mut frames[i % n_frames];
        frame[CORRELATION_AT..CORRELATION_AT + 4].copy_from_slice(&(i as i32).to_be_bytes());
        sent.lock().await.push_back(Instant::now());
        wr.write_all(frame).await?;
        wr.flush().await?;
    }
    let (latency_us, errors, first_error) = reader.await??;
    let secs = start.elapsed().as_secs_f64();
    let bytes = (total * per_request * record_size) as f64;
    Ok(ProbeResult {
        latency_us,
        errors,
        first_error,
        mb_per_s: bytes / 1e6 / secs,
    })
}
