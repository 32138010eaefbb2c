//! The executor behind `/graphql/ws`: the schema, refusing queries and mutations, with each
//! subscription bound to the socket's current standing (see `ws`).

use std::sync::Arc;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Data, Executor, ServerError};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::ws::Shared;
use super::ws_gate::DOCUMENT_ID;
use crate::graphql::AppSchema;
use crate::graphql::documents::Documents;
use crate::graphql::input_check;
use crate::graphql::trusted::{Choice, TrustedDocuments};
use crate::request::context::RequestCtx;
use crate::state::AppState;

/// The schema, refusing queries and mutations: those go to `/graphql`, where they are metered.
/// Each subscription runs with a request context of its own, built from the socket's current
/// standing, and ends (with the reason) when a later standing no longer meets what it was
/// checked for.
#[derive(Clone)]
pub(super) struct SubscriptionsOnly {
    pub(super) documents: Arc<Documents>,
    pub(super) trusted: Arc<TrustedDocuments>,
    pub(super) state: AppState,
    pub(super) shared: Arc<Shared>,
}

impl SubscriptionsOnly {
    /// The request's document: a trusted one named by `documentId` (which the gate moved into
    /// the extensions) or `extensions.persistedQuery`, else its own text where the mode allows
    /// it; then its input is checked. Returns the schema to run it on.
    fn prepare(&self, request: &mut async_graphql::Request) -> Result<&AppSchema, ServerError> {
        let id = match request.extensions.get(DOCUMENT_ID) {
            Some(async_graphql::Value::String(id)) => Some(id.clone()),
            _ => None,
        };
        let validated = match self.trusted.choose(request, id.as_deref()) {
            Ok(Choice::Trusted(trusted)) => {
                request.set_parsed_query(trusted.prepared.doc.clone());
                true
            }
            Ok(Choice::AdHoc) => false,
            Err(refused) => {
                let mut error = ServerError::new(refused.message, None);
                error.extensions.get_or_insert_with(Default::default).set("code", refused.code);
                return Err(error);
            }
        };
        input_check::check_request(self.documents.schema(), request)?;
        Ok(self.documents.schema_for(validated))
    }
}

impl Executor for SubscriptionsOnly {
    async fn execute(&self, mut request: async_graphql::Request) -> async_graphql::Response {
        match self.prepare(&mut request) {
            Ok(schema) => schema.execute(request).await,
            Err(refused) => async_graphql::Response::from_errors(vec![refused]),
        }
    }

    fn execute_stream(
        &self,
        mut request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        let schema = match self.prepare(&mut request) {
            Ok(schema) => schema.clone(),
            Err(refused) => return once_error(refused),
        };
        if !is_subscription(&mut request) {
            let mut error = ServerError::new(
                "only subscriptions go over /graphql/ws; send queries and mutations to /graphql",
                None,
            );
            error.extensions.get_or_insert_with(Default::default).set("code", "VALIDATION");
            return once_error(error);
        }
        let mut standing = self.shared.standing.subscribe();
        let granted = match standing.borrow_and_update().clone() {
            Some(Ok(granted)) => granted,
            Some(Err(err)) => return once_error(err.into_server_error(async_graphql::Pos::default())),
            None => return once_error(ServerError::new("the handshake is not completed", None)),
        };
        let ctx = RequestCtx::new(self.state.clone(), Some(granted.access.clone()), granted.caller)
            .with_client_ip(self.shared.client_ip);
        let needs = ctx.needs();
        request.data.insert(ctx);
        let updates = Executor::execute_stream(&schema, request, session_data);
        let plans = self.state.clone();
        futures::stream::unfold(Some((updates, standing)), move |running| {
            let (needs, state) = (needs.clone(), plans.clone());
            async move {
                let (mut updates, mut standing) = running?;
                loop {
                    tokio::select! {
                        biased;
                        changed = standing.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                            let verdict = match standing.borrow_and_update().clone() {
                                Some(Ok(granted)) => needs
                                    .met_by(granted.role, &granted.access, &state.plans)
                                    .map_err(async_graphql::Error::from),
                                Some(Err(err)) => Err(err),
                                None => Ok(()),
                            };
                            if let Err(err) = verdict {
                                let error = err.into_server_error(async_graphql::Pos::default());
                                return Some((async_graphql::Response::from_errors(vec![error]), None));
                            }
                        }
                        update = updates.next() => return update.map(|update| (update, Some((updates, standing)))),
                    }
                }
            }
        })
        .boxed()
    }
}

fn once_error(error: ServerError) -> BoxStream<'static, async_graphql::Response> {
    futures::stream::once(async move { async_graphql::Response::from_errors(vec![error]) }).boxed()
}

/// Whether the request runs a subscription (a document that does not parse is left to the schema).
fn is_subscription(request: &mut async_graphql::Request) -> bool {
    let name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return true;
    };
    match &doc.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Subscription,
        DocumentOperations::Multiple(ops) => match name {
            Some(name) => ops.get(name.as_str()).is_some_and(|op| op.node.ty == OperationType::Subscription),
            None => false,
        },
    }
}
