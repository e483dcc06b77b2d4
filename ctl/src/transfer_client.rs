//! `berthctl images import|export|mount|unmount`: the client side of the Transfer service.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_api::proto::transfer as pb;
use berth_api::proto::transfer_ttrpc::TransferClient;
use berth_api::keys::NAMESPACE_KEYS;

/// Errors of the transfer verbs.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Connecting failed.
    #[error("cannot connect to berthd at {address}")]
    Connect {
        /// The socket.
        address: String,
        /// Why.
        #[source]
        source: ttrpc::Error,
    },
    /// The call failed (berthd's message names what was wrong).
    #[error("{method}: {}", describe(.source))]
    Call {
        /// The method.
        method: &'static str,
        /// The error.
        source: ttrpc::Error,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Mounting the view failed.
    #[error("cannot mount {what} on {}: {reason}", target.display())]
    Mount {
        /// Image name.
        what: String,
        /// The mount point.
        target: PathBuf,
        /// Why.
        reason: String,
    },
}

fn describe(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

/// A connected Transfer client for one namespace.
pub struct Transfer {
    client: TransferClient,
    namespace: String,
}

impl Transfer {
    /// Connects to berthd at `address` (a path or `unix://path`).
    pub async fn connect(address: &str, namespace: &str) -> Result<Self, TransferError> {
        let address = berth_api::client::normalize_address(address);
        let inner = ttrpc::r#async::Client::connect(&address)
            .await
            .map_err(|source| TransferError::Connect {
                address: address.clone(),
                source,
            })?;
        Ok(Self {
            client: TransferClient::new(inner),
            namespace: namespace.to_string(),
        })
    }

    fn ctx(&self) -> ttrpc::context::Context {
        let mut ctx = ttrpc::context::Context::default();
        ctx.add(NAMESPACE_KEYS[0].into(), self.namespace.clone());
        ctx
    }

    /// Streams an archive from `input` and returns what berthd imported.
    pub async fn import(
        &self,
        mut input: impl Read,
        snapshotter: &str,
        platform: &str,
        no_unpack: bool,
    ) -> Result<pb::ImportResponse, TransferError> {
        let call = |source| TransferError::Call {
            method: "Transfer.Import",
            source,
        };
        let mut stream = self.client.import(self.ctx()).await.map_err(call)?;
        let mut first = true;
        let mut buf = vec![0u8; berth_api::MAX_CHUNK];
        loop {
            let n = read_full(&mut input, &mut buf).map_err(|source| TransferError::File {
                path: "archive".into(),
                source,
            })?;
            if n == 0 && !first {
                break;
            }
            let mut chunk = pb::ImportChunk {
                data: buf[..n].to_vec(),
                ..Default::default()
            };
            if first {
                chunk.snapshotter = snapshotter.to_string();
                chunk.platform = platform.to_string();
                chunk.no_unpack = no_unpack;
                first = false;
            }
            if stream.send(&chunk).await.is_err() {
                // berthd closed the stream early: its answer says why.
                break;
            }
            if n == 0 {
                break;
            }
        }
        stream.close_and_recv().await.map_err(call)
    }

    /// Writes an OCI image-layout tar of `names` to `out`; returns the bytes written.
    pub async fn export(
        &self,
        names: &[String],
        mut out: impl Write,
    ) -> Result<u64, TransferError> {
        let call = |source| TransferError::Call {
            method: "Transfer.Export",
            source,
        };
        let req = pb::ExportRequest {
            names: names.to_vec(),
            ..Default::default()
        };
        let mut stream = self.client.export(self.ctx(), &req).await.map_err(call)?;
        let mut total = 0u64;
        while let Some(chunk) = stream.recv().await.map_err(call)? {
            out.write_all(&chunk.data)
                .map_err(|source| TransferError::File {
                    path: "output".into(),
                    source,
                })?;
            total += chunk.data.len() as u64;
        }
        out.flush().map_err(|source| TransferError::File {
            path: "output".into(),
            source,
        })?;
        Ok(total)
    }

    /// Asks for a read-only view of `name` under snapshot key `key` and mounts it on `target`.
    pub async fn mount(
        &self,
        name: &str,
        snapshotter: &str,
        key: &str,
        target: &Path,
    ) -> Result<String, TransferError> {
        let req = pb::ViewRequest {
            name: name.into(),
            snapshotter: snapshotter.into(),
            key: key.into(),
            ..Default::default()
        };
        let resp =
            self.client
                .view(self.ctx(), &req)
                .await
                .map_err(|source| TransferError::Call {
                    method: "Transfer.View",
                    source,
                })?;
        let mounts: Vec<berth_api::mount::Mount> = resp
            .mounts
            .into_iter()
            .map(|m| berth_api::mount::Mount {
                fs_type: m.type_,
                source: m.source,
                target: None,
                options: m.options,
            })
            .collect();
        berth_api::mount::mount_all(&mounts, target).map_err(|e| TransferError::Mount {
            what: name.into(),
            target: target.into(),
            reason: e.to_string(),
        })?;
        Ok(resp.chain_id)
    }
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
