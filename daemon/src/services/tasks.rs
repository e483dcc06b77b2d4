//! `berth.services.tasks.v1.Tasks`: the tasks of the request's namespace, one shim each,
//! over [`Tasks`]' lifecycle, exec and wait operations (which publish the task events), and
//! `Attach`, the stdio streams berthd relays to the shims ([`super::attach`]).

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::errdefs;
use berth_api::proto::{stdio, tasks as tpb, tasks_ttrpc};
use berth_api::time::nanos;
use berth_engine::tasks::metrics::Metrics;
use berth_engine::tasks::{ExecProcess, ProcessState, TaskIo, Tasks};
use ttrpc::r#async::{ServerStream, ServerStreamSender, TtrpcContext};

use super::namespace;

/// `berth.services.tasks.v1.Tasks`.
pub struct TasksService(pub Arc<Tasks>);

fn status(e: berth_engine::tasks::Error) -> ttrpc::Error {
    errdefs::status(&e)
}

fn process_pb(container_id: &str, exec_id: &str, p: ProcessState) -> tpb::Process {
    tpb::Process {
        container_id: container_id.to_owned(),
        exec_id: exec_id.to_owned(),
        pid: p.pid,
        status: p.status.as_str().to_owned(),
        exit_status: p.exit_status,
        exited_at: p.exited_at,
        oom_killed: p.oom_killed,
        ..Default::default()
    }
}

fn metrics_pb(m: Metrics) -> tpb::MetricsResponse {
    tpb::MetricsResponse {
        container_id: m.container_id,
        timestamp: nanos(m.timestamp),
        cgroup_version: m.cgroup_version,
        cgroup_path: m.cgroup_path,
        memory: Some(tpb::MemoryStats {
            usage: m.memory.usage,
            peak: m.memory.peak,
            limit: m.memory.limit,
            stat: m.memory.stat.into_iter().collect(),
            ..Default::default()
        })
        .into(),
        cpu: Some(tpb::CpuStats {
            usage_usec: m.cpu.usage_usec,
            user_usec: m.cpu.user_usec,
            system_usec: m.cpu.system_usec,
            nr_periods: m.cpu.nr_periods,
            nr_throttled: m.cpu.nr_throttled,
            throttled_usec: m.cpu.throttled_usec,
            ..Default::default()
        })
        .into(),
        pids: Some(tpb::PidsStats {
            current: m.pids.current,
            limit: m.pids.limit,
            ..Default::default()
        })
        .into(),
        io: m
            .io
            .into_iter()
            .map(|s| tpb::IoStats {
                major: s.major,
                minor: s.minor,
                rbytes: s.rbytes,
                wbytes: s.wbytes,
                rios: s.rios,
                wios: s.wios,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[async_trait]
impl tasks_ttrpc::Tasks for TasksService {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        r: tpb::CreateTaskRequest,
    ) -> ttrpc::Result<tpb::CreateTaskResponse> {
        let ns = namespace(ctx)?;
        let io = TaskIo {
            stdin: r.stdin,
            terminal: r.terminal,
        };
        let opts = berth_engine::tasks::TaskOptions {
            log_path: (!r.log_path.is_empty()).then(|| r.log_path.clone().into()),
        };
        let pid = self
            .0
            .create_task_with(&ns, &r.container_id, &io, &opts)
            .await
            .map_err(status)?;
        Ok(tpb::CreateTaskResponse {
            container_id: r.container_id,
            pid,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        ctx: &TtrpcContext,
        r: tpb::StartRequest,
    ) -> ttrpc::Result<tpb::StartResponse> {
        let ns = namespace(ctx)?;
        let pid = if r.exec_id.is_empty() {
            self.0.start_task(&ns, &r.container_id).await
        } else {
            self.0.start_exec(&ns, &r.container_id, &r.exec_id).await
        }
        .map_err(status)?;
        Ok(tpb::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn kill(&self, ctx: &TtrpcContext, r: tpb::KillRequest) -> ttrpc::Result<tpb::Empty> {
        let ns = namespace(ctx)?;
        self.0
            .kill(&ns, &r.container_id, &r.exec_id, r.signal, r.all)
            .await
            .map_err(status)?;
        Ok(tpb::Empty::default())
    }

    async fn wait(
        &self,
        ctx: &TtrpcContext,
        r: tpb::WaitRequest,
    ) -> ttrpc::Result<tpb::WaitResponse> {
        let ns = namespace(ctx)?;
        let e = self
            .0
            .wait(&ns, &r.container_id, &r.exec_id)
            .await
            .map_err(status)?;
        Ok(tpb::WaitResponse {
            exit_status: e.exit_status,
            exited_at: e.exited_at,
            oom_killed: e.oom_killed,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        r: tpb::DeleteTaskRequest,
    ) -> ttrpc::Result<tpb::DeleteResponse> {
        let ns = namespace(ctx)?;
        let e = self
            .0
            .delete_task(&ns, &r.container_id)
            .await
            .map_err(status)?;
        Ok(tpb::DeleteResponse {
            container_id: r.container_id,
            pid: e.pid,
            exit_status: e.exit_status,
            exited_at: e.exited_at,
            ..Default::default()
        })
    }

    async fn exec(
        &self,
        ctx: &TtrpcContext,
        r: tpb::ExecProcessRequest,
    ) -> ttrpc::Result<tpb::ExecProcessResponse> {
        let ns = namespace(ctx)?;
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
        let pid = self.0.exec(&ns, &r.container_id, p).await.map_err(status)?;
        Ok(tpb::ExecProcessResponse {
            pid,
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        ctx: &TtrpcContext,
        r: tpb::ListPidsRequest,
    ) -> ttrpc::Result<tpb::ListPidsResponse> {
        let ns = namespace(ctx)?;
        let pids = self.0.pids(&ns, &r.container_id).await.map_err(status)?;
        Ok(tpb::ListPidsResponse {
            pids,
            ..Default::default()
        })
    }

    async fn list(
        &self,
        ctx: &TtrpcContext,
        _: tpb::ListTasksRequest,
    ) -> ttrpc::Result<tpb::ListTasksResponse> {
        let ns = namespace(ctx)?;
        let tasks = self
            .0
            .processes(&ns)
            .await
            .into_iter()
            .map(|(id, p)| process_pb(&id, "", p))
            .collect();
        Ok(tpb::ListTasksResponse {
            tasks,
            ..Default::default()
        })
    }

    async fn pause(
        &self,
        ctx: &TtrpcContext,
        r: tpb::PauseTaskRequest,
    ) -> ttrpc::Result<tpb::Empty> {
        let ns = namespace(ctx)?;
        self.0
            .freeze(&ns, &r.container_id, true)
            .await
            .map_err(status)?;
        Ok(tpb::Empty::default())
    }

    async fn resume(
        &self,
        ctx: &TtrpcContext,
        r: tpb::ResumeTaskRequest,
    ) -> ttrpc::Result<tpb::Empty> {
        let ns = namespace(ctx)?;
        self.0
            .freeze(&ns, &r.container_id, false)
            .await
            .map_err(status)?;
        Ok(tpb::Empty::default())
    }

    async fn metrics(
        &self,
        ctx: &TtrpcContext,
        r: tpb::MetricsRequest,
    ) -> ttrpc::Result<tpb::MetricsResponse> {
        let ns = namespace(ctx)?;
        let m = self.0.metrics(&ns, &r.container_id).map_err(status)?;
        Ok(metrics_pb(m))
    }

    async fn logs(
        &self,
        ctx: &TtrpcContext,
        r: tpb::LogsRequest,
        sink: ServerStreamSender<tpb::LogChunk>,
    ) -> ttrpc::Result<()> {
        use berth_engine::tasks::logs;
        let ns = namespace(ctx)?;
        let dir = self.0.log_dir(&ns, &r.container_id).map_err(status)?;
        let tail = usize::try_from(r.tail).ok();
        let (data, current) = logs::stored(&dir, tail).map_err(status)?;
        // Chunks well under ttrpc's 4 MiB message limit.
        for chunk in data.chunks(256 * 1024) {
            sink.send(&tpb::LogChunk {
                data: chunk.to_vec(),
                ..Default::default()
            })
            .await?;
        }
        if !r.follow {
            return Ok(());
        }
        let sink = &sink;
        logs::follow(&dir, current, |data| async move {
            sink.send(&tpb::LogChunk {
                data,
                ..Default::default()
            })
            .await
            .is_ok()
        })
        .await
        .map_err(status)
    }

    async fn reopen_log(
        &self,
        ctx: &TtrpcContext,
        r: tpb::ReopenLogRequest,
    ) -> ttrpc::Result<tpb::Empty> {
        let ns = namespace(ctx)?;
        self.0
            .reopen_log(&ns, &r.container_id)
            .await
            .map_err(status)?;
        Ok(tpb::Empty::default())
    }

    async fn attach(
        &self,
        ctx: &TtrpcContext,
        stream: ServerStream<stdio::AttachResponse, stdio::AttachRequest>,
    ) -> ttrpc::Result<()> {
        let ns = namespace(ctx)?;
        let (tx, mut rx) = stream.split();
        let first = rx.recv().await?.unwrap_or_default();
        let Some(stdio::attach_request::Msg::Open(open)) = &first.msg else {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::INVALID_ARGUMENT,
                "the first message of an attach must be `open`",
            )));
        };
        let shim = self
            .0
            .attach(&ns, &open.container_id)
            .await
            .map_err(status)?;
        super::attach::relay(first, tx, rx, shim, self.0.stopping()).await
    }

    async fn get(&self, ctx: &TtrpcContext, r: tpb::GetRequest) -> ttrpc::Result<tpb::GetResponse> {
        let ns = namespace(ctx)?;
        let p = self
            .0
            .process(&ns, &r.container_id, &r.exec_id)
            .await
            .map_err(status)?;
        Ok(tpb::GetResponse {
            process: Some(process_pb(&r.container_id, &r.exec_id, p)).into(),
            ..Default::default()
        })
    }
}
