//! What the operator sees while a plan runs: one line per step, a spinner while it waits, ✔ or ✘
//! with the elapsed time. On a terminal this is indicatif; elsewhere plain lines (CI logs, pipes);
//! in tests a recorder.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// What happened to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Created,
    Updated,
    Kept,
    Deleted,
    Absent,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Kept => "kept",
            Action::Deleted => "deleted",
            Action::Absent => "already absent",
        }
    }
}

/// A change to one resource, reported by a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub step: &'static str,
    pub action: Action,
    pub kind: &'static str,
    pub id: String,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(String),
    Skipped(String),
}

/// A progress event, as recorded for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started(&'static str),
    Waiting(&'static str, String),
    Changed(Change),
    Finished(&'static str, Outcome),
}

/// Where progress goes.
pub trait Progress: Send + Sync {
    fn started(&self, step: &'static str, title: &str);
    fn waiting(&self, step: &'static str, status: &str);
    fn changed(&self, change: &Change);
    fn finished(&self, step: &'static str, outcome: &Outcome, elapsed: Duration);
}

fn summary(outcome: &Outcome, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let time = if secs >= 60.0 {
        format!("{}m{:02}s", elapsed.as_secs() / 60, elapsed.as_secs() % 60)
    } else {
        format!("{secs:.1}s")
    };
    match outcome {
        Outcome::Done => format!("✔ ({time})"),
        Outcome::Failed(why) => format!("✘ ({time}) {why}"),
        Outcome::Skipped(why) => format!("- skipped: {why}"),
    }
}

/// Interactive terminals: a spinner line per running step.
pub struct TerminalProgress {
    multi: MultiProgress,
    bars: Mutex<HashMap<&'static str, (ProgressBar, String)>>,
    verbose: bool,
}

impl TerminalProgress {
    pub fn new(verbose: bool) -> Self {
        Self {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
            verbose,
        }
    }
}

impl Progress for TerminalProgress {
    fn started(&self, step: &'static str, title: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {prefix:<16.bold} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(step);
        bar.set_message(title.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(step, (bar, title.to_owned()));
        }
    }

    fn waiting(&self, step: &'static str, status: &str) {
        if let Ok(bars) = self.bars.lock()
            && let Some((bar, title)) = bars.get(step)
        {
            bar.set_message(format!("{title}: {status}"));
        }
    }

    fn changed(&self, change: &Change) {
        if self.verbose || change.action != Action::Kept {
            let _ = self.multi.println(format!(
                "  {:<16} {} {} {}",
                change.step,
                change.kind,
                change.id,
                change.action.verb()
            ));
        }
    }

    fn finished(&self, step: &'static str, outcome: &Outcome, elapsed: Duration) {
        let entry = self.bars.lock().ok().and_then(|mut bars| bars.remove(step));
        let line = summary(outcome, elapsed);
        match entry {
            Some((bar, title)) => {
                bar.set_style(
                    ProgressStyle::with_template("  {prefix:<16.bold} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(format!("{title} {line}"));
            }
            None => {
                let _ = self.multi.println(format!("  {step:<16} {line}"));
            }
        }
    }
}

/// Not a terminal: one plain line per event, flushed at once.
pub struct PlainProgress {
    out: Mutex<Box<dyn Write + Send>>,
}

impl PlainProgress {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    fn line(&self, text: String) {
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }
}

impl Progress for PlainProgress {
    fn started(&self, step: &'static str, title: &str) {
        self.line(format!("[{step}] {title}"));
    }

    fn waiting(&self, step: &'static str, status: &str) {
        self.line(format!("[{step}] waiting: {status}"));
    }

    fn changed(&self, change: &Change) {
        self.line(format!(
            "[{}] {} {} {}",
            change.step,
            change.kind,
            change.id,
            change.action.verb()
        ));
    }

    fn finished(&self, step: &'static str, outcome: &Outcome, elapsed: Duration) {
        self.line(format!("[{step}] {}", summary(outcome, elapsed)));
    }
}

/// Keeps every event, for tests that check what the operator was told.
#[derive(Default)]
pub struct RecordedProgress {
    events: Mutex<Vec<Event>>,
}

impl RecordedProgress {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    pub fn changes(&self) -> Vec<Change> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Changed(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn push(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

impl Progress for RecordedProgress {
    fn started(&self, step: &'static str, _title: &str) {
        self.push(Event::Started(step));
    }

    fn waiting(&self, step: &'static str, status: &str) {
        self.push(Event::Waiting(step, status.to_owned()));
    }

    fn changed(&self, change: &Change) {
        self.push(Event::Changed(change.clone()));
    }

    fn finished(&self, step: &'static str, outcome: &Outcome, _elapsed: Duration) {
        self.push(Event::Finished(step, outcome.clone()));
    }
}

/// Discards everything (library callers that only want the result).
pub struct NoProgress;

impl Progress for NoProgress {
    fn started(&self, _: &'static str, _: &str) {}
    fn waiting(&self, _: &'static str, _: &str) {}
    fn changed(&self, _: &Change) {}
    fn finished(&self, _: &'static str, _: &Outcome, _: Duration) {}
}
