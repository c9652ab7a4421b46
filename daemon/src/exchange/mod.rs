//! On-premises Exchange through EWS: Autodiscover, authentication (NTLM, Basic) and checks.

pub mod autodiscover;
pub mod ews;
