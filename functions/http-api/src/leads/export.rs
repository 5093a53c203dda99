//! `GET /leads/export.csv`: every lead `GET /leads` would list with the same filters and order,
//! as CSV, page by page as the store answers them.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use futures_util::stream::{self, StreamExt as _};
use hunter_core::ports::{MAX_PAGE_SIZE, Page};
use hunter_domain::model::Lead;
use hunter_domain::rules::Rules;

use super::LeadParams;
use crate::ApiState;
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::ApiQuery;

/// The columns, in order (the names of the lead fields in the JSON API).
pub(crate) const COLUMNS: [&str; 20] = [
    "domain",
    "companyName",
    "provider",
    "tenantSize",
    "score",
    "segment",
    "priority",
    "priorityCategory",
    "priorityCategoryLabel",
    "sellerAction",
    "commercialSegment",
    "commercialHeat",
    "scanState",
    "scannedAt",
    "referralCount",
    "syncStatus",
    "dynamicsId",
    "lastSyncedAt",
    "lastError",
    "updatedAt",
];

/// Where the export stands between two chunks.
enum Next {
    Rows(Page<Lead>),
    Fetch(String),
    Done,
}

/// `GET /leads/export.csv`: every lead matching the filters, in the order asked for, as CSV
/// (`cursor` and `limit` are ignored: the export is whole).
#[utoipa::path(get, path = "/leads/export.csv", tag = "leads", params(LeadParams),
    responses(
        (status = 200, description = "The leads as CSV, one header row and one row per lead",
            content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), CommonErrors))]
pub(crate) async fn export_csv(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<LeadParams>,
) -> Result<Response, ApiError> {
    let mut query = params.query()?;
    query.limit = Some(MAX_PAGE_SIZE);
    query.cursor = None;
    // The first page before the answer starts: a store that is down is a 503, not a cut file.
    let first = state.store.list_leads(&query).await?;
    let header = Bytes::from(csv_rows([COLUMNS.map(str::to_owned)]));
    let rows = stream::unfold(Next::Rows(first), move |next| {
        let (store, rules, mut query) = (state.store.clone(), state.rules.clone(), query.clone());
        async move {
            let page = match next {
                Next::Done => return None,
                Next::Rows(page) => page,
                Next::Fetch(cursor) => {
                    query.cursor = Some(cursor);
                    match store.list_leads(&query).await {
                        Ok(page) => page,
                        Err(err) => {
                            tracing::error!(event = "api_export_failed", error = %err);
                            return Some((Err(std::io::Error::other(err)), Next::Done));
                        }
                    }
                }
            };
            let chunk = csv_rows(page.items.iter().map(|lead| row(&rules, lead)));
            let next = page.next_cursor.map_or(Next::Done, Next::Fetch);
            Some((Ok(Bytes::from(chunk)), next))
        }
    });
    let body = stream::once(async move { Ok::<_, std::io::Error>(header) }).chain(rows);
    let filename = format!(
        "attachment; filename=\"hunter-leads-{}.csv\"",
        hunter_domain::clock::now().format("%Y%m%d-%H%M")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// One lead's cells, in [`COLUMNS`] order.
fn row(rules: &Rules, lead: &Lead) -> [String; COLUMNS.len()] {
    let text = |value: Option<String>| value.unwrap_or_default();
    let time = |value: Option<chrono::DateTime<chrono::Utc>>| {
        text(value.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)))
    };
    let category = lead
        .commercial_segment
        .map(|commercial| rules.scoring().priority_category(commercial));
    [
        lead.domain.to_string(),
        text(lead.company_name.clone()),
        text(lead.provider.clone()),
        text(lead.tenant_size.map(|t| t.to_string())),
        text(lead.score.map(|s| s.to_string())),
        text(lead.segment.map(|s| s.to_string())),
        text(lead.priority.map(|p| p.to_string())),
        text(lead.priority_category.map(|c| c.to_string())),
        text(category.map(|c| c.label.clone())),
        text(category.map(|c| c.seller_action.clone())),
        text(lead.commercial_segment.map(|c| c.to_string())),
        text(lead.commercial_heat.map(|h| h.to_string())),
        lead.scan_state.as_str().to_owned(),
        time(lead.scanned_at),
        lead.referral_count.to_string(),
        lead.sync_status.as_str().to_owned(),
        text(lead.dynamics_id.clone()),
        time(lead.last_synced_at),
        text(lead.last_error.clone()),
        time(Some(lead.updated_at)),
    ]
}

/// `rows` as CSV (RFC 4180 quoting), every cell made safe to open in a spreadsheet.
fn csv_rows<const N: usize>(rows: impl IntoIterator<Item = [String; N]>) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        // Writing to a Vec cannot fail, and every row has the same length.
        let _ = writer.write_record(row.iter().map(|cell| neutralize(cell).into_owned()));
    }
    writer.into_inner().unwrap_or_default()
}

/// A cell a spreadsheet would read as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return) gets a leading `'`, so it is shown as text (OWASP, CSV injection).
pub(crate) fn neutralize(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use proptest::string::string_regex;

    use super::*;

    const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

    /// Cell text: anything, often starting like a formula or holding CSV's own characters.
    fn cell() -> impl Strategy<Value = String> {
        let any_text = |max: usize| string_regex(&format!("(?s).{{0,{max}}}")).unwrap();
        prop_oneof![
            2 => any_text(60),
            1 => any_text(2_000),
            2 => (
                prop::sample::select(vec![
                    "=", "+", "-", "@", "\t", "\r", "\n", "\r\n", "\"", "'", ",", ";", " =",
                    "\u{feff}", "\u{ff1d}", "=cmd|' /C calc'!A0", "=HYPERLINK(\"http://x\")",
                    "@SUM(1+1)*cmd|' /C calc'!A0", "\"=1\"", "-", "",
                ]),
                any_text(40),
            )
                .prop_map(|(start, rest)| format!("{start}{rest}")),
            1 => string_regex("[=+@\t\r\n\",-]{0,8}").unwrap(),
        ]
    }

    fn rows() -> impl Strategy<Value = Vec<[String; COLUMNS.len()]>> {
        prop::collection::vec(
            prop::collection::vec(cell(), COLUMNS.len())
                .prop_map(|cells| cells.try_into().unwrap()),
            0..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever the cells hold, the export reads back as the same grid: one header row and
        /// one row per lead of exactly the columns, each cell its neutralized text, and no cell
        /// starts like a formula.
        #[test]
        fn properties_any_cells_read_back_as_the_same_neutralized_grid(rows in rows()) {
            let header = [COLUMNS.map(str::to_owned)];
            let mut bytes = csv_rows(header.clone());
            bytes.extend(csv_rows(rows.clone()));
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(bytes.as_slice());
            let read: Vec<csv::StringRecord> = reader
                .records()
                .collect::<Result<_, _>>()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(read.len(), rows.len() + 1);
            for (record, row) in read.iter().zip(header.iter().chain(&rows)) {
                prop_assert_eq!(record.len(), COLUMNS.len());
                for (got, cell) in record.iter().zip(row) {
                    let want = neutralize(cell);
                    prop_assert_eq!(got, want.as_ref());
                    prop_assert!(!got.starts_with(FORMULA_STARTS), "{:?}", got);
                }
            }
        }

        /// Neutralizing leaves text alone or puts one `'` before it, and never starts like a
        /// formula.
        #[test]
        fn properties_neutralized_text_never_starts_like_a_formula(text in cell()) {
            let safe = neutralize(&text);
            prop_assert!(!safe.starts_with(FORMULA_STARTS));
            let quoted = format!("'{text}");
            prop_assert!(safe == text || *safe == quoted, "{:?}", safe);
        }
    }

    #[test]
    fn when_a_cell_starts_like_a_formula_should_be_shown_as_text() {
        for hostile in [
            "=HYPERLINK(\"http://x\")",
            "+1+2",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(neutralize(hostile), format!("'{hostile}"), "{hostile:?}");
        }
        for plain in ["Contoso", "contoso.com", "a=b", "", "P1"] {
            assert_eq!(neutralize(plain), plain);
        }
    }

    #[test]
    fn when_cells_hold_separators_quotes_or_newlines_should_quote_them() {
        let text = String::from_utf8(csv_rows([[
            "a,b".to_owned(),
            "say \"hi\"".to_owned(),
            "two\nlines".to_owned(),
        ]]))
        .unwrap_or_default();
        assert_eq!(text, "\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\n");
    }
}
