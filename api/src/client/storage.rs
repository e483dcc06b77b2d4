//! Client side of the storage services, used by `berthctl` and tests: one connection, one
//! namespace (and optional lease) sent with every call.

use std::io::{Read, Write};
use std::time::Duration;

use crate::client::{normalize_address, ClientError};
use crate::proto::{
    content as cpb, content_ttrpc, gc as gpb, gc_ttrpc, images as ipb, images_ttrpc, leases as lpb,
    leases_ttrpc, namespaces as npb, namespaces_ttrpc,
};

use crate::MAX_CHUNK;

/// A connected storage client.
#[derive(Clone)]
pub struct StorageClient {
    address: String,
    timeout: Duration,
    namespace: String,
    lease: Option<String>,
    namespaces: namespaces_ttrpc::NamespacesClient,
    images: images_ttrpc::ImagesClient,
    leases: leases_ttrpc::LeasesClient,
    content: content_ttrpc::ContentClient,
    gc: gc_ttrpc::GcClient,
}

impl StorageClient {
    /// Connects to berthd at `address`; every call names `namespace` and is bounded by
    /// `timeout` (streams: each message).
    pub async fn connect(
        address: &str,
        timeout: Duration,
        namespace: &str,
    ) -> Result<Self, ClientError> {
        let address = normalize_address(address);
        let inner =
            match tokio::time::timeout(timeout, ttrpc::r#async::Client::connect(&address)).await {
                Ok(r) => r.map_err(|source| ClientError::Connect {
                    address: address.clone(),
                    source,
                })?,
                Err(_) => {
                    return Err(ClientError::Timeout {
                        address,
                        method: "connect",
                        timeout,
                    })
                }
            };
        Ok(Self::over(inner, &address, timeout, namespace))
    }

    /// Over a connection made elsewhere (the remote API's TLS transport); `address` names it
    /// in errors.
    pub fn over(
        inner: ttrpc::r#async::Client,
        address: &str,
        timeout: Duration,
        namespace: &str,
    ) -> Self {
        Self {
            namespaces: namespaces_ttrpc::NamespacesClient::new(inner.clone()),
            images: images_ttrpc::ImagesClient::new(inner.clone()),
            leases: leases_ttrpc::LeasesClient::new(inner.clone()),
            content: content_ttrpc::ContentClient::new(inner.clone()),
            gc: gc_ttrpc::GcClient::new(inner),
            address: address.to_owned(),
            timeout,
            namespace: namespace.to_owned(),
            lease: None,
        }
    }

    /// Sends `lease` with every call: content written is attached to it.
    pub fn with_lease(mut self, lease: Option<String>) -> Self {
        self.lease = lease;
        self
    }

    fn ctx(&self) -> ttrpc::context::Context {
        let mut ctx =
            ttrpc::context::with_timeout(self.timeout.as_nanos().min(i64::MAX as u128) as i64);
        ctx.add(crate::keys::NAMESPACE_KEY.into(), self.namespace.clone());
        if let Some(l) = &self.lease {
            ctx.add(crate::keys::LEASE_KEYS[0].into(), l.clone());
        }
        ctx
    }

    /// A context without a deadline, for streams whose length depends on the data.
    fn stream_ctx(&self) -> ttrpc::context::Context {
        let mut ctx = self.ctx();
        ctx.timeout_nano = 0;
        ctx
    }

    async fn call<T>(
        &self,
        method: &'static str,
        fut: impl std::future::Future<Output = ttrpc::Result<T>>,
    ) -> Result<T, ClientError> {
        crate::client::bounded(&self.address, self.timeout, method, fut).await
    }

    /// `Namespaces.List`.
    pub async fn namespaces(&self) -> Result<Vec<npb::Namespace>, ClientError> {
        let req = npb::ListNamespacesRequest::new();
        let r = self
            .call("Namespaces.List", self.namespaces.list(self.ctx(), &req))
            .await?;
        Ok(r.namespaces)
    }

    /// `Namespaces.Create`.
    pub async fn create_namespace(
        &self,
        name: &str,
        labels: Vec<(String, String)>,
    ) -> Result<npb::Namespace, ClientError> {
        let req = npb::CreateNamespaceRequest {
            namespace: Some(npb::Namespace {
                name: name.to_owned(),
                labels: labels.into_iter().collect(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let r = self
            .call(
                "Namespaces.Create",
                self.namespaces.create(self.ctx(), &req),
            )
            .await?;
        Ok(r.namespace.into_option().unwrap_or_default())
    }

    /// `Namespaces.Delete`.
    pub async fn delete_namespace(&self, name: &str) -> Result<(), ClientError> {
        let req = npb::DeleteNamespaceRequest {
            name: name.to_owned(),
            ..Default::default()
        };
        self.call(
            "Namespaces.Delete",
            self.namespaces.delete(self.ctx(), &req),
        )
        .await?;
        Ok(())
    }

    /// `Images.List`.
    pub async fn images(&self) -> Result<Vec<ipb::Image>, ClientError> {
        let req = ipb::ListImagesRequest::new();
        Ok(self
            .call("Images.List", self.images.list(self.ctx(), &req))
            .await?
            .images)
    }

    /// `Images.Create`.
    pub async fn create_image(&self, image: ipb::Image) -> Result<ipb::Image, ClientError> {
        let req = ipb::CreateImageRequest {
            image: Some(image).into(),
            ..Default::default()
        };
        let r = self
            .call("Images.Create", self.images.create(self.ctx(), &req))
            .await?;
        Ok(r.image.into_option().unwrap_or_default())
    }

    /// `Images.Update` with field paths (`labels`, `labels.<key>`, `target`).
    pub async fn update_image(
        &self,
        image: ipb::Image,
        mask: Vec<String>,
    ) -> Result<ipb::Image, ClientError> {
        let req = ipb::UpdateImageRequest {
            image: Some(image).into(),
            update_mask: mask,
            ..Default::default()
        };
        let r = self
            .call("Images.Update", self.images.update(self.ctx(), &req))
            .await?;
        Ok(r.image.into_option().unwrap_or_default())
    }

    /// `Images.Delete`; `sync` collects garbage before returning.
    pub async fn delete_image(&self, name: &str, sync: bool) -> Result<(), ClientError> {
        let req = ipb::DeleteImageRequest {
            name: name.to_owned(),
            sync,
            ..Default::default()
        };
        self.call("Images.Delete", self.images.delete(self.ctx(), &req))
            .await?;
        Ok(())
    }

    /// `Leases.List`.
    pub async fn leases(&self) -> Result<Vec<lpb::Lease>, ClientError> {
        let req = lpb::ListRequest::new();
        Ok(self
            .call("Leases.List", self.leases.list(self.ctx(), &req))
            .await?
            .leases)
    }

    /// `Leases.Create`; `expires_at` in unix nanoseconds, 0 for never.
    pub async fn create_lease(
        &self,
        id: &str,
        labels: Vec<(String, String)>,
        expires_at: i64,
    ) -> Result<lpb::Lease, ClientError> {
        let req = lpb::CreateRequest {
            id: id.to_owned(),
            labels: labels.into_iter().collect(),
            expires_at,
            ..Default::default()
        };
        let r = self
            .call("Leases.Create", self.leases.create(self.ctx(), &req))
            .await?;
        Ok(r.lease.into_option().unwrap_or_default())
    }

    /// `Leases.Delete`; `sync` collects garbage before returning.
    pub async fn delete_lease(&self, id: &str, sync: bool) -> Result<(), ClientError> {
        let req = lpb::DeleteRequest {
            id: id.to_owned(),
            sync,
            ..Default::default()
        };
        self.call("Leases.Delete", self.leases.delete(self.ctx(), &req))
            .await?;
        Ok(())
    }

    /// `Leases.ListResources`.
    pub async fn lease_resources(&self, id: &str) -> Result<Vec<lpb::Resource>, ClientError> {
        let req = lpb::ListResourcesRequest {
            id: id.to_owned(),
            ..Default::default()
        };
        Ok(self
            .call(
                "Leases.ListResources",
                self.leases.list_resources(self.ctx(), &req),
            )
            .await?
            .resources)
    }

    /// `Content.List`, all batches.
    pub async fn content(&self) -> Result<Vec<cpb::Info>, ClientError> {
        let req = cpb::ListContentRequest::new();
        let mut stream = self
            .call("Content.List", self.content.list(self.stream_ctx(), &req))
            .await?;
        let mut out = Vec::new();
        while let Some(batch) = self.call("Content.List", stream.recv()).await? {
            out.extend(batch.info);
        }
        Ok(out)
    }

    /// `Content.Info`.
    pub async fn content_info(&self, digest: &str) -> Result<cpb::Info, ClientError> {
        let req = cpb::InfoRequest {
            digest: digest.to_owned(),
            ..Default::default()
        };
        let r = self
            .call("Content.Info", self.content.info(self.ctx(), &req))
            .await?;
        Ok(r.info.into_option().unwrap_or_default())
    }

    /// `Content.Delete`.
    pub async fn delete_content(&self, digest: &str) -> Result<(), ClientError> {
        let req = cpb::DeleteContentRequest {
            digest: digest.to_owned(),
            ..Default::default()
        };
        self.call("Content.Delete", self.content.delete(self.ctx(), &req))
            .await?;
        Ok(())
    }

    /// `Content.Read` of the whole blob into `out`; returns the bytes written.
    pub async fn read_content(
        &self,
        digest: &str,
        out: &mut impl Write,
    ) -> Result<u64, ClientError> {
        let req = cpb::ReadContentRequest {
            digest: digest.to_owned(),
            ..Default::default()
        };
        let mut stream = self
            .call("Content.Read", self.content.read(self.stream_ctx(), &req))
            .await?;
        let mut n = 0u64;
        while let Some(chunk) = self.call("Content.Read", stream.recv()).await? {
            out.write_all(&chunk.data)
                .map_err(|e| self.local("Content.Read", e))?;
            n += chunk.data.len() as u64;
        }
        out.flush().map_err(|e| self.local("Content.Read", e))?;
        Ok(n)
    }

    /// `Content.Write` of everything `input` yields, in chunks of at most 1 MiB, committed
    /// under `reference` with `labels`; returns the digest.
    pub async fn write_content(
        &self,
        reference: &str,
        input: &mut impl Read,
        labels: Vec<(String, String)>,
    ) -> Result<String, ClientError> {
        let stream = self
            .call("Content.Write", self.content.write(self.stream_ctx()))
            .await?;
        let mut buf = vec![0u8; MAX_CHUNK];
        let mut offset = 0i64;
        let mut stream = stream;
        loop {
            let n = read_full(input, &mut buf).map_err(|e| self.local("Content.Write", e))?;
            let last = n < buf.len();
            let req = cpb::WriteContentRequest {
                action: if last {
                    cpb::WriteAction::COMMIT
                } else {
                    cpb::WriteAction::WRITE
                }
                .into(),
                ref_: reference.to_owned(),
                offset,
                data: buf[..n].to_vec(),
                labels: if last {
                    labels.iter().cloned().collect()
                } else {
                    Default::default()
                },
                ..Default::default()
            };
            self.call("Content.Write", stream.send(&req)).await?;
            let resp = self.call("Content.Write", stream.recv()).await?;
            offset += n as i64;
            if last {
                // The server ends the stream after a commit: wait for that end, so it never
                // writes to a closed connection, and send nothing more. A late close frame
                // would be answered with an error on this stream id, which a connection
                // reused by the next client (the guest's API bridge does that) would take
                // for its own answer. The commit already succeeded; the wait is best effort.
                let _ = tokio::time::timeout(self.timeout, stream.recv()).await;
                return Ok(resp.digest);
            }
        }
    }

    /// `Content.Status` of an ingest.
    pub async fn content_status(&self, reference: &str) -> Result<cpb::Status, ClientError> {
        let req = cpb::StatusRequest {
            ref_: reference.to_owned(),
            ..Default::default()
        };
        let r = self
            .call("Content.Status", self.content.status(self.ctx(), &req))
            .await?;
        Ok(r.status.into_option().unwrap_or_default())
    }

    /// `Content.ListStatuses`: ingests in progress.
    pub async fn content_statuses(&self) -> Result<Vec<cpb::Status>, ClientError> {
        let req = cpb::ListStatusesRequest::new();
        Ok(self
            .call(
                "Content.ListStatuses",
                self.content.list_statuses(self.ctx(), &req),
            )
            .await?
            .statuses)
    }

    /// `Content.Abort` of an ingest.
    pub async fn abort_content(&self, reference: &str) -> Result<(), ClientError> {
        let req = cpb::AbortRequest {
            ref_: reference.to_owned(),
            ..Default::default()
        };
        self.call("Content.Abort", self.content.abort(self.ctx(), &req))
            .await?;
        Ok(())
    }

    /// Sends raw `Content.Write` messages and returns each response (or the first error):
    /// for clients that drive an ingest themselves (resume at an offset, commit with an
    /// expected digest).
    pub async fn write_messages(
        &self,
        messages: Vec<cpb::WriteContentRequest>,
    ) -> Result<Vec<cpb::WriteContentResponse>, ClientError> {
        let mut stream = self
            .call("Content.Write", self.content.write(self.stream_ctx()))
            .await?;
        let mut out = Vec::new();
        for m in &messages {
            self.call("Content.Write", stream.send(m)).await?;
            out.push(self.call("Content.Write", stream.recv()).await?);
        }
        // After a commit the server ends the stream by itself (see `write_content`);
        // otherwise closing our side is what lets it finish.
        let committed = messages
            .last()
            .is_some_and(|m| m.action.enum_value() == Ok(cpb::WriteAction::COMMIT));
        if !committed {
            let _ = stream.close_send().await;
        }
        let _ = tokio::time::timeout(self.timeout, stream.recv()).await;
        Ok(out)
    }

    /// `GC.Collect`.
    pub async fn collect(&self) -> Result<gpb::CollectResponse, ClientError> {
        let req = gpb::CollectRequest::new();
        self.call("GC.Collect", self.gc.collect(self.ctx(), &req))
            .await
    }

    fn local(&self, method: &'static str, e: std::io::Error) -> ClientError {
        ClientError::Call {
            address: self.address.clone(),
            method,
            source: ttrpc::Error::Others(format!("local I/O: {e}")),
        }
    }
}

/// Reads until `buf` is full or the input ends.
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
