//! A scenario's result: a header (machine, date, exact command, settings), a
//! table of measured rows, the headline numbers, notes, and — in smoke mode —
//! the checks that failed. Printed as Markdown (to paste into
//! BENCHMARKS.md) or written as JSON.

use std::fmt::Write;

use serde::Serialize;

use crate::system::Machine;

/// Everything one scenario run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// What the scenario measures, one sentence.
    pub measures: String,
    pub machine: Machine,
    /// When the run started, RFC 3339 in UTC.
    pub date: String,
    /// The command line exactly as given.
    pub command: String,
    pub smoke: bool,
    /// Parameters in force (after smoke-mode defaults), in order.
    pub settings: Vec<(String, String)>,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// The headline results, in order.
    pub summary: Vec<(String, String)>,
    pub notes: Vec<String>,
    /// Checks that failed: a non-empty list makes the run exit non-zero.
    pub failures: Vec<String>,
    /// The measured numbers behind the table, for machines.
    pub data: serde_json::Value,
}

impl Report {
    pub fn new(scenario: &str, measures: &str, smoke: bool, command: String) -> Report {
        Report {
            scenario: scenario.into(),
            measures: measures.into(),
            machine: Machine::describe(),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command,
            smoke,
            settings: Vec::new(),
            columns: Vec::new(),
            rows: Vec::new(),
            summary: Vec::new(),
            notes: Vec::new(),
            failures: Vec::new(),
            data: serde_json::Value::Null,
        }
    }

    pub fn setting(&mut self, name: &str, value: impl ToString) {
        self.settings.push((name.into(), value.to_string()));
    }

    pub fn summary(&mut self, name: &str, value: impl ToString) {
        self.summary.push((name.into(), value.to_string()));
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Records a failed check (only fails the run in smoke mode, where the
    /// run is a correctness test; a full run reports it as a note).
    pub fn check(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            let failure = failure();
            if self.smoke {
                self.failures.push(failure);
            } else {
                self.notes.push(format!("warning: {failure}"));
            }
        }
    }

    /// Whether the run passed (always true outside smoke mode).
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let mode = if self.smoke { " (smoke)" } else { "" };
        let _ = writeln!(out, "## {}{mode}\n", self.scenario);
        let _ = writeln!(out, "{}\n", self.measures);
        let _ = writeln!(out, "- command: `{}`", self.command);
        let _ = writeln!(
            out,
            "- machine: {} × {}, {:.0} GiB, Linux {}",
            self.machine.cores, self.machine.model, self.machine.memory_gib, self.machine.kernel
        );
        let _ = writeln!(out, "- date: {}", self.date);
        if !self.settings.is_empty() {
            let settings: Vec<String> = self
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "- settings: {}", settings.join(", "));
        }
        out.push('\n');
        if !self.columns.is_empty() {
            out.push_str(&markdown_table(&self.columns, &self.rows));
            out.push('\n');
        }
        for (name, value) in &self.summary {
            let _ = writeln!(out, "**{name}**: {value}  ");
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        if self.smoke {
            out.push('\n');
            if self.failures.is_empty() {
                let _ = writeln!(out, "smoke: PASS");
            } else {
                for failure in &self.failures {
                    let _ = writeln!(out, "smoke: FAIL: {failure}");
                }
            }
        }
        out
    }
}

/// A Markdown table with columns padded to their widest cell.
pub fn markdown_table(columns: &[String], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .chain(std::iter::once(&columns[i]))
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns.len()).map(width).collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(&mut columns.iter().map(String::as_str));
    out.push_str(&format!(
        "|{}|\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    ));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A count per second as a short figure: `950`, `12.3k`, `1.25M`.
pub fn per_sec(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let table = markdown_table(
            &["rate".into(), "p99".into()],
            &[
                vec!["100".into(), "1.2 ms".into()],
                vec!["1000".into(), "µs".into()],
            ],
        );
        assert_eq!(
            table,
            "| rate | p99    |\n|------|--------|\n| 100  | 1.2 ms |\n| 1000 | µs     |\n"
        );
    }

    #[test]
    fn rates_are_shortened() {
        assert_eq!(per_sec(950.4), "950");
        assert_eq!(per_sec(12_345.0), "12.3k");
        assert_eq!(per_sec(1_250_000.0), "1.25M");
    }

    #[test]
    fn failed_checks_fail_only_smoke_runs() {
        let mut smoke = Report::new("x", "y", true, "cmd".into());
        smoke.check(false, || "no events".into());
        assert!(!smoke.passed());
        assert!(smoke.to_markdown().contains("smoke: FAIL: no events"));
        let mut full = Report::new("x", "y", false, "cmd".into());
        full.check(false, || "no events".into());
        assert!(full.passed());
        assert_eq!(full.notes, ["warning: no events"]);
    }
}
