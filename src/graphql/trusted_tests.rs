use std::io::Write as _;

use super::*;

const HEALTH: &str = "{ health { status } }";

fn sha(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// A manifest in a file of its own, removed when dropped.
struct File(std::path::PathBuf);

impl File {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn manifest_file(json: &serde_json::Value) -> File {
    let path = std::env::temp_dir().join(format!("tenantry-manifest-{}.json", uuid::Uuid::new_v4()));
    let mut file = std::fs::File::create(&path).expect("temp file");
    file.write_all(json.to_string().as_bytes()).expect("write");
    File(path)
}

fn chosen(store: &TrustedDocuments, query: &str, id: Option<&str>) -> Result<bool, &'static str> {
    match store.choose(&Request::new(query), id) {
        Ok(Choice::Trusted(_)) => Ok(true),
        Ok(Choice::AdHoc) => Ok(false),
        Err(refused) => Err(refused.code),
    }
}

#[test]
fn codegen_relay_and_apollo_manifests_load_and_resolve_by_id() {
    let docs = Documents::new(true);
    let bare = hex::encode(Sha256::digest(HEALTH.as_bytes()));
    // graphql-codegen's client preset: bare hex keys; Relay: its own ids.
    let file = manifest_file(&serde_json::json!({ bare.clone(): HEALTH, "relay-1": "{ plans { id } }" }));
    let store = TrustedDocuments::load(Some(Mode::Only), Some(file.path()), &docs).expect("loads");
    assert_eq!(store.len(), 2);
    assert_eq!(chosen(&store, "", Some(&sha(HEALTH))), Ok(true));
    assert_eq!(chosen(&store, "", Some(&bare.to_uppercase())), Ok(true));
    assert_eq!(chosen(&store, "", Some("relay-1")), Ok(true));
    assert_eq!(chosen(&store, "", Some("relay-2")), Err(NOT_FOUND));
    // `only`: the exact text of a manifest document runs, anything else is refused.
    assert_eq!(chosen(&store, HEALTH, None), Ok(true));
    assert_eq!(chosen(&store, "{ plans { name } }", None), Err(NOT_FOUND));
    assert_eq!(chosen(&store, "{ plans { name } }", Some(&sha(HEALTH))), Err("VALIDATION"));

    let apollo = serde_json::json!({ "format": "apollo-persisted-query-manifest", "version": 1,
        "operations": [{ "id": bare, "name": "Health", "type": "query", "body": HEALTH }] });
    let file = manifest_file(&apollo);
    let store = TrustedDocuments::load(None, Some(file.path()), &docs).expect("loads");
    assert_eq!(store.mode(), Mode::Allow);
    let mut request = Request::new("");
    let hash = serde_json::json!({ "sha256Hash": bare });
    request.extensions.insert("persistedQuery".into(), async_graphql::Value::from_json(hash).expect("value"));
    assert!(matches!(store.choose(&request, None), Ok(Choice::Trusted(_))));
    // `allow`: other documents run as text.
    assert_eq!(chosen(&store, "{ plans { name } }", None), Ok(false));
}

#[test]
fn a_bad_manifest_is_refused_with_the_reason() {
    let docs = Documents::new(true);
    let reason = |json: serde_json::Value| {
        let file = manifest_file(&json);
        match TrustedDocuments::load(Some(Mode::Only), Some(file.path()), &docs) {
            Ok(_) => String::new(),
            Err(err) => format!("{err:#}"),
        }
    };
    assert!(reason(serde_json::json!({ sha(HEALTH): "{ health { nope } }" })).contains("SHA-256"));
    assert!(reason(serde_json::json!({ "x": "{ health { nope } }" })).contains("does not validate"));
    assert!(reason(serde_json::json!({ "x": 1 })).contains("not a string"));
    assert!(reason(serde_json::json!([])).contains("JSON object"));
    let missing = TrustedDocuments::load(Some(Mode::Only), None, &docs).err().map(|e| e.to_string());
    assert!(missing.is_some_and(|m| m.contains("TRUSTED_DOCUMENTS_FILE")));
}

#[test]
fn off_refuses_document_ids_and_runs_text() {
    let docs = Documents::new(true);
    let store = TrustedDocuments::load(None, None, &docs).expect("off");
    assert_eq!(store.mode(), Mode::Off);
    assert_eq!(chosen(&store, HEALTH, None), Ok(false));
    assert_eq!(chosen(&store, "", Some(&sha(HEALTH))), Err(NOT_FOUND));
}

#[test]
fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_manifest() {
    let docs = Documents::new(true);
    let file = manifest_file(&serde_json::json!({ "a": HEALTH }));
    let store = TrustedDocuments::load(Some(Mode::Only), Some(file.path()), &docs).expect("loads");
    assert_eq!(store.reload(&docs, false).expect("unchanged"), None);
    std::fs::write(file.path(), serde_json::json!({ "a": HEALTH, "b": "{ plans { id } }" }).to_string())
        .expect("write");
    assert_eq!(store.reload(&docs, true).expect("reloads"), Some(2));
    std::fs::write(file.path(), "{ not json").expect("write");
    assert!(store.reload(&docs, true).is_err());
    assert_eq!(store.len(), 2);
}
