//! Re-adoption at start: every shim found under `<state>/shims/<ns>/<id>` outlived a previous
//! berthd (containers survive an engine crash or upgrade). A live one is connected to and
//! watched again; one that is gone keeps its task entry so its recorded exit (if any) can be
//! read and the task deleted.

use std::sync::Arc;

use super::launch::connect;
use super::manager::Task;
use super::shim::exits::read_exit;
use super::Tasks;

impl Tasks {
    /// Re-adopts the shims under `<state>/shims` (called once by [`Tasks::open`]).
    pub(super) async fn adopt(self: &Arc<Self>) {
        let Ok(nss) = std::fs::read_dir(self.state_dir.join("shims")) else {
            return;
        };
        for ns in nss.flatten() {
            let Ok(ids) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for id in ids.flatten() {
                let (nsn, idn) = (
                    ns.file_name().to_string_lossy().into_owned(),
                    id.file_name().to_string_lossy().into_owned(),
                );
                let dir = id.path();
                let sock = super::shim_socket::existing(&self.state_dir, &nsn, &idn, &dir);
                let shim = connect(&sock).await.ok();
                match (&shim, read_exit(&dir)) {
                    (Some(_), _) => {
                        tracing::info!(namespace = %nsn, id = %idn, "re-adopted a live shim")
                    }
                    (None, Some(e)) => {
                        tracing::warn!(namespace = %nsn, id = %idn, exit_status = e.exit_status, "shim gone; its container's exit was recorded")
                    }
                    (None, None) => {
                        tracing::warn!(namespace = %nsn, id = %idn, "shim gone without an exit record")
                    }
                }
                if let Some(c) = &shim {
                    self.watch_exit(&nsn, &idn, c.clone());
                }
                self.tasks
                    .lock()
                    .expect("tasks lock")
                    .insert((nsn, idn), Task { dir, shim });
            }
        }
    }
}
