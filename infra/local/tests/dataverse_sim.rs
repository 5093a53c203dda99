//! The Dataverse Web API simulator over real HTTP.
#![allow(clippy::unwrap_used)]

use hunter_local::sim::control::SimControl as _;
use std::time::Duration;

use hunter_local::sim::dataverse::{
    CODE_CONCURRENCY_LIMIT, CODE_DUPLICATE, CODE_EXECUTION_LIMIT, CODE_REQUESTS_LIMIT,
    CODE_VALIDATION, DataverseConfig, DataverseSim, Faults, Limits, RunningDataverse,
};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

async fn start(config: DataverseConfig) -> RunningDataverse {
    DataverseSim::new(config)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

struct Client {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl Client {
    async fn new(dv: &RunningDataverse) -> Self {
        let http = reqwest::Client::new();
        let token = fetch_token(&http, dv, "sim-client-secret").await;
        assert_eq!(token.0, StatusCode::OK);
        Self {
            http,
            api: dv.api_url(),
            token: token.1["access_token"].as_str().unwrap().to_owned(),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/{path}", self.api))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
    }

    fn write(&self, method: Method, path: &str, body: &Value) -> RequestBuilder {
        self.request(method, path)
            .header("Content-Type", "application/json")
            .body(body.to_string())
    }
}

async fn fetch_token(
    http: &reqwest::Client,
    dv: &RunningDataverse,
    secret: &str,
) -> (StatusCode, Value) {
    let response = http
        .post(&dv.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sim-client-id"),
            ("client_secret", secret),
            ("scope", &format!("{}/.default", dv.base_url)),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap().to_owned(),
        body["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn when_token_is_missing_wrong_or_expired_should_answer_401() {
    let dv = start(DataverseConfig::default()).await;
    let http = reqwest::Client::new();
    let (status, body) = fetch_token(&http, &dv, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = fetch_token(&http, &dv, "sim-client-secret").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_u64());

    let client = Client::new(&dv).await;
    let ok = client.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let anonymous = http
        .get(format!("{}/leads", dv.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    dv.sim.expire_all_tokens();
    let expired = client.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert!(dv.sim.requests().iter().any(|r| !r.auth_ok));
}

#[tokio::test]
async fn when_upserting_by_key_twice_should_keep_one_record() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    let path = "leads(hnt_hunterkey='o''brien.com')";
    let first = c
        .write(
            Method::PATCH,
            path,
            &json!({"subject": "Hunter: o'brien.com", "lastname": "OB"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    let entity = first.headers()["OData-EntityId"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(entity.starts_with(&format!("{}/api/data/v9.2/leads(", dv.base_url)));
    let second = c
        .write(Method::PATCH, path, &json!({"subject": "Hunter: changed"}))
        .header("Prefer", "return=representation")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["subject"], "Hunter: changed");
    assert_eq!(body["lastname"], "OB");
    let records = dv.sim.records("leads");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["hnt_hunterkey"], "o'brien.com");
    assert!(entity.contains(records[0]["leadid"].as_str().unwrap()));

    // POST create: 204 + OData-EntityId, or 201 + body.
    let created = c
        .write(Method::POST, "accounts", &json!({"name": "Contoso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::NO_CONTENT);
    assert!(created.headers().contains_key("OData-EntityId"));
    let created = c
        .write(Method::POST, "contacts", &json!({"lastname": "Doe"}))
        .header("Prefer", "return=representation")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.unwrap();
    assert!(body["contactid"].is_string());
    assert!(body["@odata.etag"].as_str().unwrap().starts_with("W/\""));

    // GET by key and by id; missing → 404 with the error body.
    let by_key = c.request(Method::GET, path).send().await.unwrap();
    assert_eq!(by_key.status(), StatusCode::OK);
    let missing = c
        .request(Method::GET, "leads(hnt_hunterkey='nope')")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(missing).await.0, StatusCode::NOT_FOUND);
    let bad_key = c
        .request(Method::GET, "leads(other='x')")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(bad_key).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn when_conditional_headers_are_sent_should_honor_them() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    let body = json!({"subject": "s"});
    let update_only = c
        .write(Method::PATCH, "leads(hnt_hunterkey='a.com')", &body)
        .header("If-Match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(update_only.status(), StatusCode::NOT_FOUND);
    assert!(dv.sim.records("leads").is_empty());
    let create_only = c
        .write(Method::PATCH, "leads(hnt_hunterkey='a.com')", &body)
        .header("If-None-Match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(create_only.status(), StatusCode::NO_CONTENT);
    let again = c
        .write(Method::PATCH, "leads(hnt_hunterkey='a.com')", &body)
        .header("If-None-Match", "*")
        .send()
        .await
        .unwrap();
    let (status, _, message) = error_of(again).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(message, "A record with matching key values already exists.");
    let stale = c
        .write(Method::PATCH, "leads(hnt_hunterkey='a.com')", &body)
        .header("If-Match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let etag = dv.sim.records("leads")[0]["@odata.etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let fresh = c
        .write(Method::PATCH, "leads(hnt_hunterkey='a.com')", &body)
        .header("If-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::NO_CONTENT);
    assert_eq!(dv.sim.records("leads").len(), 1);
}

#[tokio::test]
async fn when_querying_should_filter_select_and_top() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    dv.sim.insert_record(
        "leads",
        json!({"subject": "by hand", "websiteurl": "https://www.contoso.com", "emailaddress1": "ann@contoso.com"}),
    );
    dv.sim.insert_record(
        "leads",
        json!({"subject": "O'Brien", "websiteurl": "https://obrien.com"}),
    );
    dv.sim.insert_record(
        "leads",
        json!({"subject": "other", "emailaddress1": "x@fabrikam.com"}),
    );
    let response = c
        .request(Method::GET, "leads")
        .query(&[
            (
                "$filter",
                "contains(websiteurl,'contoso.com') or contains(emailaddress1,'@contoso.com')",
            ),
            ("$select", "leadid,subject"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#leads(leadid,subject)")
    );
    let rows = body["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["subject"], "by hand");
    assert!(rows[0].get("websiteurl").is_none());
    assert!(rows[0]["leadid"].is_string());

    let quoted = c
        .request(Method::GET, "leads")
        .query(&[("$filter", "(subject eq 'O''Brien') and websiteurl ne null")])
        .send()
        .await
        .unwrap();
    let body: Value = quoted.json().await.unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 1);

    let top = c
        .request(Method::GET, "leads")
        .query(&[("$top", "2")])
        .send()
        .await
        .unwrap();
    let body: Value = top.json().await.unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 2);

    let bad = c
        .request(Method::GET, "leads")
        .query(&[("$filter", "subject equals 'x'")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let unknown = c.request(Method::GET, "widgets").send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn when_headers_are_missing_or_columns_too_long_should_answer_400() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    let no_version = c
        .http
        .get(format!("{}/leads", c.api))
        .bearer_auth(&c.token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let (status, _, message) = error_of(no_version).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("OData-MaxVersion"));
    let no_content_type = c
        .request(Method::POST, "leads")
        .body(json!({"subject": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(no_content_type.status(), StatusCode::BAD_REQUEST);

    let long = c
        .write(Method::POST, "leads", &json!({"subject": "x".repeat(301)}))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(long).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code, CODE_VALIDATION);
    assert!(message.contains("'subject'"), "{message}");
    let unknown_long = c
        .write(
            Method::POST,
            "leads",
            &json!({"hnt_notes": "x".repeat(4001)}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_long.status(), StatusCode::BAD_REQUEST);
    let fits = c
        .write(Method::POST, "leads", &json!({"subject": "x".repeat(300)}))
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), StatusCode::NO_CONTENT);
    assert_eq!(dv.sim.records("leads").len(), 1);
}

#[tokio::test]
async fn when_duplicate_detection_is_on_should_refuse_same_domain() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    dv.sim.insert_record(
        "leads",
        json!({"subject": "by hand", "emailaddress1": "ann@contoso.com"}),
    );
    let duplicate = c
        .write(
            Method::POST,
            "leads",
            &json!({"subject": "Hunter: contoso.com", "websiteurl": "https://contoso.com"}),
        )
        .header("MSCRM.SuppressDuplicateDetection", "false")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(duplicate).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code, CODE_DUPLICATE);
    // Detection off (the default): created.
    let created = c
        .write(
            Method::POST,
            "leads",
            &json!({"subject": "Hunter: contoso.com", "websiteurl": "https://contoso.com"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::NO_CONTENT);
    assert_eq!(dv.sim.records("leads").len(), 2);
}

#[tokio::test]
async fn when_limits_are_exceeded_should_answer_429_with_retry_after() {
    let dv = start(DataverseConfig {
        dop_hint: 7,
        ..DataverseConfig::default()
    })
    .await;
    let c = Client::new(&dv).await;
    dv.sim.set_limits(Limits {
        max_requests: 2,
        retry_after_secs: 9,
        ..Limits::default()
    });
    for _ in 0..2 {
        let ok = c.request(Method::GET, "leads").send().await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["x-ms-dop-hint"], "7");
        assert!(ok.headers().contains_key("x-ms-service-request-id"));
    }
    let throttled = c.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(throttled.headers()["Retry-After"], "9");
    assert_eq!(throttled.headers()["x-ms-dop-hint"], "7");
    let (status, code, _) = error_of(throttled).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code, CODE_REQUESTS_LIMIT);

    // Concurrency: one slow request in flight, a second one is refused at once.
    dv.sim.set_limits(Limits {
        max_concurrent: 1,
        ..Limits::default()
    });
    dv.sim.set_faults(Faults {
        latency_ms: 3000,
        ..Faults::default()
    });
    let slow = c.request(Method::GET, "leads").send();
    let quick = async {
        // Sent once the slow one is in flight, however long that takes on a loaded machine.
        let admitted = async {
            while dv.sim.in_flight() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), admitted)
            .await
            .expect("the slow request is admitted");
        c.request(Method::GET, "leads").send().await.unwrap()
    };
    let (slow, quick) = tokio::join!(slow, quick);
    assert_eq!(slow.unwrap().status(), StatusCode::OK);
    assert!(quick.headers().contains_key("Retry-After"));
    let (status, code, _) = error_of(quick).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code, CODE_CONCURRENCY_LIMIT);

    // Control route.
    let put = c
        .http
        .put(format!("{}/_sim/limits", dv.base_url))
        .body(json!({"max_requests": 100}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    assert_eq!(dv.sim.limits().max_requests, 100);
}

#[tokio::test]
async fn when_fail_next_is_set_should_answer_it_then_recover() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    let put = c
        .http
        .put(format!("{}/_sim/faults", dv.base_url))
        .body(json!({"fail_next": [503, 500], "retry_after_secs": 3}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let first = c.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.headers()["Retry-After"], "3");
    let second = c.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(second.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let third = c.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    let records = c
        .http
        .get(format!("{}/_sim/records/leads", dv.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(records.status(), StatusCode::OK);
    let recorded: Value = c
        .http
        .get(format!("{}/_sim/requests", dv.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> = recorded
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/api/"))
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![503, 500, 200]);
}

fn batch_body(boundary: &str, parts: &[String]) -> String {
    let mut body = String::new();
    for part in parts {
        body.push_str(&format!("--{boundary}\r\n{part}"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    body
}

fn http_part(content_id: Option<u32>, request_line: &str, body: Option<&Value>) -> String {
    let mut part =
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n".to_owned();
    if let Some(id) = content_id {
        part.push_str(&format!("Content-ID: {id}\r\n"));
    }
    part.push_str(&format!("\r\n{request_line} HTTP/1.1\r\n"));
    match body {
        Some(body) => part.push_str(&format!(
            "Content-Type: application/json; type=entry\r\n\r\n{body}\r\n"
        )),
        None => part.push_str("\r\n"),
    }
    part
}

fn changeset(boundary: &str, parts: &[String]) -> String {
    format!(
        "Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{}",
        batch_body(boundary, parts)
    )
}

#[tokio::test]
async fn when_a_changeset_fails_should_keep_nothing_from_it() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    let good = changeset(
        "changeset_a",
        &[
            http_part(
                Some(1),
                "POST /api/data/v9.2/accounts",
                Some(&json!({"name": "Contoso"})),
            ),
            http_part(
                Some(2),
                "PATCH /api/data/v9.2/leads(hnt_hunterkey='contoso.com')",
                Some(
                    &json!({"subject": "Hunter: contoso.com", "parentaccountid@odata.bind": "$1"}),
                ),
            ),
        ],
    );
    let bad = changeset(
        "changeset_b",
        &[
            http_part(
                Some(1),
                "POST /api/data/v9.2/leads",
                Some(&json!({"subject": "kept?"})),
            ),
            http_part(
                Some(2),
                "POST /api/data/v9.2/leads",
                Some(&json!({"subject": "x".repeat(301)})),
            ),
        ],
    );
    let get = http_part(None, "GET /api/data/v9.2/leads?$select=subject", None);
    let body = batch_body("batch_t1", &[good, bad, get]);
    let response = c
        .request(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=\"batch_t1\"")
        .header("Prefer", "odata.continue-on-error")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["Content-Type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("multipart/mixed; boundary=batchresponse_"));
    let text = response.text().await.unwrap();
    assert!(text.contains("HTTP/1.1 400 Bad Request"), "{text}");
    assert!(text.contains("changesetresponse_"), "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
    let leads = dv.sim.records("leads");
    assert_eq!(leads.len(), 1, "{leads:?}");
    assert_eq!(leads[0]["subject"], "Hunter: contoso.com");
    let accounts = dv.sim.records("accounts");
    assert_eq!(accounts.len(), 1);
    assert_eq!(leads[0]["_parentaccountid_value"], accounts[0]["accountid"]);

    // Without continue-on-error the batch stops at the failed change set: the GET never runs.
    let bad = changeset(
        "changeset_c",
        &[http_part(
            Some(1),
            "POST /api/data/v9.2/leads",
            Some(&json!({"subject": "x".repeat(301)})),
        )],
    );
    let get = http_part(None, "GET /api/data/v9.2/leads", None);
    let response = c
        .request(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=batch_t2")
        .body(batch_body("batch_t2", &[bad, get]))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("HTTP/1.1 400"), "{text}");
    assert!(!text.contains("HTTP/1.1 200"), "{text}");

    // A malformed batch is refused as a whole.
    let broken = c
        .request(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=batch_t3")
        .body("--batch_t3\r\nContent-Type: application/http\r\n\r\nPOST leads HTTP/1.1\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    assert_eq!(dv.sim.records("leads").len(), 1);
}

#[tokio::test]
async fn when_execution_time_is_spent_should_answer_429_with_its_code() {
    let dv = start(DataverseConfig {
        limits: Limits {
            max_execution: Duration::from_millis(1),
            retry_after_secs: 2,
            ..Limits::default()
        },
        faults: Faults {
            latency_ms: 5,
            ..Faults::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    let c = Client::new(&dv).await;
    let first = c.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = c.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(second.headers()["Retry-After"], "2");
    let (status, code, _) = error_of(second).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code, CODE_EXECUTION_LIMIT);
}

#[tokio::test]
async fn when_error_rate_is_one_should_fail_every_call_with_500_or_503() {
    let dv = start(DataverseConfig {
        faults: Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    let c = Client::new(&dv).await;
    for _ in 0..6 {
        let response = c.request(Method::GET, "leads").send().await.unwrap();
        assert!(
            matches!(response.status().as_u16(), 500 | 503),
            "{}",
            response.status()
        );
    }
}

#[tokio::test]
async fn when_upserting_by_id_should_create_with_that_id_then_update() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let path = format!("leads({id})");
    let created = c
        .write(Method::PATCH, &path, &json!({"subject": "a"}))
        .header("Prefer", "return=representation")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let updated = c
        .write(Method::PATCH, &path, &json!({"subject": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::NO_CONTENT);
    let got: Value = c
        .request(Method::GET, &path)
        .query(&[("$select", "subject")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["leadid"], id);
    assert_eq!(got["subject"], "b");
    assert_eq!(dv.sim.records("leads").len(), 1);
}

#[tokio::test]
async fn when_paging_should_follow_next_links_in_order() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    for name in ["c", "a", "e", "b", "d"] {
        dv.sim.insert_record("accounts", json!({"name": name}));
    }
    let mut url = format!("{}/accounts?$select=name&$orderby=name%20desc", c.api);
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let response = c
            .http
            .get(&url)
            .bearer_auth(&c.token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
            .header("Prefer", "odata.maxpagesize=2")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["Preference-Applied"],
            "odata.maxpagesize=2"
        );
        let body: Value = response.json().await.unwrap();
        pages += 1;
        for row in body["value"].as_array().unwrap() {
            names.push(row["name"].as_str().unwrap().to_owned());
        }
        match body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, vec!["e", "d", "c", "b", "a"]);
}

#[tokio::test]
async fn when_qualifying_a_lead_should_create_account_contact_opportunity() {
    let dv = start(DataverseConfig::default()).await;
    let c = Client::new(&dv).await;
    let id = dv.sim.insert_record(
        "leads",
        json!({"subject": "Hunter: contoso.com", "companyname": "Contoso", "lastname": "Doe", "emailaddress1": "d@contoso.com"}),
    );
    let path = format!("leads({id})/Microsoft.Dynamics.CRM.QualifyLead");
    let body = json!({"CreateAccount": true, "CreateContact": true, "CreateOpportunity": true, "Status": 3});
    let response = c.write(Method::POST, &path, &body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["value"].as_array().unwrap().len(), 3);
    let accounts = dv.sim.records("accounts");
    assert_eq!(accounts[0]["name"], "Contoso");
    let opportunities = dv.sim.records("opportunities");
    assert_eq!(
        opportunities[0]["_parentaccountid_value"],
        accounts[0]["accountid"]
    );
    assert_eq!(dv.sim.records("contacts")[0]["lastname"], "Doe");
    let lead = &dv.sim.records("leads")[0];
    assert_eq!(lead["statecode"], 1);
    assert_eq!(lead["statuscode"], 3);
    let again = c.write(Method::POST, &path, &body).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let other = c
        .write(
            Method::POST,
            &format!("leads({id})/Microsoft.Dynamics.CRM.Nope"),
            &body,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_IMPLEMENTED);
}

/// A client signed in as application user `client_id` (secret `{client_id}-secret`).
async fn client_as(dv: &RunningDataverse, client_id: &str) -> Client {
    let http = reqwest::Client::new();
    let response = http
        .post(&dv.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", &format!("{client_id}-secret")),
            ("scope", &format!("{}/.default", dv.base_url)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{client_id}");
    let token: Value = response.json().await.unwrap();
    Client {
        http,
        api: dv.api_url(),
        token: token["access_token"].as_str().unwrap().to_owned(),
    }
}

fn header(response: &reqwest::Response, name: &str) -> u64 {
    response.headers()[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn when_two_application_users_call_each_should_have_its_own_limits_and_counts() {
    let dv = start(DataverseConfig {
        client_id: "app-a".to_owned(),
        client_secret: hunter_core::secret::Secret::new("app-a-secret"),
        extra_clients: vec![(
            "app-b".to_owned(),
            hunter_core::secret::Secret::new("app-b-secret"),
        )],
        limits: Limits {
            max_requests: 3,
            window: Duration::from_secs(60),
            retry_after_secs: 4,
            ..Limits::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    let (a, b) = (client_as(&dv, "app-a").await, client_as(&dv, "app-b").await);
    for expected_left in [2, 1, 0] {
        let ok = a.request(Method::GET, "leads").send().await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            header(&ok, "x-ms-ratelimit-burst-remaining-xrm-requests"),
            expected_left
        );
        assert!(header(&ok, "x-ms-ratelimit-time-remaining-xrm-requests") > 0);
    }
    let throttled = a.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()["Retry-After"], "4");
    assert_eq!(
        header(&throttled, "x-ms-ratelimit-burst-remaining-xrm-requests"),
        0,
        "a 429 carries the headers too"
    );
    assert!(throttled.headers().contains_key("x-ms-dop-hint"));

    let other = b.request(Method::GET, "leads").send().await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "app-b has limits of its own"
    );
    assert_eq!(
        header(&other, "x-ms-ratelimit-burst-remaining-xrm-requests"),
        2
    );

    let usage = dv.sim.usage();
    assert_eq!(
        (
            usage["app-a"].requests,
            usage["app-a"].http_requests,
            usage["app-a"].throttled
        ),
        (3, 4, 1)
    );
    assert_eq!((usage["app-b"].requests, usage["app-b"].throttled), (1, 0));
    let route: Value = a
        .http
        .get(format!("{}/_sim/usage", dv.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(route["app-a"]["throttled"], 1);
    assert_eq!(route["app-b"]["httpRequests"], 1);
    let reset = a
        .http
        .delete(format!("{}/_sim/usage", dv.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(dv.sim.usage()["app-a"].throttled, 0);
}

#[tokio::test]
async fn when_a_batch_holds_n_requests_should_count_each_of_them() {
    let dv = start(DataverseConfig {
        limits: Limits {
            max_requests: 10,
            window: Duration::from_secs(60),
            ..Limits::default()
        },
        ..DataverseConfig::default()
    })
    .await;
    let c = Client::new(&dv).await;
    let parts: String = (1..=4)
        .map(|n| {
            format!(
                "--batch_b\r\nContent-Type: multipart/mixed; boundary=cs_{n}\r\n\r\n--cs_{n}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {n}\r\n\r\nPATCH {}/leads(hnt_hunterkey='d{n}.com') HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{{\"subject\":\"s{n}\"}}\r\n--cs_{n}--\r\n",
                c.api
            )
        })
        .collect();
    let batch = c
        .request(Method::POST, "$batch")
        .header("Content-Type", "multipart/mixed; boundary=batch_b")
        .body(format!("{parts}--batch_b--\r\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), StatusCode::OK);
    assert_eq!(
        header(&batch, "x-ms-ratelimit-burst-remaining-xrm-requests"),
        6,
        "four requests inside the $batch count four"
    );
    let usage = &dv.sim.usage()["sim-client-id"];
    assert_eq!((usage.requests, usage.http_requests), (4, 1));
    assert_eq!(dv.sim.records("leads").len(), 4);
    assert_eq!(dv.sim.duplicates("leads"), 0);
    dv.sim.insert_record(
        "leads",
        json!({"hnt_hunterkey": "d1.com", "subject": "made twice"}),
    );
    assert_eq!(dv.sim.duplicates("leads"), 1);
}
