//! NTLM for EWS through the `sspi` crate: the client side of the three-leg handshake.
//!
//! ```text
//!   Ntlm::new(user, password) ──negotiate()──▶ type 1 ─▶ server
//!   server ─▶ 401 WWW-Authenticate: NTLM <type 2> ──authenticate(challenge, cbt)──▶ type 3 ─▶ server
//! ```
//!
//! NTLM authenticates a connection, not a request, so the caller sends both legs over one
//! kept-alive HTTP/1.1 connection (see `net::HttpOptions::connection_oriented_auth`). When the
//! connection is TLS, the type 3 carries a `tls-server-end-point` channel binding (RFC 5929) of the
//! server certificate, which Exchange's Extended Protection checks.

use mslink_proto::Sensitive;
use sha2::Digest;
use sspi::{
    AuthIdentity, AuthIdentityBuffers, BufferType, ClientRequestFlags, CredentialUse,
    DataRepresentation, SecurityBuffer, SecurityStatus, Sspi, SspiImpl, Username,
};

/// Why an NTLM message could not be produced. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum NtlmError {
    #[error("the username `{0}` is not a valid Windows logon name")]
    Username(String),
    #[error("NTLM: {0}")]
    Sspi(String),
}

fn sspi_error(e: sspi::Error) -> NtlmError {
    NtlmError::Sspi(e.to_string())
}

/// One NTLM handshake in progress.
pub struct NtlmClient {
    ntlm: sspi::Ntlm,
    credentials: Option<AuthIdentityBuffers>,
}

impl std::fmt::Debug for NtlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtlmClient").finish_non_exhaustive()
    }
}

impl NtlmClient {
    /// Prepares a handshake for `username` (`DOMAIN\user`, a UPN, or a bare name).
    pub fn new(username: &str, password: &Sensitive) -> Result<NtlmClient, NtlmError> {
        let username =
            Username::parse(username).map_err(|_| NtlmError::Username(username.to_owned()))?;
        let identity = AuthIdentity { username, password: password.expose().to_owned().into() };
        let mut ntlm = sspi::Ntlm::new();
        let acquired = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .map_err(sspi_error)?;
        Ok(NtlmClient { ntlm, credentials: acquired.credentials_handle })
    }

    /// Leg 1: the NEGOTIATE message.
    pub fn negotiate(&mut self) -> Result<Vec<u8>, NtlmError> {
        self.step(None)
    }

    /// Leg 3: the AUTHENTICATE message answering the server's CHALLENGE. `server_cert` is the
    /// DER certificate of the TLS connection, for channel binding (`None` over plain HTTP).
    pub fn authenticate(
        &mut self,
        challenge: &[u8],
        server_cert: Option<&[u8]>,
    ) -> Result<Vec<u8>, NtlmError> {
        if let Some(cert) = server_cert {
            self.ntlm.set_channel_bindings(&tls_server_end_point(cert));
        }
        self.step(Some(challenge))
    }

    fn step(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>, NtlmError> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input_buffers =
            input.map(|token| vec![SecurityBuffer::new(token.to_vec(), BufferType::Token)]);
        let mut builder = self
            .ntlm
            .initialize_security_context()
            .with_credentials_handle(&mut self.credentials)
            .with_context_requirements(ClientRequestFlags::ALLOCATE_MEMORY)
            .with_target_data_representation(DataRepresentation::Native)
            .with_output(&mut output);
        if let Some(buffers) = input_buffers.as_mut() {
            builder = builder.with_input(buffers);
        }
        let result = self
            .ntlm
            .initialize_security_context_impl(&mut builder)
            .map_err(sspi_error)?
            .resolve_to_result()
            .map_err(sspi_error)?;
        if matches!(
            result.status,
            SecurityStatus::CompleteAndContinue | SecurityStatus::CompleteNeeded
        ) {
            self.ntlm.complete_auth_token(&mut output).map_err(sspi_error)?;
        }
        output
            .pop()
            .map(|buffer| buffer.buffer)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| NtlmError::Sspi("no token produced".into()))
    }
}

/// RFC 5929 `tls-server-end-point` application data: the certificate's hash with its signature
/// hash algorithm, SHA-256 for MD5/SHA-1 (and, as a simplification, for anything not recognised).
pub(super) fn tls_server_end_point(cert_der: &[u8]) -> Vec<u8> {
    let mut data = b"tls-server-end-point:".to_vec();
    match signature_hash(cert_der) {
        SignatureHash::Sha384 => data.extend_from_slice(&sha2::Sha384::digest(cert_der)),
        SignatureHash::Sha512 => data.extend_from_slice(&sha2::Sha512::digest(cert_der)),
        SignatureHash::Sha256 => data.extend_from_slice(&sha2::Sha256::digest(cert_der)),
    }
    data
}

enum SignatureHash {
    Sha256,
    Sha384,
    Sha512,
}

/// The hash of the certificate's outer `signatureAlgorithm`, found by its DER-encoded OID near
/// the end of the certificate (after the TBS part, before the signature bits).
fn signature_hash(cert_der: &[u8]) -> SignatureHash {
    // OID bodies (without tag/length): RSA PKCS#1 and ECDSA variants.
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    let last = |oids: &[&[u8]]| {
        oids.iter().filter_map(|oid| cert_der.windows(oid.len()).rposition(|w| w == *oid)).max()
    };
    // The outer algorithm is the last signature OID in the certificate; a SubjectPublicKeyInfo or
    // extension cannot come after it.
    let sha256_like: [&[u8]; 3] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05],
    ];
    let candidates = [(last(&sha256_like), 0u8), (last(&SHA384), 1), (last(&SHA512), 2)];
    match candidates.iter().filter_map(|(pos, kind)| pos.map(|p| (p, *kind))).max() {
        Some((_, 1)) => SignatureHash::Sha384,
        Some((_, 2)) => SignatureHash::Sha512,
        _ => SignatureHash::Sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_starts_with_an_ntlm_negotiate_message() {
        let password = Sensitive::new("pw");
        for name in ["CONTOSO\\alice", "alice@contoso.test", "alice"] {
            let mut client = NtlmClient::new(name, &password).unwrap();
            let token = client.negotiate().unwrap();
            assert_eq!(&token[..8], b"NTLMSSP\0", "{name}");
            assert_eq!(token[8], 1);
        }
    }

    #[test]
    fn the_client_can_move_between_tasks() {
        fn send<T: Send>() {}
        send::<NtlmClient>();
    }
}
