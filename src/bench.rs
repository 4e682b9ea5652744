//! `portcullis bench`: produce/consume throughput and produce latency
//! measured with librdkafka against a running broker.

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Bootstrap servers of the broker under test.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench is not implemented yet")
}
