//! The request layer: what a resolver knows about its request (`RequestCtx`: tenant, caller,
//! role), the guards that check it, and the tenant a request names. It sits above the features'
//! services and `AppState`, below the GraphQL resolvers and the transports.

pub mod context;
pub mod guards;
pub mod tenant;
