//! Waiting for a task's processes to exit, and the exit watch that publishes `/tasks/exit`
//! (and `/tasks/oom` when the kernel's OOM killer took part) for every task, including the
//! exits a shim recorded while berthd was down.

use std::sync::Arc;

use berth_api::proto::{shim as spb, shim_ttrpc};

use super::launch::shim_err;
use super::shim::exits::read_exit;
use super::{Error, ExitRecord, Tasks};

/// How a waited-for process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub exit_status: u32,
    /// Unix nanoseconds.
    pub exited_at: i64,
    /// The OOM killer took part (the init only).
    pub oom_killed: bool,
}

impl Tasks {
    /// Publishes `/tasks/exit` when the shim's init exits (at once for an exit recorded
    /// while berthd was down).
    pub(super) fn watch_exit(self: &Arc<Self>, ns: &str, id: &str, shim: shim_ttrpc::ShimClient) {
        let (t, ns, id) = (self.clone(), ns.to_owned(), id.to_owned());
        tokio::spawn(async move {
            if let Ok(w) = shim
                .wait(
                    ttrpc::context::Context::default(),
                    &spb::WaitRequest::default(),
                )
                .await
            {
                let p = w.process.into_option().unwrap_or_default();
                if p.oom_killed {
                    // The count the shim recorded with the exit (read before any delete).
                    let n = read_exit(&t.task_dir(&ns, &id)).map_or(1, |e| e.oom_kills.max(1));
                    t.publish(
                        &ns,
                        "/tasks/oom",
                        serde_json::json!({"container_id": id, "oom_kills": n}),
                    );
                }
                t.publish(
                    &ns,
                    "/tasks/exit",
                    serde_json::json!({"container_id": id, "pid": p.pid,
                        "exit_status": p.exit_status, "exited_at": p.exited_at}),
                );
            }
        });
    }

    /// Waits for process `exec_id` (`""`: the init) of task `id` to exit. A task whose shim
    /// is gone answers with the init's recorded exit, or FAILED_PRECONDITION without one.
    pub async fn wait(&self, ns: &str, id: &str, exec_id: &str) -> Result<Exit, Error> {
        let t = self.task(ns, id)?;
        let Some(s) = t.shim else {
            let e = read_exit(&t.dir).ok_or_else(|| {
                Error::FailedPrecondition("the shim is gone and recorded no exit".into())
            })?;
            return Ok(Exit {
                exit_status: e.exit_status,
                exited_at: e.exited_at,
                oom_killed: e.oom_kills > 0,
            });
        };
        let out = s
            .wait(
                ttrpc::context::Context::default(),
                &spb::WaitRequest {
                    exec_id: exec_id.to_owned(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| shim_err(id, e))?;
        let p = out.process.into_option().unwrap_or_default();
        Ok(Exit {
            exit_status: p.exit_status,
            exited_at: p.exited_at,
            oom_killed: p.oom_killed,
        })
    }

    /// The exit of task `id`'s init that its shim recorded, if any (also after the shim is
    /// gone, and for a task berthd no longer knows).
    pub fn recorded_exit(&self, ns: &str, id: &str) -> Option<ExitRecord> {
        read_exit(&self.task_dir(ns, id))
    }
}
