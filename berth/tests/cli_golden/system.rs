//! The `system` verbs against a fake berth-init.

use super::*;

mod fake_init {
    use std::sync::Arc;

    use berth_api::proto::{system, system_ttrpc};
    use ttrpc::r#async::{ServerStreamSender, TtrpcContext};

    struct FakeInit;

    fn record(
        seq: u64,
        facility: u32,
        severity: u32,
        name: &str,
        pid: u32,
        message: &str,
    ) -> system::LogRecord {
        system::LogRecord {
            seq,
            time_us: 1_700_000_000_000_000 + seq as i64 * 1000,
            uptime_us: 3_177_726 + seq * 1_000_250,
            facility,
            severity,
            origin: if name == "kernel" { "kmsg" } else { "service" }.into(),
            name: name.into(),
            pid,
            message: message.into(),
            ..Default::default()
        }
    }

    /// The log: fixed records, and one that echoes the request (so the flags' plumbing shows).
    fn records(req: &system::LogRequest) -> Vec<system::LogRecord> {
        vec![
            record(1, 0, 6, "kernel", 0, "Linux version 6.1.0 (fake)"),
            record(2, 3, 6, "berthd", 312, "serving /run/berth/berthd.sock"),
            record(3, 3, 3, "app", 400, "failed: \"quoted\" and ünïcode"),
            record(
                4,
                3,
                7,
                "init",
                1,
                &format!(
                    "request: lines={} min_severity={:?} source={:?}",
                    req.lines, req.min_severity, req.source
                ),
            ),
        ]
    }

    #[async_trait::async_trait]
    impl system_ttrpc::System for FakeInit {
        async fn status(
            &self,
            _ctx: &TtrpcContext,
            _req: system::StatusRequest,
        ) -> ttrpc::Result<system::StatusResponse> {
            let stage = |name: &str, start_us, duration_us, done| system::Stage {
                name: name.into(),
                start_us,
                duration_us,
                done,
                ..Default::default()
            };
            let service = |name: &str, state: &str, pid, restarts| system::Service {
                name: name.into(),
                state: state.into(),
                pid,
                restarts,
                ..Default::default()
            };
            let slot =
                |slot: &str, generation, version: &str, booted, trial, bad| system::BootSlot {
                    file: format!("\\EFI\\Linux\\berth-{slot}.efi"),
                    slot: slot.into(),
                    generation,
                    version: version.into(),
                    booted,
                    trial,
                    bad,
                    ..Default::default()
                };
            Ok(system::StatusResponse {
                version: "0.1.0".into(),
                uptime_us: 123_456_789,
                ready: true,
                ready_us: 4_812_345,
                stages: vec![
                    stage("kernel+initramfs", 0, 4_200_000, true),
                    stage("mounts", 4_200_000, 5_900, true),
                    stage("modules", 4_205_900, 0, false),
                    stage("network", 4_300_000, 85, true),
                    stage("services", 4_400_000, 400_300, true),
                ],
                services_known: true,
                services: vec![
                    service("berthd", "running", 312, 0),
                    service("app", "backoff", 0, 3),
                ],
                init_rss_bytes: 2_500_000,
                log_bytes: 70_000,
                log_dropped: 2,
                boot: Some(system::BootInfo {
                    uefi: true,
                    firmware: "EDK II 1.00".into(),
                    loader: "systemd-boot 252".into(),
                    stub: "systemd-stub 252".into(),
                    selected: "berth-b.efi".into(),
                    outcome: "trial of b, booted".into(),
                    slots: vec![
                        slot("a", 3, "0.1.0", false, false, false),
                        slot("b", 4, "0.2.0", true, true, false),
                        slot("c", 2, "0.0.9", false, false, true),
                    ],
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
        }

        async fn log(
            &self,
            _ctx: &TtrpcContext,
            req: system::LogRequest,
        ) -> ttrpc::Result<system::LogResponse> {
            Ok(system::LogResponse {
                records: records(&req),
                ..Default::default()
            })
        }

        async fn follow_log(
            &self,
            _ctx: &TtrpcContext,
            req: system::LogRequest,
            s: ServerStreamSender<system::LogRecord>,
        ) -> ttrpc::Result<()> {
            for r in records(&req) {
                s.send(&r).await?;
            }
            Ok(())
        }

        async fn reboot(
            &self,
            _ctx: &TtrpcContext,
            _req: system::PowerRequest,
        ) -> ttrpc::Result<system::PowerResponse> {
            Ok(system::PowerResponse::new())
        }

        async fn poweroff(
            &self,
            _ctx: &TtrpcContext,
            _req: system::PowerRequest,
        ) -> ttrpc::Result<system::PowerResponse> {
            Ok(system::PowerResponse::new())
        }

        async fn restart_service(
            &self,
            _ctx: &TtrpcContext,
            req: system::RestartServiceRequest,
        ) -> ttrpc::Result<system::RestartServiceResponse> {
            if req.name == "berthd" {
                Ok(system::RestartServiceResponse::new())
            } else {
                Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                    ttrpc::Code::NOT_FOUND,
                    format!("no service {:?}", req.name),
                )))
            }
        }

        async fn upgrade_begin(
            &self,
            _ctx: &TtrpcContext,
            _req: system::UpgradeBeginRequest,
        ) -> ttrpc::Result<system::UpgradeBeginResponse> {
            Ok(system::UpgradeBeginResponse::new())
        }

        async fn upgrade_write(
            &self,
            _ctx: &TtrpcContext,
            _req: system::UpgradeWriteRequest,
        ) -> ttrpc::Result<system::UpgradeWriteResponse> {
            Ok(system::UpgradeWriteResponse::new())
        }

        async fn upgrade_commit(
            &self,
            _ctx: &TtrpcContext,
            _req: system::UpgradeCommitRequest,
        ) -> ttrpc::Result<system::UpgradeCommitResponse> {
            Ok(system::UpgradeCommitResponse {
                slot: "a".into(),
                generation: 5,
                file: "\\EFI\\Linux\\berth-a.efi".into(),
                version: "0.2.0".into(),
                ..Default::default()
            })
        }

        async fn reload(
            &self,
            _ctx: &TtrpcContext,
            _req: system::ReloadRequest,
        ) -> ttrpc::Result<system::ReloadResponse> {
            Ok(reload_report())
        }

        async fn node_config_list(
            &self,
            _ctx: &TtrpcContext,
            _req: system::NodeConfigListRequest,
        ) -> ttrpc::Result<system::NodeConfigListResponse> {
            let file = |path: &str, size, mode| system::NodeFileInfo {
                path: path.into(),
                size,
                mode,
                modified_us: 1_700_000_000_000_000,
                ..Default::default()
            };
            Ok(system::NodeConfigListResponse {
                files: vec![
                    file("certs.d/_default/hosts.toml", 36, 0o644),
                    file("node.toml", 28, 0o644),
                    file("remote/ca.pem", 579, 0o600),
                    file("remote/node.key", 241, 0o600),
                    file("remote/node.pem", 660, 0o600),
                ],
                ..Default::default()
            })
        }

        async fn node_config_get(
            &self,
            _ctx: &TtrpcContext,
            req: system::NodeConfigGetRequest,
        ) -> ttrpc::Result<system::NodeConfigGetResponse> {
            let status = |code, m: String| Err(ttrpc::Error::RpcStatus(ttrpc::get_status(code, m)));
            match req.path.as_str() {
                "node.toml" => Ok(system::NodeConfigGetResponse {
                    file: protobuf::MessageField::some(system::NodeFile {
                        path: req.path,
                        content: b"[remote]\nkey = \"\"\"<private key redacted>\"\"\"\n".to_vec(),
                        ..Default::default()
                    }),
                    redacted: true,
                    ..Default::default()
                }),
                "remote/node.key" => status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    "remote/node.key: private keys are never read back (put a new one to replace it)".into(),
                ),
                other => status(ttrpc::Code::NOT_FOUND, format!("{other}: no such file")),
            }
        }

        async fn node_config_put(
            &self,
            _ctx: &TtrpcContext,
            req: system::NodeConfigPutRequest,
        ) -> ttrpc::Result<system::NodeConfigPutResponse> {
            if let Some(f) = req.files.iter().find(|f| f.content.starts_with(b"bad")) {
                return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                    ttrpc::Code::INVALID_ARGUMENT,
                    format!("{}: line 1: invalid TOML: expected `=`", f.path),
                )));
            }
            Ok(system::NodeConfigPutResponse {
                written: req.files.iter().map(|f| f.path.clone()).collect(),
                removed: req.remove.clone(),
                reload: protobuf::MessageField::from_option(req.reload.then(reload_report)),
                ..Default::default()
            })
        }
    }

    fn reload_report() -> system::ReloadResponse {
        system::ReloadResponse {
            applied: vec![
                "remote API: credentials and deny list reloaded (1 denied serial(s))".into(),
                "berthd: asked to reload its configuration (SIGHUP)".into(),
            ],
            errors: vec!["/var/etc/berth/node.toml:3: key time.wait_secs: invalid type: string \"x\", expected u64; key ignored, using the default or an earlier layer's value".into()],
            ..Default::default()
        }
    }

    /// Serves the fake on `path` in a thread of its own until the returned sender is dropped.
    pub fn serve(path: &std::path::Path) -> tokio::sync::oneshot::Sender<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                let mut server = ttrpc::r#async::Server::new()
                    .add_listener(listener.into())
                    .register_service(system_ttrpc::create_system(Arc::new(FakeInit)));
                server.start().await.unwrap();
                ready_tx.send(()).unwrap();
                let _ = rx.await;
                let _ = server.shutdown().await;
            });
        });
        ready_rx.recv().unwrap();
        tx
    }
}

#[test]
fn system_verbs_against_a_fake_init() {
    let dir = tempfile::Builder::new()
        .prefix("berth-golden-system-")
        .tempdir()
        .unwrap();
    let tmp = dir.path().display().to_string();
    let sock = dir.path().join("init.sock");
    let _server = fake_init::serve(&sock);
    let mut c = Ctl {
        base: vec!["--init-address".into(), sock.clone().into()],
        literals: vec![(tmp.clone(), "<TMP>")],
        volatile: false,
        log: None,
        g: Goldens::new("system"),
    };
    c.case("status", &["system", "status"]);
    c.case("status_json", &["system", "status", "--format", "json"]);
    c.case("log", &["system", "log"]);
    c.case("log_json", &["system", "log", "--format", "json"]);
    c.case(
        "log_filters",
        &["system", "log", "--lines", "5", "-p", "err", "-s", "berthd"],
    );
    c.case("log_follow", &["system", "log", "-f"]);
    c.case(
        "log_follow_json",
        &["system", "log", "-f", "--format", "json"],
    );
    c.case("reboot", &["system", "reboot"]);
    c.case("poweroff", &["system", "poweroff"]);
    c.case("restart", &["system", "restart", "berthd"]);
    c.case("restart_unknown", &["system", "restart", "nope"]);
    let uki = dir.path().join("berth.efi");
    std::fs::write(&uki, b"MZ fake unified kernel image\n").unwrap();
    let uki = uki.display().to_string();
    c.case("upgrade", &["system", "upgrade", &uki]);
    c.case("upgrade_reboot", &["system", "upgrade", "--reboot", &uki]);
    c.case(
        "upgrade_missing_file",
        &["system", "upgrade", &format!("{tmp}/missing.efi")],
    );
    c.case("reload", &["system", "reload"]);
    c.case("reload_json", &["system", "reload", "--format", "json"]);
    c.case("node_config_ls", &["node", "config", "ls"]);
    c.case(
        "node_config_ls_json",
        &["node", "config", "ls", "--format", "json"],
    );
    c.case("node_config_get", &["node", "config", "get", "node.toml"]);
    c.case(
        "node_config_get_key",
        &["node", "config", "get", "remote/node.key"],
    );
    let node = dir.path().join("node.toml");
    std::fs::write(&node, "[time]\nwait_secs = 1\n").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "bad = \n").unwrap();
    let put = format!("node.toml={}", node.display());
    c.case("node_config_put", &["node", "config", "put", &put]);
    c.case(
        "node_config_put_json",
        &[
            "node",
            "config",
            "put",
            "--no-reload",
            "--format",
            "json",
            &put,
        ],
    );
    c.case(
        "node_config_put_invalid",
        &[
            "node",
            "config",
            "put",
            &format!("berthd.d/10-x.toml={}", bad.display()),
        ],
    );
    c.case(
        "node_config_rm",
        &["node", "config", "rm", "berthd.d/10-x.toml"],
    );
    c.case(
        "node_config_rm_json",
        &[
            "node",
            "config",
            "rm",
            "--no-reload",
            "--format",
            "json",
            "berthd.d/10-x.toml",
        ],
    );
    // No init listening.
    c.base = vec!["--init-address".into(), dir.path().join("none.sock").into()];
    c.case("status_no_init", &["system", "status"]);
    c.g.finish();
}
