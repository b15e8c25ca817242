//! The campaign files of this folder, bundled at build time.

use voronka_domain::campaigns::{CampaignErrors, Campaigns, SourceFile};

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

pub fn bundled_files() -> Vec<SourceFile> {
    FILES.iter().map(|(path, text)| SourceFile { path: path.to_string(), text: text.to_string() }).collect()
}

/// The bundled content, parsed and checked.
pub fn bundled() -> Result<Campaigns, CampaignErrors> {
    Campaigns::load(&bundled_files())
}

/// [`bundled`] with the errors as one message: what a Lambda's set-up reports.
pub fn load_bundled() -> Result<Campaigns, String> {
    bundled().map_err(|e| format!("campaign files are invalid:\n{e}"))
}

/// The folder these files come from, for tools that edit or validate them in place.
pub fn source_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_campaign_files_are_valid() {
        let campaigns = super::bundled().unwrap_or_else(|e| panic!("campaign files are invalid:\n{e}"));
        assert!(campaigns.forms.contains_key("newsletter"));
        assert!(campaigns.forms.contains_key("consultation"));
        assert!(campaigns.forms["newsletter"].double_opt_in);
        assert!(!campaigns.forms["consultation"].double_opt_in);
        assert!(campaigns.bots.contains_key("b2b_demo"));
        assert!(campaigns.bots.contains_key("course_picker"));
    }
}
