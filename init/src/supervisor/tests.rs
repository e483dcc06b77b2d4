//! The supervisor driven with real processes (`/bin/sh` scripts): restarts, give-up,
//! signal masks, restart policies, the control handle, shutdown. The pure policy has its own
//! tests in [`policy`](super::policy).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::*;
use crate::cgroup::Resources;
use crate::events;
use crate::reaper::ExitStatus;

fn spec(name: &str, path: &str, args: &[&str], max_failures: u32) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        path: path.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        max_failures,
        backoff: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
        },
        readiness: Readiness::Running,
        restart: RestartPolicy::Always,
        stop_timeout: Duration::from_secs(5),
        resources: Resources::default(),
        config_key: format!("service.{name}"),
    }
}

/// Drives a supervisor with real processes until `done` or a 10 s guard.
fn drive(
    sup: &mut Supervisor,
    rx: &events::Receiver<Event>,
    pids: &[Pid],
    mut done: impl FnMut(&Supervisor) -> bool,
) {
    let guard = Instant::now() + Duration::from_secs(10);
    let mut mine: Vec<Pid> = pids.to_vec();
    while !done(sup) {
        assert!(Instant::now() < guard, "supervisor test timed out: {sup:?}");
        let now = Instant::now();
        sup.tick(now);
        for svc in &sup.services {
            if let Phase::Running { pid, .. } = svc.phase {
                if !mine.contains(&pid) {
                    mine.push(pid);
                }
            }
        }
        for ev in rx.drain() {
            sup.handle(ev, Instant::now());
        }
        // Only wait for our own children: other tests run in parallel threads.
        for pid in &mine {
            if let Ok(st) =
                nix::sys::wait::waitpid(*pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            {
                if let Some((pid, st)) = ExitStatus::from_wait(st) {
                    sup.on_exit(pid, st, Instant::now());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn crashing_service_is_restarted_then_given_up() {
    let (tx, rx) = events::channel().unwrap();
    let svc = spec("crasher", "/bin/sh", &["-c", "echo boom >&2; exit 3"], 3);
    let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
    sup.start(Instant::now());
    drive(&mut sup, &rx, &[], |s| {
        matches!(s.services[0].phase, Phase::Failed)
    });
    assert_eq!(sup.services[0].tracker.failures(), 3);
    assert_eq!(sup.services[0].last.lock().unwrap().best(), Some("boom"));
}

#[test]
fn services_start_with_an_empty_signal_mask() {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(Signal::SIGTERM);
    set.thread_block().unwrap();
    let (tx, rx) = events::channel().unwrap();
    let svc = spec("mask", "/bin/grep", &["SigBlk", "/proc/self/status"], 1);
    let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
    sup.start(Instant::now());
    drive(&mut sup, &rx, &[], |s| {
        matches!(s.services[0].phase, Phase::Failed)
    });
    set.thread_unblock().unwrap();
    let last = sup.services[0].last.lock().unwrap();
    assert_eq!(last.any.as_deref(), Some("SigBlk:\t0000000000000000"));
}

#[test]
fn missing_executable_is_a_failure() {
    let (tx, rx) = events::channel().unwrap();
    let svc = spec("ghost", "/nonexistent/berth-ghost", &[], 2);
    let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
    sup.start(Instant::now());
    drive(&mut sup, &rx, &[], |s| {
        matches!(s.services[0].phase, Phase::Failed)
    });
    let last = sup.services[0].last.lock().unwrap();
    assert!(last
        .best()
        .unwrap()
        .starts_with("cannot execute /nonexistent/berth-ghost:"));
}

#[test]
fn shutdown_stops_restarts() {
    let (tx, rx) = events::channel().unwrap();
    let svc = spec("sleeper", "/bin/sleep", &["30"], 3);
    let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
    sup.start(Instant::now());
    drive(&mut sup, &rx, &[], |s| s.any_running());
    let pids = sup.begin_shutdown();
    assert_eq!(pids.len(), 1);
    kill_run(pids[0], Signal::SIGTERM);
    drive(&mut sup, &rx, &pids, |s| {
        !s.any_running() && matches!(s.services[0].phase, Phase::Stopped)
    });
    sup.tick(Instant::now() + Duration::from_secs(60));
    assert!(!sup.any_running());
}

#[test]
fn nothing_starts_before_the_engine_stage() {
    let (tx, _rx) = events::channel().unwrap();
    let mut sup = Supervisor::new(
        vec![spec("early", "/bin/true", &[], 1)],
        Console::new(console::Level::Error),
        tx,
    );
    sup.tick(Instant::now() + Duration::from_secs(60));
    assert!(!sup.any_running());
    assert_eq!(sup.status()[0].state, ServiceState::Pending);
    assert_eq!(sup.next_deadline(), None);
}

#[test]
fn a_clean_exit_of_an_on_failure_service_is_final() {
    let (tx, rx) = events::channel().unwrap();
    let mut svc = spec("oneshot", "/bin/true", &[], 3);
    svc.restart = RestartPolicy::OnFailure;
    let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
    sup.start(Instant::now());
    drive(&mut sup, &rx, &[], |s| {
        matches!(s.services[0].phase, Phase::Done)
    });
    let st = &sup.status()[0];
    assert_eq!(
        (st.state, st.restarts, st.pid),
        (ServiceState::Exited, 0, None)
    );
    assert_eq!(
        st.last_exit,
        Some(ExitStatus {
            code: 0,
            signal: None
        })
    );
}

#[test]
fn duplicate_names_are_refused() {
    let (tx, _rx) = events::channel().unwrap();
    let specs = vec![
        spec("a", "/bin/true", &[], 1),
        spec("a", "/bin/false", &[], 1),
    ];
    let sup = Supervisor::new(specs, Console::new(console::Level::Error), tx);
    assert_eq!(sup.status().len(), 1);
}

#[test]
fn control_reports_status_and_restarts_on_request() {
    let (tx, rx) = events::channel().unwrap();
    let mut sup = Supervisor::new(
        vec![spec("sleeper", "/bin/sleep", &["30"], 3)],
        Console::new(console::Level::Error),
        tx,
    );
    let control = sup.control();
    assert_eq!(control.status()[0].state, ServiceState::Pending);
    sup.start(Instant::now());
    drive(&mut sup, &rx, &[], |s| s.any_running());
    let first = control.status()[0].clone();
    assert_eq!(
        (first.name.as_str(), first.state, first.restarts),
        ("sleeper", ServiceState::Running, 0)
    );
    let old = first.pid.unwrap();
    // The request waits for the main loop: answer it from here, as the main loop would.
    let asker = std::thread::spawn(move || {
        let unknown = control.restart("nope", Duration::from_secs(5));
        let ok = control.restart("sleeper", Duration::from_secs(5));
        (unknown, ok, control)
    });
    let mut answered = 0;
    let guard = Instant::now() + Duration::from_secs(5);
    while answered < 2 && Instant::now() < guard {
        for ev in rx.drain() {
            if matches!(ev, Event::Restart { .. }) {
                answered += 1;
            }
            sup.handle(ev, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (unknown, ok, control) = asker.join().unwrap();
    assert_eq!(unknown, Err(ControlError::UnknownService("nope".into())));
    assert_eq!(ok, Ok(()));
    drive(&mut sup, &rx, &[Pid::from_raw(old)], |s| {
        s.status()[0].state == ServiceState::Running && s.status()[0].pid != Some(old)
    });
    let now = control.status()[0].clone();
    assert_eq!(now.restarts, 1);
    assert_eq!(
        now.last_exit,
        Some(ExitStatus {
            code: 143,
            signal: Some(Signal::SIGTERM)
        })
    );
    let pids = sup.begin_shutdown();
    kill_run(pids[0], Signal::SIGKILL);
    drive(&mut sup, &rx, &pids, |s| !s.any_running());
}

#[test]
fn stop_all_kills_a_service_that_ignores_sigterm_after_its_timeout() {
    let (tx, rx) = events::channel().unwrap();
    let mut stubborn = spec(
        "stubborn",
        "/bin/sh",
        &["-c", "trap '' TERM; echo up; while :; do sleep 1; done"],
        1,
    );
    stubborn.stop_timeout = Duration::from_millis(500);
    let polite = spec("polite", "/bin/sleep", &["30"], 1);
    let mut sup = Supervisor::new(
        vec![stubborn, polite],
        Console::new(console::Level::Error),
        tx,
    );
    sup.start(Instant::now());
    drive(&mut sup, &rx, &[], |s| {
        s.services
            .iter()
            .all(|s| matches!(s.phase, Phase::Running { .. }))
            && s.services[0].last.lock().unwrap().any.is_some()
    });
    let pids: Vec<Pid> = sup
        .status()
        .iter()
        .filter_map(|s| s.pid)
        .map(Pid::from_raw)
        .collect();
    let started = Instant::now();
    let mut reap = || {
        pids.iter()
            .filter_map(|p| {
                nix::sys::wait::waitpid(*p, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).ok()
            })
            .filter_map(ExitStatus::from_wait)
            .collect()
    };
    sup.stop_all(&mut reap);
    let took = started.elapsed();
    println!("stop_all took {:.3}s", took.as_secs_f64());
    assert!(!sup.any_running());
    let st = sup.status();
    assert_eq!(
        st[0].last_exit.map(|e| e.signal),
        Some(Some(Signal::SIGKILL)),
        "{st:?}"
    );
    assert_eq!(
        st[1].last_exit.map(|e| e.signal),
        Some(Some(Signal::SIGTERM)),
        "{st:?}"
    );
    assert!(
        st.iter().all(|s| s.state == ServiceState::Stopped),
        "{st:?}"
    );
    assert!(took < Duration::from_secs(10), "hang guard: {took:?}");
    // The sleep the stubborn shell was running is its orphan now; its process group was
    // killed too.
    for ev in rx.drain() {
        sup.handle(ev, Instant::now());
    }
}

/// The remote API's life: added after the engine stage, reloaded with SIGHUP (it keeps
/// running), turned off, started again; exit 78 right after a start is a configuration
/// problem even for a service that is ready as soon as it runs.
#[test]
fn a_service_added_later_turned_off_and_on_and_given_up_on_exit_78() {
    let (tx, rx) = events::channel().unwrap();
    let mut sup = Supervisor::new(vec![], Console::new(console::Level::Error), tx);
    sup.start(Instant::now());
    let apid = spec("apid", "/bin/sh", &["-c", "trap '' HUP; sleep 30"], 3);
    sup.upsert(apid.clone(), Instant::now());
    drive(&mut sup, &rx, &[], |s| s.is_running("apid"));
    assert!(sup.signal("apid", Signal::SIGHUP));
    std::thread::sleep(Duration::from_millis(50));
    assert!(sup.is_running("apid"), "SIGHUP must not stop it");
    assert!(sup.turn_off("apid", Instant::now()));
    drive(&mut sup, &rx, &[], |s| {
        matches!(s.services[0].phase, Phase::Off)
    });
    assert_eq!(sup.status()[0].state, ServiceState::Off);
    assert!(matches!(
        sup.restart("apid", Instant::now()),
        Err(ControlError::Off(_))
    ));
    sup.upsert(apid, Instant::now());
    drive(&mut sup, &rx, &[], |s| s.is_running("apid"));
    sup.turn_off("apid", Instant::now());
    drive(&mut sup, &rx, &[], |s| {
        matches!(s.services[0].phase, Phase::Off)
    });
    sup.upsert(
        spec("apid", "/bin/sh", &["-c", "exit 78"], 3),
        Instant::now(),
    );
    drive(&mut sup, &rx, &[], |s| {
        matches!(s.services[0].phase, Phase::Failed)
    });
    assert_eq!(
        sup.services[0].spawns, 3,
        "started twice before, once with exit 78"
    );
}
