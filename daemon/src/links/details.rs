//! What a link knows about its provider besides its secret, as one typed value. The store keeps it
//! as JSON in the link's `details` column, keyed by the link's `provider` column, and derives the
//! `endpoint` and `auth_scheme` that status shows from it, in one place ([`LinkDetails::endpoint`],
//! [`LinkDetails::auth_scheme`]), so they cannot disagree.

use mslink_proto::Provider;
use serde::{Deserialize, Serialize};

use crate::exchange::ExchangeEndpoint;

/// A link's provider details.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkDetails {
    Office365(Office365Details),
    Exchange(ExchangeEndpoint),
}

/// An Office365 link's details. Every field is optional: links stored before a field existed
/// (early links stored `{}`) read as the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Office365Details {
    /// The Graph base URL the link was linked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_url: Option<String>,
    /// How the user signed in ("oauth2 authorization code", "oauth2 device code").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<String>,
}

impl LinkDetails {
    /// The provider these details belong to.
    pub fn provider(&self) -> Provider {
        match self {
            LinkDetails::Office365(_) => Provider::Office365,
            LinkDetails::Exchange(_) => Provider::Exchange,
        }
    }

    /// The endpoint status shows: the Graph URL or the EWS URL.
    pub fn endpoint(&self) -> Option<String> {
        match self {
            LinkDetails::Office365(details) => details.graph_url.clone(),
            LinkDetails::Exchange(endpoint) => Some(endpoint.ews_url.clone()),
        }
    }

    /// How the link authenticates, as status shows it.
    pub fn auth_scheme(&self) -> Option<String> {
        match self {
            LinkDetails::Office365(details) => details.sign_in.clone(),
            LinkDetails::Exchange(endpoint) => Some(endpoint.auth.as_str().to_owned()),
        }
    }

    /// The JSON stored in `details`.
    pub fn to_json(&self) -> String {
        let json = match self {
            LinkDetails::Office365(details) => serde_json::to_string(details),
            LinkDetails::Exchange(endpoint) => serde_json::to_string(endpoint),
        };
        // Plain structs of strings and enums: serialising them cannot fail.
        json.unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads the `details` JSON of a link of `provider`.
    pub fn from_json(provider: Provider, json: &str) -> Result<LinkDetails, serde_json::Error> {
        Ok(match provider {
            Provider::Office365 => LinkDetails::Office365(serde_json::from_str(json)?),
            Provider::Exchange => LinkDetails::Exchange(serde_json::from_str(json)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_office365_links_read_as_the_defaults_and_round_trip() {
        let old = LinkDetails::from_json(Provider::Office365, "{}").unwrap();
        assert_eq!(old, LinkDetails::Office365(Office365Details::default()));
        let new = LinkDetails::Office365(Office365Details {
            graph_url: Some("https://graph.microsoft.com/v1.0".into()),
            sign_in: Some("oauth2 device code".into()),
        });
        assert_eq!(LinkDetails::from_json(Provider::Office365, &new.to_json()).unwrap(), new);
        assert_eq!(new.endpoint().as_deref(), Some("https://graph.microsoft.com/v1.0"));
        assert!(LinkDetails::from_json(Provider::Exchange, "{}").is_err(), "EWS needs its URL");
    }
}
