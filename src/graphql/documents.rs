//! GraphQL documents prepared once: parsed documents cached by their text, and validated against
//! the schema once — a document that passed validation is not validated again while it stays in
//! the (bounded) cache. The GraphQL specification allows a service to skip validating a document
//! it has already validated.
//!
//! How, without a fork of async-graphql: the app keeps two schemas built from the same roots and
//! settings. The *strict* one runs every validation rule and carries one extension, [`Validated`],
//! whose `validation` hook marks the request's cache entry once validation has passed. The *fast*
//! one (`ValidationMode::Fast`, no extensions) runs the requests whose document is marked: it
//! skips the specification's rules, which depend only on the document and the schema, and still
//! computes depth and complexity and enforces their limits, checks fragment cycles, and — as every
//! request — the recursion depth while reading the document, `@skip`/`@include` with this
//! request's variables, and the input check (`input_check`, variables coerced and bounded per
//! request). Extensions stay off the fast schema because any installed extension sends every field
//! through the extension chain.
//!
//! The only rule that reads variable values (arguments of the correct type, with variables
//! substituted) is covered per request: validation already proved each variable's declared type
//! fits where it is used, and the input check coerces every value against its declared type.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, Response, ServerError, ValidationMode, ValidationResult};
use moka::future::Cache;

use super::{AppSchema, builder_for, input_check};

/// Longer queries are parsed and validated every time rather than kept.
const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;
/// Query text the cache holds, weighed (a parsed document takes a few times its text).
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// A parsed document and whether it has passed validation against this app's schema.
pub struct Prepared {
    pub doc: ExecutableDocument,
    validated: AtomicBool,
}

impl Prepared {
    fn new(doc: ExecutableDocument) -> Arc<Self> {
        Arc::new(Self { doc, validated: AtomicBool::new(false) })
    }

    pub fn is_validated(&self) -> bool {
        self.validated.load(Ordering::Acquire)
    }
}

/// The app's schemas and its document cache (one per app: the cache is keyed by the query text,
/// and belongs to the schema it was validated against).
pub struct Documents {
    strict: AppSchema,
    fast: AppSchema,
    cache: Cache<String, Arc<Prepared>>,
}

impl Documents {
    /// Both schemas, answering introspection only if `introspection`.
    pub fn new(introspection: bool) -> Self {
        let strict = builder_for(introspection).extension(Validated).finish();
        let fast = builder_for(introspection).validation_mode(ValidationMode::Fast).finish();
        let weigh = |query: &String, _: &Arc<Prepared>| {
            u32::try_from(query.len().saturating_mul(4)).unwrap_or(u32::MAX)
        };
        let cache = Cache::builder().weigher(weigh).max_capacity(CACHE_BYTES).build();
        Self { strict, fast, cache }
    }

    /// The schema that validates everything (subscriptions, SDL, anything not prepared here).
    pub fn schema(&self) -> &AppSchema {
        &self.strict
    }

    /// The schema for a request whose document has (fast) or has not been validated.
    pub fn schema_for(&self, validated: bool) -> &AppSchema {
        if validated { &self.fast } else { &self.strict }
    }

    /// Gives `request` its parsed document from the cache, or parses it and remembers it. A
    /// query that does not parse (or is too long to keep) is left for execution to report.
    pub async fn attach(&self, request: &mut Request) -> Option<Arc<Prepared>> {
        if request.query.len() > MAX_CACHED_QUERY_BYTES {
            return None;
        }
        if let Some(prepared) = self.cache.get(request.query.as_str()).await {
            request.set_parsed_query(prepared.doc.clone());
            return Some(prepared);
        }
        let doc = request.parsed_query().ok()?.clone();
        let prepared = Prepared::new(doc);
        self.cache.insert(request.query.clone(), prepared.clone()).await;
        Some(prepared)
    }

    /// Parses `text` and validates it (with no variables: their values are checked per request)
    /// without running it. The errors are validation's (or the parser's).
    pub fn prepare(&self, text: &str) -> Result<Arc<Prepared>, Vec<ServerError>> {
        use futures::FutureExt as _;
        let doc = async_graphql::parser::parse_query(text).map_err(|err| vec![ServerError::from(err)])?;
        let prepared = Prepared::new(doc);
        let mut request = Request::new(text).data(Pending(prepared.clone())).data(ValidateOnly);
        request.set_parsed_query(prepared.doc.clone());
        // Validation touches no resolver, data or I/O, and `ValidateOnly` stops the request
        // right after it: this completes on its first poll.
        let response = self.strict.execute(request).now_or_never();
        if prepared.is_validated() {
            return Ok(prepared);
        }
        Err(response
            .map_or_else(|| vec![ServerError::new("validation did not complete", None)], |r| r.errors))
    }

    /// Checks the request's input and runs it: on the fast schema when its document has been
    /// validated, else on the strict one, which marks `prepared` once validation passes.
    pub async fn execute(&self, mut request: Request, prepared: Option<Arc<Prepared>>) -> Response {
        if let Err(refused) = input_check::check_request(&self.strict, &mut request) {
            return Response::from_errors(vec![refused]);
        }
        match prepared {
            Some(prepared) if prepared.is_validated() => self.fast.execute(request).await,
            Some(prepared) => self.strict.execute(request.data(Pending(prepared))).await,
            None => self.strict.execute(request).await,
        }
    }
}

/// The cache entry of the request's document, marked when its validation passes.
struct Pending(Arc<Prepared>);

/// Stops the request after validation (preparing a trusted document at load).
struct ValidateOnly;

/// The strict schema's extension (see the module comment).
struct Validated;

impl ExtensionFactory for Validated {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Validated)
    }
}

#[async_trait::async_trait]
impl Extension for Validated {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if let Some(Pending(prepared)) = ctx.data_opt::<Pending>() {
            prepared.validated.store(true, Ordering::Release);
        }
        if ctx.data_opt::<ValidateOnly>().is_some() {
            return Err(vec![ServerError::new("validated only", None)]);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_document_is_validated_once_and_broken_ones_are_not_marked() {
        let docs = Documents::new(true);
        let text = "query($id: ID!) { project(id: $id) { id } }";
        let mut first = Request::new(text);
        let prepared = docs.attach(&mut first).await.expect("cached");
        assert!(!prepared.is_validated());
        // Not signed in: the resolver fails, but validation passed.
        let vars = async_graphql::Variables::from_json(serde_json::json!({ "id": "x" }));
        docs.execute(first.variables(vars), Some(prepared.clone())).await;
        assert!(prepared.is_validated());
        let mut again = Request::new(text);
        assert!(docs.attach(&mut again).await.is_some_and(|p| p.is_validated()));

        let invalid = "{ project { nope } }";
        let mut request = Request::new(invalid);
        let prepared = docs.attach(&mut request).await.expect("parses");
        let response = docs.execute(request, Some(prepared.clone())).await;
        assert!(!response.errors.is_empty());
        assert!(!prepared.is_validated());
    }

    #[test]
    fn prepare_validates_without_running() {
        let docs = Documents::new(true);
        assert!(docs.prepare("{ health { status } }").is_ok_and(|p| p.is_validated()));
        let errors = docs.prepare("{ health { nope } }").err().unwrap_or_default();
        assert!(errors.iter().any(|e| e.message.contains("nope")), "{errors:?}");
        assert!(docs.prepare("{ health {").is_err());
    }

    #[tokio::test]
    async fn depth_and_complexity_limits_hold_for_documents_marked_validated() {
        let docs = Documents::new(true);
        // Deeper than the depth limit (16), marked as if validated: the fast path refuses it too.
        let text = format!(
            "{{ __schema {{ types {{ fields {{ type {} name {} }} }} }} }}",
            "{ ofType ".repeat(16),
            "} ".repeat(16)
        );
        let mut request = Request::new(text);
        let prepared = docs.attach(&mut request).await.expect("parses");
        prepared.validated.store(true, Ordering::Release);
        let response = docs.execute(request, Some(prepared)).await;
        assert!(
            response.errors.iter().any(|e| e.message.contains("nested too deep")),
            "{:?}",
            response.errors
        );
    }
}
