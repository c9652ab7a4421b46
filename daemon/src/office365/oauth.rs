//! The OAuth 2.0 flows against the Microsoft identity platform (v2 endpoints), through `oauth2`.
//!
//! ```text
//!  Browser:  bind redirect_listen ─▶ OpenBrowser(auth URL: PKCE S256, state, login_hint)
//!            ─▶ callback | Ctrl-C | deadline ─▶ exchange code + verifier ─▶ page to the browser
//!  Paste:    PasteRedirect(auth URL) ─▶ pasted URL | Ctrl-C | deadline ─▶ check state ─▶ exchange
//!  Device:   device code endpoint ─▶ DeviceCode(uri, code, expires_at)
//!            ─▶ poll every `interval` (+5 s per slow_down) ─▶ tokens | expired | denied | Ctrl-C
//!  Refresh:  refresh_token grant ─▶ tokens (a rotated refresh token comes back in Tokens)
//! ```
//!
//! A sign-in that brings no refresh token fails ([`Office365Error::NoRefreshToken`]): the link
//! could not outlive its first access token.

use std::time::Duration;

use mslink_proto::{ConnectEvent, Sensitive, SignInFlow};
use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, DeviceCodeErrorResponse, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse, StandardRevocableToken, TokenResponse, TokenUrl,
};
use tracing::instrument;

use super::Tokens;
use super::error::{OAuthErrorBody, Office365Error, device_poll_outcome};
use super::http::{OAuthHttp, TransportError};
use super::redirect::{Catcher, Page, parse_pasted};
use crate::config::{self, Config};
use crate::interaction::Interaction;
use crate::net::{self, HttpOptions};

/// How long a browser or paste sign-in may take before `connect` gives up.
pub const SIGN_IN_DEADLINE: Duration = Duration::from_secs(10 * 60);

const TOKEN_ENDPOINT: &str = "the token endpoint";
const DEVICE_ENDPOINT: &str = "the device code endpoint";

type MsClient = oauth2::Client<
    OAuthErrorBody,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// One configured client and its HTTP transport, built per operation (the client secret file
/// is read at use time, so a rotated secret needs no reload).
struct Endpoints {
    client: MsClient,
    http: OAuthHttp,
    /// What the authorization request asks consent for: Graph's scopes and every configured
    /// resource's permission.
    scopes: Vec<Scope>,
    /// What a token request asks for: Graph's scopes only (or, for [`sign_in_to`], its scopes). Entra issues a token for one resource
    /// at a time and refuses a token request whose scopes name two (AADSTS28000); the other
    /// resources' tokens come from the refresh token, one resource per request.
    graph_scopes: Vec<Scope>,
    prompt: Option<config::Prompt>,
    /// Where a tenant admin grants consent to this app, for consent errors' reasons.
    admin_consent: String,
}

impl Endpoints {
    async fn new(config: &Config) -> Result<Endpoints, Office365Error> {
        let o = &config.office365;
        let client_id = o
            .client_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or(Office365Error::NotConfigured)?;
        let secret = match &o.client_secret {
            None => None,
            Some(config::ClientSecret::Inline(secret)) => Some(secret.clone()),
            Some(config::ClientSecret::File(path)) => {
                let file = path.clone();
                let text = tokio::task::spawn_blocking(move || {
                    crate::files::read_to_string(&file, crate::files::What::ClientSecret)
                })
                .await
                .map_err(|_| Office365Error::Cancelled)??;
                Some(text.trim().to_owned())
            }
        };
        let mut client = oauth2::Client::new(ClientId::new(client_id.to_owned()))
            .set_auth_uri(AuthUrl::from_url(o.authorize_url.url().clone()))
            .set_device_authorization_url(DeviceAuthorizationUrl::from_url(
                o.device_code_url.url().clone(),
            ))
            .set_token_uri(TokenUrl::from_url(o.token_url.url().clone()))
            // Microsoft documents client_secret in the form body.
            .set_auth_type(AuthType::RequestBody);
        if let Some(secret) = secret {
            client = client.set_client_secret(ClientSecret::new(secret));
        }
        let http = OAuthHttp::new(net::client(&config.network, HttpOptions::default())?);
        // Sign-in asks for every configured resource, so one consent covers all of them.
        let scopes = o.sign_in_scopes().into_iter().map(Scope::new).collect();
        let graph_scopes = o.scopes.iter().cloned().map(Scope::new).collect();
        let admin_consent = admin_consent_url(o, client_id);
        Ok(Endpoints { client, http, scopes, graph_scopes, prompt: o.prompt, admin_consent })
    }

    /// An `oauth2` failure as ours, with the status and Retry-After of the answer.
    fn error(
        &self,
        endpoint: &'static str,
        error: RequestTokenError<TransportError, OAuthErrorBody>,
    ) -> Office365Error {
        let meta = self.http.last();
        let status = meta.as_ref().map(|m| m.status);
        let retry_after = meta.and_then(|m| m.retry_after);
        match error {
            RequestTokenError::ServerResponse(body) => Office365Error::OAuth {
                endpoint,
                status: status.unwrap_or(400),
                body: Box::new(body),
                retry_after,
                admin_consent: None,
            },
            RequestTokenError::Request(e) => Office365Error::Unavailable {
                endpoint,
                status: None,
                detail: e.0,
                retry_after: None,
            },
            RequestTokenError::Parse(e, _) => {
                unusable(endpoint, status, retry_after, e.to_string())
            }
            RequestTokenError::Other(text) => unusable(endpoint, status, retry_after, text),
        }
    }

    /// The tokens of a sign-in, which must include a refresh token: without one the link would
    /// turn `needs_reauth` by itself when the access token expires.
    fn signed_in(&self, response: &BasicTokenResponse) -> Result<Tokens, Office365Error> {
        if response.refresh_token().is_none() {
            let granted = response
                .scopes()
                .map(|scopes| scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "));
            tracing::warn!(granted = ?granted, "the sign-in brought no refresh token");
            return Err(Office365Error::NoRefreshToken {
                granted,
                asked_consent: self.prompt == Some(config::Prompt::Consent),
            });
        }
        Ok(Self::tokens(response))
    }

    fn tokens(response: &BasicTokenResponse) -> Tokens {
        let lifetime = response.expires_in().map_or(3600, |d| d.as_secs());
        Tokens {
            access_token: Sensitive::new(response.access_token().secret().clone()),
            refresh_token: response.refresh_token().map(|t| Sensitive::new(t.secret().clone())),
            expires_at: crate::now().saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)),
        }
    }

    /// The authorization URL for `redirect_uri`, with its state and PKCE verifier.
    fn authorize(
        &self,
        redirect_uri: &url::Url,
        login_hint: &str,
    ) -> (String, String, PkceCodeVerifier) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client =
            self.client.clone().set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes.iter().cloned())
            .set_pkce_challenge(challenge);
        if !login_hint.is_empty() {
            request = request.add_extra_param("login_hint", login_hint.to_owned());
        }
        if let Some(prompt) = self.prompt {
            request = request.add_extra_param("prompt", prompt.as_str());
        }
        let (url, state) = request.add_extra_param("claims", super::claims::parameter(None)).url();
        (url.to_string(), state.secret().clone(), verifier)
    }

    async fn exchange(
        &self,
        redirect_uri: &url::Url,
        code: String,
        verifier: PkceCodeVerifier,
    ) -> Result<Tokens, Office365Error> {
        let client =
            self.client.clone().set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .add_extra_param("scope", join(&self.graph_scopes))
            .add_extra_param("claims", super::claims::parameter(None))
            .request_async(&self.http)
            .await
            .map_err(|e| self.error(TOKEN_ENDPOINT, e))?;
        self.signed_in(&response)
    }
}

/// The admin-consent URL of the configured app: `{authority}/adminconsent` (the authority
/// names the tenant: `https://login.microsoftonline.com/{tenant}/v2.0`) with the client id and
/// the requested scopes. A tenant admin who opens it grants the app's permissions for the
/// whole organisation.
fn admin_consent_url(o: &config::Office365, client_id: &str) -> String {
    let mut url = o.authority.url().clone();
    let path = format!("{}/adminconsent", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.query_pairs_mut()
        .clear()
        .append_pair("client_id", client_id)
        .append_pair("scope", &o.sign_in_scopes().join(" "));
    url.to_string()
}

fn unusable(
    endpoint: &'static str,
    status: Option<u16>,
    retry_after: Option<Duration>,
    detail: String,
) -> Office365Error {
    match status {
        Some(status) if status != 200 => Office365Error::Unavailable {
            endpoint,
            status: Some(status),
            detail: format!("HTTP {status}"),
            retry_after,
        },
        _ => Office365Error::Protocol { endpoint, detail },
    }
}

/// Runs one sign-in flow to completion: tokens, or Declined / TimedOut / Cancelled / an error.
pub async fn sign_in(
    config: &Config,
    flow: SignInFlow,
    login_hint: &str,
    interaction: &mut Interaction,
) -> Result<Tokens, Office365Error> {
    sign_in_to(config, flow, login_hint, None, interaction).await
}

/// [`sign_in`] for the resource `scopes` name instead of Graph's (an on-premises Exchange server
/// in hybrid modern authentication): consent and the first token are for those scopes only.
#[instrument(skip(config, interaction), fields(flow = ?flow))]
pub async fn sign_in_to(
    config: &Config,
    flow: SignInFlow,
    login_hint: &str,
    scopes: Option<&[String]>,
    interaction: &mut Interaction,
) -> Result<Tokens, Office365Error> {
    let mut endpoints = Endpoints::new(config).await?;
    if let Some(scopes) = scopes {
        endpoints.scopes = scopes.iter().cloned().map(Scope::new).collect();
        endpoints.graph_scopes = endpoints.scopes.clone();
    }
    let result = match flow {
        SignInFlow::Browser => browser(config, &endpoints, login_hint, interaction).await,
        SignInFlow::Paste => paste(config, &endpoints, login_hint, interaction).await,
        SignInFlow::DeviceCode => device(&endpoints, interaction).await,
    };
    result.map_err(|e| e.with_admin_consent(&endpoints.admin_consent))
}

fn timed_out() -> Office365Error {
    Office365Error::TimedOut(format!(
        "the sign-in was not finished within {} minutes",
        SIGN_IN_DEADLINE.as_secs() / 60
    ))
}

fn redirect_uri(port: u16) -> url::Url {
    let text = if port == 0 {
        "http://localhost/callback".to_owned()
    } else {
        format!("http://localhost:{port}/callback")
    };
    url::Url::parse(&text).unwrap_or_else(|e| panic!("redirect URI {text} is invalid: {e}"))
}

async fn browser(
    config: &Config,
    endpoints: &Endpoints,
    login_hint: &str,
    interaction: &mut Interaction,
) -> Result<Tokens, Office365Error> {
    let addr = config.office365.redirect_listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Office365Error::Listen { addr, source })?;
    let port =
        listener.local_addr().map_err(|source| Office365Error::Listen { addr, source })?.port();
    let redirect = redirect_uri(port);
    let (url, state, verifier) = endpoints.authorize(&redirect, login_hint);
    let mut catcher = Catcher::start(listener, state);
    interaction.tell(ConnectEvent::OpenBrowser { url }).await;
    let deadline = tokio::time::sleep(SIGN_IN_DEADLINE);
    let outcome = tokio::select! {
        callback = catcher.next() => callback.ok_or(Office365Error::Cancelled),
        () = interaction.cancelled() => Err(Office365Error::Cancelled),
        () = deadline => Err(timed_out()),
    };
    let result = match outcome {
        Ok(callback) => {
            let result = match callback.params.into_code() {
                Ok(code) => {
                    interaction.step("Signed in; fetching tokens").await;
                    endpoints.exchange(&redirect, code, verifier).await
                }
                Err(e) => Err(e),
            };
            let page = match &result {
                Ok(_) => Page {
                    ok: true,
                    message: "mslink received the sign-in. You can close this window.".into(),
                },
                Err(e) => {
                    Page { ok: false, message: format!("{e}. See mslinkctl for what to do next.") }
                }
            };
            let _ = callback.reply.send(page);
            result
        }
        Err(e) => Err(e),
    };
    catcher.stop().await;
    result
}

async fn paste(
    config: &Config,
    endpoints: &Endpoints,
    login_hint: &str,
    interaction: &mut Interaction,
) -> Result<Tokens, Office365Error> {
    // Nothing listens: the browser (perhaps on another machine) shows an error page whose
    // address the user copies back. A fixed `redirect_listen` port is kept in the URI.
    let redirect = redirect_uri(config.office365.redirect_listen.port());
    let (url, state, verifier) = endpoints.authorize(&redirect, login_hint);
    interaction.tell(ConnectEvent::PasteRedirect { url }).await;
    let pasted = tokio::select! {
        pasted = interaction.pasted() => pasted.ok_or(Office365Error::Cancelled)?,
        () = tokio::time::sleep(SIGN_IN_DEADLINE) => return Err(timed_out()),
    };
    let code = parse_pasted(pasted.expose(), &redirect, &state)?.into_code()?;
    interaction.step("Signed in; fetching tokens").await;
    endpoints.exchange(&redirect, code, verifier).await
}

async fn device(
    endpoints: &Endpoints,
    interaction: &Interaction,
) -> Result<Tokens, Office365Error> {
    let details: StandardDeviceAuthorizationResponse = endpoints
        .client
        .exchange_device_code()
        // One resource per request (see `Endpoints::graph_scopes`): with the device code, the
        // other resources are consented to when their first token is asked for.
        .add_scopes(endpoints.graph_scopes.iter().cloned())
        .request_async(&endpoints.http)
        .await
        .map_err(|e| endpoints.error(DEVICE_ENDPOINT, e))?;
    let lifetime = i64::try_from(details.expires_in().as_secs()).unwrap_or(i64::MAX);
    interaction
        .tell(ConnectEvent::DeviceCode {
            verification_uri: details.verification_uri().to_string(),
            user_code: details.user_code().secret().clone(),
            expires_at: crate::now().saturating_add(lifetime),
        })
        .await;
    // oauth2 polls at `interval`, adds 5 s per slow_down, and stops at expires_in.
    let poll = endpoints
        .client
        .exchange_device_access_token(&details)
        .add_extra_param("claims", super::claims::parameter(None))
        .request_async(&endpoints.http, tokio::time::sleep, None);
    let response = tokio::select! {
        response = poll => response,
        () = interaction.cancelled() => return Err(Office365Error::Cancelled),
    };
    match response {
        Ok(response) => endpoints.signed_in(&response),
        Err(e) => Err(device_error(endpoints, e)),
    }
}

/// A device-code poll's failure as ours. `oauth2` keeps only the RFC 8628 fields of the answer;
/// the body the adapter kept adds Microsoft's (`error_codes`, `suberror`) when it is the same
/// answer (not so when `oauth2` gave up by itself at `expires_in`).
fn device_error(
    endpoints: &Endpoints,
    error: RequestTokenError<TransportError, DeviceCodeErrorResponse>,
) -> Office365Error {
    let error = match error {
        RequestTokenError::ServerResponse(response) => {
            let name = response.error().as_ref().to_owned();
            let body = endpoints
                .http
                .last()
                .and_then(|meta| meta.error_body)
                .and_then(|raw| serde_json::from_slice::<OAuthErrorBody>(&raw).ok())
                .filter(|kept| kept.error == name)
                .unwrap_or_else(|| OAuthErrorBody {
                    error: name,
                    error_description: response.error_description().cloned(),
                    error_uri: response.error_uri().cloned(),
                    ..OAuthErrorBody::default()
                });
            if let Some(outcome) = device_poll_outcome(&body) {
                return outcome;
            }
            RequestTokenError::ServerResponse(body)
        }
        RequestTokenError::Request(e) => RequestTokenError::Request(e),
        RequestTokenError::Parse(e, body) => RequestTokenError::Parse(e, body),
        RequestTokenError::Other(text) => RequestTokenError::Other(text),
    };
    endpoints.error(TOKEN_ENDPOINT, error)
}

/// Scopes as a token request's `scope` parameter.
fn join(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

/// Redeems a refresh token for a Graph access token (the configured `scopes`). A rotated
/// refresh token comes back in `Tokens::refresh_token`; the caller stores it durably before using
/// the access token (SPEC §7).
pub async fn refresh(config: &Config, refresh_token: &Sensitive) -> Result<Tokens, Office365Error> {
    refresh_for(config, refresh_token, &config.office365.scopes, None).await
}

/// Redeems a refresh token for an access token to the resource `scopes` name (Microsoft refresh
/// tokens are multi-resource: the scope picks the token's audience, e.g.
/// `https://outlook.office.com/IMAP.AccessAsUser.All offline_access`), declaring the `cp1`
/// capability with a CAE challenge's `claims` merged in. Durability as [`refresh`].
#[instrument(skip_all)]
pub async fn refresh_for(
    config: &Config,
    refresh_token: &Sensitive,
    scopes: &[String],
    claims: Option<&str>,
) -> Result<Tokens, Office365Error> {
    let endpoints = Endpoints::new(config).await?;
    let token = RefreshToken::new(refresh_token.expose().to_owned());
    let response = endpoints
        .client
        .exchange_refresh_token(&token)
        .add_scopes(scopes.iter().cloned().map(Scope::new))
        .add_extra_param("claims", super::claims::parameter(claims))
        .request_async(&endpoints.http)
        .await
        .map_err(|e| {
            endpoints.error(TOKEN_ENDPOINT, e).with_admin_consent(&endpoints.admin_consent)
        })?;
    Ok(Endpoints::tokens(&response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn office365(text: &str) -> config::Office365 {
        let env = Env { is_root: true, ..Env::default() };
        Config::parse(text, None, &env).unwrap().office365
    }

    #[test]
    fn the_admin_consent_url_is_the_configured_authoritys() {
        assert_eq!(
            admin_consent_url(&office365(""), "00001111-aaaa-2222-bbbb-3333cccc4444"),
            "https://login.microsoftonline.com/organizations/v2.0/adminconsent\
             ?client_id=00001111-aaaa-2222-bbbb-3333cccc4444\
             &scope=offline_access+User.Read+Mail.Read+Calendars.Read"
        );
        let sovereign = office365(
            "[office365]\nauthority = \"https://login.microsoftonline.us/contoso.onmicrosoft.us/v2.0/\"\n\
             scopes = [\"offline_access\", \"https://graph.microsoft.us/Mail.Read\"]\n",
        );
        assert_eq!(
            admin_consent_url(&sovereign, "app&x"),
            "https://login.microsoftonline.us/contoso.onmicrosoft.us/v2.0/adminconsent\
             ?client_id=app%26x&scope=offline_access+https%3A%2F%2Fgraph.microsoft.us%2FMail.Read"
        );
    }
}
