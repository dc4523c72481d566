//! A PostgreSQL login check that speaks the startup and SCRAM-SHA-256 exchange itself, so that a
//! password whose verifier this agent just set is proven with the `SaltedPassword` it already
//! derived ([`scram::SaltedKeys`]) instead of deriving it again: the driver's own derivation was
//! the largest single cost of a rotation on the agent.
//!
//! It handles connections without TLS (`sslmode` `disable`, or `prefer` with a server that
//! declines TLS) and SCRAM-SHA-256 or no authentication; for anything else — the server offers
//! TLS, asks for MD5 or a clear-text password, the password needs SASLprep, a Unix socket — it
//! answers [`Exchange::UseDriver`] and the caller logs in with sqlx as before. A login counts as
//! accepted only once the server is ready for queries (a `NOLOGIN` role or a missing database is
//! refused after authentication), and a server that asks for SCRAM must prove it knows the
//! verifier (its signature is checked). A server that asks for no password at all (`trust` in
//! `pg_hba.conf`) accepts the login, as the driver's login did: such a server proves nothing
//! about any password, which is why dsops's own tests run PostgreSQL with `scram-sha-256`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::scram::{self, SaltedKeys};
use super::{DatabaseTarget, Login};
use crate::secret::{SecretValue, random_bytes};

/// The largest message accepted from the server during startup.
const MAX_MESSAGE: usize = 64 * 1024;
/// The most PBKDF2 iterations a server may ask for (PostgreSQL's default is 4,096).
const MAX_ITERATIONS: u32 = 1 << 22;

/// What the exchange found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Exchange {
    /// The server accepted or refused the credential.
    Done(Login),
    /// Not a case handled here: log in with the driver (nothing was concluded). `server`: it is
    /// the server that needs the driver (TLS, another authentication method), for every login.
    UseDriver { server: bool },
}

/// Logs in as `user` with `value` and disconnects. `Err` is a failure to ask (connection, protocol),
/// never a refusal.
pub(super) async fn login(
    target: &DatabaseTarget,
    user: &str,
    value: &SecretValue,
    keys: &Arc<SaltedKeys>,
) -> Result<Exchange, String> {
    let mode = target.tls_mode.as_deref().unwrap_or("prefer");
    if !matches!(mode, "disable" | "prefer")
        || target.host.starts_with('/')
        || !scram::supported(value)
    {
        return Ok(Exchange::UseDriver { server: false });
    }
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    if mode == "prefer" {
        // SSLRequest: the server answers one byte, `S` (TLS follows) or `N`.
        stream.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.map_err(io)?;
        match stream.read_u8().await.map_err(io)? {
            b'N' => {}
            b'S' => return Ok(Exchange::UseDriver { server: true }),
            other => return Err(format!("unexpected answer {other:#04x} to the TLS request")),
        }
    }
    let database = target.database.as_deref().unwrap_or("postgres");
    let mut startup = Vec::with_capacity(96);
    startup.extend_from_slice(&0u32.to_be_bytes());
    startup.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for (key, text) in [("user", user), ("database", database), ("application_name", "dsops-agent")]
    {
        for part in [key, text] {
            if part.contains('\0') {
                return Ok(Exchange::UseDriver { server: false });
            }
            startup.extend_from_slice(part.as_bytes());
            startup.push(0);
        }
    }
    startup.push(0);
    let length = startup.len() as u32;
    startup[..4].copy_from_slice(&length.to_be_bytes());
    stream.write_all(&startup).await.map_err(io)?;

    let outcome = authenticate(&mut stream, value, keys).await?;
    if outcome == Exchange::Done(Login::Accepted) {
        // Terminate; the server closes the connection.
        let _ = stream.write_all(&[b'X', 0, 0, 0, 4]).await;
    }
    Ok(outcome)
}

fn io(error: std::io::Error) -> String {
    format!("connection: {error}")
}

/// Reads one message: its type and body.
async fn read_message(stream: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let kind = stream.read_u8().await.map_err(io)?;
    let length = stream.read_u32().await.map_err(io)? as usize;
    if !(4..=MAX_MESSAGE).contains(&length) {
        return Err(format!("a server message of {length} bytes (type {:?})", kind as char));
    }
    let mut body = vec![0u8; length - 4];
    stream.read_exact(&mut body).await.map_err(io)?;
    Ok((kind, body))
}

/// An ErrorResponse: refusals of the credential are an answer, anything else a failure to ask.
fn error_response(body: &[u8]) -> Result<Exchange, String> {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        match field.split_first() {
            Some((b'C', text)) => code = String::from_utf8_lossy(text).into_owned(),
            Some((b'M', text)) => message = String::from_utf8_lossy(text).into_owned(),
            _ => {}
        }
    }
    // 28P01 invalid_password, 28000 invalid_authorization_specification (no such role, NOLOGIN,
    // or pg_hba rejects it): as `is_auth_refusal` judges the driver's errors.
    if matches!(code.as_str(), "28P01" | "28000") {
        return Ok(Exchange::Done(Login::Refused));
    }
    Err(format!("the server refused the connection ({code}): {}", super::server_message(&message)))
}

fn auth_code(body: &[u8]) -> Result<u32, String> {
    body.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "a short authentication message".to_owned())
}

async fn write_sasl(
    stream: &mut TcpStream,
    payload: &[u8],
    mechanism: Option<&str>,
) -> Result<(), String> {
    let mut message = vec![b'p', 0, 0, 0, 0];
    if let Some(mechanism) = mechanism {
        message.extend_from_slice(mechanism.as_bytes());
        message.push(0);
        message.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    }
    message.extend_from_slice(payload);
    let length = (message.len() - 1) as u32;
    message[1..5].copy_from_slice(&length.to_be_bytes());
    stream.write_all(&message).await.map_err(io)
}

async fn authenticate(
    stream: &mut TcpStream,
    value: &SecretValue,
    keys: &Arc<SaltedKeys>,
) -> Result<Exchange, String> {
    let (kind, body) = read_message(stream).await?;
    match kind {
        b'E' => return error_response(&body),
        b'R' => {}
        other => return Err(format!("unexpected message {:?} at startup", other as char)),
    }
    match auth_code(&body)? {
        0 => return ready(stream).await, // no password asked (trust)
        10 => {}
        _ => return Ok(Exchange::UseDriver { server: true }), // clear text, MD5, GSS...: the driver's
    }
    let offered = body[4..].split(|b| *b == 0).any(|m| m == b"SCRAM-SHA-256");
    if !offered {
        return Ok(Exchange::UseDriver { server: true });
    }
    let nonce =
        STANDARD.encode(random_bytes::<18>().map_err(|_| "the system random source failed")?);
    let client_first_bare = format!("n=,r={nonce}");
    write_sasl(stream, format!("n,,{client_first_bare}").as_bytes(), Some("SCRAM-SHA-256")).await?;

    let (kind, body) = read_message(stream).await?;
    match (kind, auth_code(&body)) {
        (b'E', _) => return error_response(&body),
        (b'R', Ok(11)) => {}
        _ => return Err("expected the server's first SCRAM message".to_owned()),
    }
    let server_first =
        std::str::from_utf8(&body[4..]).map_err(|_| "the server's SCRAM message is not UTF-8")?;
    let (mut server_nonce, mut salt, mut iterations) = (None, None, None);
    for part in server_first.split(',') {
        match part.split_once('=') {
            Some(("r", v)) => server_nonce = Some(v),
            Some(("s", v)) => salt = STANDARD.decode(v).ok(),
            Some(("i", v)) => iterations = v.parse::<u32>().ok(),
            _ => {}
        }
    }
    let (Some(server_nonce), Some(salt), Some(iterations)) = (server_nonce, salt, iterations)
    else {
        return Err("the server's first SCRAM message lacks its nonce, salt or count".to_owned());
    };
    if !server_nonce.starts_with(&nonce) || server_nonce.len() == nonce.len() {
        return Err("the server's SCRAM nonce does not extend ours".to_owned());
    }
    if !(1..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!("the server asks for {iterations} SCRAM iterations"));
    }
    let salted = if iterations <= scram::ITERATIONS {
        keys.salted(value.expose().as_bytes(), &salt, iterations)
    } else {
        // A costlier count than the one this agent sets (up to ~0.5 s of CPU): off the async
        // workers, so a server asking for it cannot stall the agent's other jobs.
        let keys = keys.clone();
        let password = zeroize::Zeroizing::new(value.expose().as_bytes().to_vec());
        tokio::task::spawn_blocking(move || keys.salted(&password, &salt, iterations))
            .await
            .map_err(|_| "the key derivation did not finish")?
    };
    let without_proof = format!("c=biws,r={server_nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let (proof, server_signature) = scram::proof(&salted, auth_message.as_bytes());
    let client_final = format!("{without_proof},p={}", STANDARD.encode(proof));
    write_sasl(stream, client_final.as_bytes(), None).await?;

    let (kind, body) = read_message(stream).await?;
    match (kind, auth_code(&body)) {
        (b'E', _) => return error_response(&body),
        (b'R', Ok(12)) => {}
        _ => return Err("expected the server's final SCRAM message".to_owned()),
    }
    let verified = std::str::from_utf8(&body[4..])
        .ok()
        .and_then(|text| text.strip_prefix("v="))
        .and_then(|v| STANDARD.decode(v).ok())
        .is_some_and(|v| scram::same(&v, &server_signature));
    if !verified {
        return Err("the server's SCRAM signature does not match: it does not hold this password's verifier".to_owned());
    }
    let (kind, body) = read_message(stream).await?;
    match (kind, auth_code(&body)) {
        (b'E', _) => error_response(&body),
        (b'R', Ok(0)) => ready(stream).await,
        _ => Err("expected the server to accept the authentication".to_owned()),
    }
}

/// After authentication: the server may still refuse the session (`NOLOGIN`, no such database,
/// too many connections); accepted once it is ready for queries.
async fn ready(stream: &mut TcpStream) -> Result<Exchange, String> {
    loop {
        let (kind, body) = read_message(stream).await?;
        match kind {
            b'Z' => return Ok(Exchange::Done(Login::Accepted)),
            b'E' => return error_response(&body),
            // ParameterStatus, BackendKeyData, NoticeResponse.
            b'S' | b'K' | b'N' => {}
            other => {
                return Err(format!("unexpected message {:?} after authentication", other as char));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The exchange against a scripted peer, for what a real PostgreSQL server will not do on
    //! request (offer TLS, ask for MD5, send a wrong signature or a huge message). Logins against
    //! a real server go through this code in `tests/tests/t40_adapter_conformance.rs`.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// The scripted peer on `port` as a target, with `sslmode` `mode`.
    fn scripted(port: u16, mode: Option<&str>) -> DatabaseTarget {
        DatabaseTarget {
            host: "127.0.0.1".into(),
            port,
            database: None,
            admin_user: "admin".into(),
            admin_password: SecretValue::new("x".into()),
            timeout: Duration::from_secs(5),
            max_connections: 1,
            tls_mode: mode.map(str::to_owned),
            ca_file: None,
        }
    }

    /// A target at a scripted peer that answers `N` to the TLS request, reads the startup
    /// message, then runs `script`.
    async fn against<F, Fut>(script: F) -> Result<Exchange, String>
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            peer.read_exact(&mut request).await.unwrap();
            peer.write_all(b"N").await.unwrap();
            let length = peer.read_u32().await.unwrap() as usize;
            let mut startup = vec![0u8; length - 4];
            peer.read_exact(&mut startup).await.unwrap();
            script(peer).await;
        });
        let target = scripted(port, None);
        let value = SecretValue::new("Some-password-1".into());
        login(&target, "app", &value, &Arc::default()).await
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn auth(code: u32, rest: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(rest);
        message(b'R', &body)
    }

    /// Reads a SASL message from the client; returns its payload as text.
    async fn read_sasl(peer: &mut TcpStream, initial: bool) -> String {
        assert_eq!(peer.read_u8().await.unwrap(), b'p');
        let length = peer.read_u32().await.unwrap() as usize;
        let mut body = vec![0u8; length - 4];
        peer.read_exact(&mut body).await.unwrap();
        let payload = if initial {
            let name_end = body.iter().position(|b| *b == 0).unwrap();
            assert_eq!(&body[..name_end], b"SCRAM-SHA-256");
            body[name_end + 5..].to_vec()
        } else {
            body
        };
        String::from_utf8(payload).unwrap()
    }

    /// A SCRAM exchange up to the server's final message, which `final_message` makes from the
    /// client's final message.
    async fn scram(mut peer: TcpStream, server_nonce_suffix: &'static str, final_message: Vec<u8>) {
        peer.write_all(&auth(10, b"SCRAM-SHA-256\0\0")).await.unwrap();
        let first = read_sasl(&mut peer, true).await;
        let client_nonce = first.rsplit("r=").next().unwrap().to_owned();
        let server_first = format!("r={client_nonce}{server_nonce_suffix},s=c2FsdA==,i=4096");
        peer.write_all(&auth(11, server_first.as_bytes())).await.unwrap();
        if server_nonce_suffix.is_empty() {
            return;
        }
        let _client_final = read_sasl(&mut peer, false).await;
        peer.write_all(&final_message).await.unwrap();
        let mut rest = Vec::new();
        let _ = peer.read_to_end(&mut rest).await;
    }

    #[tokio::test]
    async fn a_server_offering_tls_or_another_method_is_left_to_the_driver() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            peer.read_exact(&mut request).await.unwrap();
            assert_eq!(request, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
            peer.write_all(b"S").await.unwrap();
        });
        let target = scripted(port, Some("prefer"));
        let value = SecretValue::new("Some-password-1".into());
        let keys: Arc<SaltedKeys> = Arc::default();
        assert_eq!(
            login(&target, "app", &value, &keys).await.unwrap(),
            Exchange::UseDriver { server: true }
        );
        // Modes that require TLS, and values that need SASLprep, never reach the server here.
        let required = DatabaseTarget { tls_mode: Some("verify-full".into()), ..target.clone() };
        assert_eq!(
            login(&required, "app", &value, &keys).await.unwrap(),
            Exchange::UseDriver { server: false }
        );
        let accented = SecretValue::new("pässword".into());
        assert_eq!(
            login(&target, "app", &accented, &keys).await.unwrap(),
            Exchange::UseDriver { server: false }
        );
        // MD5 or clear text: the driver's.
        for code in [3u32, 5] {
            let asked = against(move |mut peer| async move {
                peer.write_all(&auth(code, &[1, 2, 3, 4])).await.unwrap();
            })
            .await;
            assert_eq!(asked.unwrap(), Exchange::UseDriver { server: true }, "code {code}");
        }
    }

    #[tokio::test]
    async fn refusals_are_answers_and_other_errors_are_failures() {
        let error = |code: &'static str| {
            move |mut peer: TcpStream| async move {
                let body = format!("SFATAL\0C{code}\0Mno\0\0");
                peer.write_all(&message(b'E', body.as_bytes())).await.unwrap();
            }
        };
        assert_eq!(against(error("28P01")).await.unwrap(), Exchange::Done(Login::Refused));
        assert_eq!(against(error("28000")).await.unwrap(), Exchange::Done(Login::Refused));
        let failed = against(error("3D000")).await.unwrap_err();
        assert!(failed.contains("3D000"), "{failed}");
        // Trust, then a refusal after authentication (NOLOGIN is reported this way).
        let refused_late = against(|mut peer| async move {
            peer.write_all(&auth(0, b"")).await.unwrap();
            peer.write_all(&message(b'S', b"server_version\x0016\0")).await.unwrap();
            peer.write_all(&message(b'E', b"C28000\0Mnot permitted to log in\0\0")).await.unwrap();
        })
        .await;
        assert_eq!(refused_late.unwrap(), Exchange::Done(Login::Refused));
        let ready = against(|mut peer| async move {
            peer.write_all(&auth(0, b"")).await.unwrap();
            peer.write_all(&message(b'K', &[0; 8])).await.unwrap();
            peer.write_all(&message(b'Z', b"I")).await.unwrap();
        })
        .await;
        assert_eq!(ready.unwrap(), Exchange::Done(Login::Accepted));
        // The connection closing before the server is ready is a failure, not an acceptance.
        let closed = against(|mut peer| async move {
            peer.write_all(&auth(0, b"")).await.unwrap();
        })
        .await;
        assert!(closed.is_err());
    }

    #[tokio::test]
    async fn a_server_that_cannot_prove_the_verifier_or_misbehaves_is_not_believed() {
        // A wrong signature in the final message, even followed by AuthenticationOk.
        let mut wrong = auth(12, format!("v={}", STANDARD.encode([7u8; 32])).as_bytes());
        wrong.extend_from_slice(&auth(0, b""));
        wrong.extend_from_slice(&message(b'Z', b"I"));
        let failed = against(move |peer| scram(peer, "srv", wrong)).await.unwrap_err();
        assert!(failed.contains("signature"), "{failed}");
        // Skipping the final message straight to AuthenticationOk.
        let mut skipped = auth(0, b"");
        skipped.extend_from_slice(&message(b'Z', b"I"));
        assert!(against(move |peer| scram(peer, "srv", skipped)).await.is_err());
        // A nonce that does not extend the client's.
        let failed = against(|peer| scram(peer, "", Vec::new())).await.unwrap_err();
        assert!(failed.contains("nonce"), "{failed}");
        // A message larger than the bound.
        let failed = against(|mut peer| async move {
            let mut huge = vec![b'R'];
            huge.extend_from_slice(&(MAX_MESSAGE as u32 + 5).to_be_bytes());
            peer.write_all(&huge).await.unwrap();
        })
        .await
        .unwrap_err();
        assert!(failed.contains("bytes"), "{failed}");
        // An absurd iteration count.
        let failed = against(|mut peer| async move {
            peer.write_all(&auth(10, b"SCRAM-SHA-256\0\0")).await.unwrap();
            let first = read_sasl(&mut peer, true).await;
            let nonce = first.rsplit("r=").next().unwrap().to_owned();
            let server_first = format!("r={nonce}x,s=c2FsdA==,i=4294967295");
            peer.write_all(&auth(11, server_first.as_bytes())).await.unwrap();
        })
        .await
        .unwrap_err();
        assert!(failed.contains("iterations"), "{failed}");
    }
}
