//! What single sign-on changes for other credentials: password sign-in for addresses whose
//! domain a tenant that enforces SSO has verified, sessions opened by password for those
//! addresses, and sessions opened by SSO whose provider no longer accepts the user
//! (deprovisioning: checked by asking the provider on every `refreshSession`).

use openidconnect::RefreshToken;
use openidconnect::core::CoreTokenResponse;
use openidconnect::{OAuth2TokenResponse, RequestTokenError};
use uuid::Uuid;

use super::{Handles, email_domain, provider, repo};
use crate::auth::email::EmailAddress;
use crate::auth::secret::hash_secret;
use crate::db::rows::Columns;
use crate::error::{AppError, SsoFailure};

fn required(domain: &str) -> AppError {
    AppError::sso(
        SsoFailure::Required,
        format!(
            "your organisation requires single sign-on for {domain} addresses: sign in with startSsoSignIn(email:)"
        ),
    )
}

/// Refuses a password (sign-in or sign-up) for an address whose domain is verified by a
/// tenant that enforces SSO. Decided by the domain alone, before any password is checked, so
/// the answer says nothing about whether an account exists.
pub async fn password_allowed(h: Handles<'_>, email: &str) -> Result<(), AppError> {
    let Ok(email) = EmailAddress::parse(email) else { return Ok(()) };
    let domain = email_domain(email.as_str());
    if repo::domain_enforced(&h.pool.get().await?, domain).await? {
        return Err(required(domain));
    }
    Ok(())
}

/// The session a refresh token belongs to, as SSO sees it.
struct SessionOrigin {
    family_id: Uuid,
    email: String,
    /// `Some` when SSO opened the session: the tenant and the provider's sealed refresh token.
    sso: Option<(Uuid, Uuid, Option<Vec<u8>>)>,
}

/// Runs before a refresh token is rotated. A session opened by SSO asks the provider again
/// (with its refresh token): a refusal ends the session (`UNAUTHENTICATED`); an unreachable
/// provider is `SSO_PROVIDER_UNAVAILABLE` and changes nothing. A session opened by password
/// for an address under enforced SSO ends with `SSO_REQUIRED`. Unknown, used or revoked tokens
/// are left to `session::refresh`, which refuses them.
#[tracing::instrument(skip_all)]
pub async fn before_refresh(h: Handles<'_>, refresh_token: &str) -> Result<(), AppError> {
    let Some(origin) = session_origin(h, refresh_token).await? else { return Ok(()) };
    match origin.sso {
        None => {
            let domain = email_domain(&origin.email);
            if repo::domain_enforced(&h.pool.get().await?, domain).await? {
                end_session(h, origin.family_id).await?;
                return Err(required(domain));
            }
            Ok(())
        }
        Some((tenant_id, user_id, Some(sealed))) => {
            ask_provider(h, origin.family_id, tenant_id, user_id, &sealed).await
        }
        // The provider issued no refresh token: nothing to ask (docs/sso.md).
        Some((_, _, None)) => Ok(()),
    }
}

async fn session_origin(h: Handles<'_>, refresh_token: &str) -> Result<Option<SessionOrigin>, AppError> {
    let client = h.pool.get().await?;
    let row = client
        .query_opt(
            "select s.family_id, u.email, o.tenant_id, o.user_id as sso_user_id, o.refresh_sealed
               from control.sessions s
               join control.users u on u.id = s.user_id
               left join control.sso_sessions o on o.family_id = s.family_id
              where s.token_hash = $1 and s.revoked_at is null and s.rotated_at is null",
            &[&hash_secret(refresh_token)],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let c = Columns::of(&row, "sso::enforcement::session_origin");
    let tenant: Option<Uuid> = c.try_get("tenant_id")?;
    let user: Option<Uuid> = c.try_get("sso_user_id")?;
    Ok(Some(SessionOrigin {
        family_id: c.try_get("family_id")?,
        email: c.try_get("email")?,
        sso: tenant
            .zip(user)
            .map(|(t, u)| Ok::<_, AppError>((t, u, c.try_get("refresh_sealed")?)))
            .transpose()?,
    }))
}

/// The associated data sealing a provider refresh token to its tenant and user.
pub fn refresh_aad(tenant_id: Uuid, user_id: Uuid) -> Vec<u8> {
    format!("sso refresh token:{tenant_id}:{user_id}").into_bytes()
}

async fn ask_provider(
    h: Handles<'_>,
    family: Uuid,
    tenant_id: Uuid,
    user_id: Uuid,
    sealed: &[u8],
) -> Result<(), AppError> {
    let aad = refresh_aad(tenant_id, user_id);
    let token = h.keys.decrypt(sealed, &aad).map_err(AppError::internal)?;
    let token = RefreshToken::new(String::from_utf8(token).map_err(AppError::internal)?);
    let stored = repo::connection(&h.pool.get().await?, tenant_id).await?;
    let Some(stored) = stored else {
        // The connection was removed: nothing vouches for this session any more.
        end_session(h, family).await?;
        return Err(no_longer_accepted());
    };
    let issuer = h.sso.providers.parse_issuer(&stored.issuer)?;
    let metadata = h.sso.providers.metadata(&issuer, false).await?;
    let secret = super::flow::client_secret(h, &stored)?;
    let client = provider::client(&metadata, &stored.client_id, secret, &h.sso.callback);
    let request = client.exchange_refresh_token(&token).map_err(|_| {
        provider::unavailable("the provider's discovery document names no token endpoint".into())
    })?;
    let http = |request| h.sso.providers.http().fetch(request);
    let answer: Result<CoreTokenResponse, _> = request.request_async(&http).await;
    match answer {
        Ok(answer) => {
            if let Some(rotated) = answer.refresh_token() {
                let sealed = h.keys.encrypt(rotated.secret().as_bytes(), &aad);
                h.pool
                    .get()
                    .await?
                    .execute(
                        "update control.sso_sessions set refresh_sealed = $2 where family_id = $1",
                        &[&family, &sealed],
                    )
                    .await?;
            }
            Ok(())
        }
        Err(RequestTokenError::ServerResponse(refused)) => {
            tracing::info!(user.id = %user_id, tenant.id = %tenant_id, error = %refused.error(), "SSO provider refused the session; it ends");
            end_session(h, family).await?;
            Err(no_longer_accepted())
        }
        Err(err) => {
            tracing::info!(error = %err, "SSO provider unreachable on refresh");
            Err(provider::unavailable(
                "your organisation's identity provider could not be reached; try again shortly".into(),
            ))
        }
    }
}

fn no_longer_accepted() -> AppError {
    AppError::Unauthenticated(
        "your organisation's identity provider no longer accepts this account; sign in again",
    )
}

/// Revokes the session family and forgets its provider token.
async fn end_session(h: Handles<'_>, family: Uuid) -> Result<(), AppError> {
    let client = h.pool.get().await?;
    client
        .execute(
            "update control.sessions set revoked_at = now() where family_id = $1 and revoked_at is null",
            &[&family],
        )
        .await?;
    client.execute("delete from control.sso_sessions where family_id = $1", &[&family]).await?;
    Ok(())
}
