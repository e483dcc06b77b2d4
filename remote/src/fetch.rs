//! `berth-fetch`: one HTTPS GET with the server's certificate pinned, for berth-init's
//! `berth.config=https://…` (a PXE node's configuration, which may carry the remote API's
//! credentials; docs/pxe.md). Init links no TLS stack; it runs this applet of the multi-call
//! binary and reads the document from its standard output.
//!
//! The pin (`sha256:<hex>` of a DER certificate) is the only trust: a PXE node has no CA
//! bundle and, before the clock floor, no trustworthy clock. It matches either the server's
//! own certificate (then the TLS handshake's signature proves the server holds its key; dates
//! are not checked) or a CA certificate the server sends in its chain (then the server's
//! certificate must chain to that CA and name the URL's IP address, checked by webpki as
//! usual). A mismatch names the fingerprints the server sent, so an operator can see which
//! one to pin.
//!
//! Exit status: 0 with the body on standard output; [`EXIT_TEMPFAIL`] (75) for what a retry can
//! fix (no connection, a time-out, a 5xx answer); [`berth_api::EXIT_CONFIG`] (78) for what it
//! cannot (pin mismatch, a 4xx answer, a document over `--max-bytes`, a bad URL).

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::certinfo::fingerprint_der;

/// Exit status for failures worth a retry (sysexits' EX_TEMPFAIL).
pub const EXIT_TEMPFAIL: i32 = 75;

#[derive(Debug, Parser)]
#[command(
    name = "berth-fetch",
    about = "GET an https:// URL with the server's certificate pinned; the body on stdout"
)]
struct Args {
    /// `sha256:<hex>` of the server's certificate or of a CA certificate in its chain.
    #[arg(long)]
    pin: String,
    /// Largest body accepted.
    #[arg(long, default_value_t = 1 << 20)]
    max_bytes: u64,
    /// Seconds for the whole exchange.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// The URL (`https://<ip>[:port]/path`).
    url: String,
}

/// A verifier that trusts exactly the pinned certificate (see the module docs).
#[derive(Debug)]
pub struct PinVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
    /// The fingerprints the server sent, for the mismatch message.
    seen: Mutex<Vec<String>>,
}

impl PinVerifier {
    /// Trusts the certificate whose fingerprint is `pin` (`sha256:<hex>`, any case).
    pub fn new(pin: &str) -> PinVerifier {
        PinVerifier {
            pin: pin.trim().to_ascii_lowercase(),
            provider: crate::tls::provider(),
            seen: Mutex::default(),
        }
    }

    /// The fingerprints the server presented (leaf first), once it has.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let prints: Vec<String> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| fingerprint_der(c.as_ref()))
            .collect();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = prints.clone();
        }
        if prints[0] == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        let Some(i) = prints[1..].iter().position(|p| *p == self.pin) else {
            return Err(rustls::Error::General(format!(
                "the server's certificates do not match the pin {} (it sent {})",
                self.pin,
                prints.join(", ")
            )));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(intermediates[i].clone().into_owned())?;
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?
        .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a fetch failed, and whether a retry can help.
#[derive(Debug)]
pub struct FetchFailure {
    /// In words.
    pub message: String,
    /// Worth a retry.
    pub transient: bool,
}

fn fail(message: impl Into<String>, transient: bool) -> FetchFailure {
    FetchFailure {
        message: message.into(),
        transient,
    }
}

/// GETs `url` trusting only `pin`; the body, at most `max_bytes`.
pub async fn get(
    url: &str,
    pin: &str,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Vec<u8>, FetchFailure> {
    if !url.starts_with("https://") {
        return Err(fail(format!("{url}: not an https:// URL"), false));
    }
    let verifier = Arc::new(PinVerifier::new(pin));
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string(), false))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| fail(format!("cannot build the client: {e}"), false))?;
    let mut resp = client.get(url).send().await.map_err(|e| {
        let chain = berth_api::errdefs::chain(&e);
        if chain.contains("do not match the pin") {
            fail(chain, false)
        } else {
            fail(format!("{url}: {chain}"), true)
        }
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(
            format!("{url}: server answered {status}"),
            status.is_server_error() || status.as_u16() == 429,
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail(format!("{url}: {}", berth_api::errdefs::chain(&e)), true))?
    {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > max_bytes {
            return Err(fail(
                format!("{url}: document larger than {max_bytes} bytes"),
                false,
            ));
        }
    }
    Ok(body)
}

/// Runs the applet with `args` (argv including argv[0]); returns the exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-fetch: error: cannot start the runtime: {e}");
            return EXIT_TEMPFAIL;
        }
    };
    let r = rt.block_on(get(
        &args.url,
        &args.pin,
        args.max_bytes,
        Duration::from_secs(args.timeout),
    ));
    match r {
        Ok(body) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if out.write_all(&body).and_then(|()| out.flush()).is_err() {
                return 1;
            }
            0
        }
        Err(f) => {
            eprintln!("berth-fetch: error: {}", f.message);
            if f.transient {
                EXIT_TEMPFAIL
            } else {
                berth_api::EXIT_CONFIG
            }
        }
    }
}
