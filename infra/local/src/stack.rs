//! Assembles the suite on embedded adapters: one data folder holding the database and the
//! installation's secrets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use lead_capture::AppState;
use voronka_domain::campaigns::Campaigns;
use voronka_domain::deps::{Deps, Ports};
use voronka_domain::ports::{Clock, Faults, Faulty, IdGenerator, Mailer, Meter, Metered, Queue, RandomIds, Store};
use voronka_domain::signing::{AdminKeyDigest, MIN_ADMIN_KEY_CHARS, Secrets, keyed_digest};
use voronka_embedded::{Durability, Embedded, OutboxMailer};

use crate::inspect::{EmbeddedInspect, Inspect};

pub const DATABASE_FILE: &str = "voronka.db";
pub const SECRETS_FILE: &str = "secrets.json";
pub const OUTBOX_DIR: &str = "outbox";
/// The admin routes' bearer key (`Authorization: Bearer <key>`), owner-readable only.
pub const ADMIN_KEY_FILE: &str = "admin-key";

/// Where the campaign files come from: bundled at build time, or a folder being edited.
pub fn load_campaigns(folder: Option<&Path>) -> Result<Campaigns> {
    match folder {
        Some(dir) => Campaigns::load_dir(dir).map_err(|e| anyhow::anyhow!("campaign files are invalid:\n{e}")),
        None => voronka_campaigns::bundled().map_err(|e| anyhow::anyhow!("bundled campaign files are invalid:\n{e}")),
    }
}

/// The installation's secrets from `<data-dir>/secrets.json`, created with random keys on first
/// start (readable by the owner only). The shop back end signs events with `events_key` from it.
/// To rotate, replace a key by a ring whose first key signs: `"events_keys": [{"id": "k2", "key":
/// "..."}, {"id": "k1", "key": "<the old key>"}]` (likewise `token_keys`).
/// serde quotes a value of the wrong type in its message (`invalid type: string "<key>"`): every
/// string of the file long enough to be a key is blanked out of the message.
fn without_secret_values(message: &str, text: &str) -> String {
    fn strings<'a>(value: &'a serde_json::Value, into: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::String(s) => into.push(s),
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, into)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, into)),
            _ => {}
        }
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        // Not even JSON: serde names only the position, never a value.
        return message.to_string();
    };
    let mut found = Vec::new();
    strings(&value, &mut found);
    let mut message = message.to_string();
    for secret in found.into_iter().filter(|s| s.len() >= 8) {
        message = message.replace(secret, "<redacted>");
    }
    message
}

pub fn load_or_create_secrets(data_dir: &Path) -> Result<Secrets> {
    let path = data_dir.join(SECRETS_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let secrets: Secrets = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid secrets JSON: {}",
                path.display(),
                without_secret_values(&e.to_string(), &text)
            )
        })?;
        secrets.validate().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(secrets);
    }
    // Always the operating system's randomness, never the id generator: a seeded demo writing
    // into a folder must not leave keys anyone can recompute for a later `voronka serve`.
    let secrets = Secrets::new(RandomIds.random_hex(32), RandomIds.random_hex(32));
    write_private(&path, &serde_json::to_string_pretty(&secrets)?)?;
    Ok(secrets)
}

/// The admin key from `<data-dir>/admin-key`, created with 256 random bits on first start like the
/// other secrets. The router keeps only its digest (`AdminKeyDigest`).
pub fn load_or_create_admin_key(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(ADMIN_KEY_FILE);
    if path.exists() {
        // A key others on the machine can read is no key: refuse to start rather than serve
        // admin routes behind it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)?.permissions().mode();
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "{}: readable by others (mode {:o}); make it private with `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                );
            }
        }
        let key = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = key.trim().to_string();
        if key.len() < MIN_ADMIN_KEY_CHARS || !key.chars().all(|c| c.is_ascii_graphic()) {
            anyhow::bail!(
                "{}: the admin key must be at least {MIN_ADMIN_KEY_CHARS} printable characters",
                path.display()
            );
        }
        return Ok(key);
    }
    let key = RandomIds.random_hex(32);
    write_private(&path, &format!("{key}\n"))?;
    Ok(key)
}

pub(crate) fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// The suite on one data folder.
pub struct Stack {
    pub state: AppState,
    /// The embedded database, when the stack runs on it (`Stack::open`); `embedded()` for tests.
    pub embedded: Option<Embedded>,
    /// Reads back what a run left, below the ports (the demo's end-of-run steps and invariants).
    pub inspect: Arc<dyn Inspect>,
    /// The queue adapter itself, without faults or metering: what reaches the queues from outside
    /// Voronka's code (SES feedback through SNS) arrives on it.
    pub adapter_queue: Arc<dyn Queue>,
    pub data_dir: Option<PathBuf>,
    /// Where sent mail is as `.eml` files: the embedded stack's mail service writes there; a
    /// stack on another mail service gets its sent mail exported there (`Inspect`).
    pub outbox: Arc<OutboxMailer>,
    pub sender: sender::SenderDeps,
    pub evaluator: trigger_evaluator::EvaluatorDeps,
    pub scheduler: cart_scheduler::SchedulerDeps,
    /// The admin routes' bearer key: in `<data-dir>/admin-key`, or random per in-memory stack.
    pub admin_key: String,
    /// The faults injected into the store, queue and mailer the handlers see (`inspect`,
    /// `adapter_queue` and `outbox` stay the real, fault-free adapters); the workers run
    /// invocations through it.
    pub faults: Option<Arc<Faults>>,
    /// What the local consumers and scheduler lived through (failed and killed invocations).
    pub worker_stats: Arc<crate::workers::WorkerStats>,
    /// Counts the AWS requests the stack's work would make (`StackOptions::metering`).
    pub meter: Option<Arc<Meter>>,
}

pub struct StackOptions {
    /// None: a private in-memory database (the demo's default).
    pub data_dir: Option<PathBuf>,
    /// Wraps the store, the queues and the mailer in `Metered` adapters counting into this meter.
    pub metering: Option<Arc<Meter>>,
    pub campaigns_dir: Option<PathBuf>,
    pub public_base_url: Option<String>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    /// Inject these faults into the store, queue and mailer the handlers use (the demo's
    /// `--faults`); none everywhere else.
    pub faults: Option<Arc<Faults>>,
}

/// The adapters a stack runs on, as given: the stack wraps the store, queue and mailer in the
/// faults and the meter its options ask for.
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    /// None: the outbox folder is the mail service (the local stack's mail catcher).
    pub mailer: Option<Arc<dyn Mailer>>,
    pub inspect: Arc<dyn Inspect>,
}

impl Stack {
    pub fn open(options: StackOptions) -> Result<Stack> {
        Stack::open_with_durability(options, Durability::PowerCut)
    }

    /// As `open`, with what the data folder's commits survive (the demo's scratch data need not
    /// survive a power cut).
    pub fn open_with_durability(options: StackOptions, durability: Durability) -> Result<Stack> {
        let campaigns = load_campaigns(options.campaigns_dir.as_deref())?;
        let embedded = match &options.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating the data folder {}", dir.display()))?;
                Embedded::open_with(&dir.join(DATABASE_FILE), options.clock.clone(), durability)?
            }
            None => Embedded::in_memory(options.clock.clone()),
        };
        let adapters = Adapters {
            store: embedded.store.clone(),
            queue: embedded.queue.clone(),
            mailer: None,
            inspect: Arc::new(EmbeddedInspect::new(&embedded)),
        };
        Stack::assemble(options, campaigns, adapters, Some(embedded))
    }

    /// The suite on other adapters (the AWS ones against moto, in a test): the same handlers,
    /// consumers and checks. The data folder, if any, holds the secrets and the outbox only.
    pub fn with_adapters(options: StackOptions, adapters: Adapters) -> Result<Stack> {
        let campaigns = load_campaigns(options.campaigns_dir.as_deref())?;
        if let Some(dir) = &options.data_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating the data folder {}", dir.display()))?;
        }
        Stack::assemble(options, campaigns, adapters, None)
    }

    /// The embedded database of a stack opened on it.
    ///
    /// # Panics
    /// On a stack built `with_adapters`: a caller reaching for the embedded database there is a
    /// test written for the embedded stack only.
    pub fn embedded(&self) -> &Embedded {
        self.embedded.as_ref().expect("a stack on the embedded adapters")
    }

    fn assemble(
        options: StackOptions,
        campaigns: Campaigns,
        adapters: Adapters,
        embedded: Option<Embedded>,
    ) -> Result<Stack> {
        let (secrets, admin_key) = match &options.data_dir {
            Some(dir) => (load_or_create_secrets(dir)?, load_or_create_admin_key(dir)?),
            None => {
                let secrets = Secrets::new(options.ids.random_hex(32), options.ids.random_hex(32));
                // Derived from the fresh secrets rather than drawn from `ids`, so a seeded demo's ids
                // stay what they were before admin keys existed.
                let admin_key = keyed_digest(secrets.token_key(), "voronka in-memory admin key");
                (secrets, admin_key)
            }
        };
        let public_base_url = options
            .public_base_url
            .unwrap_or_else(|| campaigns.settings.public_base_url.clone())
            .trim_end_matches('/')
            .to_string();
        let outbox_dir = match &options.data_dir {
            Some(dir) => dir.join(OUTBOX_DIR),
            None => {
                // A private folder per in-memory stack, so stacks in one process never share mail.
                static STACKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = STACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir = std::env::temp_dir().join(format!("voronka-outbox-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                dir
            }
        };
        let outbox = Arc::new(
            OutboxMailer::new(outbox_dir.clone(), options.clock.clone())
                .with_context(|| format!("creating the outbox {}", outbox_dir.display()))?,
        );
        let templates = Arc::new(campaigns.template_set());
        let adapter_queue = adapters.queue.clone();
        let mut store = adapters.store;
        let mut queue = adapters.queue;
        let mut mailer: Arc<dyn Mailer> = adapters.mailer.unwrap_or_else(|| outbox.clone());
        if let Some(faults) = &options.faults {
            store = Arc::new(Faulty::new(store, faults.clone()));
            queue = Arc::new(Faulty::new(queue, faults.clone()));
            mailer = Arc::new(Faulty::new(mailer, faults.clone()));
        }
        // Outside the faults, so every call the code makes counts, one a fault then fails too
        // (AWS bills those as well).
        if let Some(meter) = &options.metering {
            store = Arc::new(Metered::new(store, meter.clone()));
            queue = Arc::new(Metered::new(queue, meter.clone()));
            mailer = Arc::new(Metered::new(mailer, meter.clone()));
        }
        let ports = Ports { store, queue, clock: options.clock };
        let shared = Deps { ports: ports.clone(), campaigns: Arc::new(campaigns), secrets: Arc::new(secrets) };
        let sender = sender::SenderDeps {
            shared: shared.clone(),
            mailer,
            templates,
            public_base_url: public_base_url.clone(),
            rate: Arc::new(sender::rate::RateGate::per_second(
                shared.campaigns.settings.sending.max_send_rate_per_second,
            )),
            reputation: Default::default(),
        };
        let evaluator = trigger_evaluator::EvaluatorDeps { shared: shared.clone() };
        let scheduler = ports;
        let admin_access = lead_capture::admin::AdminAccess::BearerKey(AdminKeyDigest::of(&admin_key));
        let state = AppState { shared, ids: options.ids, public_base_url, admin_access, mail_copies: outbox.clone() };
        Ok(Stack {
            state,
            embedded,
            inspect: adapters.inspect,
            adapter_queue,
            data_dir: options.data_dir,
            outbox,
            sender,
            evaluator,
            scheduler,
            admin_key,
            faults: options.faults,
            worker_stats: Arc::default(),
            meter: options.metering,
        })
    }

    pub fn default_ids() -> Arc<dyn IdGenerator> {
        Arc::new(RandomIds)
    }
}
