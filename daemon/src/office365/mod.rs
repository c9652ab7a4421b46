//! Office365 / Exchange Online: OAuth2 sign-in flows, token refresh and Microsoft Graph checks.
