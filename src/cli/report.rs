//! `mxpulse report`: a month's report written to a directory, in the formats asked, counted
//! by the same desk as `/reports` on the query service: a closed month's report is the frozen
//! one (the same files `serve` gives), an open month's is provisional.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use mxpulse_dashboards::i18n::Lang;
use mxpulse_dashboards::report::desk::ReportDesk;
use mxpulse_dashboards::report::{Format, files, operator};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The month, YYYY-MM; by default the newest closed month with figures.
    #[arg(long)]
    pub month: Option<String>,
    /// Only this server's figures: a ministry's report.
    #[arg(long)]
    pub server: Option<String>,
    #[arg(long, default_value = "fr", value_parser = ["fr", "en"])]
    pub lang: String,
    /// Formats, comma-separated: pdf, xlsx, csv, png, html.
    #[arg(long, value_delimiter = ',', default_value = "pdf,xlsx,csv,png,html")]
    pub format: Vec<String>,
    /// The directory the files are written to (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

pub fn run(args: &ReportArgs, config: &Config) -> anyhow::Result<()> {
    let formats = args
        .format
        .iter()
        .map(|f| {
            Format::parse(f).with_context(|| format!("--format {f:?}: pdf, xlsx, csv, png or html"))
        })
        .collect::<anyhow::Result<Vec<Format>>>()?;
    let lang = Lang::parse(Some(&args.lang));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let service = Arc::new(super::serve::query_service(config)?);
        let annotations_file = (!config.dashboards.annotations_file.is_empty())
            .then(|| std::path::Path::new(&config.dashboards.annotations_file));
        let annotations = mxpulse_dashboards::annotations::load(annotations_file)?;
        let desk = ReportDesk::new(service, annotations, super::serve::report_settings(config)?);
        let month = match &args.month {
            Some(month) => month.clone(),
            None => desk
                .latest_closed_month()
                .await?
                .context("no closed month has figures yet: name one with --month")?,
        };
        let served = desk
            .report(&operator(args.server.clone()), &month, lang)
            .await?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        for format in formats {
            for name in format.files(&served.rendered) {
                let Some(bytes) = served.rendered.get(name) else {
                    continue;
                };
                let file = match name.strip_prefix(files::CHARTS) {
                    Some(chart) => format!("{}-{chart}", served.file_stem),
                    None => format!(
                        "{}{}",
                        served.file_stem,
                        name.strip_prefix("report").unwrap_or(name)
                    ),
                };
                let path = args.out.join(file);
                std::fs::write(&path, bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("{}", path.display());
            }
        }
        let state = match served.revision {
            Some(r) => format!("frozen, revision {r}"),
            None if served.provisional => "provisional: the month is not closed".to_owned(),
            None => "closed but not frozen (see the log)".to_owned(),
        };
        eprintln!("report of {month}: {state}");
        anyhow::Ok(())
    })
}
