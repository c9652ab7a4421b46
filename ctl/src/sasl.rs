//! SASL initial responses for mail tools that want them ready-made instead of a bare token:
//! XOAUTH2 (Google's and Microsoft's `user=…^Aauth=Bearer …^A^A`) and OAUTHBEARER (RFC 7628),
//! both base64-encoded as they go on the wire (IMAP `AUTHENTICATE`, SMTP `AUTH`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::ValueEnum;
use mslink_proto::Sensitive;

/// The SASL mechanism whose initial response `token --sasl` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mechanism {
    /// `user=EMAIL ^A auth=Bearer TOKEN ^A ^A` (Microsoft's and Google's XOAUTH2)
    Xoauth2,
    /// RFC 7628: `n,a=EMAIL, ^A auth=Bearer TOKEN ^A ^A`
    Oauthbearer,
}

impl Mechanism {
    /// The base64 initial response authenticating `user` with `token`.
    pub fn initial_response(self, user: &str, token: &Sensitive) -> Sensitive {
        let token = token.expose();
        let raw = match self {
            Mechanism::Xoauth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
            // RFC 5801 §4: a saslname escapes ',' and '='.
            Mechanism::Oauthbearer => {
                let name = user.replace('=', "=3D").replace(',', "=2C");
                format!("n,a={name},\x01auth=Bearer {token}\x01\x01")
            }
        };
        Sensitive::new(STANDARD.encode(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(mechanism: Mechanism, user: &str) -> String {
        let encoded = mechanism.initial_response(user, &Sensitive::new("tok.en"));
        String::from_utf8(STANDARD.decode(encoded.expose()).unwrap()).unwrap()
    }

    #[test]
    fn xoauth2_is_user_and_bearer_separated_by_ctrl_a() {
        assert_eq!(
            decoded(Mechanism::Xoauth2, "alice@example.com"),
            "user=alice@example.com\x01auth=Bearer tok.en\x01\x01"
        );
        // The form Microsoft documents, byte for byte.
        assert_eq!(
            Mechanism::Xoauth2
                .initial_response(
                    "test@contoso.onmicrosoft.com",
                    &Sensitive::new("EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA")
                )
                .expose(),
            "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ=="
        );
    }

    #[test]
    fn oauthbearer_has_the_rfc_7628_gs2_header() {
        assert_eq!(
            decoded(Mechanism::Oauthbearer, "alice@example.com"),
            "n,a=alice@example.com,\x01auth=Bearer tok.en\x01\x01"
        );
        assert_eq!(
            decoded(Mechanism::Oauthbearer, "a,b=c@x"),
            "n,a=a=2Cb=3Dc@x,\x01auth=Bearer tok.en\x01\x01"
        );
    }
}
