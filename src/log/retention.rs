//! Time- and size-based retention, run periodically over every partition.
//! Only whole segments are deleted; the active segment is rolled first when
//! all of its data has expired, as Kafka does.

use std::sync::Arc;
use std::time::Duration;

use super::segment::now_ms;
use super::LogManager;

/// One retention pass. Returns the number of segments deleted.
pub fn enforce(logs: &LogManager) -> usize {
    let now = now_ms();
    let mut deleted = 0;
    for topic in logs.topics() {
        let cfg = topic.config();
        // A compact-only topic keeps its data until the cleaner replaces it.
        if !cfg.cleanup.delete {
            continue;
        }
        for p in topic.partitions() {
            if cfg.retention_ms >= 0 {
                let cutoff = now - cfg.retention_ms;
                if p.active_max_timestamp().is_some_and(|t| t < cutoff) {
                    if let Err(e) = p.roll_if_nonempty() {
                        tracing::warn!("retention roll failed: {e}");
                    }
                }
                // A segment without a timestamp is empty or has an index
                // that could not be rebuilt; neither is expired data.
                // An empty sealed segment (one the cleaner emptied) holds
                // nothing to keep.
                deleted += p.remove_segments(|seg, _, _| {
                    seg.size() == 0 || seg.max_timestamp().is_some_and(|t| t < cutoff)
                });
            }
            if cfg.retention_bytes >= 0 {
                let limit = cfg.retention_bytes as u64;
                deleted += p.remove_segments(|_, _, remaining| remaining >= limit);
            }
        }
    }
    deleted
}

pub fn spawn(logs: Arc<LogManager>) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_millis(logs.defaults().retention_check_interval_ms);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let logs = logs.clone();
            match tokio::task::spawn_blocking(move || enforce(&logs)).await {
                Ok(n) if n > 0 => tracing::info!(segments = n, "retention deleted segments"),
                Ok(_) => {}
                Err(e) => tracing::error!("retention task failed: {e}"),
            }
        }
    })
}
