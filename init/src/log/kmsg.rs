//! `/dev/kmsg`: the kernel's log, one record per `read(2)`, from the start of the kernel's
//! buffer (so boot messages before init are in the ring too). Format
//! (`Documentation/ABI/testing/dev-kmsg`): `prio,seq,usec,flags[,…];message\n` followed by
//! ` KEY=value` continuation lines. `prio` is `facility << 3 | level` (facility 0 for the
//! kernel, 1 for user-space writes to `/dev/kmsg`). Kernel records are not echoed to the
//! console: the kernel prints them there itself.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::record::{Facility, Origin, Record, Severity};
use super::Logger;
use crate::console::Console;

/// The kernel log device.
pub const DEV_KMSG: &str = "/dev/kmsg";

/// A kmsg record taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsgRecord {
    /// Facility from `prio`.
    pub facility: Facility,
    /// Level from `prio`.
    pub severity: Severity,
    /// The kernel's sequence number.
    pub seq: u64,
    /// Time since boot (the kernel's printk clock).
    pub uptime: Duration,
    /// Message text (the kernel escapes non-printable bytes as `\xNN`).
    pub message: String,
}

/// Parses one record as read from `/dev/kmsg`; `None` for a malformed one.
pub fn parse(text: &str) -> Option<KmsgRecord> {
    let first = text.lines().next()?;
    let (header, message) = first.split_once(';')?;
    let mut fields = header.split(',');
    let prio: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let usec: u64 = fields.next()?.parse().ok()?;
    let facility = Facility::from_code(u8::try_from(prio >> 3).ok()?).unwrap_or(Facility::USER);
    let severity = Severity::from_code((prio & 7) as u8)?;
    Some(KmsgRecord {
        facility,
        severity,
        seq,
        uptime: Duration::from_micros(usec),
        message: message.to_string(),
    })
}

/// Opens `/dev/kmsg` for reading.
pub fn open(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// Reads records forever into `logger`.
pub fn run(mut file: File, logger: &Logger, console: Console) {
    // Records are at most ~1 KiB plus dictionary lines; 8 KiB is the kernel's own upper bound.
    let mut buf = vec![0u8; 8192];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(k) = parse(&text) {
                    logger.push(to_record(k, SystemTime::now(), crate::console::uptime()));
                }
            }
            // EPIPE: records were overwritten before we read them; the next read resumes.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                console.warn(&format!(
                    "kmsg: reading {DEV_KMSG} failed: {e}; kernel messages are no longer logged"
                ));
                return;
            }
        }
    }
}

/// The record for `k`, its wall-clock time derived from its uptime and the clocks now.
pub fn to_record(k: KmsgRecord, now: SystemTime, uptime_now: Duration) -> Record {
    let age = uptime_now.saturating_sub(k.uptime);
    let name = if k.facility == Facility::KERN {
        "kernel"
    } else {
        "kmsg"
    };
    let mut record = Record::now(Origin::Kmsg, k.facility, k.severity, name, &k.message);
    record.time = now.checked_sub(age).unwrap_or(now);
    record.uptime = k.uptime;
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_record_with_dictionary() {
        let k = parse(
            "6,339,5140900,-;NET: Registered protocol family 10\n SUBSYSTEM=net\n DEVICE=n1\n",
        )
        .unwrap();
        assert_eq!(
            (k.facility, k.severity, k.seq),
            (Facility::KERN, Severity::Info, 339)
        );
        assert_eq!(k.uptime, Duration::from_micros(5_140_900));
        assert_eq!(k.message, "NET: Registered protocol family 10");
    }

    #[test]
    fn user_space_writes_have_their_facility() {
        // `echo '<12>hi' > /dev/kmsg`: user.warning.
        let k = parse("12,400,6000000,c;hi\n").unwrap();
        assert_eq!(
            (k.facility, k.severity),
            (Facility::USER, Severity::Warning)
        );
        let r = to_record(
            k,
            SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            Duration::from_secs(10),
        );
        assert_eq!(r.name, "kmsg");
        assert_eq!(r.time, SystemTime::UNIX_EPOCH + Duration::from_secs(96));
    }

    #[test]
    fn malformed_records_are_none() {
        assert!(parse("").is_none());
        assert!(parse("no header").is_none());
        assert!(parse("x,1,2,-;m").is_none());
        assert!(parse("6,1;m").is_none());
    }

    #[test]
    fn reads_the_real_kmsg_when_allowed() {
        let Ok(file) = open(Path::new(DEV_KMSG)) else {
            println!("skipped: cannot open {DEV_KMSG} (not root or no permission)");
            return;
        };
        let logger: &'static Logger = Box::leak(Box::new(Logger::new(1 << 20)));
        std::thread::spawn(move || run(file, logger, Console::new(crate::console::Level::Error)));
        if !logger.wait_for(0, Duration::from_secs(5)) {
            println!("skipped: {DEV_KMSG} gave no record (restricted by dmesg_restrict?)");
            return;
        }
        let batch = logger.read_from(0, &Default::default(), 1);
        assert_eq!(batch.records[0].origin, Origin::Kmsg);
    }
}
