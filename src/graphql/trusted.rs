//! Trusted documents (persisted operations): a manifest of the documents a first-party frontend
//! sends, read from `TRUSTED_DOCUMENTS_FILE`, each parsed and validated once when the manifest is
//! loaded. A request names one by `documentId` (or Apollo's `extensions.persistedQuery.sha256Hash`);
//! with `TRUSTED_DOCUMENTS=only` nothing else runs. See `docs/trusted-documents.md`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use async_graphql::Request;
use sha2::{Digest, Sha256};

use super::documents::{Documents, Prepared};
pub use crate::config::TrustedDocumentsMode as Mode;

/// The error code of a document the server will not run by id (or, in `only` mode, at all).
pub const NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
/// A manifest file larger than this is refused before it is read.
const MAX_MANIFEST_BYTES: u64 = 32 * 1024 * 1024;
/// Most documents one manifest may hold.
const MAX_DOCUMENTS: usize = 20_000;
/// Longest id a request may name (longer ones are not looked up).
const MAX_ID_BYTES: usize = 256;

/// One trusted document.
pub struct Trusted {
    text: Box<str>,
    pub prepared: Arc<Prepared>,
}

/// The documents of one manifest, by id, and by their text's SHA-256 (for `only` mode).
#[derive(Default)]
struct Manifest {
    by_id: HashMap<String, Arc<Trusted>>,
    by_hash: HashMap<[u8; 32], Arc<Trusted>>,
}

/// The manifest in use, reloaded when its file changes or on SIGHUP.
pub struct TrustedDocuments {
    mode: Mode,
    path: Option<PathBuf>,
    current: RwLock<Arc<Manifest>>,
    /// The file's modification time and length at the last load.
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

/// What a request runs.
pub enum Choice {
    /// A manifest document (already validated).
    Trusted(Arc<Trusted>),
    /// The request's own text.
    AdHoc,
}

/// Why a request's document was refused: the code (`PERSISTED_QUERY_NOT_FOUND` or
/// `VALIDATION`) and a message saying what to do.
pub struct Refused {
    pub code: &'static str,
    pub message: &'static str,
}

impl TrustedDocuments {
    /// Loads the manifest (`mode` unset: `allow` with a file, else `off`). A manifest that
    /// cannot be read, or holds a document that does not validate, stops start-up.
    pub fn load(mode: Option<Mode>, path: Option<&Path>, documents: &Documents) -> anyhow::Result<Self> {
        let mode = mode.unwrap_or(if path.is_some() { Mode::Allow } else { Mode::Off });
        let path = match (mode, path) {
            (Mode::Off, _) => None,
            (_, Some(path)) => Some(path.to_owned()),
            (_, None) => bail!(
                "TRUSTED_DOCUMENTS={mode:?} needs TRUSTED_DOCUMENTS_FILE (the manifest of trusted documents)"
            ),
        };
        let store = Self { mode, path, current: RwLock::default(), stamp: Mutex::default() };
        store.reload(documents, true)?;
        Ok(store)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How many documents the manifest in use holds.
    pub fn len(&self) -> usize {
        self.manifest().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the manifest again if its file changed since the last load (or always, if
    /// `force`); returns the number of documents when it was replaced. On an error the
    /// manifest in use stays.
    pub fn reload(&self, documents: &Documents, force: bool) -> anyhow::Result<Option<usize>> {
        let Some(path) = &self.path else { return Ok(None) };
        let meta = std::fs::metadata(path)
            .with_context(|| format!("TRUSTED_DOCUMENTS_FILE {}: cannot read it", path.display()))?;
        let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
        if !force && *lock(&self.stamp) == Some(stamp) {
            return Ok(None);
        }
        if meta.len() > MAX_MANIFEST_BYTES {
            bail!("TRUSTED_DOCUMENTS_FILE {}: larger than {MAX_MANIFEST_BYTES} bytes", path.display());
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("TRUSTED_DOCUMENTS_FILE {}: cannot read it", path.display()))?;
        let manifest =
            parse(&bytes, documents).with_context(|| format!("TRUSTED_DOCUMENTS_FILE {}", path.display()))?;
        let count = manifest.by_id.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(manifest);
        *lock(&self.stamp) = Some(stamp);
        Ok(Some(count))
    }

    fn manifest(&self) -> Arc<Manifest> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What `request` runs: the manifest document it names by `document_id` (or Apollo's
    /// `extensions.persistedQuery.sha256Hash`), or its own text where the mode allows it.
    pub fn choose(&self, request: &Request, document_id: Option<&str>) -> Result<Choice, Refused> {
        let (id, apollo) = match document_id {
            Some(id) => (Some(id), false),
            None => (apollo_hash(request), true),
        };
        if self.mode == Mode::Off {
            return match id {
                Some(_) => Err(Refused {
                    code: NOT_FOUND,
                    message: "this server keeps no trusted documents (TRUSTED_DOCUMENTS=off); send the document as `query`",
                }),
                None => Ok(Choice::AdHoc),
            };
        }
        let manifest = self.manifest();
        let text = request.query.as_str();
        if let Some(id) = id {
            let found = normalise(id, apollo).and_then(|id| manifest.by_id.get(id.as_ref()));
            return match (found, text.is_empty()) {
                (Some(trusted), true) => Ok(Choice::Trusted(trusted.clone())),
                (Some(trusted), false) if *trusted.text == *text => Ok(Choice::Trusted(trusted.clone())),
                (Some(_), false) => Err(Refused {
                    code: "VALIDATION",
                    message: "the request's `query` is not the document its id names; send one of them",
                }),
                (None, false) if self.mode == Mode::Allow && id_matches(id, text) => Ok(Choice::AdHoc),
                (None, false) if self.mode == Mode::Allow => Err(Refused {
                    code: "VALIDATION",
                    message: "the request's `query` does not hash to its document id; send one of them",
                }),
                (None, _) => Err(Refused {
                    code: NOT_FOUND,
                    message: "no trusted document has this id; send a documentId from the server's current manifest",
                }),
            };
        }
        if self.mode == Mode::Allow {
            return Ok(Choice::AdHoc);
        }
        match manifest.by_hash.get(&<[u8; 32]>::from(Sha256::digest(text.as_bytes()))) {
            Some(trusted) => Ok(Choice::Trusted(trusted.clone())),
            None => Err(Refused {
                code: NOT_FOUND,
                message: "this server runs only trusted documents (TRUSTED_DOCUMENTS=only); send a documentId from its manifest",
            }),
        }
    }
}

/// Apollo's automatic persisted queries name the document in the extensions.
fn apollo_hash(request: &Request) -> Option<&str> {
    match request.extensions.get("persistedQuery") {
        Some(async_graphql::Value::Object(fields)) => match fields.get("sha256Hash") {
            Some(async_graphql::Value::String(hash)) => Some(hash.as_str()),
            _ => None,
        },
        _ => None,
    }
}

/// The manifest key for a requested id: `sha256:<hex>` and bare 64-digit hex (as graphql-codegen
/// writes its keys) are one id, in lower case; any other id (Relay's) is taken as it is.
fn normalise(id: &str, sha256: bool) -> Option<std::borrow::Cow<'_, str>> {
    if id.len() > MAX_ID_BYTES {
        return None;
    }
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        if id.len() == 71 && hex.bytes().all(|b| !b.is_ascii_uppercase()) {
            return Some(std::borrow::Cow::Borrowed(id));
        }
        return Some(std::borrow::Cow::Owned(format!("sha256:{}", hex.to_ascii_lowercase())));
    }
    (!sha256).then_some(std::borrow::Cow::Borrowed(id))
}

/// Whether a SHA-256 id is the hash of `text` (other ids cannot be checked: never).
fn id_matches(id: &str, text: &str) -> bool {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.eq_ignore_ascii_case(&hex::encode(Sha256::digest(text.as_bytes())))
}

/// Reads a manifest: `{"<id>": "<document>", …}` (graphql-codegen's client preset, Relay) or
/// Apollo's `{"format": "apollo-persisted-query-manifest", "operations": [{"id", "body"}, …]}`.
fn parse(bytes: &[u8], documents: &Documents) -> anyhow::Result<Manifest> {
    let value: serde_json::Value = serde_json::from_slice(bytes).context("not valid JSON")?;
    let serde_json::Value::Object(fields) = value else {
        bail!(r#"expected a JSON object {{"<id>": "<document>", …}}"#)
    };
    let entries: Vec<(String, String)> = match fields.get("operations") {
        Some(serde_json::Value::Array(ops)) if fields.contains_key("format") => ops
            .iter()
            .map(|op| match (op.get("id"), op.get("body")) {
                (Some(serde_json::Value::String(id)), Some(serde_json::Value::String(body))) => {
                    Ok((id.clone(), body.clone()))
                }
                _ => bail!("an operation of the Apollo manifest has no string `id` and `body`"),
            })
            .collect::<anyhow::Result<_>>()?,
        _ => fields
            .into_iter()
            .map(|(id, text)| match text {
                serde_json::Value::String(text) => Ok((id, text)),
                _ => bail!("the value of {:?} is not a string holding a GraphQL document", clip(&id)),
            })
            .collect::<anyhow::Result<_>>()?,
    };
    if entries.len() > MAX_DOCUMENTS {
        bail!("{} documents; at most {MAX_DOCUMENTS}", entries.len());
    }
    let mut manifest = Manifest::default();
    for (id, text) in entries {
        let hash = <[u8; 32]>::from(Sha256::digest(text.as_bytes()));
        let key = match normalise(&id, false) {
            Some(key) if key.starts_with("sha256:") => {
                if !id_matches(&key, &text) {
                    bail!("the id {:?} is not the SHA-256 of its document", clip(&id));
                }
                key.into_owned()
            }
            Some(key) if !key.is_empty() => key.into_owned(),
            _ => bail!("the id {:?} is empty or longer than {MAX_ID_BYTES} bytes", clip(&id)),
        };
        let prepared = documents.prepare(&text).map_err(|errors| {
            let first = errors.first().map_or("no detail", |e| e.message.as_str());
            anyhow::anyhow!(
                "the document {:?} does not validate against this server's schema: {first}",
                clip(&id)
            )
        })?;
        let trusted = Arc::new(Trusted { text: text.into_boxed_str(), prepared });
        manifest.by_hash.insert(hash, trusted.clone());
        manifest.by_id.insert(key, trusted);
    }
    Ok(manifest)
}

fn clip(id: &str) -> String {
    id.chars().take(80).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "trusted_tests.rs"]
mod tests;
