//! What each job did, and the summary table: result, lane, start, wall and CPU time, and
//! which jobs ran alongside it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exit status 0.
    Passed,
    /// Exit status 0, and the test said it skipped (a `SKIP`/`skipped:` line).
    Skipped,
    /// Any other exit: the status.
    Failed(String),
    /// Killed by the runner's hang guard after this long.
    HangGuard(Duration),
    /// Not started (interrupted run).
    NotRun,
}

impl Verdict {
    /// Passed or skipped.
    pub fn ok(&self) -> bool {
        matches!(self, Verdict::Passed | Verdict::Skipped)
    }

    fn word(&self) -> &'static str {
        match self {
            Verdict::Passed => "ok",
            Verdict::Skipped => "skip",
            Verdict::Failed(_) => "FAIL",
            Verdict::HangGuard(_) => "HANG",
            Verdict::NotRun => "-",
        }
    }
}

/// One job's record.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `binary::test`, or `binary (unit tests)`.
    pub name: String,
    /// Lane it ran on (0: not run).
    pub lane: usize,
    /// Start, since the runner started jobs.
    pub start: Duration,
    /// Wall time.
    pub wall: Duration,
    /// User + system CPU time.
    pub cpu: Duration,
    /// Result.
    pub verdict: Verdict,
    /// Its output.
    pub log: PathBuf,
}

impl Outcome {
    fn end(&self) -> Duration {
        self.start + self.wall
    }
}

/// Whether a test's output says it skipped itself.
pub fn says_skipped(output: &str) -> bool {
    output.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("SKIP") || l.starts_with("skipped:")
    })
}

/// The 1-based numbers of the jobs whose run overlapped job `i`'s.
fn alongside(outcomes: &[Outcome], i: usize) -> Vec<usize> {
    let me = &outcomes[i];
    if me.lane == 0 {
        return Vec::new();
    }
    outcomes
        .iter()
        .enumerate()
        .filter(|(j, o)| *j != i && o.lane != 0 && o.start < me.end() && me.start < o.end())
        .map(|(j, _)| j + 1)
        .collect()
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// The summary: one row per job in start order, then the totals.
pub fn summary(outcomes: &[Outcome], lanes: usize, wall: Duration) -> String {
    let mut out = String::new();
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(4);
    let _ = writeln!(
        out,
        "{:>3}  {:<4}  {:>4}  {:>7}  {:>7}  {:>7}  {:<12}  test",
        "#", "res", "lane", "start s", "wall s", "cpu s", "alongside"
    );
    for (i, o) in outcomes.iter().enumerate() {
        let with = alongside(outcomes, i)
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(
            out,
            "{:>3}  {:<4}  {:>4}  {:>7}  {:>7}  {:>7}  {:<12}  {:<width$}",
            i + 1,
            o.verdict.word(),
            if o.lane == 0 {
                "-".into()
            } else {
                o.lane.to_string()
            },
            secs(o.start),
            secs(o.wall),
            secs(o.cpu),
            if with.is_empty() { "-".into() } else { with },
            o.name,
        );
    }
    let count = |f: fn(&Verdict) -> bool| outcomes.iter().filter(|o| f(&o.verdict)).count();
    let passed = count(|v| *v == Verdict::Passed);
    let skipped = count(|v| *v == Verdict::Skipped);
    let failed = count(|v| matches!(v, Verdict::Failed(_) | Verdict::HangGuard(_)));
    let not_run = count(|v| *v == Verdict::NotRun);
    let busy: Duration = outcomes.iter().map(|o| o.wall).sum();
    let cpu: Duration = outcomes.iter().map(|o| o.cpu).sum();
    let ratio = |d: Duration| {
        if wall.is_zero() {
            0.0
        } else {
            d.as_secs_f64() / wall.as_secs_f64()
        }
    };
    let _ = writeln!(
        out,
        "{passed} passed, {failed} failed, {skipped} skipped{}; {lanes} lane(s): {} s wall, \
         {} s of test time ({:.2}x), {} s CPU user+sys ({:.2} cores busy on average)",
        if not_run > 0 {
            format!(", {not_run} not run")
        } else {
            String::new()
        },
        secs(wall),
        secs(busy),
        ratio(busy),
        secs(cpu),
        ratio(cpu),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(name: &str, lane: usize, start: u64, wall: u64, verdict: Verdict) -> Outcome {
        Outcome {
            name: name.into(),
            lane,
            start: Duration::from_secs(start),
            wall: Duration::from_secs(wall),
            cpu: Duration::from_secs(wall / 2),
            verdict,
            log: PathBuf::new(),
        }
    }

    #[test]
    fn overlaps_are_listed_by_number() {
        let all = [
            o("a::long", 1, 0, 100, Verdict::Passed),
            o("b::x", 2, 0, 40, Verdict::Passed),
            o(
                "b::y",
                2,
                40,
                70,
                Verdict::Failed("exit status: 101".into()),
            ),
            o("c::z", 0, 0, 0, Verdict::NotRun),
        ];
        assert_eq!(alongside(&all, 0), [2, 3]);
        assert_eq!(alongside(&all, 1), [1]);
        assert_eq!(alongside(&all, 2), [1]);
        assert!(alongside(&all, 3).is_empty());
        let text = summary(&all, 2, Duration::from_secs(110));
        assert!(text.contains("  1  ok       1      0.0    100.0"), "{text}");
        assert!(text.contains("FAIL"), "{text}");
        assert!(
            text.contains("2 passed, 1 failed, 0 skipped, 1 not run; 2 lane(s): 110.0 s wall, 210.0 s of test time (1.91x)"),
            "{text}"
        );
    }

    #[test]
    fn skips_are_recognised() {
        assert!(says_skipped("x\nskipped: needs root\n"));
        assert!(says_skipped("SKIP uefi: OVMF missing\n"));
        assert!(!says_skipped("not skipped here\n"));
    }
}
