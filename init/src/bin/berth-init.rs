//! `berth-init`: PID 1 alone, as its own static binary (`/init` in the initramfs and
//! `/sbin/init` on the root image).
//!
//! The multi-call `berth` binary can run init too, but it carries the engine — content store,
//! metadata database, snapshotters, image unpacking — and is about twice the size. PID 1 stays
//! resident for the node's whole life, and the pages it touches are scattered through its
//! binary, so init gets a binary with init's code only: a smaller resident set (target < 4
//! MiB) and a smaller initramfs to load at boot.

fn main() {
    berth_init::run()
}
