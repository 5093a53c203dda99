//! Change tracking of the Dataverse simulator over real HTTP: tracked lists, deltaLinks, seller
//! edits and deletions.
#![allow(clippy::unwrap_used)]

use hunter_local::sim::dataverse::{
    CODE_INVALID_DELTA_TOKEN, DataverseConfig, DataverseSim, RunningDataverse,
};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

const SELECT: &str = "$select=subject,statecode,statuscode,_ownerid_value,versionnumber";

/// A simulator serving three leads (`k1`, `k2`, `k3`), and a client with an access token.
async fn start() -> (RunningDataverse, Client) {
    let sim = DataverseSim::new(DataverseConfig::default());
    for key in ["k1", "k2", "k3"] {
        sim.insert_record(
            "leads",
            json!({"hnt_hunterkey": key, "subject": format!("Hunter: {key}"), "statecode": 0}),
        );
    }
    let dv = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = Client::new(&dv).await;
    (dv, client)
}

struct Client {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl Client {
    async fn new(dv: &RunningDataverse) -> Self {
        let http = reqwest::Client::new();
        let response = http
            .post(&dv.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "sim-client-id"),
                ("client_secret", "sim-client-secret"),
                ("scope", &format!("{}/.default", dv.base_url)),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        Self {
            http,
            api: dv.api_url(),
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    fn get(&self, url: &str) -> RequestBuilder {
        self.http
            .get(url)
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
    }

    /// A tracked list of leads; answers the body and `Preference-Applied`.
    async fn tracked(&self, url: &str, prefer: &str) -> (Value, String) {
        let response = self.get(url).header("Prefer", prefer).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let applied = response.headers()["Preference-Applied"]
            .to_str()
            .unwrap()
            .to_owned();
        (response.json().await.unwrap(), applied)
    }

    /// The initial tracked list (one page) of leads; answers its deltaLink.
    async fn delta_link(&self) -> String {
        let url = format!("{}/leads?{SELECT}", self.api);
        let (body, _) = self.tracked(&url, "odata.track-changes").await;
        body["@odata.deltaLink"].as_str().unwrap().to_owned()
    }

    /// GET of a deltaLink; answers the body.
    async fn delta(&self, link: &str) -> Value {
        let response = self.get(link).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn upsert(&self, key: &str, body: Value) -> StatusCode {
        self.http
            .patch(format!("{}/leads(hnt_hunterkey='{key}')", self.api))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
    }
}

fn record_of<'a>(records: &'a [Value], key: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["hnt_hunterkey"] == key)
        .unwrap_or_else(|| panic!("no record {key}"))
}

fn lead_id(dv: &RunningDataverse, key: &str) -> String {
    let records = dv.sim.records("leads");
    record_of(&records, key)["leadid"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn version_of(dv: &RunningDataverse, key: &str) -> u64 {
    let records = dv.sim.records("leads");
    record_of(&records, key)["versionnumber"].as_u64().unwrap()
}

fn values(body: &Value) -> &Vec<Value> {
    body["value"].as_array().unwrap()
}

#[tokio::test]
async fn when_list_is_tracked_should_answer_all_records_and_a_delta_link() {
    let (dv, c) = start().await;
    let url = format!("{}/leads?{SELECT}", c.api);
    let (body, applied) = c.tracked(&url, "odata.track-changes").await;
    assert_eq!(applied, "odata.track-changes");
    assert_eq!(values(&body).len(), 3);
    let first = &values(&body)[0];
    assert!(first["leadid"].is_string());
    assert!(first["versionnumber"].is_u64());
    assert_eq!(first["subject"], "Hunter: k1");
    assert!(first.get("hnt_hunterkey").is_none(), "$select applies");
    let link = body["@odata.deltaLink"].as_str().unwrap();
    assert!(
        link.starts_with(&format!(
            "{}/api/data/v9.2/leads?{SELECT}&$deltatoken=",
            dv.base_url
        )),
        "{link}"
    );
    assert!(link.ends_with("%21leads"), "{link}");
    assert!(body.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn when_nothing_changed_should_answer_empty_delta_and_new_link() {
    let (_dv, c) = start().await;
    let link = c.delta_link().await;
    let body = c.delta(&link).await;
    assert!(values(&body).is_empty());
    assert!(body["@odata.context"].as_str().unwrap().ends_with(
        "$metadata#leads(subject,statecode,statuscode,_ownerid_value,versionnumber)/$delta"
    ));
    assert!(
        body["@odata.deltaLink"]
            .as_str()
            .unwrap()
            .contains("$deltatoken=")
    );
}

#[tokio::test]
async fn when_seller_edits_and_upsert_should_answer_exactly_those_records() {
    let (dv, c) = start().await;
    let link = c.delta_link().await;
    let owner = "0000000a-0000-0000-0000-0000000000aa";
    let id = dv.sim.seller_update(
        "leads",
        "hnt_hunterkey",
        "K1",
        json!({"statecode": 2, "statuscode": 6, "ownerid@odata.bind": format!("/systemusers({owner})")}),
    );
    assert_eq!(id, Some(lead_id(&dv, "k1")));
    assert_eq!(
        c.upsert("k3", json!({"subject": "Hunter: k3 again"})).await,
        StatusCode::NO_CONTENT
    );

    let body = c.delta(&link).await;
    let changed = values(&body);
    assert_eq!(changed.len(), 2, "{body}");
    assert_eq!(changed[0]["leadid"], json!(lead_id(&dv, "k1")));
    assert_eq!(changed[0]["statecode"], 2);
    assert_eq!(changed[0]["statuscode"], 6);
    assert_eq!(changed[0]["_ownerid_value"], owner);
    assert_eq!(changed[0]["versionnumber"], version_of(&dv, "k1"));
    assert_eq!(changed[1]["leadid"], json!(lead_id(&dv, "k3")));
    assert_eq!(changed[1]["subject"], "Hunter: k3 again");
    assert_eq!(changed[1]["versionnumber"], version_of(&dv, "k3"));
    assert!(version_of(&dv, "k3") > version_of(&dv, "k1"));

    let next = body["@odata.deltaLink"].as_str().unwrap();
    assert!(values(&c.delta(next).await).is_empty());
}

#[tokio::test]
async fn when_record_changes_twice_should_answer_it_once_in_latest_state() {
    let (dv, c) = start().await;
    let link = c.delta_link().await;
    let before = dv.sim.records("leads");
    let modified_before = record_of(&before, "k2")["modifiedon"].clone();
    dv.sim
        .seller_update("leads", "hnt_hunterkey", "k2", json!({"statuscode": 2}))
        .unwrap();
    dv.sim
        .seller_update("leads", "hnt_hunterkey", "k2", json!({"statuscode": 3}))
        .unwrap();

    let body = c.delta(&link).await;
    let changed = values(&body);
    assert_eq!(changed.len(), 1, "{body}");
    assert_eq!(changed[0]["statuscode"], 3);
    assert_eq!(changed[0]["versionnumber"], version_of(&dv, "k2"));
    let after = dv.sim.records("leads");
    let record = record_of(&after, "k2");
    assert_eq!(record["subject"], "Hunter: k2", "other fields stay");
    let modified = record["modifiedon"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(modified).is_ok());
    assert!(modified >= modified_before.as_str().unwrap());
}

#[tokio::test]
async fn when_record_is_deleted_should_answer_a_deleted_entity() {
    let (dv, c) = start().await;
    let link = c.delta_link().await;
    let id = lead_id(&dv, "k2");
    dv.sim
        .seller_update("leads", "hnt_hunterkey", "k2", json!({"statuscode": 2}))
        .unwrap();
    assert!(dv.sim.delete_record("leads", &id));
    assert!(!dv.sim.delete_record("leads", &id));

    let body = c.delta(&link).await;
    assert_eq!(
        body["value"],
        json!([{
            "@odata.context": format!("{}/api/data/v9.2/$metadata#leads/$deletedEntity", dv.base_url),
            "id": id,
            "reason": "deleted",
        }])
    );
}

#[tokio::test]
async fn when_old_delta_link_is_followed_again_should_answer_the_same_changes() {
    let (dv, c) = start().await;
    let link = c.delta_link().await;
    dv.sim
        .seller_update(
            "leads",
            "hnt_hunterkey",
            "k1",
            json!({"description": "called"}),
        )
        .unwrap();
    let first = c.delta(&link).await;
    let again = c.delta(&link).await;
    assert_eq!(values(&first).len(), 1);
    assert_eq!(first["value"], again["value"]);
    assert_eq!(first["@odata.deltaLink"], again["@odata.deltaLink"]);
}

#[tokio::test]
async fn when_tracked_list_is_paged_should_end_with_delta_link_from_its_start() {
    let (dv, c) = start().await;
    let prefer = "odata.track-changes, odata.maxpagesize=2";
    let (page1, applied) = c
        .tracked(&format!("{}/leads?{SELECT}", c.api), prefer)
        .await;
    assert_eq!(applied, "odata.track-changes, odata.maxpagesize=2");
    assert_eq!(values(&page1).len(), 2);
    assert!(page1.get("@odata.deltaLink").is_none());
    let next = page1["@odata.nextLink"].as_str().unwrap();
    dv.sim
        .seller_update("leads", "hnt_hunterkey", "k1", json!({"statuscode": 2}))
        .unwrap();

    let (page2, _) = c.tracked(next, prefer).await;
    assert_eq!(values(&page2).len(), 1);
    assert_eq!(values(&page2)[0]["subject"], "Hunter: k3");
    assert!(page2.get("@odata.nextLink").is_none());
    let link = page2["@odata.deltaLink"].as_str().unwrap();
    let delta = c.delta(link).await;
    assert_eq!(
        values(&delta).len(),
        1,
        "a change during paging is not lost"
    );
    assert_eq!(values(&delta)[0]["statuscode"], 2);
}

#[tokio::test]
async fn when_delta_token_is_garbled_or_expired_should_answer_400() {
    let (dv, c) = start().await;
    let link = c.delta_link().await;
    let base = format!("{}/leads?{SELECT}&$deltatoken=", c.api);
    for token in ["garbled", "12%21leads2", "99999999%21leads", "1%21accounts"] {
        let response = c.get(&format!("{base}{token}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{token}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], CODE_INVALID_DELTA_TOKEN, "{token}");
        assert!(body["error"]["message"].is_string());
    }
    dv.sim.expire_delta_tokens();
    let response = c.get(&link).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], CODE_INVALID_DELTA_TOKEN);
    let fresh = c.delta_link().await;
    assert!(values(&c.delta(&fresh).await).is_empty());
}

#[tokio::test]
async fn when_delta_read_has_no_access_token_should_answer_401() {
    let (_dv, c) = start().await;
    let link = c.delta_link().await;
    let response = reqwest::Client::new()
        .get(&link)
        .header("Accept", "application/json")
        .header("OData-MaxVersion", "4.0")
        .header("OData-Version", "4.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn when_delta_is_read_should_count_as_one_request() {
    let (dv, c) = start().await;
    let link = c.delta_link().await;
    let requests = || dv.sim.usage()["sim-client-id"].requests;
    let before = requests();
    c.delta(&link).await;
    assert_eq!(requests(), before + 1);
}

#[tokio::test]
async fn when_seller_edit_comes_by_control_route_should_show_in_delta() {
    let (dv, c) = start().await;
    let link = c.delta_link().await;
    let control = |key: &str| {
        c.http
            .request(
                Method::PATCH,
                format!("{}/_sim/records/leads/{key}", dv.base_url),
            )
            .header("Content-Type", "application/json")
            .body(json!({"statecode": 1, "statuscode": 3}).to_string())
    };
    let response = control("k2").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], json!(lead_id(&dv, "k2")));
    assert_eq!(
        control("nope").send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let delta = c.delta(&link).await;
    assert_eq!(values(&delta).len(), 1);
    assert_eq!(values(&delta)[0]["statecode"], 1);
}

#[tokio::test]
async fn when_tracked_list_has_filter_should_answer_400() {
    let (_dv, c) = start().await;
    let response = c
        .get(&format!("{}/leads?$filter=statecode eq 0", c.api))
        .header("Prefer", "odata.track-changes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
