//! `berth.shim.v1.Shim`: the shim API, a thin adapter over the shim's core
//! ([`berth_engine::tasks::shim::Shim`]); berthd is its only client.

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::errdefs;
use berth_api::proto::{shim as pb, shim_ttrpc, stdio};
use berth_engine::tasks::shim::Shim;
use berth_engine::tasks::{ExecProcess, ProcessState, TaskIo};
use ttrpc::r#async::{ServerStream, TtrpcContext};

/// The shim API of one shim; `done` tells the serving loop to stop after a Delete.
pub struct ShimService {
    pub shim: Arc<Shim>,
    pub done: tokio::sync::mpsc::Sender<()>,
}

fn status(e: berth_engine::tasks::Error) -> ttrpc::Error {
    errdefs::status(&e)
}

fn state_pb(exec_id: &str, p: ProcessState) -> pb::ProcessState {
    pb::ProcessState {
        exec_id: exec_id.to_owned(),
        pid: p.pid,
        status: p.status.as_str().to_owned(),
        exit_status: p.exit_status,
        exited_at: p.exited_at,
        oom_killed: p.oom_killed,
        ..Default::default()
    }
}

#[async_trait]
impl shim_ttrpc::Shim for ShimService {
    async fn state(
        &self,
        _: &TtrpcContext,
        r: pb::StateRequest,
    ) -> ttrpc::Result<pb::StateResponse> {
        let (p, execs) = self.shim.state(&r.exec_id).map_err(status)?;
        Ok(pb::StateResponse {
            process: Some(state_pb(&r.exec_id, p)).into(),
            execs: execs.into_iter().map(|(k, v)| state_pb(&k, v)).collect(),
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _: &TtrpcContext,
        r: pb::StartRequest,
    ) -> ttrpc::Result<pb::StartResponse> {
        let pid = self.shim.start(&r.exec_id).await.map_err(status)?;
        Ok(pb::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn kill(&self, _: &TtrpcContext, r: pb::KillRequest) -> ttrpc::Result<pb::Empty> {
        self.shim
            .kill(&r.exec_id, r.signal, r.all)
            .map_err(status)?;
        Ok(pb::Empty::default())
    }

    async fn wait(&self, _: &TtrpcContext, r: pb::WaitRequest) -> ttrpc::Result<pb::WaitResponse> {
        let p = self.shim.wait(&r.exec_id).await.map_err(status)?;
        Ok(pb::WaitResponse {
            process: Some(state_pb(&r.exec_id, p)).into(),
            ..Default::default()
        })
    }

    async fn exec(&self, _: &TtrpcContext, r: pb::ExecRequest) -> ttrpc::Result<pb::ExecResponse> {
        let p = ExecProcess {
            exec_id: r.exec_id,
            args: r.args,
            env: r.env,
            cwd: r.cwd,
            io: TaskIo {
                stdin: r.stdin,
                terminal: r.terminal,
            },
        };
        let pid = self.shim.exec(p).await.map_err(status)?;
        Ok(pb::ExecResponse {
            pid,
            ..Default::default()
        })
    }

    async fn pids(&self, _: &TtrpcContext, _: pb::PidsRequest) -> ttrpc::Result<pb::PidsResponse> {
        Ok(pb::PidsResponse {
            pids: self.shim.pids(),
            ..Default::default()
        })
    }

    async fn pause(&self, _: &TtrpcContext, _: pb::Empty) -> ttrpc::Result<pb::Empty> {
        self.shim.freeze(true).await.map_err(status)?;
        Ok(pb::Empty::default())
    }

    async fn resume(&self, _: &TtrpcContext, _: pb::Empty) -> ttrpc::Result<pb::Empty> {
        self.shim.freeze(false).await.map_err(status)?;
        Ok(pb::Empty::default())
    }

    async fn reopen_log(&self, _: &TtrpcContext, _: pb::Empty) -> ttrpc::Result<pb::Empty> {
        self.shim.reopen_log().map_err(status)?;
        Ok(pb::Empty::default())
    }

    async fn attach(
        &self,
        _: &TtrpcContext,
        stream: ServerStream<stdio::AttachResponse, stdio::AttachRequest>,
    ) -> ttrpc::Result<()> {
        super::attach::serve(&self.shim, stream).await
    }

    async fn delete(
        &self,
        _: &TtrpcContext,
        _: pb::DeleteRequest,
    ) -> ttrpc::Result<pb::DeleteResponse> {
        let p = self.shim.delete().await.map_err(status)?;
        let _ = self.done.try_send(());
        Ok(pb::DeleteResponse {
            process: Some(state_pb("", p)).into(),
            ..Default::default()
        })
    }
}
