//! The calls CRI containers need: container records (get, update), tasks (create with a
//! CRI log, start, kill, exec, wait, metrics, reopen the log) and the event stream.

use std::time::Duration;

use berth_api::client::bounded;
use berth_api::proto::{containers as cpb, events as epb, tasks as tpb};

use super::Berthd;
use crate::error::Result;

/// A process to exec in a task (its stdio travels over `Tasks.Attach`).
#[derive(Debug, Clone, Default)]
pub struct Exec {
    pub exec_id: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
}

impl Berthd {
    /// `Containers.Get`.
    pub async fn container(&self, id: &str) -> Result<cpb::Container> {
        let req = cpb::GetContainerRequest {
            id: id.to_owned(),
            ..Default::default()
        };
        let r = call!(self, containers, get, "Containers.Get", req)?;
        Ok(r.container.into_option().unwrap_or_default())
    }

    /// `Containers.Update` of the fields `mask` names.
    pub async fn update_container(&self, c: cpb::Container, mask: &[&str]) -> Result<()> {
        let req = cpb::UpdateContainerRequest {
            container: Some(c).into(),
            update_mask: mask.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        };
        call!(self, containers, update, "Containers.Update", req)?;
        Ok(())
    }

    /// `Tasks.Create` with the init's output also in CRI format at `log_path` ("": none);
    /// returns the pid.
    pub async fn create_task(&self, id: &str, log_path: &str) -> Result<u32> {
        let req = tpb::CreateTaskRequest {
            container_id: id.to_owned(),
            log_path: log_path.to_owned(),
            ..Default::default()
        };
        Ok(call!(self, tasks, create, "Tasks.Create", req)?.pid)
    }

    /// `Tasks.Start`; returns the pid.
    pub async fn start_task(&self, id: &str) -> Result<u32> {
        let req = tpb::StartRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        Ok(call!(self, tasks, start, "Tasks.Start", req)?.pid)
    }

    /// `Tasks.Kill` of process `exec_id` ("": the init; `all`: every process).
    pub async fn signal(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let req = tpb::KillRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            signal,
            all,
            ..Default::default()
        };
        call!(self, tasks, kill, "Tasks.Kill", req)?;
        Ok(())
    }

    /// `Tasks.Exec` (created, not started), then `Tasks.Attach` to it (output only), then
    /// `Tasks.Start` of it: nothing it writes is missed. The session's stream has no
    /// deadline; the caller bounds it.
    pub async fn exec_attached(
        &self,
        id: &str,
        e: Exec,
    ) -> Result<berth_api::client::stdio::Session> {
        let exec_id = e.exec_id.clone();
        let req = tpb::ExecProcessRequest {
            container_id: id.to_owned(),
            exec_id: e.exec_id,
            args: e.args,
            env: e.env,
            cwd: e.cwd,
            ..Default::default()
        };
        call!(self, tasks, exec, "Tasks.Exec", req)?;
        let c = self.conn().await?;
        let session = bounded(
            &self.address,
            self.timeout,
            "Tasks.Attach",
            berth_api::client::stdio::attach(
                &c.tasks,
                self.ctx(Duration::ZERO),
                berth_api::client::stdio::AttachOptions::new(id).exec(&exec_id),
            ),
        )
        .await;
        let session = self.check(session)?;
        let req = tpb::StartRequest {
            container_id: id.to_owned(),
            exec_id,
            ..Default::default()
        };
        call!(self, tasks, start, "Tasks.Start", req)?;
        Ok(session)
    }

    /// `Tasks.Wait` for process `exec_id` ("": the init), bounded by `timeout`.
    pub async fn wait_process(
        &self,
        id: &str,
        exec_id: &str,
        timeout: Duration,
    ) -> Result<tpb::WaitResponse> {
        let c = self.conn().await?;
        let req = tpb::WaitRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            ..Default::default()
        };
        let r = bounded(
            &self.address,
            timeout,
            "Tasks.Wait",
            c.tasks.wait(self.ctx(timeout), &req),
        )
        .await;
        self.check(r)
    }

    /// `Tasks.Get` of process `exec_id` of task `id`.
    pub async fn process(&self, id: &str, exec_id: &str) -> Result<tpb::Process> {
        let req = tpb::GetRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            ..Default::default()
        };
        let r = call!(self, tasks, get, "Tasks.Get", req)?;
        Ok(r.process.into_option().unwrap_or_default())
    }

    /// `Tasks.Metrics`.
    pub async fn metrics(&self, id: &str) -> Result<tpb::MetricsResponse> {
        let req = tpb::MetricsRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        call!(self, tasks, metrics, "Tasks.Metrics", req)
    }

    /// `Tasks.ReopenLog`.
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        let req = tpb::ReopenLogRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        call!(self, tasks, reopen_log, "Tasks.ReopenLog", req)?;
        Ok(())
    }

    /// `Events.Subscribe` to `topics`: a stream without a deadline.
    pub async fn subscribe(
        &self,
        topics: &[&str],
    ) -> Result<ttrpc::r#async::ClientStreamReceiver<epb::Envelope>> {
        let c = self.conn().await?;
        let req = epb::SubscribeRequest {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        let mut ctx = self.ctx(self.timeout);
        ctx.timeout_nano = 0;
        let r = bounded(
            &self.address,
            self.timeout,
            "Events.Subscribe",
            c.events.subscribe(ctx, &req),
        )
        .await;
        self.check(r)
    }
}
