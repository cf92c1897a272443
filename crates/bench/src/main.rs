//! `dynamowave-bench`: the load generator as a standalone command (the same arguments as
//! `dynamowave bench`), `dynamowave-bench plot`, which draws a directory of its JSON reports,
//! `dynamowave-bench ddb-meter` (DynamoDB units through a proxy) and `dynamowave-bench cost`.

use std::io::Write as _;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dynamowave-bench",
    version,
    about = "Load generator for DynamoWave Chat (protocol v1, JSON framing)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: dynamowave_bench::BenchArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Draw the JSON reports of a directory (`<scenario>.<server>.json`) as SVG: latency by
    /// percentile per scenario and CPU per delivery by room size.
    Plot(dynamowave_bench::plot::PlotArgs),
    /// A proxy before DynamoDB Local counting read and write units per operation (`GET /ddb-meter`).
    DdbMeter(dynamowave_bench::ddb_meter::MeterArgs),
    /// The AWS bill, at list prices, of the measurements `scripts/cost` collects (Markdown).
    Cost(dynamowave_bench::cost::CostArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Plot(args)) => {
            let mut out = std::io::stdout().lock();
            for path in dynamowave_bench::plot::plot(&args)? {
                writeln!(out, "{}", path.display())?;
            }
        }
        Some(Command::DdbMeter(args)) => dynamowave_bench::ddb_meter::run_blocking(&args)?,
        Some(Command::Cost(args)) => print!("{}", dynamowave_bench::cost::run(&args)?),
        None => dynamowave_bench::run_blocking(cli.args)?.print_table(),
    }
    Ok(())
}
