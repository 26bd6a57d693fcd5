//! The README's examples run as a newcomer would run them: in order, as
//! written, against the quick-start server, each printing what the README
//! says it prints.
//!
//! Every `sh`/`bash`/`python` block runs, in one shell, so variables set by
//! one block (`KEY`, `API`, `GROUP_ID`, `ctl`) serve the next. A block can be
//! marked, on the line before it:
//! - `<!-- readme-test: skip (why) -->`: not run (the test command itself, a
//!   listener that never ends, hardware);
//! - `<!-- readme-test: background, wait for HOST:PORT -->`: started in the
//!   background (with `cargo run --release --` meaning the binary under
//!   test), then waited for until HOST:PORT takes connections;
//! - `<!-- readme-test: listener (why) -->`: a Python client that runs until
//!   stopped: started in the background with `ADMIN_KEY` replaced by the
//!   key in `data/admin.key` (as the reader is told to), left running while
//!   the blocks after it run, and stopped at the end; its output must show
//!   its `# →` lines and no traceback.
//!
//! Inside a block, a comment `# → TEXT` states what the commands before it
//! print; `…` stands for anything. Whitespace does not count. Outputs are
//! matched in order, and an error body in the output (the API's
//! `{"error": {"code"…`, the modem simulator's `{"error": "…"}`) must be one
//! the README shows.
//!
//! Everything runs inside a network namespace with only loopback and a
//! `/tmp` of its own, so the README's own port (8080), control port (7002)
//! and device path (`/tmp/modem0`) are used as written without meeting
//! anything else on the machine, and no example (a webhook to example.com)
//! reaches another host.

use std::{path::Path, process::Command};

/// One fenced block of the README.
#[derive(Debug)]
struct Block {
    lang: String,
    text: String,
    /// The `readme-test:` annotation on the line before, if any.
    mark: Option<String>,
    line: usize,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines().enumerate().peekable();
    let mut previous = String::new();
    while let Some((number, line)) = lines.next() {
        if let Some(lang) = line.strip_prefix("```").filter(|l| !l.is_empty()) {
            let mark = previous
                .trim()
                .strip_prefix("<!-- readme-test:")
                .and_then(|m| m.strip_suffix("-->"))
                .map(|m| m.trim().to_owned());
            let mut text = String::new();
            for (_, inner) in lines.by_ref() {
                if inner.starts_with("```") {
                    break;
                }
                text.push_str(inner);
                text.push('\n');
            }
            blocks.push(Block {
                lang: lang.trim().to_owned(),
                text,
                mark,
                line: number + 1,
            });
            previous.clear();
            continue;
        }
        if !line.trim().is_empty() {
            previous = line.to_owned();
        }
    }
    blocks
}

/// What a block's output must show: its `# → ` lines, whitespace removed.
fn expectations(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("# → "))
        .map(|e| e.split_whitespace().collect())
        .collect()
}

/// Finds each expectation in `output` (whitespace removed), in order; `…`
/// matches anything. Returns the first expectation not found.
fn first_unmet<'a>(output: &str, expected: &'a [String]) -> Option<&'a str> {
    let output: String = output.split_whitespace().collect();
    let mut at = 0;
    for expectation in expected {
        let mut position = at;
        for fragment in expectation.split('…').filter(|f| !f.is_empty()) {
            match output[position..].find(fragment) {
                Some(found) => position += found + fragment.len(),
                None => return Some(expectation),
            }
        }
        at = position;
    }
    None
}

/// The shell script that runs the runnable blocks in order.
fn script(blocks: &[Block], binary: &Path) -> (String, Vec<usize>) {
    let mut script = String::from(
        "set -u\n\
         ip link set lo up\n\
         mount -t tmpfs readme-tmp /tmp\n\
         wait_for_port() {\n  \
           local deadline=$((SECONDS + 60))\n  \
           until (exec 3<>\"/dev/tcp/${1%:*}/${1#*:}\") 2>/dev/null; do\n    \
             [ \"$SECONDS\" -lt \"$deadline\" ] || { echo \"nothing listens on $1 after 60 s\"; cat background-*.log; exit 2; }\n    \
             sleep 0.1\n  \
           done\n\
         }\n",
    );
    let mut run = Vec::new();
    let mut listeners = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        if !matches!(block.lang.as_str(), "sh" | "bash" | "python") {
            // Outputs and settings are shown, not run; code in another
            // language must say where it runs instead.
            assert!(
                matches!(block.lang.as_str(), "json" | "toml" | "text") || block.mark.is_some(),
                "README line {}: a {} example this test cannot run; mark it \
                 `<!-- readme-test: skip (where it is run instead) -->`",
                block.line,
                block.lang
            );
            continue;
        }
        match block.mark.as_deref() {
            Some(mark) if mark.starts_with("skip") => continue,
            Some(mark) if mark.starts_with("background") => {
                let address = mark
                    .split("wait for ")
                    .nth(1)
                    .expect("background, wait for HOST:PORT")
                    .trim();
                for command in block.text.lines().filter(|l| {
                    let l = l.trim();
                    !l.is_empty() && !l.starts_with('#')
                }) {
                    let command = command
                        .replace("cargo run --release --", &format!("'{}'", binary.display()));
                    script.push_str(&format!("{command} > background-{index}.log 2>&1 &\n"));
                }
                script.push_str(&format!("wait_for_port {address}\n"));
            }
            Some(mark) if mark.starts_with("listener") => {
                assert_eq!(
                    block.lang, "python",
                    "README line {}: a listener is Python",
                    block.line
                );
                run.push(index);
                script.push_str(&format!(
                    "sed \"s/ADMIN_KEY/$(cat data/admin.key)/g\" > listener-{index}.py <<'README_PY'\n{}README_PY\n\
                     python3 -u listener-{index}.py > listener-{index}.log 2>&1 &\n",
                    block.text
                ));
                listeners.push(index);
            }
            Some(other) => panic!("README line {}: unknown mark {other:?}", block.line),
            None => {
                run.push(index);
                script.push_str(&format!("echo; echo '@@@ block {index}'\n"));
                if block.lang == "python" {
                    script.push_str(&format!(
                        "python3 - <<'README_PY'\n{}README_PY\n",
                        block.text
                    ));
                } else {
                    script.push_str(&block.text);
                }
            }
        }
    }
    // What the listeners printed while the rest ran, each under its marker.
    for index in &listeners {
        script.push_str(&format!(
            "echo; echo '@@@ block {index}'\ncat listener-{index}.log\n"
        ));
    }
    script.push_str("echo; echo '@@@ end'\nkill $(jobs -p) 2>/dev/null\nwait\n");
    (script, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_in_the_readme_runs_in_order_as_written_and_prints_what_it_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let blocks = blocks(&readme);
    let (script, run) = script(&blocks, Path::new(env!("CARGO_BIN_EXE_switchboard")));
    assert!(run.len() >= 8, "too few runnable blocks found: {run:?}");
    // Not under /tmp, which the namespace replaces.
    let work = root.join("target/readme-test");
    std::fs::create_dir_all(&work).expect("create target/readme-test");
    let work = tempfile::tempdir_in(&work).expect("a working folder");
    std::fs::write(work.path().join("readme.sh"), &script).expect("write the script");
    // A block that never ends (a server started in the foreground) fails
    // the test after this long instead of hanging it.
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=10", "300", "unshare", "--net", "--mount"])
        .args(["--propagation", "private", "bash", "readme.sh"])
        .current_dir(work.path())
        // Logs at info, so the check below has lines to look at.
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL");
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD") {
            command.env_remove(key);
        }
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run unshare (util-linux) with the README's script");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("@@@ end"),
        "the README's examples did not run to the end:\n{stdout}\n{stderr}"
    );
    // The servers' logs went to files: no colour escapes in them.
    for entry in std::fs::read_dir(work.path()).expect("the working folder") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("background-") {
            let log = std::fs::read_to_string(&path).expect("a log");
            assert!(log.contains("INFO"), "{name} holds no log line: {log}");
            assert!(!log.contains('\x1b'), "{name} holds ANSI escapes: {log:?}");
        }
    }
    for index in run {
        let block = &blocks[index];
        let marker = format!("@@@ block {index}\n");
        let start = stdout.find(&marker).expect("the block ran") + marker.len();
        let end = start
            + stdout[start..]
                .find("\n@@@ ")
                .unwrap_or(stdout.len() - start);
        let printed = &stdout[start..end];
        assert!(
            !printed.contains("Traceback"),
            "README line {}: the example failed:\n{printed}",
            block.line
        );
        let expected = expectations(&block.text);
        if let Some(unmet) = first_unmet(printed, &expected) {
            panic!(
                "README line {}: the output does not show {unmet:?}:\n{printed}\n--- stderr ---\n{stderr}",
                block.line
            );
        }
        // The API's error bodies, and the modem simulator's (`{"error": "…"}`).
        let errors = printed.matches("\"error\":{\"code\"").count()
            + printed.matches("{\"error\":\"").count();
        let shown = expected
            .iter()
            .filter(|e| e.contains("\"error\":{\"code\""))
            .count();
        assert!(
            errors <= shown,
            "README line {}: an error the README does not show:\n{printed}",
            block.line
        );
    }
}

#[test]
fn an_expectation_with_ellipses_matches_in_order_and_a_missing_one_is_named() {
    let output = r#"{"hash":"abc","instance":{"instanceName":"alpha"}}{"status":"ok"}"#;
    let expected = vec![
        r#"{"hash":"…","instance":{…"instanceName":"alpha"…}}"#.to_owned(),
        r#"{"status":"ok"}"#.to_owned(),
    ];
    assert_eq!(first_unmet(output, &expected), None);
    let reversed = vec![expected[1].clone(), expected[0].clone()];
    assert_eq!(first_unmet(output, &reversed), Some(expected[0].as_str()));
}
