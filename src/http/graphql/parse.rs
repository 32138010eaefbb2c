//! Reading a GraphQL request from a POST body or a GET query string, with messages a person can
//! act on (never a deserializer's internals such as "untagged enum BatchRequest").

use async_graphql::{Request, Variables};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A request and the trusted document it names, if any.
pub type Incoming = (Request, Option<String>);

/// The request in a JSON body: `{"query": "…", "variables": {…}, "operationName": "…",
/// "extensions": {…}}`, or `"documentId": "sha256:…"` instead of the query.
pub fn from_body(body: &[u8]) -> Result<Incoming, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(r#"the request body is empty; send {"query": "…"} as JSON"#.to_owned());
    }
    // The usual body, an object whose fields have the usual types, is read straight into them;
    // anything else (not JSON, not an object, a repeated or mistyped field) is told apart below.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && let Ok(raw) = serde_json::from_slice::<RawFields<'_>>(body)
        && let Some(incoming) = raw.read()
    {
        return Ok(incoming);
    }
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        format!("the request body is not valid JSON (line {}, column {})", err.line(), err.column())
    })?;
    match value {
        Value::Object(fields) => from_fields(fields),
        Value::Array(_) => {
            Err("batched requests are not supported; send one operation per request".to_owned())
        }
        _ => Err(r#"the request body must be a JSON object such as {"query": "…"}"#.to_owned()),
    }
}

/// A body's fields as they were sent, for [`RawFields::read`].
#[derive(Deserialize)]
struct RawFields<'a> {
    #[serde(borrow, default, deserialize_with = "sent")]
    query: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "sent", rename = "operationName")]
    operation_name: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "sent")]
    variables: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "sent")]
    extensions: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "sent", rename = "documentId")]
    document_id: Option<&'a RawValue>,
}

/// A field that was sent, `null` included (`Option` alone reads `null` as absent).
fn sent<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

impl RawFields<'_> {
    /// The request, when every field has its usual type and no extensions are sent; `None`
    /// leaves the body to [`from_fields`], which has a message for each other case.
    fn read(self) -> Option<Incoming> {
        if self.extensions.is_some() {
            return None;
        }
        let text = |raw: Option<&RawValue>| match raw.map(RawValue::get) {
            None | Some("null") => Ok(None),
            Some(raw) => serde_json::from_str::<String>(raw).map(Some),
        };
        let document_id = text(self.document_id).ok()?;
        let query = match self.query {
            Some(raw) => serde_json::from_str::<String>(raw.get()).ok()?,
            None if document_id.is_some() => String::new(),
            None => return None,
        };
        let mut request = Request::new(query);
        if let Some(name) = text(self.operation_name).ok()? {
            request = request.operation_name(name);
        }
        match self.variables.map(RawValue::get) {
            None | Some("null") => {}
            Some(raw) if raw.starts_with('{') => request = request.variables(serde_json::from_str(raw).ok()?),
            Some(_) => return None,
        }
        Some((request, document_id))
    }
}

/// The request in a GET URL: `?query=…&variables=<JSON>&operationName=…&extensions=<JSON>`
/// (or `documentId=…` instead of `query`).
pub fn from_query_string(query_string: &str) -> Result<Incoming, String> {
    let mut fields = Map::new();
    for (name, value) in url::form_urlencoded::parse(query_string.as_bytes()) {
        let value = match name.as_ref() {
            "query" | "operationName" | "documentId" => Value::String(value.into_owned()),
            "variables" | "extensions" => serde_json::from_str(&value)
                .map_err(|_| format!("the {name} URL parameter must be a JSON object"))?,
            _ => continue,
        };
        fields.insert(name.into_owned(), value);
    }
    from_fields(fields)
}

fn from_fields(mut fields: Map<String, Value>) -> Result<Incoming, String> {
    let document_id = match fields.remove("documentId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => {
            return Err("the \"documentId\" parameter must be a string such as \"sha256:<hex>\"".to_owned());
        }
    };
    let persisted = fields
        .get("extensions")
        .and_then(|extensions| extensions.get("persistedQuery"))
        .is_some_and(Value::is_object);
    let query = match fields.remove("query") {
        Some(Value::String(query)) => query,
        Some(_) => {
            return Err("the \"query\" parameter must be a string holding the GraphQL document".to_owned());
        }
        // The document is named by id instead.
        None if document_id.is_some() || persisted => String::new(),
        None => {
            return Err(
                "the request has no \"query\" parameter holding the GraphQL document (nor a \"documentId\")"
                    .to_owned(),
            );
        }
    };
    let mut request = Request::new(query);
    match fields.remove("operationName") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => request = request.operation_name(name),
        Some(_) => return Err("the \"operationName\" parameter must be a string or null".to_owned()),
    }
    match fields.remove("variables") {
        None | Some(Value::Null) => {}
        Some(variables @ Value::Object(_)) => request = request.variables(Variables::from_json(variables)),
        Some(_) => return Err("the \"variables\" parameter must be an object or null".to_owned()),
    }
    match fields.remove("extensions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(extensions)) => {
            for (name, value) in extensions {
                let value = async_graphql::Value::from_json(value).unwrap_or(async_graphql::Value::Null);
                request.extensions.insert(name, value);
            }
        }
        Some(_) => return Err("the \"extensions\" parameter must be an object or null".to_owned()),
    }
    Ok((request, document_id))
}

/// Whether an error without a code that async-graphql raised while running a field is about
/// the client's input (an argument that did not coerce) rather than a server fault.
pub fn is_input_error(message: &str) -> bool {
    message.starts_with("Failed to parse \"")
        || message.starts_with("Invalid value for argument")
        || message.starts_with("Expected input type")
        || (message.starts_with("Variable ") && message.ends_with(" is not defined."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_requests_get_plain_messages() {
        let err = from_body(b"{not json").unwrap_err();
        assert!(err.starts_with("the request body is not valid JSON"), "{err}");
        assert!(from_body(b"").unwrap_err().contains("empty"));
        assert!(from_body(b"[]").unwrap_err().contains("batched"));
        assert!(from_body(br#"{"query": 1}"#).unwrap_err().contains("must be a string"));
        assert!(from_body(br#"{"qeury": "{ a }"}"#).unwrap_err().contains("no \"query\""));
        assert!(from_body(br#"{"query": "{ a }", "variables": "x"}"#).unwrap_err().contains("variables"));
        let (ok, id) =
            from_body(br#"{"query": "{ a }", "variables": null, "extensions": {"a": 1}}"#).unwrap();
        assert_eq!((ok.query.as_str(), id), ("{ a }", None));
        let (by_id, id) = from_body(br#"{"documentId": "sha256:ab"}"#).unwrap();
        assert_eq!((by_id.query.as_str(), id.as_deref()), ("", Some("sha256:ab")));
        assert!(from_body(br#"{"documentId": 1}"#).unwrap_err().contains("documentId"));
        assert!(from_query_string("documentId=sha256%3Aab").is_ok_and(|(_, id)| id.is_some()));
        assert!(from_query_string("query=%7B%20a%20%7D&variables=%7B%7D").is_ok());
        assert!(from_query_string("variables=nope&query=x").unwrap_err().contains("variables"));
    }

    #[test]
    fn the_usual_body_reads_as_the_general_path_does() {
        let bodies: [&[u8]; 8] = [
            br#"{"query": "query($id: ID!) { a(id: $id) }", "variables": {"id": "x", "n": [1, 2.5, null]}}"#,
            br#" {"query": "{ a }", "operationName": "A", "variables": null, "other": 1}"#,
            br#"{"documentId": "sha256:ab", "variables": {}}"#,
            br#"{"query": null, "documentId": "sha256:ab"}"#,
            br#"{"query": "{ a }", "query": "{ b }"}"#,
            br#"{"query": "{ a }", "operationName": 1}"#,
            br#"{"query": "{ a }", "extensions": {"persistedQuery": {"version": 1}}}"#,
            br#"{"query": "{ \u0061 }", "variables": []}"#,
        ];
        for body in bodies {
            let general =
                serde_json::from_slice::<Value>(body).map_err(|e| e.to_string()).and_then(|v| match v {
                    Value::Object(fields) => from_fields(fields),
                    _ => unreachable!("objects only"),
                });
            let read = from_body(body);
            let shape = |r: Result<Incoming, String>| {
                r.map(|(req, id)| (req.query, req.operation_name, req.variables, id))
            };
            assert_eq!(shape(read), shape(general), "{}", String::from_utf8_lossy(body));
        }
    }
}
