//! Lead → Dataverse columns, as data: embedded `rules/dynamics-mapping.toml`, overridable by a file
//! (`HUNTER_MAPPING_FILE`). Column names, option-set values, length limits, fallbacks and the
//! score/segment tables live in the file; this module only applies them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The compiled-in mapping (Hunter's defaults).
pub const EMBEDDED_MAPPING_TOML: &str = include_str!("../../rules/dynamics-mapping.toml");

static EMBEDDED: LazyLock<DynamicsMapping> = LazyLock::new(
    || match DynamicsMapping::from_toml_str(EMBEDDED_MAPPING_TOML) {
        Ok(mapping) => mapping,
        // A compile-time constant pinned by tests.
        Err(err) => panic!("embedded rules/dynamics-mapping.toml is invalid: {err}"),
    },
);

/// The Hunter fields a column may read (see [`MappingInput`]).
pub const HUNTER_FIELDS: [&str; 25] = [
    "domain",
    "referral_name",
    "subject",
    "company_name",
    "website_url",
    "contact_email",
    "contact_first_name",
    "contact_last_name",
    "notes",
    "deal_value",
    "currency",
    "score",
    "priority",
    "provider",
    "tenant_size",
    "segment",
    "referral_id",
    "referral_ids",
    "referral_count",
    "latest_status",
    "source",
    "opportunity_stage",
    "lead_source",
    "commercial_segment",
    "priority_category",
];

/// A mapping file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read mapping file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid mapping TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid mapping: {0}")]
    Invalid(String),
    /// A lead lacks every source of a required column (not retryable: the data must change).
    #[error("no value for required column {column} (sources: {sources})")]
    MissingRequired { column: String, sources: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    entity_set: String,
    key_column: String,
    column: Vec<ColumnRule>,
    #[serde(default)]
    opportunity_stage: Vec<StageRow>,
    #[serde(default)]
    lead_source_by_segment: BTreeMap<String, i64>,
    /// Push the customer's contact details even when the referral says the customer did not
    /// consent to be contacted (`consent.consentToContact: false`); default: they stay out.
    #[serde(default)]
    contacts_without_consent: bool,
    /// The records of an accepted referral; absent sections mean "no opportunities".
    account: Option<TableMapping>,
    contact: Option<TableMapping>,
    opportunity: Option<TableMapping>,
}

/// The columns of one more table (account, contact, opportunity), keyed like leads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    pub entity_set: String,
    /// The navigation property that links this record to the account (e.g. `customerid_account`).
    pub account_link: Option<String>,
    /// The navigation property that links this record to the contact (e.g. `parentcontactid`).
    pub contact_link: Option<String>,
    pub column: Vec<ColumnRule>,
}

/// One Dataverse column and where its value comes from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnRule {
    pub name: String,
    pub source: Option<String>,
    #[serde(default)]
    pub fallback: Vec<String>,
    pub default: Option<Value>,
    pub max_length: Option<usize>,
    /// Text value → option-set integer.
    pub options: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageRow {
    min_score: u8,
    stage: String,
}

/// A validated mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicsMapping {
    file: MappingFile,
}

/// The Hunter side of a push: field name (one of [`HUNTER_FIELDS`]) → value. Absent or null
/// fields have no value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappingInput {
    fields: BTreeMap<&'static str, Value>,
}

impl MappingInput {
    /// Sets `field` (a name from [`HUNTER_FIELDS`]; others are ignored) unless `value` is null or "".
    pub fn set(&mut self, field: &str, value: impl Into<Value>) -> &mut Self {
        let value = value.into();
        let empty = value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty());
        if let Some(name) = HUNTER_FIELDS.iter().find(|f| **f == field) {
            if !empty {
                self.fields.insert(name, value);
            }
        }
        self
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }
}

impl Default for DynamicsMapping {
    fn default() -> Self {
        EMBEDDED.clone()
    }
}

impl DynamicsMapping {
    /// Whether contact details go to Dynamics when the customer did not consent to be contacted.
    pub fn contacts_without_consent(&self) -> bool {
        self.file.contacts_without_consent
    }

    pub fn embedded() -> &'static DynamicsMapping {
        &EMBEDDED
    }

    /// Parses and checks a mapping: known Hunter fields only, option sets only on text sources,
    /// unique column names.
    pub fn from_toml_str(s: &str) -> Result<Self, MappingError> {
        let mut file: MappingFile = toml::from_str(s)?;
        let invalid = |why: String| Err(MappingError::Invalid(why));
        if file.entity_set.trim().is_empty() || file.key_column.trim().is_empty() {
            return invalid("entity_set and key_column must be set".to_owned());
        }
        check_columns(&file.column)?;
        for table in [&file.account, &file.contact, &file.opportunity]
            .into_iter()
            .flatten()
        {
            if table.entity_set.trim().is_empty() {
                return invalid("every table needs an entity_set".to_owned());
            }
            check_columns(&table.column)?;
        }
        file.opportunity_stage
            .sort_by_key(|row| std::cmp::Reverse(row.min_score));
        Ok(Self { file })
    }
}

/// Unique names, a source or default each, known Hunter fields only, no zero length, none of
/// the columns sellers own ([`super::outcome::SELLER_OWNED_COLUMNS`]).
fn check_columns(columns: &[ColumnRule]) -> Result<(), MappingError> {
    let invalid = |why: String| Err(MappingError::Invalid(why));
    let mut seen = std::collections::BTreeSet::new();
    for column in columns {
        if super::outcome::is_seller_owned(&column.name) {
            return invalid(format!(
                "column {} belongs to sellers (status, owner): Hunter never pushes it",
                column.name
            ));
        }
        if !seen.insert(column.name.as_str()) {
            return invalid(format!("column {} is mapped twice", column.name));
        }
        if column.source.is_none() && column.default.is_none() {
            return invalid(format!(
                "column {} needs a source or a default",
                column.name
            ));
        }
        for field in column.source.iter().chain(&column.fallback) {
            if !HUNTER_FIELDS.contains(&field.as_str()) {
                return invalid(format!(
                    "column {} reads unknown Hunter field {field:?}",
                    column.name
                ));
            }
        }
        if column.max_length == Some(0) {
            return invalid(format!("column {} has max_length 0", column.name));
        }
    }
    Ok(())
}

impl DynamicsMapping {
    /// The embedded mapping, or the file at `path`.
    pub fn load(path: Option<&Path>) -> Result<Self, MappingError> {
        match path {
            None => Ok(Self::embedded().clone()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| MappingError::Io {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml_str(&text)
            }
        }
    }

    pub fn entity_set(&self) -> &str {
        &self.file.entity_set
    }

    /// The alternate-key column the lead is upserted by.
    pub fn key_column(&self) -> &str {
        &self.file.key_column
    }

    pub fn columns(&self) -> &[ColumnRule] {
        &self.file.column
    }

    /// The opportunity stage of a score: the first row (highest `min_score` first) it reaches.
    pub fn opportunity_stage(&self, score: u8) -> Option<&str> {
        self.file
            .opportunity_stage
            .iter()
            .find(|row| score >= row.min_score)
            .map(|row| row.stage.as_str())
    }

    /// The lead-source option value of a segment.
    pub fn lead_source(&self, segment: &str) -> Option<i64> {
        self.file.lead_source_by_segment.get(segment).copied()
    }

    /// The Dataverse record for `input`: each column from its first source with a value (or its
    /// default), option sets translated, strings cut to `max_length`. Columns without a value are
    /// left out; a required one is an error.
    pub fn map(&self, input: &MappingInput) -> Result<Map<String, Value>, MappingError> {
        let mut input = input.clone();
        if let Some(score) = input
            .get("score")
            .and_then(Value::as_u64)
            .and_then(|s| u8::try_from(s).ok())
        {
            if let Some(stage) = self.opportunity_stage(score) {
                input.set("opportunity_stage", stage);
            }
        }
        if let Some(source) = input
            .get("segment")
            .and_then(Value::as_str)
            .and_then(|s| self.lead_source(s))
        {
            input.set("lead_source", source);
        }
        map_columns(&self.file.column, &input)
    }

    /// The account, contact and opportunity tables (all `None` when the file has no account or
    /// no opportunity section).
    pub fn opportunity_tables(
        &self,
    ) -> Option<(&TableMapping, Option<&TableMapping>, &TableMapping)> {
        Some((
            self.file.account.as_ref()?,
            self.file.contact.as_ref(),
            self.file.opportunity.as_ref()?,
        ))
    }
}

/// One record from `columns`: each from its first source with a value (or its default), option
/// sets translated, strings cut to `max_length`; a required column without a value is an error.
pub fn map_columns(
    columns: &[ColumnRule],
    input: &MappingInput,
) -> Result<Map<String, Value>, MappingError> {
    let mut record = Map::new();
    for column in columns {
        let found = column
            .source
            .iter()
            .chain(&column.fallback)
            .find_map(|field| input.get(field));
        let value = match (found, &column.options) {
            (Some(Value::String(text)), Some(options)) => {
                options.get(text).map(|n| Value::from(*n))
            }
            (Some(value), _) => Some(value.clone()),
            (None, _) => None,
        }
        .or_else(|| column.default.clone());
        match value {
            Some(Value::String(text)) => {
                let text = match column.max_length {
                    Some(max) => truncate_chars(&text, max),
                    None => text,
                };
                record.insert(column.name.clone(), Value::String(text));
            }
            Some(value) => {
                record.insert(column.name.clone(), value);
            }
            None if column.required => {
                let sources: Vec<&str> = column
                    .source
                    .iter()
                    .chain(&column.fallback)
                    .map(String::as_str)
                    .collect();
                return Err(MappingError::MissingRequired {
                    column: column.name.clone(),
                    sources: sources.join(", "),
                });
            }
            None => {}
        }
    }
    Ok(record)
}

/// `text` cut to at most `max` characters (Dataverse limits count characters).
fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn contoso() -> MappingInput {
        let mut input = MappingInput::default();
        input
            .set("domain", "contoso.com")
            .set("subject", "Hunter: contoso.com")
            .set("company_name", "Contoso Ltd")
            .set("website_url", "https://contoso.com")
            .set("contact_email", "ada@contoso.com")
            .set("contact_first_name", "Ada")
            .set("deal_value", 50000.0)
            .set("score", 85)
            .set("segment", "GREENFIELD")
            .set("referral_id", "ref-1")
            .set("source", "PartnerCenter");
        input
    }

    #[test]
    fn when_mapping_a_lead_with_the_defaults_should_fill_hunters_columns() {
        let record = DynamicsMapping::embedded().map(&contoso()).unwrap();
        assert_eq!(record["subject"], "Hunter: contoso.com");
        assert_eq!(record["companyname"], "Contoso Ltd");
        assert_eq!(record["websiteurl"], "https://contoso.com");
        assert_eq!(record["emailaddress1"], "ada@contoso.com");
        assert_eq!(record["firstname"], "Ada");
        assert_eq!(record["estimatedamount"], 50000.0);
        assert_eq!(record["leadsourcecode"], 4);
        assert_eq!(record["hnt_finalscore"], 85);
        assert_eq!(record["hnt_referralid"], "ref-1");
        assert!(!record.contains_key("description"), "no notes, no column");
        assert_eq!(DynamicsMapping::embedded().key_column(), "hnt_hunterkey");
        assert_eq!(DynamicsMapping::embedded().entity_set(), "leads");
    }

    #[test]
    fn when_the_contact_has_no_last_name_should_fall_back_to_the_company_then_the_domain() {
        let record = DynamicsMapping::embedded().map(&contoso()).unwrap();
        assert_eq!(record["lastname"], "Contoso Ltd");
        let mut no_company = MappingInput::default();
        no_company
            .set("domain", "contoso.com")
            .set("subject", "Hunter: contoso.com")
            .set("company_name", "  ");
        let record = DynamicsMapping::embedded().map(&no_company).unwrap();
        assert_eq!(record["lastname"], "contoso.com");
        assert_eq!(record["companyname"], "contoso.com");
    }

    #[test]
    fn when_a_required_column_has_no_source_should_refuse_the_lead() {
        let err = DynamicsMapping::embedded()
            .map(&MappingInput::default())
            .unwrap_err();
        assert!(
            matches!(err, MappingError::MissingRequired { ref column, .. } if column == "subject"),
            "{err}"
        );
    }

    #[test]
    fn when_strings_exceed_the_column_limit_should_cut_them_at_a_character_boundary() {
        let mut input = contoso();
        input.set("notes", "ü".repeat(2500)).set(
            "contact_first_name",
            "Ädelheid-Maximiliane-Wilhelmina-Friederike-Charlotte",
        );
        let record = DynamicsMapping::embedded().map(&input).unwrap();
        assert_eq!(
            record["description"].as_str().unwrap().chars().count(),
            2000
        );
        assert_eq!(record["firstname"].as_str().unwrap().chars().count(), 50);
        assert_eq!(truncate_chars("abc", 5), "abc");
    }

    #[test]
    fn when_an_org_renames_columns_and_option_sets_in_the_file_should_follow_without_code_changes()
    {
        let file = r#"
            entity_set = "leads"
            key_column = "new_hunterid"
            [[column]]
            name = "new_company"
            source = "company_name"
            max_length = 5
            [[column]]
            name = "new_segmentcode"
            source = "segment"
            options = { GREENFIELD = 100000001, NO_GO = 100000009 }
            [[column]]
            name = "new_stage"
            source = "opportunity_stage"
            [[column]]
            name = "leadsourcecode"
            source = "lead_source"
            default = 8
            [[opportunity_stage]]
            min_score = 0
            stage = "cold"
            [[opportunity_stage]]
            min_score = 70
            stage = "hot"
            [lead_source_by_segment]
            GREENFIELD = 10
        "#;
        let mapping = DynamicsMapping::from_toml_str(file).unwrap();
        let record = mapping.map(&contoso()).unwrap();
        assert_eq!(mapping.key_column(), "new_hunterid");
        assert_eq!(
            Value::Object(record.clone()),
            json!({"new_company": "Conto", "new_segmentcode": 100000001, "new_stage": "hot", "leadsourcecode": 10})
        );
        let mut cold = contoso();
        cold.set("score", 10).set("segment", "UNLISTED");
        let record = mapping.map(&cold).unwrap();
        assert_eq!(record["new_stage"], "cold");
        assert_eq!(
            record["leadsourcecode"], 8,
            "an unlisted segment keeps the default"
        );
        assert!(
            !record.contains_key("new_segmentcode"),
            "no option for UNLISTED"
        );
    }

    #[test]
    fn when_the_file_is_wrong_should_say_what_is_wrong() {
        let cases = [
            (
                "entity_set = \"leads\"\nkey_column = \"k\"\n[[column]]\nname = \"a\"\nsource = \"no_such_field\"",
                "unknown Hunter field",
            ),
            (
                "entity_set = \"leads\"\nkey_column = \"k\"\n[[column]]\nname = \"a\"",
                "source or a default",
            ),
            (
                "entity_set = \"leads\"\nkey_column = \"k\"\n[[column]]\nname = \"a\"\nsource = \"domain\"\n[[column]]\nname = \"a\"\nsource = \"domain\"",
                "twice",
            ),
            (
                "entity_set = \"\"\nkey_column = \"k\"\ncolumn = []",
                "must be set",
            ),
            (
                "entity_set = \"leads\"\nkey_column = \"k\"\ncolum = []",
                "unknown field",
            ),
            // The conflict rule: status and owner are the sellers'; no mapping may push them.
            (
                "entity_set = \"leads\"\nkey_column = \"k\"\n[[column]]\nname = \"statuscode\"\ndefault = 1",
                "belongs to sellers",
            ),
            (
                "entity_set = \"leads\"\nkey_column = \"k\"\n[[column]]\nname = \"ownerid@odata.bind\"\nsource = \"domain\"",
                "belongs to sellers",
            ),
            (
                "entity_set = \"leads\"\nkey_column = \"k\"\ncolumn = []\n[opportunity]\nentity_set = \"opportunities\"\n[[opportunity.column]]\nname = \"StateCode\"\ndefault = 1",
                "belongs to sellers",
            ),
        ];
        for (text, why) in cases {
            let err = DynamicsMapping::from_toml_str(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err} should say {why}");
        }
        assert!(matches!(
            DynamicsMapping::load(Some(Path::new("/no/such/mapping.toml"))),
            Err(MappingError::Io { .. })
        ));
    }

    #[test]
    fn when_scores_cross_the_default_thresholds_should_pick_the_stage() {
        let mapping = DynamicsMapping::embedded();
        assert_eq!(mapping.opportunity_stage(80), Some("3-Propose"));
        assert_eq!(mapping.opportunity_stage(79), Some("2-Develop"));
        assert_eq!(mapping.opportunity_stage(0), Some("1-Qualify"));
        assert_eq!(
            mapping.lead_source("Migration"),
            None,
            "the embedded mapping keeps the segment in a column of its own"
        );
    }
}
