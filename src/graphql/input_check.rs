//! Variable coercion before execution, as the GraphQL spec orders it: a missing or null
//! required variable, an `Int` that does not fit 32 bits, an unknown enum value, a wrong type,
//! or a NUL character in any string (PostgreSQL cannot store it) fails the whole request with
//! `VALIDATION`, naming the variable or argument, before any resolver runs.
//!
//! async-graphql coerces a variable only when a resolver reads it, so these would otherwise
//! surface as field errors without a code (reported as `INTERNAL`), or reach the database.
//! The types come from the schema's registry (`ExtensionContext::schema_env`, public but
//! undocumented in async-graphql 7.2; the unit tests below catch a change on upgrade).
//!
//! The check is called by the transports (`/graphql`, `/graphql/ws`) rather than installed as a
//! schema extension: with any extension installed, async-graphql sends every field resolution
//! through the extension chain (a registry lookup and boxed futures per field), which cost the
//! read path about a third more instructions per request. The registry is captured when a schema
//! is built, from a throwaway twin whose only extension records it, and kept in the schema's own
//! data ([`InputTypes`]): each schema checks against its own types, and nothing is shared between
//! the schemas (apps) of one process.

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest};
use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet, Type,
};
use async_graphql::registry::{MetaType, Registry};
use async_graphql::{
    ErrorExtensionValues, Name, ObjectType, Request, Schema, SchemaEnv, ServerError, ServerResult,
    SubscriptionType, Value, Variables,
};

/// A schema's type registry, in the schema's data (see the module comment).
pub struct InputTypes(SchemaEnv);

/// An extension that records the schema environment of the schema it is installed on.
pub struct Capture(Arc<Mutex<Option<SchemaEnv>>>);

impl ExtensionFactory for Capture {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Capture(self.0.clone()))
    }
}

#[async_trait::async_trait]
impl Extension for Capture {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(ctx.schema_env.clone());
        }
        next.run(ctx, request).await
    }
}

/// Captures the registry of the schema `build` makes, for the schema's data: `build` gets the
/// extension to install, and the schema it returns answers `{ __typename }` once.
pub fn capture_registry<S, F>(build: impl FnOnce(Capture) -> S, execute: F) -> Option<InputTypes>
where
    F: FnOnce(S) -> std::pin::Pin<Box<dyn Future<Output = async_graphql::Response>>>,
{
    use futures::FutureExt as _;
    let slot = Arc::new(Mutex::new(None));
    let schema = build(Capture(slot.clone()));
    // `{ __typename }` touches no resolver, data or I/O: it completes on its first poll, here,
    // with no executor needed.
    execute(schema).now_or_never()?;
    let env = slot.lock().ok().and_then(|mut slot| slot.take());
    env.map(InputTypes)
}

/// Checks a request's variables and literals before it executes (`VALIDATION` naming the
/// input). Every transport calls this before `execute`, with the schema that will execute it.
pub fn check_request<Q, M, S>(schema: &Schema<Q, M, S>, request: &mut Request) -> Result<(), ServerError>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let Some(InputTypes(env)) = schema.data::<InputTypes>() else {
        // Every schema is built through `build_schema_for`, which captures the registry first.
        let mut err = ServerError::new("internal error: the input check has no schema registry", None);
        err.extensions.get_or_insert_with(Default::default).set("code", "INTERNAL");
        return Err(err);
    };
    let operation_name = request.operation_name.clone();
    let variables = std::mem::take(&mut request.variables);
    // A document that does not parse is reported by the executor as usual.
    let checked = match request.parsed_query() {
        Ok(doc) => check(&env.registry, doc, operation_name.as_deref(), &variables)
            .map_err(|(field, message)| refusal(&field, &message)),
        Err(_) => Ok(()),
    };
    request.variables = variables;
    checked
}

/// A `VALIDATION` request error naming `field`.
fn refusal(field: &str, message: &str) -> ServerError {
    let mut err = ServerError::new(format!("{field}: {message}"), None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", "VALIDATION");
    extensions.set("field", field);
    err.extensions = Some(extensions);
    err
}

type Refused = (String, String);

const NUL: &str = "must not contain NUL (\\u0000) characters";

fn check(
    registry: &Registry,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Result<(), Refused> {
    let operation = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next().map(|op| &op.node),
        // No operation can be chosen: the executor says so.
        _ => None,
    };
    let Some(operation) = operation else { return Ok(()) };
    check_variables(registry, operation, variables)?;
    literals(&operation.selection_set.node)?;
    for fragment in doc.fragments.values() {
        literals(&fragment.node.selection_set.node)?;
    }
    Ok(())
}

fn check_variables(
    registry: &Registry,
    op: &OperationDefinition,
    variables: &Variables,
) -> Result<(), Refused> {
    for def in &op.variable_definitions {
        let def = &def.node;
        let path = format!("${}", def.name.node);
        let ty = &def.var_type.node;
        match variables.get(&def.name.node) {
            Some(value) => coerce(registry, ty, value, &path)?,
            None if def.default_value.is_some() || ty.nullable => {}
            None => return Err((path, format!("a value of type {ty} is required"))),
        }
    }
    Ok(())
}

fn coerce(registry: &Registry, ty: &Type, value: &Value, path: &str) -> Result<(), Refused> {
    let refused = |message: String| Err((path.to_owned(), message));
    if matches!(value, Value::Null) {
        return if ty.nullable { Ok(()) } else { refused(format!("a value of type {ty} is required")) };
    }
    let name = match &ty.base {
        BaseType::List(inner) => {
            return match value {
                Value::List(items) => items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, item)| coerce(registry, inner, item, &format!("{path}[{i}]"))),
                // A single value stands for a list of one.
                single => coerce(registry, inner, single, path),
            };
        }
        BaseType::Named(name) => name.as_str(),
    };
    match (name, value) {
        ("Int", Value::Number(n)) if n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()) => Ok(()),
        ("Int", _) => refused("must be an integer from -2147483648 to 2147483647".into()),
        ("Float", Value::Number(_)) | ("Boolean", Value::Boolean(_)) => Ok(()),
        ("Float", _) => refused("must be a number".into()),
        ("Boolean", _) => refused("must be true or false".into()),
        ("String" | "ID", Value::String(s)) if s.contains('\0') => refused(NUL.into()),
        ("String", Value::String(_)) | ("ID", Value::String(_)) => Ok(()),
        ("ID", Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
        ("String", _) => refused("must be a string".into()),
        ("ID", _) => refused("must be a string or an integer".into()),
        _ => coerce_named(registry, name, value, path),
    }
}

fn coerce_named(registry: &Registry, name: &str, value: &Value, path: &str) -> Result<(), Refused> {
    let refused = |message: String| Err((path.to_owned(), message));
    match registry.types.get(name) {
        Some(MetaType::Scalar { is_valid, .. }) => {
            if let Value::String(s) = value
                && s.contains('\0')
            {
                return refused(NUL.into());
            }
            match is_valid {
                Some(is_valid) if !is_valid(value) => refused(format!("not a valid {name}")),
                _ => Ok(()),
            }
        }
        Some(MetaType::Enum { enum_values, .. }) => {
            let given = match value {
                Value::String(s) => Some(s.as_str()),
                Value::Enum(e) => Some(e.as_str()),
                _ => None,
            };
            if given.is_some_and(|given| enum_values.contains_key(given)) {
                return Ok(());
            }
            let allowed: Vec<&str> = enum_values.keys().map(String::as_str).collect();
            refused(format!("must be one of {}", allowed.join(", ")))
        }
        Some(MetaType::InputObject { input_fields, .. }) => {
            let Value::Object(fields) = value else { return refused(format!("must be an object ({name})")) };
            if let Some(unknown) = fields.keys().find(|key| !input_fields.contains_key(key.as_str())) {
                let unknown: String = unknown.chars().take(64).collect();
                return refused(format!("{name} has no field {unknown:?}"));
            }
            for (field, meta) in input_fields {
                let field_path = format!("{path}.{field}");
                let Some(ty) = Type::new(&meta.ty) else { continue };
                match fields.get(&Name::new(field)) {
                    Some(value) => coerce(registry, &ty, value, &field_path)?,
                    None if meta.default_value.is_some() || ty.nullable => {}
                    None => return Err((field_path, format!("a value of type {ty} is required"))),
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// NUL characters in string literals written into the document itself.
fn literals(set: &SelectionSet) -> Result<(), Refused> {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                for (name, value) in &field.arguments {
                    // Variables are checked with the variables; here they count as null.
                    let literal = value.node.clone().into_const_with(|_| Ok::<_, ()>(Value::Null));
                    if literal.is_ok_and(|literal| has_nul(&literal)) {
                        return Err((format!("{}.{}", field.name.node, name.node), NUL.into()));
                    }
                }
                literals(&field.selection_set.node)?;
            }
            Selection::InlineFragment(fragment) => literals(&fragment.node.selection_set.node)?,
            Selection::FragmentSpread(_) => {}
        }
    }
    Ok(())
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::List(items) => items.iter().any(has_nul),
        Value::Object(fields) => fields.values().any(has_nul),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    async fn refused(query: &str, variables: serde_json::Value) -> Option<String> {
        let mut request = async_graphql::Request::new(query).variables(Variables::from_json(variables));
        let schema = crate::graphql::build_schema_for(true);
        let err = match check_request(&schema, &mut request) {
            Ok(()) => schema.execute(request).await.errors.first()?.clone(),
            Err(err) => err,
        };
        let err = &err;
        let ext = err.extensions.as_ref()?;
        assert_eq!(ext.get("code"), Some(&Value::from("VALIDATION")), "{}", err.message);
        match ext.get("field") {
            Some(Value::String(field)) => Some(field.clone()),
            _ => None,
        }
    }

    use super::*;

    #[tokio::test]
    async fn bad_variables_are_refused_naming_the_variable() {
        let q = "query($n: Int!, $p: UsagePeriod!) { __typename }";
        assert_eq!(refused(q, json!({ "n": 1, "p": "DAY" })).await, None);
        assert_eq!(refused(q, json!({ "p": "DAY" })).await.as_deref(), Some("$n"));
        assert_eq!(refused(q, json!({ "n": 4_294_967_296_i64, "p": "DAY" })).await.as_deref(), Some("$n"));
        assert_eq!(refused(q, json!({ "n": 1, "p": "WEEK" })).await.as_deref(), Some("$p"));
        let s = "query($s: String) { __typename }";
        assert_eq!(refused(s, json!({ "s": "a\u{0}b" })).await.as_deref(), Some("$s"));
    }

    #[tokio::test]
    async fn nul_in_a_literal_names_the_argument() {
        let q = "mutation { signIn(email: \"a\\u0000@b.io\", password: \"x\") { accessToken } }";
        assert_eq!(refused(q, json!({})).await.as_deref(), Some("signIn.email"));
    }
}
