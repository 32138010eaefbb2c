//! The sign-in: `start` stores a short-lived, single-use flow (state hashed; nonce and PKCE
//! verifier sealed; the hash of a key only the starting browser holds) and returns the
//! provider's authorization URL; `callback` (`GET /sso/callback`) takes the flow by its state,
//! exchanges the code, validates the ID token and signs the user in, answering with a one-time
//! code; `complete` (`completeSsoSignIn`) exchanges that code and the browser key for tokens.
//! Tokens never travel in a URL.

use chrono::{DateTime, Utc};
use openidconnect::core::{CoreAuthenticationFlow, CoreIdTokenClaims, CoreTokenResponse};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::enforcement::refresh_aad;
use super::provider::{self, OidcClient};
use super::repo::{self, StoredConnection};
use super::{Handles, email_domain, secret_aad};
use crate::auth::email::EmailAddress;
use crate::auth::repo::User;
use crate::auth::secret::{hash_secret, new_secret};
use crate::auth::session::{self, Tokens};
use crate::db::notify::{MEMBER_CHANGED, publish};
use crate::db::rows::Columns;
use crate::error::{AppError, SsoFailure};
use crate::members::repo as members_repo;
use crate::plans::{Feature, Resource};

/// How long a started sign-in may take until the provider sends the browser back.
const FLOW_TTL: chrono::Duration = chrono::Duration::minutes(10);
/// How long the one-time code of a finished callback can be exchanged.
const CODE_TTL_SECS: f64 = 120.0;

/// A started sign-in, for the frontend.
pub struct Started {
    pub authorization_url: String,
    /// Kept by the browser that started (e.g. sessionStorage); `completeSsoSignIn` needs it.
    pub browser_key: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    nonce: String,
    verifier: String,
}

fn state_invalid(message: &str) -> AppError {
    AppError::sso(SsoFailure::StateInvalid, message)
}

fn token_invalid(message: String) -> AppError {
    AppError::sso(SsoFailure::TokenInvalid, message)
}

/// The connection's client secret, decrypted.
pub(super) fn client_secret(h: Handles<'_>, stored: &StoredConnection) -> Result<String, AppError> {
    let plain =
        h.keys.decrypt(&stored.client_secret, &secret_aad(stored.tenant_id)).map_err(AppError::internal)?;
    String::from_utf8(plain).map_err(AppError::internal)
}

/// The tenant a sign-in is for: the one that verified the email's domain, or the one named.
pub async fn tenant_for_email(h: Handles<'_>, email: &str) -> Result<(Uuid, EmailAddress), AppError> {
    let email = EmailAddress::parse(email)?;
    let tenant = repo::tenant_for_domain(&h.pool.get().await?, email_domain(email.as_str())).await?;
    let tenant = tenant.ok_or_else(|| {
        AppError::sso(
            SsoFailure::DomainNotVerified,
            "no organisation has set up single sign-on for this email's domain; sign in with your password",
        )
    })?;
    Ok((tenant, email))
}

async fn connection_for(h: Handles<'_>, tenant_id: Uuid) -> Result<(StoredConnection, OidcClient), AppError> {
    let access = h.access.get(h.pool, h.plans, tenant_id).await?.ok_or(AppError::NotFound("tenant"))?;
    access.require(Feature::Sso, h.plans)?;
    let stored = repo::connection(&h.pool.get().await?, tenant_id)
        .await?
        .ok_or(AppError::NotFound("single sign-on connection for this tenant"))?;
    let issuer = h.sso.providers.parse_issuer(&stored.issuer)?;
    let metadata = h.sso.providers.metadata(&issuer, false).await?;
    let client = provider::client(&metadata, &stored.client_id, client_secret(h, &stored)?, &h.sso.callback);
    Ok((stored, client))
}

/// Starts a sign-in at the tenant's provider; `redirect` (already checked against the allowed
/// origins) is where the browser lands with the one-time code.
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id))]
pub async fn start(
    h: Handles<'_>,
    tenant_id: Uuid,
    login_hint: Option<&EmailAddress>,
    redirect: &url::Url,
) -> Result<Started, AppError> {
    let (_, client) = connection_for(h, tenant_id).await?;
    let (state, nonce, browser_key) = (new_secret(), new_secret(), new_secret());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let flow_id = Uuid::new_v4();
    let sealed = Sealed { nonce: nonce.clone(), verifier: verifier.secret().clone() };
    let sealed =
        h.keys.encrypt(&serde_json::to_vec(&sealed).map_err(AppError::internal)?, flow_id.as_bytes());
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state.clone()),
            move || Nonce::new(nonce.clone()),
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge);
    if let Some(hint) = login_hint {
        request = request.add_extra_param("login_hint", hint.as_str().to_owned());
    }
    let (url, state, _) = request.url();
    let expires_at = Utc::now() + FLOW_TTL;
    let client = h.pool.get().await?;
    // Finished and abandoned flows go soon after they expire (indexed by expiry).
    client.execute("delete from control.sso_flows where expires_at < now() - interval '1 hour'", &[]).await?;
    client
        .execute(
            "insert into control.sso_flows (id, tenant_id, state_hash, browser_hash, sealed, redirect_url, expires_at)
             values ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &flow_id,
                &tenant_id,
                &hash_secret(state.secret()),
                &hash_secret(&browser_key),
                &sealed,
                &redirect.as_str(),
                &expires_at,
            ],
        )
        .await?;
    Ok(Started { authorization_url: url.to_string(), browser_key, expires_at })
}

/// What the provider sent back to `/sso/callback`.
#[derive(Debug, Default)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

/// A flow the callback took (its state is used up from then on).
pub struct TakenFlow {
    id: Uuid,
    tenant_id: Uuid,
    sealed: Vec<u8>,
    pub redirect_url: String,
}

/// Takes the flow named by `state`: once, before it expires. Anything else is
/// `SSO_STATE_INVALID` (unknown, replayed, expired).
pub async fn take(h: Handles<'_>, state: Option<&str>) -> Result<TakenFlow, AppError> {
    let state = state.filter(|s| !s.is_empty() && s.len() <= 256).ok_or_else(|| {
        state_invalid("the sign-in response carries no valid state; start the sign-in again")
    })?;
    let row = h
        .pool
        .get()
        .await?
        .query_opt(
            "update control.sso_flows set callback_at = now()
              where state_hash = $1 and callback_at is null and expires_at > now()
          returning id, tenant_id, sealed, redirect_url",
            &[&hash_secret(state)],
        )
        .await?
        .ok_or_else(|| {
            state_invalid("this sign-in is unknown, expired or already used; start the sign-in again")
        })?;
    let c = Columns::of(&row, "sso::flow::take");
    Ok(TakenFlow {
        id: c.try_get("id")?,
        tenant_id: c.try_get("tenant_id")?,
        sealed: c.try_get("sealed")?,
        redirect_url: c.try_get("redirect_url")?,
    })
}

/// Finishes a taken flow: exchanges the code, validates the ID token, signs the user in (and
/// into the tenant); returns the one-time code for `completeSsoSignIn`.
#[tracing::instrument(skip_all, fields(tenant.id = %flow.tenant_id))]
pub async fn callback(h: Handles<'_>, flow: &TakenFlow, params: &CallbackParams) -> Result<String, AppError> {
    if let Some(error) = &params.error {
        let error: String = error.chars().filter(char::is_ascii_graphic).take(64).collect();
        return Err(provider::unavailable(format!("the identity provider refused the sign-in ({error})")));
    }
    let code = params.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 2048);
    let code = code.ok_or_else(|| state_invalid("the sign-in response carries no code"))?;
    let sealed = h.keys.decrypt(&flow.sealed, flow.id.as_bytes()).map_err(AppError::internal)?;
    let sealed: Sealed = serde_json::from_slice(&sealed).map_err(AppError::internal)?;
    let (stored, client) = connection_for(h, flow.tenant_id).await?;
    let http = |request| h.sso.providers.http().fetch(request);
    let exchange = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|_| {
            provider::unavailable("the provider's discovery document names no token endpoint".into())
        })?
        .set_pkce_verifier(PkceCodeVerifier::new(sealed.verifier));
    let answer: CoreTokenResponse = exchange.request_async(&http).await.map_err(|err| match err {
        RequestTokenError::ServerResponse(refused) => token_invalid(format!(
            "the provider refused the authorization code ({}); start the sign-in again",
            refused.error()
        )),
        other => {
            tracing::info!(error = %other, "SSO code exchange failed");
            provider::unavailable("the provider's token endpoint could not be used".into())
        }
    })?;
    let claims = verified_claims(h, &stored, client, &answer, &Nonce::new(sealed.nonce)).await?;
    if claims.email_verified() != Some(true) {
        return Err(AppError::EmailNotVerified);
    }
    let email = claims.email().ok_or_else(|| token_invalid("the ID token carries no email claim".into()))?;
    let email = EmailAddress::parse(email.as_str())?;
    let domain = email_domain(email.as_str());
    if !repo::verified_by(&h.pool.get().await?, flow.tenant_id, domain).await? {
        return Err(AppError::sso(
            SsoFailure::DomainNotVerified,
            format!(
                "{domain} is not a verified email domain of this tenant; its owner can verify it (verifySsoDomain)"
            ),
        ));
    }
    let name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
    let user = sign_in_user(h, &stored, &email, name.as_deref()).await?;
    let refresh = answer
        .refresh_token()
        .map(|t| h.keys.encrypt(t.secret().as_bytes(), &refresh_aad(flow.tenant_id, user.id)));
    let one_time = new_secret();
    h.pool
        .get()
        .await?
        .execute(
            "update control.sso_flows set code_hash = $2, user_id = $3, refresh_sealed = $4 where id = $1",
            &[&flow.id, &hash_secret(&one_time), &user.id, &refresh],
        )
        .await?;
    tracing::info!(user.id = %user.id, "SSO sign-in verified");
    Ok(one_time)
}

/// The ID token's claims once issuer, audience, signature, expiry and nonce check out. A key
/// id the cached key set lacks fetches the set again, once.
async fn verified_claims(
    h: Handles<'_>,
    stored: &StoredConnection,
    client: OidcClient,
    answer: &CoreTokenResponse,
    nonce: &Nonce,
) -> Result<CoreIdTokenClaims, AppError> {
    let id_token =
        answer.id_token().ok_or_else(|| token_invalid("the provider answered without an ID token".into()))?;
    let invalid = |err: ClaimsVerificationError| {
        tracing::info!(error = %err, "SSO ID token refused");
        token_invalid(format!(
            "the provider's ID token is not valid: {}",
            crate::error::clip(&err.to_string())
        ))
    };
    match id_token.claims(&client.id_token_verifier(), nonce) {
        Ok(claims) => Ok(claims.clone()),
        Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
            let issuer = h.sso.providers.parse_issuer(&stored.issuer)?;
            let cached = h.sso.providers.metadata(&issuer, false).await?;
            let metadata = h.sso.providers.refresh_keys(&issuer, &cached).await?;
            let client =
                provider::client(&metadata, &stored.client_id, client_secret(h, stored)?, &h.sso.callback);
            id_token.claims(&client.id_token_verifier(), nonce).cloned().map_err(invalid)
        }
        Err(err) => Err(invalid(err)),
    }
}

/// The account for a verified email: the existing one, or a new one without a usable
/// password; made a member of the tenant with the default role if it is not one.
async fn sign_in_user(
    h: Handles<'_>,
    stored: &StoredConnection,
    email: &EmailAddress,
    name: Option<&str>,
) -> Result<User, AppError> {
    let mut client = h.pool.get().await?;
    let tx = client.transaction().await?;
    let name: String =
        name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(email.as_str()).chars().take(100).collect();
    let user = match crate::auth::repo::find_credentials(&tx, email).await? {
        Some((user, _)) => user,
        None => crate::auth::repo::insert(&tx, email, &name, &unusable_password_hash())
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("account created concurrently")))?,
    };
    // The provider verified the address.
    crate::auth::repo::mark_verified(&tx, user.id).await?;
    let tenant_id = stored.tenant_id;
    if members_repo::find_role(&tx, tenant_id, user.id).await?.is_none() {
        let access = h.access.get(h.pool, h.plans, tenant_id).await?.ok_or(AppError::NotFound("tenant"))?;
        let taken = members_repo::seats_taken(&tx, tenant_id).await?;
        access.check_room(Resource::Members, taken, 1)?;
        members_repo::insert(&tx, tenant_id, user.id, stored.default_role).await?;
        publish(&tx, MEMBER_CHANGED, &format!("{tenant_id}:{}", user.id)).await?;
        tracing::info!(user.id = %user.id, "SSO sign-in added a member");
    }
    tx.commit().await?;
    crate::auth::repo::require(&client, user.id).await
}

/// An argon2id hash of nothing anyone knows (random salt and output): password sign-in fails
/// for the account until its owner sets a password by reset.
fn unusable_password_hash() -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
    use rand::RngCore;
    let (mut salt, mut output) = ([0u8; 16], [0u8; 32]);
    rand::rng().fill_bytes(&mut salt);
    rand::rng().fill_bytes(&mut output);
    format!("$argon2id$v=19$m=19456,t=2,p=1${}${}", B64.encode(salt), B64.encode(output))
}

/// Exchanges the one-time code and the browser key for a session; the code works once, for
/// two minutes, and only with the key of the browser that started the sign-in.
#[tracing::instrument(skip_all)]
pub async fn complete(h: Handles<'_>, code: &str, browser_key: &str) -> Result<(User, Tokens), AppError> {
    let mut client = h.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "update control.sso_flows set completed_at = now()
              where code_hash = $1 and browser_hash = $2 and completed_at is null
                and callback_at > now() - make_interval(secs => $3)
          returning tenant_id, user_id, refresh_sealed",
            &[&hash_secret(code), &hash_secret(browser_key), &CODE_TTL_SECS],
        )
        .await?
        .ok_or_else(|| {
            state_invalid(
                "this sign-in code is unknown, expired, already used, or from another browser; sign in again",
            )
        })?;
    let c = Columns::of(&row, "sso::flow::complete");
    let (tenant_id, user_id): (Uuid, Uuid) = (c.try_get("tenant_id")?, c.try_get("user_id")?);
    let refresh: Option<Vec<u8>> = c.try_get("refresh_sealed")?;
    let tokens = session::start(&tx, h.tokens, user_id).await?;
    tx.execute(
        "insert into control.sso_sessions (family_id, tenant_id, user_id, refresh_sealed)
         select family_id, $2, $3, $4 from control.sessions where token_hash = $1",
        &[&hash_secret(&tokens.refresh_token), &tenant_id, &user_id, &refresh],
    )
    .await?;
    let user = crate::auth::repo::require(&tx, user_id).await?;
    tx.commit().await?;
    Ok((user, tokens))
}
