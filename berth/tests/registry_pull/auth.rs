//! TLS with the node's own CA, htpasswd basic auth and docker's bearer token auth against the
//! real registry (see main.rs).

use super::*;

#[test]
fn tls_with_own_ca_and_htpasswd_auth() -> Result<()> {
    if !host::root_and_tools("registry TLS/auth", TOOLS)? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let (ca, cert, key) = make_ca(&work.path().join("pki"), "good")?;
    let (other_ca, _, _) = make_ca(&work.path().join("pki"), "other")?;
    let htpasswd = work.path().join("htpasswd");
    let line = run(Command::new("htpasswd").args(["-Bbn", "user", "right-pass"]))?;
    std::fs::write(&htpasswd, line.trim())?;
    let reg = start_registry(
        &work.path().join("registry"),
        RegistryConfig {
            tls: Some((&cert, &key)),
            htpasswd: Some(&htpasswd),
            netns: None,
        },
    )?;
    let img = image(vec![support::layer(&[("hello", b"tls\n")])]);
    let reference = format!("{}/secure/app:v1", reg.addr);
    push(work.path(), &img, &reference, Some("user:right-pass"), None)?;

    let mut good = endpoint(Scheme::Https, &reg.addr);
    good.tls.ca_files = vec![ca.clone()];
    let creds = |password: &str| {
        let mut map = std::collections::HashMap::new();
        map.insert(
            reg.addr.clone(),
            Credential::Basic {
                username: "user".into(),
                password: password.into(),
            },
        );
        Credentials::load(None, &map).unwrap()
    };
    let no_system_bundle = || ClientOptions {
        ca_bundle: work.path().join("no-such-bundle.crt"),
        stall_timeout: Duration::from_secs(5),
        ..Default::default()
    };

    // Right CA (and no system bundle at all: not a panic, just the host's CA) and password.
    let e = engine(&work.path().join("berth"))?;
    let mut o = opts(Duration::from_secs(5));
    o.client = no_system_bundle();
    let r = do_pull(&e, &reference, &[good.clone()], creds("right-pass"), o)?;
    print_attempts("TLS + basic auth pull", &r);
    assert_eq!(r.layers_fetched, 1);

    let fetch = |host: RegistryHost, c: Credentials| {
        let client =
            RegistryClient::new(&[host], "secure/app", Arc::new(c), no_system_bundle()).unwrap();
        rt().block_on(client.fetch_manifest("v1"))
    };
    let url = format!("https://{}/v2/secure/app/manifests/v1", reg.addr);

    // Wrong CA: a certificate error naming the host and the endpoint URL.
    let mut wrong_ca = good.clone();
    wrong_ca.tls.ca_files = vec![other_ca];
    let err = fetch(wrong_ca, creds("right-pass"))
        .unwrap_err()
        .to_string();
    println!("wrong CA: {err}");
    assert!(err.contains(&url), "{err}");
    assert!(
        err.contains(&format!("TLS certificate error for {}", reg.addr)),
        "{err}"
    );

    // Wrong password: 401 naming the endpoint and where the credentials came from.
    let err = fetch(good.clone(), creds("wrong-pass"))
        .unwrap_err()
        .to_string();
    println!("wrong password: {err}");
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(err.contains("rejected the credentials"), "{err}");

    // No credentials at all.
    let err = fetch(good.clone(), Credentials::default())
        .unwrap_err()
        .to_string();
    println!("no credentials: {err}");
    assert!(
        err.contains(&format!("no credentials for {}", reg.addr)),
        "{err}"
    );

    // skip_verify: no CA needed.
    let mut skip = endpoint(Scheme::Https, &reg.addr);
    skip.tls.skip_verify = true;
    let f = fetch(skip, creds("right-pass")).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(f.digest.to_string(), support::sha(&img.manifest));
    Ok(())
}

/// The token service of docker's token auth spec, for the registry's `auth: token` mode: it
/// checks basic credentials and returns an ES256 JWT (signed with the key of a certificate the
/// registry trusts through `rootcertbundle`, chain in `x5c`) granting the requested scopes.
/// The registry itself verifies the tokens. Debian ships no token server, so this is the
/// smallest real one: the registry would reject anything not signed right.
struct TokenServer {
    addr: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` → the 64-byte `r || s` JWS wants.
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    let mut i = 2; // SEQUENCE tag + short length (a P-256 signature is < 128 bytes)
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "INTEGER");
        let len = der[i + 1] as usize;
        let mut v = &der[i + 2..i + 2 + len];
        while v.len() > 32 && v[0] == 0 {
            v = &v[1..];
        }
        out.extend(std::iter::repeat_n(0u8, 32 - v.len()));
        out.extend_from_slice(v);
        i += 2 + len;
    }
    out
}

fn start_token_server(cert: &Path, key: &Path, user: &str, password: &str) -> Result<TokenServer> {
    use rustls::pki_types::pem::PemObject;
    use std::io::{BufRead, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let cert_der = rustls::pki_types::CertificateDer::from_pem_file(cert)?;
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_file(key)?;
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key_der)?;
    let expected = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut authorization = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        authorization = Some(v.trim().to_string());
                    }
                }
            }
            let target = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let query = target.split_once('?').map_or("", |(_, q)| q);
            let mut access = Vec::new();
            let mut service = String::new();
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = v
                    .replace("%3A", ":")
                    .replace("%2F", "/")
                    .replace("%2C", ",");
                match k {
                    "scope" => {
                        let parts: Vec<&str> = v.splitn(3, ':').collect();
                        if let [kind, name, actions] = parts.as_slice() {
                            access.push(serde_json::json!({
                                "type": kind, "name": name,
                                "actions": actions.split(',').collect::<Vec<_>>()
                            }));
                        }
                    }
                    "service" => service = v,
                    _ => {}
                }
            }
            let response = if authorization.as_deref() != Some(expected.as_str()) {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            } else {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({
                    "alg": "ES256", "typ": "JWT",
                    "x5c": [base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert_der.as_ref())]
                });
                let claims = serde_json::json!({
                    "iss": "berth-test-issuer", "sub": "user", "aud": service,
                    "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}"),
                    "access": access
                });
                let signing_input = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let signer = signing
                    .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
                    .unwrap();
                let sig = der_to_raw(&signer.sign(signing_input.as_bytes()).unwrap());
                let body = serde_json::json!({"token": format!("{signing_input}.{}", b64url(&sig)), "expires_in": 300}).to_string();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = conn.write_all(response.as_bytes());
        }
    });
    Ok(TokenServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

#[test]
fn bearer_token_auth() -> Result<()> {
    if !host::root_and_tools("registry token auth", TOOLS)? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let (ca, cert, key) = make_ca(&work.path().join("pki"), "token")?;
    let tokens = start_token_server(&cert, &key, "user", "right-pass")?;
    // The registry with token auth: a real docker-registry that verifies the JWTs against
    // the CA (`rootcertbundle`).
    let dir = work.path().join("registry");
    let reg = registry::start_registry_with(
        &dir,
        RegistryConfig::default(),
        &format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: berth-registry\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
            tokens.addr,
            ca.display()
        ),
    )?;
    let img = image(vec![support::layer(&[("t", b"token\n")])]);
    let reference = format!("{}/tok/app:v1", reg.addr);
    push(work.path(), &img, &reference, Some("user:right-pass"), None)?;

    let creds = |password: &str| {
        let mut map = std::collections::HashMap::new();
        map.insert(
            reg.addr.clone(),
            Credential::Basic {
                username: "user".into(),
                password: password.into(),
            },
        );
        Credentials::load(None, &map).unwrap()
    };
    let e = engine(&work.path().join("berth"))?;
    let r = do_pull(
        &e,
        &reference,
        &[endpoint(Scheme::Http, &reg.addr)],
        creds("right-pass"),
        opts(Duration::from_secs(5)),
    )?;
    print_attempts("bearer token pull", &r);
    assert_eq!(r.layers_fetched, 1);

    let client = RegistryClient::new(
        &[endpoint(Scheme::Http, &reg.addr)],
        "tok/app",
        Arc::new(creds("wrong-pass")),
        ClientOptions::default(),
    )?;
    let err = rt()
        .block_on(client.fetch_manifest("v1"))
        .unwrap_err()
        .to_string();
    println!("wrong password: {err}");
    assert!(
        err.contains(&format!("http://{}/v2/tok/app/manifests/v1", reg.addr)),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "token endpoint http://{}/token: 401 Unauthorized",
            tokens.addr
        )),
        "{err}"
    );
    Ok(())
}
