//! Boot stages with their start and duration, for `berthctl system status` and the log.
//!
//! Stage 2 wraps each step in [`Timeline::time`] (or [`Timeline::begin`]/[`Timeline::end`]
//! for a step that ends on another thread). Times are `CLOCK_BOOTTIME` since boot, like the
//! console's. The first stage, `kernel+initramfs`, is everything before stage 2 started.
//! Each finished stage is also one debug line in the log (`stage mounts: 3.1 ms`).

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::console::{uptime, Console};

/// One stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTime {
    /// Short name (`mounts`, `config`, `modules`, …).
    pub name: &'static str,
    /// Uptime at its start.
    pub start: Duration,
    /// How long it took; `None` while it runs.
    pub duration: Option<Duration>,
}

/// The stages of this boot.
#[derive(Debug)]
pub struct Timeline {
    stages: Mutex<Vec<StageTime>>,
    console: OnceLock<Console>,
}

/// Index of a begun stage.
#[derive(Debug, Clone, Copy)]
pub struct StageId(usize);

impl Timeline {
    /// A timeline whose first stage is everything up to now (kernel and stage 1).
    pub fn new() -> Self {
        Self::starting_at(uptime())
    }

    /// A timeline whose first stage ends at `now` (for tests).
    pub fn starting_at(now: Duration) -> Self {
        let first = StageTime {
            name: "kernel+initramfs",
            start: Duration::ZERO,
            duration: Some(now),
        };
        Self {
            stages: Mutex::new(vec![first]),
            console: OnceLock::new(),
        }
    }

    /// Logs finished stages from now on through `console`, and those finished so far.
    pub fn attach(&self, console: Console) {
        if self.console.set(console).is_ok() {
            for stage in self.stages() {
                if let Some(d) = stage.duration {
                    console.debug(&stage_line(stage.name, d));
                }
            }
        }
    }

    /// Starts stage `name` now.
    pub fn begin(&self, name: &'static str) -> StageId {
        let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        stages.push(StageTime {
            name,
            start: uptime(),
            duration: None,
        });
        StageId(stages.len() - 1)
    }

    /// Ends stage `id` now.
    pub fn end(&self, id: StageId) {
        let done = {
            let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
            stages.get_mut(id.0).map(|s| {
                let d = uptime().saturating_sub(s.start);
                s.duration = Some(d);
                (s.name, d)
            })
        };
        if let (Some((name, d)), Some(console)) = (done, self.console.get()) {
            console.debug(&stage_line(name, d));
        }
    }

    /// Runs `f` as stage `name`.
    pub fn time<T>(&self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let id = self.begin(name);
        let result = f();
        self.end(id);
        result
    }

    /// The stages so far, in the order they began.
    pub fn stages(&self) -> Vec<StageTime> {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

fn stage_line(name: &str, d: Duration) -> String {
    format!("stage {name}: {:.1} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_in_order_with_durations() {
        let t = Timeline::starting_at(Duration::from_millis(1500));
        let x = t.time("mounts", || {
            std::thread::sleep(Duration::from_millis(5));
            7
        });
        assert_eq!(x, 7);
        let open = t.begin("modules");
        let stages = t.stages();
        assert_eq!(
            stages.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["kernel+initramfs", "mounts", "modules"]
        );
        assert_eq!(stages[0].duration, Some(Duration::from_millis(1500)));
        assert!(stages[1].duration.unwrap() >= Duration::from_millis(5));
        assert!(stages[2].duration.is_none());
        t.end(open);
        assert!(t.stages()[2].duration.is_some());
    }

    #[test]
    fn attach_logs_finished_stages() {
        let logger: &'static crate::log::Logger =
            Box::leak(Box::new(crate::log::Logger::new(1 << 16)));
        let t = Timeline::starting_at(Duration::from_millis(2));
        t.time("config", || ());
        t.attach(Console::new(crate::console::Level::Error).with_log(logger));
        t.time("lo", || ());
        let (records, _) = logger.tail(10, &Default::default());
        let lines: Vec<&str> = records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("stage kernel+initramfs: 2.0 ms"));
        assert!(lines[1].starts_with("stage config: ") && lines[2].starts_with("stage lo: "));
    }
}
