//! Parsed GraphQL documents, cached by query text: clients send the same few queries over and
//! over, and parsing (pest) was the largest user-space cost left on the read path.
//!
//! Only parsing is skipped; validation, depth and complexity limits still run on every request.

use async_graphql::parser::types::ExecutableDocument;
use moka::future::Cache;

/// Longer queries are parsed every time rather than kept.
const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;

#[derive(Clone)]
pub struct DocumentCache(Cache<String, ExecutableDocument>);

impl DocumentCache {
    /// A cache holding at most `bytes` of query text (weighed, so a flood of long unique
    /// queries cannot outgrow it).
    pub fn new(bytes: u64) -> Self {
        let weigh = |query: &String, _: &ExecutableDocument| {
            // A parsed document takes a few times its text.
            u32::try_from(query.len().saturating_mul(4)).unwrap_or(u32::MAX)
        };
        Self(Cache::builder().weigher(weigh).max_capacity(bytes).build())
    }

    /// Gives `request` its parsed document from the cache, or parses it and remembers it. A
    /// query that does not parse is left for execution to report.
    pub async fn attach(&self, request: &mut async_graphql::Request) {
        if request.query.len() > MAX_CACHED_QUERY_BYTES {
            return;
        }
        if let Some(doc) = self.0.get(request.query.as_str()).await {
            request.set_parsed_query(doc);
            return;
        }
        let query = request.query.clone();
        if let Ok(doc) = request.parsed_query() {
            self.0.insert(query, doc.clone()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_query_is_parsed_once_and_broken_ones_are_not_kept() {
        let cache = DocumentCache::new(1024 * 1024);
        let mut first = async_graphql::Request::new("{ health { status } }");
        cache.attach(&mut first).await;
        cache.0.run_pending_tasks().await;
        assert_eq!(cache.0.entry_count(), 1);
        let mut again = async_graphql::Request::new("{ health { status } }");
        cache.attach(&mut again).await;
        assert!(again.parsed_query().is_ok());
        let mut broken = async_graphql::Request::new("{ health {");
        cache.attach(&mut broken).await;
        cache.0.run_pending_tasks().await;
        assert_eq!(cache.0.entry_count(), 1);
    }
}
