//! End-to-end testing of berth images under QEMU.
//!
//! Two halves share this crate so they share the wire types of [`protocol`]:
//! - the guest side, [`agent`], compiled into the static `berth-test-agent` that test images
//!   run as a service;
//! - the host side: [`Vm`] boots an image directory (see [`image`]) under QEMU/TCG with the
//!   devices of `docs/architecture.md`, captures the serial console, and hands out a
//!   [`client::AgentClient`] and the API socket for `berthctl`; [`wait_until`] and
//!   [`Vm::wait_for_line`] are the hang guards scenarios are written with.
//!
//! [`runner`] is `berth-test-run`, which runs the scenarios side by side (`make test`).
//!
//! Scenarios (`tests/*.rs`) report durations with `println!` and never assert on them beyond
//! generous hang guards: timings on 2 cores under TCG are noisy.

pub mod agent;
pub mod berthctl;
pub mod checks;
pub mod client;
pub mod error;
pub mod http;
pub mod image;
pub mod process;
pub mod protocol;
pub mod qmp;
pub mod runner;
pub mod vm;
pub mod wait;

pub use client::AgentClient;
pub use error::{Error, Result};
pub use image::Image;
pub use vm::{Vm, VmBuilder};
pub use wait::{wait_until, wait_until_ok};
