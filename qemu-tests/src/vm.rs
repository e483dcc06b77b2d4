//! A berth image booted under QEMU, with its console, monitor and host sockets.
//!
//! Every VM gets a scratch directory holding `console.log` (the serial console), `qemu.log`
//! (QEMU's own output), `qmp.sock` (the monitor), `api.sock` (`org.berth.api`, bridged by
//! init to berthd), `init.sock` (`org.berth.init`, init's control API) and `test.sock` (`org.berth.test`, the test agent). The directory is removed
//! when the VM is dropped, unless the test panicked, a hang guard of this VM expired or
//! `BERTH_KEEP_VM` is set: then it is kept and its path printed.
//!
//! QEMU always runs with `-accel tcg`: KVM hangs on the machines this project runs on.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use regex::Regex;
use tempfile::TempDir;

use crate::berthctl;
use crate::client::AgentClient;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::process::CommandOutput;
use crate::qmp::Qmp;

/// Hang guard for a boot (QEMU start to `berth ready`) under TCG. A boot takes 8–15 s on this
/// project's 2-core machines with the guest alone, and up to ~45 s seen with both test lanes
/// busy on a loaded machine; the guard holds on a host 3x slower than that. Every guard in the
/// harness and the scenarios is sized the same way: a hang guard, never a timing check.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// QEMU binary, overridable with `BERTH_QEMU`.
pub const QEMU: &str = "qemu-system-x86_64";

/// Set to keep every VM's directory, passing or not.
pub const KEEP_ENV: &str = "BERTH_KEEP_VM";

/// Console lines quoted in hang-guard errors.
const TAIL_LINES: usize = 40;

/// Port names from `docs/architecture.md`.
const API_PORT: &str = berth_layout::ports::API;
const TEST_PORT: &str = berth_layout::ports::TEST;
/// init's control API port (docs/control-api.md).
const INIT_PORT: &str = berth_layout::ports::INIT;

/// Configures a [`Vm`].
#[derive(Debug, Clone)]
pub struct VmBuilder {
    name: String,
    kernel: Option<PathBuf>,
    initramfs: Option<PathBuf>,
    cmdline: String,
    append: Vec<String>,
    memory_mib: u32,
    cpus: u32,
    disks: Vec<PathBuf>,
    extra_args: Vec<OsString>,
    test_port: bool,
    program: Option<OsString>,
    /// Network boot instead of `-kernel`: (TFTP directory, boot file).
    network_boot: Option<(PathBuf, String)>,
    uefi_disk: Option<PathBuf>,
}

impl VmBuilder {
    /// A VM called `name` (used in messages and the scratch directory's name) with 512 MiB,
    /// one vCPU and the test agent port.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            kernel: None,
            initramfs: None,
            cmdline: String::new(),
            append: Vec::new(),
            memory_mib: 512,
            cpus: 1,
            disks: Vec::new(),
            extra_args: Vec::new(),
            test_port: true,
            program: None,
            network_boot: None,
            uefi_disk: None,
        }
    }

    /// Boots `disk` (raw, e.g. from `berth-image disk`) through UEFI firmware instead of
    /// QEMU's direct kernel boot: OVMF (`/usr/share/OVMF/OVMF_CODE.fd`, package `ovmf`) as
    /// read-only pflash plus a fresh copy of `OVMF_VARS.fd` in the VM directory, the disk as
    /// the first virtio-blk device, no `-kernel`. The kernel command line is the UKI's.
    pub fn uefi(mut self, disk: impl Into<PathBuf>) -> Self {
        self.uefi_disk = Some(disk.into());
        self
    }

    /// Boots `image`: its kernel, initramfs and command line.
    pub fn image(mut self, image: &Image) -> Self {
        self.kernel = Some(image.kernel.clone());
        self.initramfs = Some(image.initramfs.clone());
        self.cmdline = image.cmdline.clone();
        self
    }

    /// Uses this kernel.
    pub fn kernel(mut self, path: impl Into<PathBuf>) -> Self {
        self.kernel = Some(path.into());
        self
    }

    /// Uses this initramfs.
    pub fn initramfs(mut self, path: impl Into<PathBuf>) -> Self {
        self.initramfs = Some(path.into());
        self
    }

    /// Replaces the base kernel command line.
    pub fn cmdline(mut self, cmdline: &str) -> Self {
        self.cmdline = cmdline.into();
        self
    }

    /// Appends to the kernel command line (after the image's `cmdline`, so it wins).
    pub fn append(mut self, args: &str) -> Self {
        self.append.push(args.into());
        self
    }

    /// Guest memory in MiB.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Number of vCPUs.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Attaches a raw disk image as a virtio-blk device (in order: vda, vdb, …).
    pub fn disk(mut self, path: impl Into<PathBuf>) -> Self {
        self.disks.push(path.into());
        self
    }

    /// Adds one raw QEMU argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.extra_args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds raw QEMU arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.extra_args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Adds a virtio-net NIC with hardware address `mac` on the backend `netdev` (QEMU
    /// `-netdev` syntax with an `id=`, e.g. `user,id=n0,net=10.9.0.0/24,dhcpstart=10.9.0.40`
    /// or `tap,id=n0,ifname=tap0,script=no,downscript=no`).
    pub fn nic(mut self, netdev: &str, mac: &str) -> Self {
        let id = netdev
            .split(',')
            .find_map(|kv| kv.strip_prefix("id="))
            .expect("a -netdev specification has an id=")
            .to_string();
        self.extra_args.extend(
            [
                "-netdev".to_string(),
                netdev.to_string(),
                "-device".to_string(),
                format!("virtio-net-pci,netdev={id},mac={mac}"),
            ]
            .map(OsString::from),
        );
        self
    }

    /// Runs this program instead of QEMU (over `BERTH_QEMU`), with QEMU's arguments: e.g. a
    /// script that runs QEMU inside a network namespace holding a tap device.
    pub fn program(mut self, path: impl Into<OsString>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Boots from the network like a PXE node (no `-kernel`): a virtio NIC on QEMU's user
    /// network whose iPXE ROM (Debian `ipxe-qemu`) gets an address by DHCP, fetches
    /// `bootfile` (an iPXE script, e.g. `boot.ipxe` from `berth-image pxe`) from `tftp_dir`
    /// over TFTP and runs it, with `-boot n`. The guest is `10.0.2.15` and reaches host
    /// loopback at `10.0.2.2` (see [`crate::http::HttpServer`]). The kernel command line is
    /// the script's; `image`, `cmdline` and `append` are not used.
    pub fn network_boot(mut self, tftp_dir: impl Into<PathBuf>, bootfile: &str) -> Self {
        self.network_boot = Some((tftp_dir.into(), bootfile.into()));
        self
    }

    /// Whether to add the `org.berth.test` port (default true).
    pub fn test_port(mut self, enabled: bool) -> Self {
        self.test_port = enabled;
        self
    }

    /// The kernel command line the VM boots with.
    pub fn full_cmdline(&self) -> String {
        std::iter::once(self.cmdline.as_str())
            .chain(self.append.iter().map(String::as_str))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts QEMU and waits until its sockets exist.
    pub fn spawn(self) -> Result<Vm> {
        let mut boot: Vec<OsString> = Vec::new();
        if let Some((tftp_dir, bootfile)) = &self.network_boot {
            let netdev = format!(
                "user,id=pxe,tftp={},bootfile={bootfile}",
                tftp_dir.display()
            );
            for arg in [
                "-netdev",
                &netdev,
                "-device",
                "virtio-net-pci,netdev=pxe",
                "-boot",
                "n",
            ] {
                boot.push(arg.into());
            }
        } else if self.uefi_disk.is_none() {
            let kernel = self.kernel.clone().ok_or_else(|| Error::ImageMissing {
                path: "vmlinuz".into(),
            })?;
            let initramfs = self.initramfs.clone().ok_or_else(|| Error::ImageMissing {
                path: "initramfs.img".into(),
            })?;
            boot.extend([
                "-kernel".into(),
                kernel.into_os_string(),
                "-initrd".into(),
                initramfs.into_os_string(),
                "-append".into(),
                self.full_cmdline().into(),
            ]);
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-vm-{}-", self.name))
            .tempdir()
            .map_err(Error::io("cannot create the VM directory"))?;
        let path = dir.path().to_path_buf();
        let qemu = self
            .program
            .clone()
            .or_else(|| std::env::var_os("BERTH_QEMU"))
            .unwrap_or_else(|| QEMU.into());
        let mut command = Command::new(&qemu);
        command
            .arg("-name")
            .arg(format!("berth-{}", self.name))
            .args([
                "-accel",
                "tcg",
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
            ])
            .arg("-m")
            .arg(self.memory_mib.to_string())
            .arg("-smp")
            .arg(self.cpus.to_string())
            .args(&boot);
        if let Some(disk) = &self.uefi_disk {
            const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
            const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
            let vars = path.join("OVMF_VARS.fd");
            fs::copy(OVMF_VARS, &vars)
                .map_err(Error::io(format!("cannot copy {OVMF_VARS} (package ovmf)")))?;
            command
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ))
                .arg("-drive")
                .arg(format!("file={},format=raw,if=virtio", disk.display()));
        }
        command
            .arg("-chardev")
            .arg(format!(
                "file,id=con,path={}",
                path.join("console.log").display()
            ))
            .args(["-serial", "chardev:con"])
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                path.join("qmp.sock").display()
            ))
            .args(["-device", "virtio-serial-pci,id=vser0"]);
        let mut ports = vec![("api", API_PORT), ("init", INIT_PORT)];
        if self.test_port {
            ports.push(("test", TEST_PORT));
        }
        for (id, name) in ports {
            command
                .arg("-chardev")
                .arg(format!(
                    "socket,id={id},path={},server=on,wait=off",
                    path.join(format!("{id}.sock")).display()
                ))
                .arg("-device")
                .arg(format!(
                    "virtserialport,bus=vser0.0,chardev={id},name={name}"
                ));
        }
        for disk in &self.disks {
            command
                .arg("-drive")
                .arg(format!("file={},format=raw,if=virtio", disk.display()));
        }
        command.args(&self.extra_args);
        let log =
            File::create(path.join("qemu.log")).map_err(Error::io("cannot create qemu.log"))?;
        let log2 = log
            .try_clone()
            .map_err(Error::io("cannot clone qemu.log"))?;
        command.stdin(Stdio::null()).stdout(log).stderr(log2);
        fs::write(
            path.join("qemu.cmdline"),
            crate::process::command_line(&command),
        )
        .map_err(Error::io("cannot write qemu.cmdline"))?;

        let started = Instant::now();
        let child = command.spawn().map_err(Error::io(format!(
            "cannot start {}",
            qemu.to_string_lossy()
        )))?;
        let mut vm = Vm {
            name: self.name,
            path,
            dir: Some(dir),
            child,
            status: None,
            started,
            cursor: 0,
            ids: Arc::new(AtomicU64::new(0)),
            failed: Cell::new(false),
        };
        let qmp = vm.path.join("qmp.sock");
        vm.wait_for("QEMU's monitor socket", Duration::from_secs(90), |_| {
            qmp.exists()
        })?;
        Ok(vm)
    }
}

/// A running (or exited) QEMU with a berth image.
pub struct Vm {
    name: String,
    path: PathBuf,
    dir: Option<TempDir>,
    child: Child,
    status: Option<ExitStatus>,
    started: Instant,
    cursor: u64,
    ids: Arc<AtomicU64>,
    failed: Cell<bool>,
}

impl Vm {
    /// Starts configuring a VM called `name`.
    pub fn builder(name: &str) -> VmBuilder {
        VmBuilder::new(name)
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The VM's scratch directory.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The serial console log.
    pub fn console_path(&self) -> PathBuf {
        self.path.join("console.log")
    }

    /// The host end of `org.berth.api`: pass it to `berthctl --address`.
    pub fn api_address(&self) -> PathBuf {
        self.path.join("api.sock")
    }

    /// The host end of `org.berth.init` (init's control API): `berthctl --init-address`.
    pub fn init_address(&self) -> PathBuf {
        self.path.join("init.sock")
    }

    /// Runs the host's `berthctl --init-address <init.sock> system <args…>`; a non-zero exit
    /// is an error.
    pub fn berthctl_system(&self, args: &[&str], timeout: Duration) -> Result<CommandOutput> {
        let mut command = Command::new(berthctl::path()?);
        command
            .arg("--init-address")
            .arg(self.init_address())
            .arg("system")
            .args(args);
        crate::process::run_ok(command, timeout)
    }

    /// The host end of `org.berth.test`.
    pub fn test_socket(&self) -> PathBuf {
        self.path.join("test.sock")
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Keeps the scratch directory after drop even if the test passes.
    pub fn keep(&self) {
        self.failed.set(true);
    }

    /// Waits for the next console line matching `pattern`, after the line the previous call
    /// matched (like expect). Fails if QEMU exits or `timeout` passes; the error quotes the
    /// last console lines.
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let re = Regex::new(pattern)?;
        let what = format!("a console line matching /{pattern}/");
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.poll_exit()?;
            if let Some(line) = self.scan(&re)? {
                return Ok(line);
            }
            if let Some(status) = exited {
                return Err(self.failure(Error::QemuExited {
                    what,
                    status,
                    context: String::new(),
                }));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(Error::Timeout {
                    what,
                    timeout,
                    context: String::new(),
                }));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Reads complete console lines past the cursor; consumes them up to the first match.
    fn scan(&mut self, re: &Regex) -> Result<Option<String>> {
        let mut file = match File::open(self.console_path()) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot open console.log")(e)),
        };
        file.seek(SeekFrom::Start(self.cursor))
            .map_err(Error::io("cannot seek console.log"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(Error::io("cannot read console.log"))?;
        let mut consumed = 0;
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if chunk.last() != Some(&b'\n') {
                break;
            }
            consumed += chunk.len();
            let line = clean_line(chunk);
            if re.is_match(&line) {
                self.cursor += consumed as u64;
                return Ok(Some(line));
            }
        }
        self.cursor += consumed as u64;
        Ok(None)
    }

    /// The whole console log so far, lines without `\r`.
    pub fn console_text(&self) -> String {
        let bytes = fs::read(self.console_path()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    /// The last `n` console lines.
    pub fn console_tail(&self, n: usize) -> String {
        let text = self.console_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Marks the VM failed (its directory is kept) and adds the console tail to hang guards.
    fn failure(&self, error: Error) -> Error {
        self.failed.set(true);
        let mut context = format!(
            "\n--- last {TAIL_LINES} console lines ({}) ---\n{}",
            self.console_path().display(),
            self.console_tail(TAIL_LINES)
        );
        let qemu_log = fs::read_to_string(self.path.join("qemu.log")).unwrap_or_default();
        if !qemu_log.trim().is_empty() {
            context.push_str(&format!("\n--- QEMU output ---\n{}", qemu_log.trim_end()));
        }
        match error {
            Error::Timeout {
                what,
                timeout,
                context: c,
            } => Error::Timeout {
                what,
                timeout,
                context: c + &context,
            },
            Error::QemuExited {
                what,
                status,
                context: c,
            } => Error::QemuExited {
                what,
                status,
                context: c + &context,
            },
            Error::Check {
                message,
                context: c,
            } => Error::Check {
                message,
                context: c + &context,
            },
            other => other,
        }
    }

    /// Fails with `message` unless `ok`; a failure keeps the VM's directory and quotes the
    /// console, like the hang guards.
    pub fn check(&self, ok: bool, message: impl std::fmt::Display) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.failure(Error::Check {
                message: message.to_string(),
                context: String::new(),
            }))
        }
    }

    /// Polls `check` every 50 ms as a hang guard that knows about this VM: it fails early if
    /// QEMU exits, and quotes the console on failure. `check` gets the VM.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&mut Self) -> bool,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if check(self) {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.poll_exit()? {
                return Err(self.failure(Error::QemuExited {
                    what: what.into(),
                    status,
                    context: String::new(),
                }));
            }
            if started.elapsed() >= timeout {
                return Err(self.failure(Error::Timeout {
                    what: what.into(),
                    timeout,
                    context: String::new(),
                }));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Like [`Vm::wait_for`] for a fallible attempt; the error also quotes its last failure.
    pub fn wait_for_ok<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        interval: Duration,
        mut attempt: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<(T, Duration)> {
        let started = Instant::now();
        loop {
            let last = match attempt(self) {
                Ok(value) => return Ok((value, started.elapsed())),
                Err(e) => e.to_string(),
            };
            let context = format!("\nlast attempt: {last}");
            if let Some(status) = self.poll_exit()? {
                return Err(self.failure(Error::QemuExited {
                    what: what.into(),
                    status,
                    context,
                }));
            }
            if started.elapsed() >= timeout {
                return Err(self.failure(Error::Timeout {
                    what: what.into(),
                    timeout,
                    context,
                }));
            }
            thread::sleep(interval);
        }
    }

    /// QEMU's exit status if it has exited.
    pub fn poll_exit(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(Error::io("cannot wait for QEMU"))?;
        }
        Ok(self.status)
    }

    /// Waits for QEMU to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.poll_exit()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.failure(Error::Timeout {
                    what: "QEMU to exit".into(),
                    timeout,
                    context: String::new(),
                }));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// A fresh QMP session on the VM's monitor.
    pub fn qmp(&self) -> Result<Qmp> {
        Qmp::connect(&self.path.join("qmp.sock"), Duration::from_secs(30))
    }

    /// Runs a human monitor command (e.g. `info status`) and returns its output.
    pub fn monitor(&self, command: &str) -> Result<String> {
        self.qmp()?.hmp(command)
    }

    /// Presses the ACPI power button (`system_powerdown`). Only useful if the guest's init
    /// acts on it; asking init over the test agent (SIGTERM to pid 1) is the reliable way.
    pub fn powerdown(&self) -> Result<()> {
        self.qmp()?.execute("system_powerdown", None).map(drop)
    }

    /// Connects to the test agent and waits (up to [`BOOT_TIMEOUT`]) for it to answer a ping.
    pub fn agent(&mut self) -> Result<AgentClient> {
        let mut client = AgentClient::connect(&self.test_socket(), self.ids.clone())?;
        match client.ping(BOOT_TIMEOUT) {
            Ok(_) => Ok(client),
            Err(e) => Err(self.failure(Error::Timeout {
                what: "the test agent to answer ping".into(),
                timeout: BOOT_TIMEOUT,
                context: format!("\n{e}"),
            })),
        }
    }

    /// Runs the host's `berthctl --address <api.sock> <args…>` (any exit status).
    pub fn berthctl(&self, args: &[&str], timeout: Duration) -> Result<CommandOutput> {
        berthctl::run(&self.api_address(), args, timeout)
    }

    /// Like [`Vm::berthctl`], but a non-zero exit is an error.
    pub fn berthctl_ok(&self, args: &[&str], timeout: Duration) -> Result<CommandOutput> {
        berthctl::run_ok(&self.api_address(), args, timeout)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.status.is_none() {
            // It may have exited since the last poll: kill and wait settle it either way.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for socket in ["api.sock", "init.sock", "test.sock", "qmp.sock"] {
            let _ = fs::remove_file(self.path.join(socket));
        }
        if thread::panicking() || self.failed.get() || std::env::var_os(KEEP_ENV).is_some() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "VM {}: console log and QEMU output kept in {}",
                    self.name,
                    kept.display()
                );
            }
        }
    }
}

/// A console line as text: without the line ending and carriage returns.
fn clean_line(chunk: &[u8]) -> String {
    String::from_utf8_lossy(chunk)
        .trim_end_matches(['\n', '\r'])
        .replace('\r', "")
}

/// Parses the uptime prefix `[   1.234567] …` of a kernel or init console line.
pub fn line_uptime(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (number, _) = rest.split_once(']')?;
    number.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uptime_prefixes() {
        assert_eq!(
            line_uptime("[    1.234567] berth-init: berth ready"),
            Some(1.234567)
        );
        assert_eq!(line_uptime("[2.5] x"), Some(2.5));
        assert_eq!(line_uptime("berth ready"), None);
    }

    #[test]
    fn cmdline_appends_after_the_image_line() {
        let b = VmBuilder::new("t")
            .cmdline("console=ttyS0 quiet")
            .append("berth.debug=1");
        assert_eq!(b.full_cmdline(), "console=ttyS0 quiet berth.debug=1");
        assert_eq!(VmBuilder::new("t").append("a").full_cmdline(), "a");
    }
}
