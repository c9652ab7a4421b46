//! Office365 / Exchange Online: OAuth2 sign-in flows, token refresh and Microsoft Graph checks.
//!
//! ```text
//!   connect ──▶ sign_in(flow) ──▶ Tokens ──▶ check(access token, email) ──▶ CheckReport
//!   background: refresh(refresh token) ──▶ Tokens (store a rotated refresh token first)
//!                 └─ check ── TokenRejected ──▶ refresh (with a CAE challenge's claims, if it
//!                                                carried one), retry the check once
//!   every failure: Office365Error::failure() decides degraded / needs_reauth / blocked
//! ```
//!
//! Every HTTP request goes through [`crate::net::client`]; `oauth2` gets it through the adapter
//! in `http.rs` (one reqwest in the tree).

mod claims;
mod error;
mod graph;
mod http;
mod oauth;
mod redirect;

use mslink_proto::Sensitive;

pub use error::{OAuthErrorBody, Office365Error};
pub use graph::check;
#[doc(hidden)]
pub use graph::error_fields as graph_error_fields;
pub use oauth::{SIGN_IN_DEADLINE, refresh, refresh_for, sign_in, sign_in_to};

/// Tokens from a sign-in or refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// For Graph (or the resource signed in to); short-lived.
    pub access_token: Sensitive,
    /// `Some` after a sign-in, and after a refresh when the server rotated it (the caller stores
    /// the new one durably before using the access token); `None`: keep the one you have.
    pub refresh_token: Option<Sensitive>,
    /// When the access token expires, in Unix seconds.
    pub expires_at: i64,
}
