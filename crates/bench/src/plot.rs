//! `dynamowave-bench plot`: SVG pictures of a directory of JSON reports, one file per run named
//! `<scenario>.<server>.json` as `scripts/bench-compare` writes them.
//!
//! Two kinds of picture, each server a series named by its `--label`:
//! - `latency-<scenario>.svg`: latency by percentile (HdrHistogram's classic plot), from each
//!   report's `load.latency.by_percentile`. The x axis is `1 / (1 - p)` on a log scale labelled as
//!   percentiles (90, 99, 99.9, …), so each decade of the tail gets the same width; the largest
//!   sample is drawn at `1 / (1 - p) = count`, where the largest of `count` samples belongs. The
//!   y axis is log scale too: tails run to a hundred times the median.
//! - `cpu-by-room-size.svg`: the server's CPU seconds per 1M deliveries against room size (log x)
//!   over the growth scenarios; a send-floor report in the directory adds its figure as a
//!   horizontal line.
//!
//! Text is written as SVG `<text>` with a generic font family, so no font file is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::prelude::*;

use crate::accounting::PercentilePoint;

/// The flags of `dynamowave-bench plot`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// Directory of the runs' JSON reports (`--json`), named `<scenario>.<server>.json`; other
    /// files are ignored.
    #[arg(long)]
    pub input: PathBuf,

    /// Directory the SVG files are written to (created when missing).
    #[arg(long, default_value = "docs/bench")]
    pub out_dir: PathBuf,

    /// Scenarios drawn as latency-by-percentile pictures, one `latency-<scenario>.svg` each; a
    /// scenario with no load report is skipped.
    #[arg(long, value_delimiter = ',', default_value = "fanout,chat,growth-10,growth-100,growth-1000,growth-10000")]
    pub latency: Vec<String>,

    /// Scenarios whose name starts with this are the points of `cpu-by-room-size.svg` (room size:
    /// connections / rooms of each run).
    #[arg(long, default_value = "growth-")]
    pub growth_prefix: String,

    /// Width of each picture, pixels.
    #[arg(long, default_value_t = 860)]
    pub width: u32,

    /// Height of each picture, pixels.
    #[arg(long, default_value_t = 520)]
    pub height: u32,
}

impl Default for PlotArgs {
    /// The flags' defaults, reading from `input`.
    fn default() -> Self {
        Self {
            input: PathBuf::new(),
            out_dir: PathBuf::from("docs/bench"),
            latency: ["fanout", "chat", "growth-10", "growth-100", "growth-1000", "growth-10000"]
                .map(String::from)
                .to_vec(),
            growth_prefix: "growth-".to_owned(),
            width: 860,
            height: 520,
        }
    }
}

/// The parts of a [`crate::Report`] the pictures need; everything else in the file is ignored.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SavedReport {
    /// `--label`.
    #[serde(default)]
    pub label: Option<String>,
    /// `load`, `send_floor`, ….
    pub mode: String,
    /// The run's flags.
    pub config: SavedConfig,
    /// Load mode.
    #[serde(default)]
    pub load: Option<SavedLoad>,
    /// With `--server-pid`.
    #[serde(default)]
    pub server: Option<SavedServer>,
    /// Send-floor mode.
    #[serde(default)]
    pub send_floor: Option<SavedFloor>,
}

/// [`crate::report::RunConfig`]'s shape, in part.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SavedConfig {
    /// `--connections`.
    pub connections: usize,
    /// `--rooms`.
    pub rooms: usize,
    /// `--rate`.
    pub rate: f64,
}

/// [`crate::report::LoadStats`]'s shape, in part.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SavedLoad {
    /// Send-to-receive latency.
    pub latency: crate::accounting::LatencySummary,
}

/// [`crate::report::ServerStats`]'s shape, in part.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SavedServer {
    /// CPU seconds per million deliveries.
    #[serde(default)]
    pub cpu_seconds_per_million_deliveries: Option<f64>,
}

/// [`crate::report::SendFloorStats`]'s shape, in part.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SavedFloor {
    /// CPU seconds per 1M writes.
    #[serde(default)]
    pub cpu_seconds_per_million: Option<f64>,
}

/// One report and the names its file gives it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The file name's first part (`fanout`, `growth-100`, `floor`).
    pub scenario: String,
    /// `--label`, else the file name's second part, else the scenario.
    pub server: String,
    /// The report.
    pub report: SavedReport,
}

/// Reads every `*.json` file directly in `dir` as a report.
pub fn load_runs(dir: &Path) -> anyhow::Result<Vec<Run>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading the report directory {}", dir.display()))?;
    let mut runs = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") || !path.is_file() {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let (scenario, file_server) = match stem.split_once('.') {
            Some((scenario, server)) => (scenario.to_owned(), Some(server.to_owned())),
            None => (stem.to_owned(), None),
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let report: SavedReport = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a dynamowave-bench report", path.display()))?;
        let server = report.label.clone().or(file_server).unwrap_or_else(|| scenario.clone());
        runs.push(Run { scenario, server, report });
    }
    runs.sort_by(|a, b| (&a.scenario, &a.server).cmp(&(&b.scenario, &b.server)));
    Ok(runs)
}

/// Writes the pictures of the reports in `args.input` to `args.out_dir`; returns the files written.
pub fn plot(args: &PlotArgs) -> anyhow::Result<Vec<PathBuf>> {
    let runs = load_runs(&args.input)?;
    if runs.is_empty() {
        anyhow::bail!("no JSON reports in {}", args.input.display());
    }
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let size = (args.width.max(200), args.height.max(150));
    let mut written = Vec::new();
    let mut write = |name: String, svg: String| -> anyhow::Result<()> {
        let path = args.out_dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    for scenario in &args.latency {
        let of_scenario: Vec<&Run> =
            runs.iter().filter(|r| &r.scenario == scenario && r.report.load.is_some()).collect();
        if let Some(svg) = latency_svg(scenario, &of_scenario, size)? {
            write(format!("latency-{scenario}.svg"), svg)?;
        }
    }
    if let Some(svg) = cpu_by_room_size_svg(&runs, &args.growth_prefix, size)? {
        write("cpu-by-room-size.svg".to_owned(), svg)?;
    }
    Ok(written)
}

/// The series colours, in server order.
const PALETTE: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(255, 127, 14)];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `1 / (1 - p)` of a curve point; the largest sample (p = 100) sits at `count`.
fn inverse_tail(point: &PercentilePoint, count: u64) -> f64 {
    if point.percentile >= 100.0 { (count as f64).max(1.0) } else { 1.0 / (1.0 - point.percentile / 100.0) }
}

/// The percentile an `1 / (1 - p)` tick stands for, without trailing zeros (`99.9`, `0`).
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let text = format!("{p:.5}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".to_owned() } else { text.to_owned() }
}

/// Smallest power of ten at or above `x` (at least 10).
fn decade_above(x: f64) -> f64 {
    10f64.powf(x.max(10.0).log10().ceil())
}

/// `1,234,567`; under 10 with one decimal unless whole (`2.5`, `1`).
fn with_thousands(x: f64) -> String {
    if x < 10.0 && x.fract() != 0.0 {
        return format!("{x:.1}");
    }
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The legend of every series given a label, boxed, at `position`.
fn draw_legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// The latency-by-percentile picture of one scenario's runs; `None` when none has a curve.
pub fn latency_svg(scenario: &str, runs: &[&Run], size: (u32, u32)) -> anyhow::Result<Option<String>> {
    let series: Vec<(&Run, Vec<(f64, f64)>)> = runs
        .iter()
        .filter_map(|run| {
            let latency = &run.report.load.as_ref()?.latency;
            let points: Vec<(f64, f64)> =
                latency.by_percentile.iter().map(|p| (inverse_tail(p, latency.count), p.latency_us.max(1.0))).collect();
            (!points.is_empty()).then_some((*run, points))
        })
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let all = series.iter().flat_map(|(_, points)| points.iter());
    let (x_max, y_min, y_max) =
        all.fold((10.0f64, f64::MAX, 1.0f64), |(xm, lo, hi), &(x, y)| (xm.max(x), lo.min(y), hi.max(y)));
    let x_max = decade_above(x_max);
    let (y_min, y_max) = (10f64.powf(y_min.log10().floor()), 10f64.powf(y_max.log10().ceil()).max(y_min * 10.0));
    let config = &series[0].0.report.config;
    let caption = format!(
        "{scenario}: latency by percentile ({} connections in {} room{}, {} msgs/s)",
        with_thousands(config.connections as f64),
        with_thousands(config.rooms as f64),
        if config.rooms == 1 { "" } else { "s" },
        with_thousands(config.rate)
    );

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            // Room for the last x tick's label, centred on the plot's right edge.
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d((1.0..x_max).log_scale(), (y_min..y_max).log_scale())?;
        let decades = x_max.log10().round() as usize;
        chart
            .configure_mesh()
            .x_labels(decades + 1)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| with_thousands(*y))
            .x_desc("percentile (%), log scale of 1 / (1 - p)")
            .y_desc("latency (µs, log scale)")
            .light_line_style(RGBColor(244, 244, 244))
            .draw()?;
        for (i, (run, points)) in series.iter().enumerate() {
            let c = colour(i);
            let latency = &run.report.load.as_ref().map(|l| l.latency.clone()).unwrap_or_default();
            let name = format!(
                // Short: the legend's width is estimated, not measured, and the last point is the max.
                "{} (p50 {}, p99 {}, p99.9 {} µs; {} samples)",
                run.server,
                with_thousands(latency.p50_us),
                with_thousands(latency.p99_us),
                with_thousands(latency.p999_us),
                with_thousands(latency.count as f64)
            );
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        }
        // Latency rises to the right: the lower right is where the curves are not.
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present()?;
    }
    Ok(Some(svg))
}

/// The CPU-per-delivery-by-room-size picture over the growth scenarios; `None` when no growth
/// run has the figure.
pub fn cpu_by_room_size_svg(runs: &[Run], growth_prefix: &str, size: (u32, u32)) -> anyhow::Result<Option<String>> {
    let mut by_server: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.scenario.starts_with(growth_prefix) && r.report.load.is_some()) {
        let Some(cpu) = run.report.server.as_ref().and_then(|s| s.cpu_seconds_per_million_deliveries) else {
            continue;
        };
        let room = run.report.config.connections as f64 / run.report.config.rooms.max(1) as f64;
        by_server.entry(&run.server).or_default().push((room, cpu));
    }
    if by_server.is_empty() {
        return Ok(None);
    }
    for points in by_server.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let floor = runs
        .iter()
        .filter(|r| r.report.mode == "send_floor")
        .find_map(|r| r.report.send_floor.as_ref()?.cpu_seconds_per_million);
    let all = by_server.values().flatten();
    let (x_min, x_max, y_max) =
        all.fold((f64::MAX, 1.0f64, floor.unwrap_or(0.0)), |(lo, hi, ym), &(x, y)| (lo.min(x), hi.max(x), ym.max(y)));
    let (x_min, x_max) = (x_min.max(1.0) / 2.0, x_max * 2.0);
    let y_max = (y_max * 1.2).max(1e-3);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Server CPU per delivery by room size", ("sans-serif", 18))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| with_thousands(*x))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .x_desc("room size (members, log scale)")
            .y_desc("server CPU seconds per 1M deliveries")
            .light_line_style(RGBColor(244, 244, 244))
            .draw()?;
        for (i, (server, points)) in by_server.iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
                .label(*server)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
            // Each point with its value beside it, clear of the line.
            chart.draw_series(points.iter().map(|&(x, y)| {
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 4, c.filled())
                    + Text::new(format!("{y:.2}"), (7, -16), ("sans-serif", 12).into_font().color(&c))
            }))?;
        }
        if let Some(floor) = floor {
            let grey = RGBColor(90, 90, 90);
            chart
                .draw_series(DashedLineSeries::new([(x_min, floor), (x_max, floor)], 8, 5, grey.stroke_width(1)))?
                .label(format!("send floor: one send() per delivery, no server ({floor:.2} CPU-s per 1M)"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(1)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present()?;
    }
    Ok(Some(svg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::{LatencySummary, new_histogram};
    use crate::args::Mode;
    use crate::report::{LoadStats, Report, RunConfig, SendFloorStats, ServerStats};

    /// A real report (the struct `--json` serialises) of a load run.
    fn load_report(label: &str, connections: usize, rooms: usize, latencies_us: &[u64], cpu: Option<f64>) -> Report {
        let mut h = new_histogram();
        for &us in latencies_us {
            h.saturating_record(us * 1_000);
        }
        let mut report = empty_report(Mode::Load, connections, rooms);
        report.label = Some(label.to_owned());
        report.load = Some(LoadStats { latency: LatencySummary::from_histogram(&h), ..LoadStats::default() });
        report.server = Some(ServerStats { cpu_seconds_per_million_deliveries: cpu, ..ServerStats::default() });
        report
    }

    fn empty_report(mode: Mode, connections: usize, rooms: usize) -> Report {
        Report {
            label: None,
            mode,
            url: "ws://127.0.0.1:1/".to_owned(),
            started_at_unix: 0,
            config: RunConfig {
                connections,
                rooms,
                senders: 1,
                rate: 25.0,
                window: 16,
                size: 100,
                warmup_seconds: 1.0,
                duration_seconds: 3.0,
                connect_rate: 0.0,
                source_addrs: 1,
            },
            window_seconds: 3.0,
            connect: Default::default(),
            load: None,
            idle: None,
            send_floor: None,
            storm: None,
            server: None,
            generator: Default::default(),
            notes: Vec::new(),
        }
    }

    fn save(dir: &Path, name: &str, report: &Report) {
        let text = match serde_json::to_string_pretty(report) {
            Ok(t) => t,
            Err(e) => panic!("serialising {name}: {e}"),
        };
        if let Err(e) = std::fs::write(dir.join(name), text) {
            panic!("writing {name}: {e}");
        }
    }

    fn read(path: &Path) -> String {
        match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => panic!("reading {}: {e}", path.display()),
        }
    }

    /// The `points` of every `<polyline>` with more than two points (the data series; legend
    /// marks and the dashed floor's pieces have two), after checking the file parses as XML.
    fn data_lines(svg: &str) -> Vec<usize> {
        let doc = match roxmltree::Document::parse(svg) {
            Ok(d) => d,
            Err(e) => panic!("not well-formed XML: {e}\n{svg}"),
        };
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.tag_name().name() == "polyline")
            .filter_map(|n| n.attribute("points"))
            .map(|p| p.split_whitespace().count())
            .filter(|&n| n > 2)
            .collect()
    }

    fn texts(svg: &str) -> String {
        let doc = match roxmltree::Document::parse(svg) {
            Ok(d) => d,
            Err(e) => panic!("not well-formed XML: {e}"),
        };
        doc.descendants()
            .filter(|n| n.tag_name().name() == "text")
            .filter_map(|n| n.text())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn tempdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    #[test]
    fn a_compare_directory_becomes_latency_and_cpu_pictures_naming_both_servers() {
        let input = tempdir();
        let out = tempdir();
        let ours: Vec<u64> = (1..=10_000).map(|i| 200 + i / 20).collect();
        let peers: Vec<u64> = (1..=10_000).map(|i| 900 + i / 5).collect();
        save(input.path(), "fanout.dynamowave.json", &load_report("dynamowave", 1000, 1, &ours, Some(0.9)));
        save(input.path(), "fanout.node-ws-chat.json", &load_report("node-ws-chat", 1000, 1, &peers, Some(1.6)));
        for (k, ours_cpu, peer_cpu) in [(10, 3.17, 2.43), (100, 1.13, 1.51), (1000, 0.87, 1.64)] {
            let (connections, rooms) = (2000.max(k), 2000.max(k) / k);
            save(
                input.path(),
                &format!("growth-{k}.dynamowave.json"),
                &load_report("dynamowave", connections, rooms, &ours, Some(ours_cpu)),
            );
            save(
                input.path(),
                &format!("growth-{k}.node-ws-chat.json"),
                &load_report("node-ws-chat", connections, rooms, &peers, Some(peer_cpu)),
            );
        }
        // An idle run (no latency curve) and the send floor are in the same directory.
        save(input.path(), "idle.dynamowave.json", &empty_report(Mode::Idle, 5000, 1));
        let mut floor = empty_report(Mode::SendFloor, 1000, 1);
        floor.send_floor = Some(SendFloorStats { cpu_seconds_per_million: Some(0.55), ..SendFloorStats::default() });
        save(input.path(), "floor.json", &floor);
        std::fs::write(input.path().join("notes.txt"), "not a report").ok();

        let args =
            PlotArgs { input: input.path().to_owned(), out_dir: out.path().join("bench"), ..PlotArgs::default() };
        let written = match plot(&args) {
            Ok(w) => w,
            Err(e) => panic!("{e:#}"),
        };
        let names: Vec<String> = written.iter().filter_map(|p| p.file_name()?.to_str().map(str::to_owned)).collect();
        // Chat and growth-10000 were not run: no picture for them.
        assert_eq!(
            names,
            [
                "latency-fanout.svg",
                "latency-growth-10.svg",
                "latency-growth-100.svg",
                "latency-growth-1000.svg",
                "cpu-by-room-size.svg"
            ]
        );

        let fanout = read(&out.path().join("bench/latency-fanout.svg"));
        assert!(fanout.trim_start().starts_with("<svg") && fanout.trim_end().ends_with("</svg>"));
        // One line per server through every point of its curve: 10,000 samples resolve
        // 1 / (1 - p) up to 10^4 (17 points) and the max makes 18.
        assert_eq!(data_lines(&fanout), [18, 18], "{fanout}");
        let text = texts(&fanout);
        assert!(text.contains("dynamowave (p50") && text.contains("node-ws-chat (p50"), "{text}");
        assert!(text.contains("latency (µs, log scale)") && text.contains("percentile (%)"), "{text}");
        for tick in ["90", "99", "99.9", "99.99"] {
            assert!(text.lines().any(|l| l == tick), "no x tick {tick}: {text}");
        }

        let cpu = read(&out.path().join("bench/cpu-by-room-size.svg"));
        // Three room sizes per server.
        assert_eq!(data_lines(&cpu), [3, 3], "{cpu}");
        let text = texts(&cpu);
        assert!(text.lines().any(|l| l == "dynamowave") && text.lines().any(|l| l == "node-ws-chat"), "{text}");
        assert!(text.contains("send floor") && text.contains("0.55"), "{text}");
        assert!(text.contains("room size") && text.contains("CPU seconds per 1M deliveries"), "{text}");
        for value in ["3.17", "2.43", "1.13", "1.51", "0.87", "1.64"] {
            assert!(text.lines().any(|l| l == value), "no point label {value}: {text}");
        }
    }

    #[test]
    fn labels_in_reports_are_escaped_in_the_svg() {
        let input = tempdir();
        let out = tempdir();
        let nasty = "<script>alert(1)</script> & co";
        save(input.path(), "fanout.x.json", &load_report(nasty, 10, 1, &[100, 200, 300], Some(1.0)));
        let args = PlotArgs { input: input.path().to_owned(), out_dir: out.path().to_owned(), ..PlotArgs::default() };
        if let Err(e) = plot(&args) {
            panic!("{e:#}");
        }
        let svg = read(&out.path().join("latency-fanout.svg"));
        assert!(!svg.contains("<script"), "{svg}");
        assert!(texts(&svg).contains(nasty));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_file_or_directory() {
        let out = tempdir();
        let empty = tempdir();
        let args =
            |input: &Path| PlotArgs { input: input.to_owned(), out_dir: out.path().to_owned(), ..PlotArgs::default() };
        let err = |a: &PlotArgs| match plot(a) {
            Ok(w) => panic!("plotted {w:?}"),
            Err(e) => format!("{e:#}"),
        };
        let message = err(&args(empty.path()));
        assert!(
            message.contains("no JSON reports") && message.contains(&empty.path().display().to_string()),
            "{message}"
        );
        let missing = empty.path().join("missing");
        assert!(err(&args(&missing)).contains("missing"));
        std::fs::write(empty.path().join("fanout.a.json"), "{\"not\": \"a report\"}").ok();
        let message = err(&args(empty.path()));
        assert!(message.contains("fanout.a.json") && message.contains("not a dynamowave-bench report"), "{message}");
    }

    #[test]
    fn ticks_read_as_percentiles() {
        assert_eq!(percentile_label(1.0), "0");
        assert_eq!(percentile_label(10.0), "90");
        assert_eq!(percentile_label(100.0), "99");
        assert_eq!(percentile_label(1000.0), "99.9");
        assert_eq!(percentile_label(100_000.0), "99.999");
        assert_eq!(with_thousands(1_234_567.0), "1,234,567");
        assert_eq!(with_thousands(999.0), "999");
        assert_eq!(with_thousands(2.5), "2.5");
        assert_eq!(with_thousands(1.0), "1");
    }
}
