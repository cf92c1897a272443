//! `dynamowave-bench`: the load generator as a standalone command (the same arguments as
//! `dynamowave bench`), and `dynamowave-bench plot`, which draws a directory of its JSON reports.

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
        None => dynamowave_bench::run_blocking(cli.args)?.print_table(),
    }
    Ok(())
}
