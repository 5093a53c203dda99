//! A sync's [`ReferralFilter`] as Partner Center's OData query.

use chrono::SecondsFormat;

use crate::ports::ReferralFilter;

fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn any_of(field: &str, values: &[String]) -> Option<String> {
    let clauses: Vec<String> = values
        .iter()
        .map(|v| format!("{field} eq {}", quoted(v)))
        .collect();
    match clauses.len() {
        0 => None,
        1 => clauses.into_iter().next(),
        _ => Some(format!("({})", clauses.join(" or "))),
    }
}

/// The `$filter` expression of `filter`, if any condition applies.
pub fn filter_expression(filter: &ReferralFilter) -> Option<String> {
    let clauses: Vec<String> = [
        any_of("direction", &filter.directions),
        any_of("status", &filter.statuses),
        filter.updated_since.map(|t| {
            format!(
                "updatedDateTime ge {}",
                t.to_rfc3339_opts(SecondsFormat::Millis, true)
            )
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!clauses.is_empty()).then(|| clauses.join(" and "))
}

/// Query parameters of the first page, oldest update first so a sync can resume by watermark.
pub fn query_pairs(filter: &ReferralFilter) -> Vec<(&'static str, String)> {
    let mut pairs = vec![
        ("$top", filter.page_size.max(1).to_string()),
        ("$orderby", "updatedDateTime asc".to_owned()),
    ];
    if let Some(expression) = filter_expression(filter) {
        pairs.push(("$filter", expression));
    }
    pairs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn when_nothing_is_filtered_should_send_only_top_and_order() {
        let filter = ReferralFilter {
            page_size: 100,
            ..Default::default()
        };
        assert_eq!(filter_expression(&filter), None);
        assert_eq!(
            query_pairs(&filter),
            vec![
                ("$top", "100".to_owned()),
                ("$orderby", "updatedDateTime asc".to_owned())
            ]
        );
    }

    #[test]
    fn when_directions_statuses_and_watermark_are_set_should_combine_them() {
        let filter = ReferralFilter {
            directions: vec!["Incoming".into()],
            statuses: vec!["New".into(), "Active".into()],
            updated_since: Some(Utc.with_ymd_and_hms(2026, 10, 29, 8, 1, 12).unwrap()),
            page_size: 200,
        };
        assert_eq!(
            filter_expression(&filter).unwrap(),
            "direction eq 'Incoming' and (status eq 'New' or status eq 'Active') and updatedDateTime ge 2026-10-29T08:01:12.000Z"
        );
    }

    #[test]
    fn when_a_value_holds_a_quote_should_double_it() {
        let filter = ReferralFilter {
            statuses: vec!["O'Brien".into()],
            page_size: 1,
            ..Default::default()
        };
        assert_eq!(filter_expression(&filter).unwrap(), "status eq 'O''Brien'");
    }
}
