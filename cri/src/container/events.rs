//! GetContainerEvents: berthd's event stream (`/containers/create`, `/tasks/start`,
//! `/tasks/exit`, `/containers/delete` in the CRI namespace) as CRI container events, for
//! containers and sandboxes alike (containerd's choice), each with the pod's status and its
//! containers' statuses when they can still be read.

use std::collections::HashSet;
use std::sync::Arc;

use super::Containers;
use crate::error::Result;
use crate::proto::{ContainerEventResponse, ContainerEventType};

/// How many events wait for a slow client before the stream ends.
const QUEUE: usize = 256;

fn event_type(topic: &str) -> Option<ContainerEventType> {
    Some(match topic {
        "/containers/create" => ContainerEventType::ContainerCreatedEvent,
        "/tasks/start" => ContainerEventType::ContainerStartedEvent,
        "/tasks/exit" => ContainerEventType::ContainerStoppedEvent,
        "/containers/delete" => ContainerEventType::ContainerDeletedEvent,
        _ => return None,
    })
}

impl Containers {
    /// The events from now on, until the client goes away or berthd's stream ends.
    pub async fn events(
        self: &Arc<Self>,
    ) -> Result<
        tokio::sync::mpsc::Receiver<std::result::Result<ContainerEventResponse, tonic::Status>>,
    > {
        let mut stream = self.berthd.subscribe(&["/containers/", "/tasks/"]).await?;
        // The CRI objects known now; later creations are added as they come.
        let mut known: HashSet<String> = self
            .berthd
            .containers()
            .await?
            .into_iter()
            .filter(|c| c.labels.contains_key(crate::labels::KIND))
            .map(|c| c.id)
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let me = self.clone();
        let ns = self.berthd.namespace().to_owned();
        tokio::spawn(async move {
            while let Ok(Some(env)) = stream.recv().await {
                if env.namespace != ns {
                    continue;
                }
                let Some(kind) = event_type(&env.topic) else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(&env.event).unwrap_or_default();
                let id = v["container_id"]
                    .as_str()
                    .or(v["id"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                if kind == ContainerEventType::ContainerCreatedEvent {
                    let cri = me
                        .berthd
                        .container(&id)
                        .await
                        .is_ok_and(|c| c.labels.contains_key(crate::labels::KIND));
                    if cri {
                        known.insert(id.clone());
                    }
                }
                if !known.contains(&id) {
                    continue;
                }
                let (pod, statuses) = me.pod_view(&id).await;
                let ev = ContainerEventResponse {
                    container_id: id.clone(),
                    container_event_type: kind as i32,
                    created_at: env.timestamp,
                    pod_sandbox_status: pod,
                    containers_statuses: statuses,
                };
                if kind == ContainerEventType::ContainerDeletedEvent {
                    known.remove(&id);
                }
                if tx.send(Ok(ev)).await.is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }

    /// The status of the pod of container (or sandbox) `id` and of its containers, when
    /// they can be read.
    async fn pod_view(
        &self,
        id: &str,
    ) -> (
        Option<crate::proto::PodSandboxStatus>,
        Vec<crate::proto::ContainerStatus>,
    ) {
        let sandbox_id = match self.find(id).await {
            Ok(Some(r)) => r.sandbox_id,
            _ => id.to_owned(),
        };
        let pod = self
            .sandboxes
            .status(&sandbox_id, false)
            .await
            .ok()
            .and_then(|s| s.status);
        let mut statuses = Vec::new();
        if let Ok(ids) = self.of_sandbox(&sandbox_id).await {
            for c in ids {
                if let Ok(s) = self.status(&c, false).await {
                    statuses.extend(s.status);
                }
            }
        }
        (pod, statuses)
    }
}
