//! `voronka`: the one-machine stack and the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use voronka_domain::kpi::rollup::RollupKind;
use voronka_domain::ports::SystemClock;
use voronka_local::demo::{self, DemoOptions};
use voronka_local::stack::{Stack, StackOptions, load_campaigns};
use voronka_local::{export, kpi_cli, serve};

#[derive(Parser)]
#[command(name = "voronka", version, about = "Voronka marketing automation: the whole suite on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and the demo shop page on localhost, storing data in a folder.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080", env = "VORONKA_ADDR")]
        addr: SocketAddr,
        #[arg(long, default_value = "voronka-data", env = "VORONKA_DATA_DIR")]
        data_dir: PathBuf,
        /// Read campaign files from this folder instead of the bundled ones.
        #[arg(long, env = "VORONKA_CAMPAIGNS_DIR")]
        campaigns: Option<PathBuf>,
        /// The URL links in email point to (default: http://ADDR).
        #[arg(long, env = "PUBLIC_BASE_URL")]
        public_url: Option<String>,
    },
    /// Run a seeded simulation of a shop's visitors through the real handlers and print a report.
    Demo {
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Visitors to simulate (about 43% of them become contacts).
        #[arg(long, default_value_t = 1000)]
        visitors: usize,
        /// Simulate enough visitors for about this many contacts (instead of --visitors).
        #[arg(long, conflicts_with = "visitors", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        contacts: Option<u64>,
        /// Simulated days, up to a year (the report covers them all).
        #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=365))]
        days: u32,
        /// Keep the demo's data in this folder (default: in memory, gone when the demo ends).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Write the KPI dashboard as files here (default: DATA_DIR/dashboard, or
        /// ./voronka-demo-dashboard without --data-dir).
        #[arg(long)]
        dashboard_dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Inject faults, replayed exactly by the same seed: comma-separated name=rate with
        /// ses-throttle, ses-error, store-throttle, duplicate-delivery, crash-between-steps,
        /// bounce-storm (rates 0..=1; the storm bounces that share of the middle day's mail), or
        /// `all` for the reference run (ses-throttle=0.2,ses-error=0.05,store-throttle=0.1,
        /// duplicate-delivery=0.1,crash-between-steps=0.02,bounce-storm=0.3).
        #[arg(long)]
        faults: Option<voronka_domain::ports::FaultPlan>,
    },
    /// Check every campaign file; problems are listed with file, line and field.
    Validate {
        /// The campaigns folder (default: the one in this repository).
        #[arg(long)]
        campaigns: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Preview a template for a sample contact: subject, text and HTML as they would be sent.
    Render {
        /// The template id, e.g. welcome or abandoned_cart_2.
        template: String,
        /// A JSON file with the contact's fields (first_name, locale, ...) and any template values.
        #[arg(long)]
        contact: PathBuf,
        /// Render for this locale instead of the file's `locale`.
        #[arg(long)]
        locale: Option<String>,
        #[arg(long)]
        campaigns: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print stored events (from the event log) or contacts as JSON lines or CSV, for BI tools.
    Export {
        what: ExportKind,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: export::Format,
        /// First day (YYYY-MM-DD); events default to as far back as the event log keeps.
        #[arg(long)]
        from: Option<String>,
        /// Last day, included (default: today).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        folder: DataFolder,
    },
    /// Erase a person (as `DELETE /v1/contacts/{id}`): every item holding their data and their
    /// mail in the outbox; prints what went as JSON. Repeating it finishes an interrupted erasure.
    Erase {
        contact_id: String,
        #[command(flatten)]
        folder: DataFolder,
    },
    /// Ad spend: `voronka spend import FILE` (.csv or .json).
    Spend {
        #[command(subcommand)]
        action: SpendAction,
    },
    /// Print the KPI report (rolling up its days first): funnel, rows, channels, LTV/CAC,
    /// retention, journey uplift.
    Kpi {
        /// First day, YYYY-MM-DD (default: 29 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// Last day, included (default: today).
        #[arg(long)]
        to: Option<String>,
        /// day, week, month, channel or campaign.
        #[arg(long)]
        group_by: Option<String>,
        /// first_touch, last_touch, linear, position_based or time_decay.
        #[arg(long)]
        attribution: Option<String>,
        /// The report as JSON, as `GET /v1/kpi` answers.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// The rows as CSV, as `GET /v1/kpi?format=csv` answers.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        folder: DataFolder,
    },
    /// Snapshot the KPI inputs now: today (hourly) or yesterday final and the days before it
    /// restated (nightly).
    Rollup {
        #[arg(long, value_enum, default_value = "hourly")]
        kind: RollupChoice,
        #[command(flatten)]
        folder: DataFolder,
    },
    /// The reputation guard: `voronka sending status` (paused or not, why, the window's rates) and
    /// `voronka sending resume` (an operator resumes marketing after a pause), as
    /// `GET /v1/admin/sending` and `POST /v1/admin/sending/resume`.
    Sending {
        #[command(subcommand)]
        action: SendingAction,
    },
}

#[derive(Subcommand)]
enum SendingAction {
    Status {
        #[command(flatten)]
        folder: DataFolder,
    },
    Resume {
        #[command(flatten)]
        folder: DataFolder,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportKind {
    Events,
    Contacts,
}

#[derive(Subcommand)]
enum SpendAction {
    /// Upsert every row of FILE (all or nothing; problems are listed with their lines).
    Import {
        file: PathBuf,
        #[command(flatten)]
        folder: DataFolder,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RollupChoice {
    Hourly,
    Nightly,
}

/// The data folder `serve` stored into and the campaign files it serves, for the commands that
/// read them: a folder served with its own campaigns (time zone, margin, currency, journeys) must
/// be reported on with the same files.
#[derive(clap::Args)]
struct DataFolder {
    #[arg(long, default_value = "voronka-data", env = "VORONKA_DATA_DIR")]
    data_dir: PathBuf,
    /// Read campaign files from this folder instead of the bundled ones (as `serve --campaigns`).
    #[arg(long, env = "VORONKA_CAMPAIGNS_DIR")]
    campaigns: Option<PathBuf>,
}

/// The stack on an existing data folder, for the commands that read what `serve` stored.
fn open_existing(folder: DataFolder) -> Result<Stack> {
    let DataFolder { data_dir, campaigns } = folder;
    if !data_dir.join(voronka_local::stack::DATABASE_FILE).exists() {
        anyhow::bail!("no Voronka data in {} (start `voronka serve` or pass --data-dir)", data_dir.display());
    }
    Stack::open(StackOptions {
        data_dir: Some(data_dir),
        metering: None,
        campaigns_dir: campaigns,
        public_base_url: None,
        clock: Arc::new(SystemClock),
        ids: Stack::default_ids(),
        faults: None,
    })
}

fn parse_day(option: &str, text: &str) -> Result<jiff::civil::Date> {
    text.parse().map_err(|_| anyhow::anyhow!("--{option}: must be a date YYYY-MM-DD, got {text:?}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { addr, data_dir, campaigns, public_url } => {
            voronka_telemetry::init_json_logging(std::io::stderr);
            let public_url = public_url.unwrap_or_else(|| format!("http://{addr}"));
            let stack = Stack::open(StackOptions {
                data_dir: Some(data_dir),
                metering: None,
                campaigns_dir: campaigns,
                public_base_url: Some(public_url),
                clock: Arc::new(SystemClock),
                ids: Stack::default_ids(),
                faults: None,
            })?;
            serve::run(stack, addr).await
        }
        Command::Demo { seed, visitors, contacts, days, data_dir, dashboard_dir, json, faults } => {
            let visitors = contacts.map_or(visitors, |contacts| demo::visitors_for_contacts(contacts as usize));
            // The handlers log as they do on Lambda (JSON lines on stderr); `RUST_LOG=debug` shows
            // everything, and without it only warnings interrupt the report.
            voronka_telemetry::init_json_logging_defaulting_to(std::io::stderr, "warn");
            let show_progress = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let dashboard_dir = dashboard_dir.unwrap_or_else(|| match &data_dir {
                Some(dir) => dir.join("dashboard"),
                None => PathBuf::from("voronka-demo-dashboard"),
            });
            let options = DemoOptions {
                seed,
                visitors,
                days,
                data_dir,
                dashboard_dir: Some(dashboard_dir),
                show_progress,
                faults,
            };
            let report = demo::run(options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                report.print();
            }
            let violations = report.invariants.as_ref().map_or(0, |i| i.violations());
            if violations > 0 {
                anyhow::bail!("{violations} invariant violations (see the invariants above)");
            }
            Ok(())
        }
        Command::Validate { campaigns, json } => {
            let folder = campaigns.unwrap_or_else(voronka_campaigns::source_dir);
            match load_campaigns(Some(&folder)) {
                Ok(loaded) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"valid": true, "forms": loaded.forms.keys().collect::<Vec<_>>(),
                                "bots": loaded.bots.keys().collect::<Vec<_>>()})
                        );
                    } else {
                        let scoring = match &loaded.scoring {
                            Some(rules) => {
                                format!(
                                    "{} fit and {} engagement scoring rules",
                                    rules.fit.len(),
                                    rules.engagement.len()
                                )
                            }
                            None => "no scoring.toml (nobody is scored)".to_string(),
                        };
                        println!(
                            "{}: settings, {} forms, {} templates, {} journeys, {} bot scripts and {scoring} are valid",
                            folder.display(),
                            loaded.forms.len(),
                            loaded.templates.len(),
                            loaded.journeys.len(),
                            loaded.bots.len()
                        );
                    }
                    Ok(())
                }
                Err(error) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"valid": false, "errors": error.to_string().lines().collect::<Vec<_>>()})
                        );
                    }
                    Err(error)
                }
            }
        }
        Command::Render { template, contact, locale, campaigns, json } => {
            let folder = campaigns.unwrap_or_else(voronka_campaigns::source_dir);
            let loaded = load_campaigns(Some(&folder))?;
            let text = std::fs::read_to_string(&contact)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", contact.display()))?;
            let mut context: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not a JSON object: {e}", contact.display()))?;
            let Some(fields) = context.as_object_mut() else {
                anyhow::bail!("{} must hold a JSON object", contact.display());
            };
            let locale = locale
                .or_else(|| fields.get("locale").and_then(|l| l.as_str()).map(str::to_string))
                .unwrap_or_else(|| loaded.settings.default_locale.clone());
            for (name, value) in [
                ("currency", serde_json::json!(loaded.settings.currency)),
                ("shop_name", serde_json::json!(loaded.settings.sending.shop_name)),
                ("shop_url", serde_json::json!(loaded.settings.sending.shop_url)),
                ("unsubscribe_url", serde_json::json!("https://api.example/v1/unsubscribe?token=preview")),
            ] {
                fields.entry(name).or_insert(value);
            }
            let email = loaded.template_set().render(&template, &locale, &context)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"locale": email.locale, "subject": email.subject, "text": email.text, "html": email.html})
                );
            } else {
                println!(
                    "Locale:  {}\nSubject: {}\n\n--- text ---\n{}\n--- html ---\n{}",
                    email.locale, email.subject, email.text, email.html
                );
            }
            Ok(())
        }
        Command::Export { what, format, from, to, folder } => {
            let stack = open_existing(folder)?;
            let today = kpi_cli::today(&stack);
            let to = to.as_deref().map(|t| parse_day("to", t)).transpose()?.unwrap_or(today);
            let from = from.as_deref().map(|f| parse_day("from", f)).transpose()?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match what {
                ExportKind::Events => {
                    let keep =
                        i64::from(stack.state.campaigns.settings.kpi.event_log_days).min(export::MAX_EXPORT_DAYS);
                    let from = from.unwrap_or_else(|| to.saturating_sub(jiff::Span::new().days(keep.max(1) - 1)));
                    export::events(&stack, &mut out, format, export::DateRange::new(from, to)?).await?;
                }
                ExportKind::Contacts => {
                    let range = match from {
                        Some(from) => Some(export::DateRange::new(from, to)?),
                        None => None,
                    };
                    export::contacts_as(&stack, &mut out, format, range).await?;
                }
            }
            std::io::Write::flush(&mut out)?;
            Ok(())
        }
        Command::Erase { contact_id, folder } => {
            let stack = open_existing(folder)?;
            let now = stack.state.clock.now();
            // No request timeout here: the whole erasure in one go.
            let erased = voronka_domain::repo::personal_data::erase_within(
                stack.state.store.as_ref(),
                stack.outbox.as_ref(),
                &stack.state.secrets.token_keys,
                &contact_id,
                now,
                usize::MAX,
            )
            .await
            .map_err(|e| anyhow::anyhow!("erasing {contact_id}: {e}"))?;
            println!("{}", serde_json::to_string_pretty(&erased)?);
            Ok(())
        }
        Command::Spend { action: SpendAction::Import { file, folder } } => {
            let stack = open_existing(folder)?;
            match kpi_cli::import_spend(&stack, &file).await {
                Ok(outcome) => {
                    let dates: Vec<String> = outcome.dates.iter().map(|d| d.to_string()).collect();
                    println!("{} spend row(s) upserted for {}", outcome.upserted, dates.join(", "));
                    Ok(())
                }
                Err(error) => match error.downcast_ref::<kpi_cli::SpendFileErrors>() {
                    Some(errors) => {
                        eprint!("{errors}");
                        std::process::exit(1);
                    }
                    None => Err(error),
                },
            }
        }
        Command::Kpi { from, to, group_by, attribution, json, csv, folder } => {
            let stack = open_existing(folder)?;
            let query =
                kpi_cli::query(&stack, from.as_deref(), to.as_deref(), group_by.as_deref(), attribution.as_deref())?;
            let report = kpi_cli::report(&stack, &query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if csv {
                print!("{}", report.rows_csv());
            } else {
                let by_channel = match query.group_by {
                    voronka_domain::kpi::GroupBy::Channel => None,
                    _ => Some(kpi_cli::channel_report(&stack, &query).await?),
                };
                print!("{}", kpi_cli::render_tables(&report, by_channel.as_ref()));
            }
            Ok(())
        }
        Command::Rollup { kind, folder } => {
            let stack = open_existing(folder)?;
            let kind = match kind {
                RollupChoice::Hourly => RollupKind::Hourly,
                RollupChoice::Nightly => RollupKind::Nightly,
            };
            let outcome = kpi_cli::run_rollup(&stack, kind).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(())
        }
        Command::Sending { action } => {
            use voronka_domain::sending::reputation;
            let (resume, folder) = match action {
                SendingAction::Status { folder } => (false, folder),
                SendingAction::Resume { folder } => (true, folder),
            };
            let stack = open_existing(folder)?;
            let store = stack.state.store.as_ref();
            let settings = &stack.state.campaigns.settings.sending.reputation;
            let now = stack.state.clock.now();
            let status = if resume {
                reputation::resume_by_operator(store, settings, now).await
            } else {
                reputation::evaluate(store, settings, now).await
            }
            .map_err(|e| anyhow::anyhow!("the reputation guard: {e}"))?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(())
        }
    }
}
