//! `dynamowave-bench`: the load generator as a standalone command (the same arguments as
//! `dynamowave bench`).

use clap::Parser;

#[derive(Parser)]
#[command(name = "dynamowave-bench", version, about = "Load generator for DynamoWave Chat (protocol v1, JSON framing)")]
struct Cli {
    #[command(flatten)]
    args: dynamowave_bench::BenchArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = dynamowave_bench::run_blocking(cli.args)?;
    report.print_table();
    Ok(())
}
