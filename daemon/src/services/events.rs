//! `berth.services.events.v1.Events`: every subscriber gets the events published after it
//! subscribed, filtered by topic prefix (a subscriber too slow for the queue misses the
//! oldest, and is told so in the log). Not namespaced: events carry their namespace.

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::proto::{events as epb, events_ttrpc};
use berth_api::time::nanos;
use berth_engine::tasks::{Event, Tasks};
use ttrpc::r#async::{ServerStreamSender, TtrpcContext};

/// `berth.services.events.v1.Events`.
pub struct EventsService(pub Arc<Tasks>);

fn envelope(e: &Event) -> epb::Envelope {
    epb::Envelope {
        timestamp: nanos(e.timestamp),
        namespace: e.namespace.clone(),
        topic: e.topic.clone(),
        event: e.event.to_string(),
        ..Default::default()
    }
}

#[async_trait]
impl events_ttrpc::Events for EventsService {
    async fn subscribe(
        &self,
        _: &TtrpcContext,
        r: epb::SubscribeRequest,
        sink: ServerStreamSender<epb::Envelope>,
    ) -> ttrpc::Result<()> {
        let mut rx = self.0.subscribe();
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if e.matches(&r.topics) {
                        sink.send(&envelope(&e)).await?;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "an events subscriber fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}
