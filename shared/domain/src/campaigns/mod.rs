//! Marketer-editable content: settings and forms, parsed from files and checked as a whole.
//!
//! Every problem is reported with its file, line and field; a broken file stops start-up with
//! that message instead of failing later at run time.

mod bot_references;
pub mod form;
pub mod settings;
pub mod templates;

use std::collections::BTreeMap;
use std::fmt;

use crate::file_errors::{CampaignError, line_of_key};
pub use form::{ConsentDefinition, FieldDefinition, FieldType, FormDefinition};
pub use settings::{SendingSettings, Settings};
pub use templates::{TemplateDefinition, TemplateSet};

/// The lead-scoring rules' file, at the top of the campaigns folder.
pub const SCORING_FILE: &str = "scoring.toml";

/// All problems found, so a marketer fixes them in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignErrors(pub Vec<CampaignError>);

impl fmt::Display for CampaignErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CampaignErrors {}

/// A campaign file: its path relative to the campaigns folder, and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// The loaded, checked content of a campaigns folder.
#[derive(Debug, Clone)]
pub struct Campaigns {
    pub settings: Settings,
    pub forms: BTreeMap<String, FormDefinition>,
    pub templates: BTreeMap<String, TemplateDefinition>,
    pub journeys: BTreeMap<String, crate::journeys::Journey>,
    pub bots: BTreeMap<String, crate::bots::BotScript>,
    /// `scoring.toml`; without the file nobody is scored.
    pub scoring: Option<crate::scoring::ScoringRules>,
}

impl Campaigns {
    /// Parses and checks every file: `settings.toml` (required), `scoring.toml` (optional),
    /// `forms/`, `templates/`, `journeys/` and `bots/`, and the references between them.
    pub fn load(files: &[SourceFile]) -> Result<Campaigns, CampaignErrors> {
        let mut errors = oversized(files);
        if !errors.is_empty() {
            return Err(CampaignErrors(errors));
        }
        let settings = match files.iter().find(|f| f.path == "settings.toml") {
            Some(file) => match Settings::parse(&file.path, &file.text) {
                Ok(settings) => Some(settings),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            },
            None => {
                errors.push(CampaignError {
                    file: "settings.toml".into(),
                    line: None,
                    field: "settings.toml".into(),
                    message: "the campaigns folder has no settings.toml".into(),
                });
                None
            }
        };
        let forms =
            load_folder(files, "forms", &mut errors, |file| FormDefinition::parse(&file.path, &file.text), |f| &f.id);
        let default_locale = settings.as_ref().map_or("en", |s| s.default_locale.as_str()).to_string();
        let templates = load_folder(
            files,
            "templates",
            &mut errors,
            |file| TemplateDefinition::parse(&file.path, &file.text, &default_locale),
            |t| &t.id,
        );
        let template_ids: std::collections::BTreeSet<String> = templates.keys().cloned().collect();
        let segment_ids: std::collections::BTreeSet<String> =
            settings.as_ref().map(|s| s.segments.definitions.keys().cloned().collect()).unwrap_or_default();
        let journeys = load_folder(
            files,
            "journeys",
            &mut errors,
            |file| crate::journeys::Journey::parse(&file.path, &file.text, &template_ids, &segment_ids),
            |j| &j.id,
        );
        for form in forms.values() {
            if let Some(journey) = &form.journey
                && !journeys.contains_key(journey)
            {
                errors.push(CampaignError {
                    file: format!("forms/{}.toml", form.id),
                    line: None,
                    field: "journey".into(),
                    message: format!("`{journey}` is not a journey in journeys/"),
                });
            }
        }
        let bots = load_folder(
            files,
            "bots",
            &mut errors,
            |file| {
                let mut script = crate::bots::BotScript::parse(&file.path, &file.text)?;
                bot_references::check(&file.path, &file.text, &mut script, &forms, &journeys)?;
                Ok(script)
            },
            |b| &b.id,
        );
        let scoring = files.iter().find(|f| f.path == SCORING_FILE).and_then(|file| {
            crate::scoring::ScoringRules::parse(&file.path, &file.text).map_err(|mut e| errors.append(&mut e)).ok()
        });
        if errors.is_empty() {
            let settings = settings.expect("settings parsed without errors");
            Ok(Campaigns { settings, forms, templates, journeys, bots, scoring })
        } else {
            Err(CampaignErrors(errors))
        }
    }

    /// Every template compiled, ready to render.
    pub fn template_set(&self) -> TemplateSet {
        TemplateSet::new(self.templates.clone(), &self.settings.default_locale)
    }

    /// Loads every `.toml` file below a folder on disk: at most `MAX_FILES` files of at most
    /// `MAX_FILE_BYTES` each, in folders at most `MAX_FOLDER_DEPTH` deep (a link loop ends there),
    /// so no folder makes `voronka validate` read without end.
    pub fn load_dir(dir: &std::path::Path) -> Result<Campaigns, CampaignErrors> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        let problem = |file: String, field: &str, message: String| CampaignError {
            file,
            line: None,
            field: field.into(),
            message,
        };
        let mut pending = vec![(dir.to_path_buf(), 0)];
        while let Some((current, depth)) = pending.pop() {
            let relative =
                |path: &std::path::Path| path.strip_prefix(dir).unwrap_or(path).to_string_lossy().replace('\\', "/");
            if depth > MAX_FOLDER_DEPTH {
                let message = format!("folders nest at most {MAX_FOLDER_DEPTH} deep (is a link pointing back up?)");
                errors.push(problem(relative(&current), "folder", message));
                continue;
            }
            let entries = match std::fs::read_dir(&current) {
                Ok(entries) => entries,
                Err(e) => {
                    let message = format!("cannot read the campaigns folder: {e}");
                    errors.push(problem(current.display().to_string(), "folder", message));
                    continue;
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push((path, depth + 1));
                } else if path.extension().is_some_and(|ext| ext == "toml") {
                    if files.len() == MAX_FILES {
                        let message = format!("a campaigns folder holds at most {MAX_FILES} .toml files");
                        errors.push(problem(dir.display().to_string(), "folder", message));
                        return Err(CampaignErrors(errors));
                    }
                    match read_bounded(&path) {
                        Ok(text) => files.push(SourceFile { path: relative(&path), text }),
                        Err(message) => errors.push(problem(relative(&path), "file", message)),
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(CampaignErrors(errors));
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Campaigns::load(&files)
    }
}

/// The largest campaign file accepted. The shipped ones are under 10 KB: a file this large is a
/// mistake (or an attack on the loader), refused before it is parsed.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// The most `.toml` files a campaigns folder may hold.
pub const MAX_FILES: usize = 1000;
/// How deep folders may nest below the campaigns folder.
pub const MAX_FOLDER_DEPTH: usize = 4;

fn too_large(size: u64) -> String {
    format!("is {size} bytes; a campaign file holds at most {MAX_FILE_BYTES} bytes")
}

/// A file's text, read no further than one byte past the limit whatever its size.
fn read_bounded(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > MAX_FILE_BYTES as u64 {
        return Err(too_large(size));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| format!("is not UTF-8 text: {e}"))
}

/// Files over `MAX_FILE_BYTES`, each named: none of them is parsed.
fn oversized(files: &[SourceFile]) -> Vec<CampaignError> {
    (files.iter().filter(|f| f.text.len() > MAX_FILE_BYTES))
        .map(|f| CampaignError {
            file: f.path.clone(),
            line: None,
            field: "file".into(),
            message: too_large(f.text.len() as u64),
        })
        .collect()
}

/// Parses every `<folder>/*.toml` file with `parse`, checks that each id matches its file name,
/// and collects the problems into `errors`.
fn load_folder<T>(
    files: &[SourceFile],
    folder: &str,
    errors: &mut Vec<CampaignError>,
    parse: impl Fn(&SourceFile) -> Result<T, Vec<CampaignError>>,
    id: impl Fn(&T) -> &String,
) -> BTreeMap<String, T> {
    let prefix = format!("{folder}/");
    let mut loaded = BTreeMap::new();
    for file in files.iter().filter(|f| f.path.starts_with(&prefix) && f.path.ends_with(".toml")) {
        match parse(file) {
            Ok(definition) => {
                let expected = file.path.trim_start_matches(&prefix).trim_end_matches(".toml");
                if id(&definition) != expected {
                    errors.push(CampaignError {
                        file: file.path.clone(),
                        line: line_of_key(&file.text, "id"),
                        field: "id".into(),
                        message: format!("must match the file name `{expected}`"),
                    });
                }
                loaded.insert(id(&definition).clone(), definition);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(scoring: Option<&str>) -> Vec<SourceFile> {
        let mut files = vec![SourceFile {
            path: "settings.toml".into(),
            text: include_str!("../../../campaigns/settings.toml").into(),
        }];
        if let Some(text) = scoring {
            files.push(SourceFile { path: SCORING_FILE.into(), text: text.into() });
        }
        files
    }

    #[test]
    fn scoring_is_optional_and_a_broken_file_is_reported_with_file_line_and_field() {
        assert!(Campaigns::load(&files(None)).unwrap().scoring.is_none(), "no file: nobody is scored");
        let shipped = include_str!("../../../campaigns/scoring.toml");
        let rules = Campaigns::load(&files(Some(shipped))).unwrap().scoring.expect("the shipped rules load");
        assert_eq!((rules.thresholds.mql, rules.thresholds.sql), (50, 80));
        let broken = shipped.replace("half_life_days = 14", "half_life_days = 0");
        let errors = Campaigns::load(&files(Some(&broken))).unwrap_err().to_string();
        assert!(errors.starts_with("scoring.toml:6: `half_life_days`:"), "{errors}");
    }
}
