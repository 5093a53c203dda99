//! Custom metrics as CloudWatch embedded metric format (EMF) log lines.
//!
//! One [`Metrics`] value becomes one JSON line on stdout in the shape of the EMF specification
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>):
//!
//! ```json
//! {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"Hunter",
//!   "Dimensions":[["Function"]],"Metrics":[{"Name":"Fetched","Unit":"Count"}]}]},
//!  "Function":"fetch-referrals","Fetched":12}
//! ```
//!
//! CloudWatch Logs turns such a line into the metric `Hunter / Fetched {Function=fetch-referrals}`
//! (no `cloudwatch:PutMetricData` permission, no call on the request path). `template.yaml`
//! alarms on these metrics, so their names live here as constants ([`fetch_referrals`],
//! [`ingest_referral`], [`push_dynamics`]) and the tests check the template names only them.
//!
//! Emitting is off unless the process runs on Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set) or
//! `HUNTER_METRICS` turns it on (`1`, `true`, `on`, `yes`); `HUNTER_METRICS=0|false|off|no` turns
//! it off everywhere. So local runs and tests print nothing. [`Metrics::emit_to`] writes to any
//! writer regardless, and [`MetricsSink::memory`] keeps the lines for tests.
//!
//! ```
//! use hunter_core::metrics::{Metrics, fetch_referrals as m};
//! Metrics::new(m::FUNCTION).count(m::FETCHED, 12).count(m::ENQUEUED, 12).emit();
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Number, Value, json};

/// The CloudWatch namespace of every Hunter metric.
pub const NAMESPACE: &str = "Hunter";
/// The one dimension every metric carries; its value is the function's name (below).
pub const FUNCTION_DIMENSION: &str = "Function";
/// The variable that turns emitting on or off explicitly.
pub const ENABLE_VARIABLE: &str = "HUNTER_METRICS";
/// Lambda sets it in every function's environment.
const LAMBDA_VARIABLE: &str = "AWS_LAMBDA_FUNCTION_NAME";
/// Metric definitions one EMF directive may hold.
const MAX_METRICS: usize = 100;

/// fetch-referrals: one line per invocation (a run or a continuation of one).
pub mod fetch_referrals {
    pub const FUNCTION: &str = "fetch-referrals";
    /// Referrals read from Partner Center.
    pub const FETCHED: &str = "Fetched";
    /// Referrals accepted by the referrals queue.
    pub const ENQUEUED: &str = "Enqueued";
    /// Partner Center pages read.
    pub const PAGES_FETCHED: &str = "PagesFetched";
    /// 1 when the run failed, 0 when it did not (emit both: the alarm sums it).
    pub const SYNC_RUNS_FAILED: &str = "SyncRunsFailed";
    /// Every metric of the function.
    pub const ALL: [&str; 4] = [FETCHED, ENQUEUED, PAGES_FETCHED, SYNC_RUNS_FAILED];
}

/// ingest-referral: one line per SQS batch.
pub mod ingest_referral {
    pub const FUNCTION: &str = "ingest-referral";
    /// Referrals stored (new or changed).
    pub const INGESTED: &str = "Ingested";
    pub const ELIGIBLE: &str = "Eligible";
    pub const SKIPPED: &str = "Skipped";
    /// Messages stored as `invalid_payload` (acknowledged, never retried).
    pub const INVALID_PAYLOAD: &str = "InvalidPayload";
    /// Store writes that failed transiently.
    pub const STORE_FAILURES: &str = "StoreFailures";
    /// Messages returned as `batchItemFailures`.
    pub const MESSAGES_FAILED: &str = "MessagesFailed";
    /// Failed messages on their last receive (`HUNTER_MAX_RECEIVE_COUNT`): SQS moves them to
    /// the DLQ.
    pub const DEAD_LETTERED: &str = "DeadLettered";
    /// Every metric of the function.
    pub const ALL: [&str; 7] = [
        INGESTED,
        ELIGIBLE,
        SKIPPED,
        INVALID_PAYLOAD,
        STORE_FAILURES,
        MESSAGES_FAILED,
        DEAD_LETTERED,
    ];
}

/// push-dynamics: one line per SQS batch.
pub mod push_dynamics {
    pub const FUNCTION: &str = "push-dynamics";
    /// Leads upserted in Dataverse.
    pub const PUSHED: &str = "Pushed";
    pub const PUSH_FAILED: &str = "PushFailed";
    /// Dataverse answers 429 (service-protection limits).
    pub const THROTTLED: &str = "Throttled";
    /// Messages made visible again later (Retry-After).
    pub const REQUEUED: &str = "Requeued";
    /// Failed messages on their last receive (`HUNTER_MAX_RECEIVE_COUNT`).
    pub const DEAD_LETTERED: &str = "DeadLettered";
    /// Every metric of the function.
    pub const ALL: [&str; 5] = [PUSHED, PUSH_FAILED, THROTTLED, REQUEUED, DEAD_LETTERED];
}

/// pull-dynamics' metrics.
pub mod pull_dynamics {
    pub const FUNCTION: &str = "pull-dynamics";
    /// Leads whose CRM state a pull changed.
    pub const LEADS_UPDATED: &str = "CrmLeadsUpdated";
    /// Referrals closed in Partner Center for a CRM outcome.
    pub const MIRRORED: &str = "OutcomesMirrored";
    /// Referrals Partner Center refused to close for good (or given up on).
    pub const MIRROR_FAILED: &str = "OutcomeMirrorsFailed";
    /// Pulls that did not complete.
    pub const PULLS_FAILED: &str = "CrmPullsFailed";
    pub const ALL: [&str; 4] = [LEADS_UPDATED, MIRRORED, MIRROR_FAILED, PULLS_FAILED];
}

/// CloudWatch units (the subset Hunter uses; the names are the EMF `Unit` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    CountPerSecond,
    Milliseconds,
    Seconds,
    Bytes,
    Percent,
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::CountPerSecond => "Count/Second",
            Self::Milliseconds => "Milliseconds",
            Self::Seconds => "Seconds",
            Self::Bytes => "Bytes",
            Self::Percent => "Percent",
            Self::None => "None",
        }
    }
}

/// Whether metrics are written: `HUNTER_METRICS` when it says on or off, else whether the
/// process runs on Lambda.
pub fn enabled() -> bool {
    decide(
        std::env::var(LAMBDA_VARIABLE).ok().as_deref(),
        std::env::var(ENABLE_VARIABLE).ok().as_deref(),
    )
}

fn decide(lambda_function: Option<&str>, flag: Option<&str>) -> bool {
    match flag.map(|f| f.trim().to_ascii_lowercase()).as_deref() {
        Some("1" | "true" | "on" | "yes") => true,
        Some("0" | "false" | "off" | "no") => false,
        _ => lambda_function.is_some_and(|name| !name.trim().is_empty()),
    }
}

/// The metrics of one unit of work (an invocation, a batch) of one function: one EMF line.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    function: String,
    values: Vec<(String, Number, Unit)>,
    properties: Map<String, Value>,
}

impl Metrics {
    /// Metrics of `function` (the `Function` dimension's value, e.g. [`fetch_referrals::FUNCTION`]).
    pub fn new(function: impl Into<String>) -> Self {
        Self {
            function: function.into(),
            values: Vec::new(),
            properties: Map::new(),
        }
    }

    /// A count (unit `Count`), written as an integer.
    pub fn count(self, name: &str, value: u64) -> Self {
        self.number(name, Number::from(value), Unit::Count)
    }

    /// Any value with its unit; a value that is not finite is left out (JSON has no NaN).
    pub fn value(self, name: &str, value: f64, unit: Unit) -> Self {
        match Number::from_f64(value) {
            Some(number) => self.number(name, number, unit),
            None => self,
        }
    }

    /// A duration in milliseconds.
    pub fn duration(self, name: &str, duration: std::time::Duration) -> Self {
        self.value(name, duration.as_secs_f64() * 1000.0, Unit::Milliseconds)
    }

    /// A member of the line that is not a metric (e.g. `runId`), for searching the logs. Names
    /// of metrics, `Function` and `_aws` are reserved and ignored here.
    pub fn property(mut self, name: &str, value: impl Into<Value>) -> Self {
        if !self.reserved(name) {
            self.properties.insert(name.to_owned(), value.into());
        }
        self
    }

    /// Whether no metric was added (an empty line is not written).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn number(mut self, name: &str, value: Number, unit: Unit) -> Self {
        if name.is_empty() || name == "_aws" || name == FUNCTION_DIMENSION {
            return self;
        }
        // The same name twice: the later value wins (one member per name in the line).
        if let Some(slot) = self.values.iter_mut().find(|(n, _, _)| n == name) {
            slot.1 = value;
            slot.2 = unit;
        } else if self.values.len() < MAX_METRICS {
            self.values.push((name.to_owned(), value, unit));
        }
        self.properties.remove(name);
        self
    }

    fn reserved(&self, name: &str) -> bool {
        name == "_aws"
            || name == FUNCTION_DIMENSION
            || self.values.iter().any(|(n, _, _)| n == name)
    }

    /// The EMF document, stamped `timestamp_ms` (milliseconds since the Unix epoch).
    pub fn to_json(&self, timestamp_ms: u64) -> Value {
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut root = self.properties.clone();
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[FUNCTION_DIMENSION]],
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert(
            FUNCTION_DIMENSION.to_owned(),
            Value::String(self.function.clone()),
        );
        for (name, value, _) in &self.values {
            root.insert(name.clone(), Value::Number(value.clone()));
        }
        Value::Object(root)
    }

    /// The EMF line stamped now, without the newline.
    pub fn to_line(&self) -> String {
        self.to_json(now_ms()).to_string()
    }

    /// Writes the line and a newline to `out` in one write, whether or not emitting is enabled
    /// (nothing when no metric was added).
    pub fn emit_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let mut line = self.to_line();
        line.push('\n');
        out.write_all(line.as_bytes())?;
        out.flush()
    }

    /// Writes the line on stdout when [`enabled`]; a failed write is ignored (metrics never fail
    /// the work they describe).
    pub fn emit(self) {
        MetricsSink::from_env().emit(&self);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Where metric lines go: a handler can take one as a dependency, so that tests see its metrics.
#[derive(Debug, Clone, Default)]
pub struct MetricsSink(SinkKind);

#[derive(Debug, Clone, Default)]
enum SinkKind {
    #[default]
    Off,
    Stdout,
    Memory(Arc<Mutex<Vec<String>>>),
}

impl MetricsSink {
    /// Stdout when [`enabled`], else nothing.
    pub fn from_env() -> Self {
        if enabled() {
            Self::stdout()
        } else {
            Self::off()
        }
    }

    pub fn stdout() -> Self {
        Self(SinkKind::Stdout)
    }

    pub fn off() -> Self {
        Self(SinkKind::Off)
    }

    /// Keeps every line (see [`MetricsSink::lines`]).
    pub fn memory() -> Self {
        Self(SinkKind::Memory(Arc::default()))
    }

    /// The lines a [`MetricsSink::memory`] sink kept (none for the others).
    pub fn lines(&self) -> Vec<String> {
        match &self.0 {
            SinkKind::Memory(lines) => lines.lock().map(|l| l.clone()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    pub fn emit(&self, metrics: &Metrics) {
        match &self.0 {
            SinkKind::Off => {}
            SinkKind::Stdout => {
                let _ = metrics.emit_to(&mut std::io::stdout().lock());
            }
            SinkKind::Memory(lines) => {
                if !metrics.is_empty() {
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(metrics.to_line());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Value {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.ends_with('\n'), "one line: {text:?}");
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        serde_json::from_str(text.trim_end()).unwrap()
    }

    #[test]
    fn emits_one_line_in_the_emf_shape() {
        let mut out = Vec::new();
        Metrics::new(fetch_referrals::FUNCTION)
            .count(fetch_referrals::FETCHED, 12)
            .count(fetch_referrals::ENQUEUED, 11)
            .duration("DurationMs", std::time::Duration::from_millis(1500))
            .property("runId", "run-1")
            .emit_to(&mut out)
            .unwrap();
        let doc = parse(&out);

        let aws = &doc["_aws"];
        let timestamp = aws["Timestamp"].as_u64().unwrap();
        assert!(timestamp > 1_600_000_000_000, "milliseconds: {timestamp}");
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let directive = &directives[0];
        assert_eq!(directive["Namespace"], "Hunter");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "Fetched", "Unit": "Count"},
                {"Name": "Enqueued", "Unit": "Count"},
                {"Name": "DurationMs", "Unit": "Milliseconds"},
            ])
        );
        // Every dimension and metric the directive names is a member of the root.
        assert_eq!(doc["Function"], "fetch-referrals");
        assert_eq!(doc["Fetched"], json!(12));
        assert!(doc["Fetched"].is_u64(), "counts are integers");
        assert_eq!(doc["Enqueued"], json!(11));
        assert_eq!(doc["DurationMs"].as_f64(), Some(1500.0));
        assert_eq!(doc["runId"], "run-1");
        assert_eq!(doc.as_object().unwrap().len(), 6);
    }

    #[test]
    fn the_example_of_the_brief_round_trips() {
        let doc = Metrics::new("fetch-referrals")
            .count("Fetched", 12)
            .to_json(1_700_000_000_000);
        let expected: Value = serde_json::from_str(
            r#"{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"Hunter",
            "Dimensions":[["Function"]],"Metrics":[{"Name":"Fetched","Unit":"Count"}]}]},
            "Function":"fetch-referrals","Fetched":12}"#,
        )
        .unwrap();
        assert_eq!(doc, expected);
    }

    #[test]
    fn a_repeated_name_keeps_the_last_value_and_reserved_names_are_ignored() {
        let doc = Metrics::new(push_dynamics::FUNCTION)
            .count(push_dynamics::PUSHED, 1)
            .count(push_dynamics::PUSHED, 3)
            .count("Function", 9)
            .count("_aws", 9)
            .property("Pushed", "not a metric")
            .property("Function", "other")
            .value("Ratio", f64::NAN, Unit::Percent)
            .to_json(1);
        assert_eq!(doc["Pushed"], json!(3));
        assert_eq!(doc["Function"], "push-dynamics");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "Pushed", "Unit": "Count"}])
        );
        assert!(doc.get("Ratio").is_none());
    }

    #[test]
    fn nothing_is_written_without_metrics() {
        let mut out = Vec::new();
        Metrics::new("ingest-referral")
            .property("batch", 1)
            .emit_to(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn on_lambda_or_when_asked_only() {
        assert!(!decide(None, None));
        assert!(!decide(Some(" "), None));
        assert!(decide(Some("stack-fetch-referrals"), None));
        assert!(decide(Some("f"), Some("")));
        assert!(decide(None, Some("1")));
        assert!(decide(None, Some("TRUE")));
        assert!(!decide(Some("f"), Some("off")));
        assert!(!decide(Some("f"), Some("0")));
    }

    #[test]
    fn a_memory_sink_keeps_lines_and_an_off_sink_drops_them() {
        let sink = MetricsSink::memory();
        let metrics = Metrics::new(ingest_referral::FUNCTION).count(ingest_referral::INGESTED, 4);
        sink.emit(&metrics);
        sink.emit(&Metrics::new(ingest_referral::FUNCTION));
        let lines = sink.lines();
        assert_eq!(lines.len(), 1);
        let doc: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(doc["Ingested"], json!(4));

        let off = MetricsSink::off();
        off.emit(&metrics);
        assert!(off.lines().is_empty());
    }

    #[test]
    fn metric_names_are_unique_per_function() {
        for names in [
            &fetch_referrals::ALL[..],
            &ingest_referral::ALL[..],
            &push_dynamics::ALL[..],
            &pull_dynamics::ALL[..],
        ] {
            let mut sorted = names.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{names:?}");
        }
    }

    /// Every alarm of template.yaml on the `Hunter` namespace names a metric and a function
    /// defined here (alarms on a name the code never emits would never fire).
    #[test]
    fn the_template_alarms_only_on_metrics_the_code_emits() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        let Ok(template) = std::fs::read_to_string(path) else {
            return; // not in the repository (a packaged crate)
        };
        let lines: Vec<&str> = template.lines().map(str::trim).collect();
        let known = |function: &str, metric: &str| match function {
            fetch_referrals::FUNCTION => fetch_referrals::ALL.contains(&metric),
            ingest_referral::FUNCTION => ingest_referral::ALL.contains(&metric),
            push_dynamics::FUNCTION => push_dynamics::ALL.contains(&metric),
            pull_dynamics::FUNCTION => pull_dynamics::ALL.contains(&metric),
            _ => false,
        };
        let mut checked = 0;
        for (i, line) in lines.iter().enumerate() {
            if *line != format!("Namespace: {NAMESPACE}") {
                continue;
            }
            // Namespace, MetricName, Dimensions, - Name: Function, Value: <function>.
            let block = &lines[i..(i + 8).min(lines.len())];
            let field = |key: &str| {
                block
                    .iter()
                    .find_map(|l| l.strip_prefix(key))
                    .map(str::trim)
                    .unwrap_or_default()
            };
            let metric = field("MetricName:");
            let function = field("Value:");
            assert_eq!(field("- Name:"), FUNCTION_DIMENSION, "alarm on {metric}");
            assert!(
                known(function, metric),
                "template.yaml alarms on {NAMESPACE}/{metric} of {function:?}, which the code \
                 does not define"
            );
            checked += 1;
        }
        assert!(
            template.contains(fetch_referrals::SYNC_RUNS_FAILED),
            "template.yaml alarms on failed sync runs"
        );
        assert!(checked > 0, "no alarm on the {NAMESPACE} namespace");
    }
}
