//! Issue 13, "a robustness suite": hostile input fed to the real binary, table-driven
//! and seeded (`CHAOS_SEED=N` changes the seeded mutations), every case bounded in time.
//!
//! Families: YAML bombs (billion laughs, nesting 10^5 deep, huge keys and scalars,
//! many documents), giant and infinite inputs (/dev/zero, /dev/urandom, FIFOs,
//! directories, symlinks to devices, sparse files), unicode tricks (BOM, NUL, RTL
//! overrides, confusables, invalid UTF-8, CRLF), injection attempts (shell
//! metacharacters, `../`, newlines in params, ids, run ids), forged and truncated
//! journals (for `postmortem`, `resume`, `show`, `note`), hostile scenarios (`runbook
//! lab`, `runbook test`) and hostile requests to a running `runbook lab`.
//!
//! Every case asserts, from outside the process: no panic (exit neither 70 nor 101,
//! no "panicked"), the end within its bound (else the process group is killed and the
//! case fails), peak memory under [`MAX_KB`] (support::measured), a clear error naming
//! the file (with `line:column` where the input has lines), and for journals that
//! nothing of the journal was changed or lost. Chaos suites elsewhere feed random
//! bytes (`chaos_input`, `lint_fuzz`); these are the named attacks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::measured::{Measured, Run};

/// Peak resident memory allowed to any case (the debug binary starts at ~25 MiB).
const MAX_KB: i64 = 256 * 1024;

/// Time allowed to one case (a debug build on 2 shared cores).
const BOUND: Duration = Duration::from_secs(30);

fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005e_ed13)
}

/// splitmix64, as in `chaos_kill`.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a case expects besides "sane" (no panic, in time, bounded memory).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Any clean exit.
    Any,
    /// A failure (exit 1 or 2) whose output names the file and a `line:column` in it.
    Located,
    /// A failure (exit 1 or 2) whose output names the file.
    Named,
    /// Exactly this exit code.
    Exit(i32),
}

/// What a case does to a journal it is given.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Journal {
    /// Read only: the bytes are the same afterwards.
    Unchanged,
    /// May append (a note, a resumed run): what was there is still there, in front.
    Kept,
}

struct Case {
    name: String,
    args: Vec<OsString>,
    /// The file named in the error (its file name is enough).
    file: Option<String>,
    expect: Expect,
    journal: Option<(PathBuf, Journal)>,
    cwd: Option<PathBuf>,
}

impl Case {
    fn new(name: impl Into<String>, args: &[&std::ffi::OsStr]) -> Case {
        Case {
            name: name.into(),
            args: args.iter().map(|a| a.to_os_string()).collect(),
            file: None,
            expect: Expect::Any,
            journal: None,
            cwd: None,
        }
    }

    fn file(mut self, path: &Path, expect: Expect) -> Case {
        self.file = Some(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        self.expect = expect;
        self
    }

    fn expect(mut self, expect: Expect) -> Case {
        self.expect = expect;
        self
    }

    fn journal(mut self, path: &Path, rule: Journal) -> Case {
        self.journal = Some((path.to_path_buf(), rule));
        self
    }
}

/// `NAME:L:C` (L, C >= 1) appears in `text` (also with a path before NAME).
fn names_location(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let mut parts = text[i + name.len()..].splitn(3, ':');
        let _ = parts.next();
        let num = |s: Option<&str>| {
            s.map(|s| {
                s.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|d| d.parse::<u64>().ok())
            .is_some_and(|n| n >= 1)
        };
        text[i + name.len()..].starts_with(':') && num(parts.next()) && num(parts.next())
    })
}

/// Run every case, collecting failures so one run reports them all. Returns how
/// many cases ran.
fn run_all(family: &str, cases: Vec<Case>) -> usize {
    let mut failures = Vec::new();
    let n = cases.len();
    for case in cases {
        let before = case
            .journal
            .as_ref()
            .and_then(|(p, _)| std::fs::read(p).ok());
        let mut run = Run::new(&case.args).bound(BOUND);
        if let Some(dir) = &case.cwd {
            run = run.current_dir(dir);
        }
        let out = run.run();
        if let Err(why) = check(&case, &out, before.as_deref()) {
            failures.push(format!("[{family}] {}: {why}\n{out}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    n
}

fn check(case: &Case, out: &Measured, before: Option<&[u8]>) -> Result<(), String> {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        out.assert_sane(&case.name, MAX_KB)
    }));
    if caught.is_err() {
        return Err("not sane (panic, crash, hang or memory)".into());
    }
    let all = format!("{}{}", out.stdout, out.stderr);
    match case.expect {
        Expect::Any => {}
        Expect::Exit(code) => {
            if out.code != Some(code) {
                return Err(format!("expected exit {code}"));
            }
        }
        Expect::Named | Expect::Located => {
            if !matches!(out.code, Some(1 | 2)) {
                return Err("expected a failure with exit 1 or 2".into());
            }
            let file = case.file.as_deref().unwrap_or_default();
            if !all.contains(file) {
                return Err(format!("the error does not name {file}"));
            }
            if case.expect == Expect::Located && !names_location(&all, file) {
                return Err(format!("the error does not say {file}:LINE:COLUMN"));
            }
        }
    }
    if let Some((path, rule)) = &case.journal {
        let after = std::fs::read(path).ok();
        match (before, after.as_deref(), rule) {
            (Some(b), Some(a), Journal::Unchanged) if a != b => {
                return Err("the journal was modified".into());
            }
            (Some(b), Some(a), Journal::Kept) => {
                // A torn tail (text after the last newline: a crashed writer) may be
                // cut off; every complete line must still be there, in front.
                let complete = b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
                if !a.starts_with(&b[..complete]) {
                    return Err("the journal lost or changed what it held".into());
                }
            }
            (Some(_), None, _) => return Err("the journal is gone".into()),
            _ => {}
        }
    }
    Ok(())
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("writable temp dir");
    p
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A sparse file of `len` bytes (zeros) that costs no disk.
fn sparse(path: &Path, len: u64) {
    let f = std::fs::File::create(path).expect("create");
    f.set_len(len).expect("set_len");
}

const HEAD: &str = "version: 1\nname: hostile\ntitle: Hostile\n";

fn runbook_with(extra: &str, steps: &str) -> String {
    format!("{HEAD}{extra}steps:\n{steps}")
}

const CHECK: &str = "  - check: Look\n    id: look\n    shell: { argv: [echo, hi] }\n";

// ---- 1. YAML bombs and huge inputs to lint ------------------------------------------

fn laughs(depth: usize, width: usize, indent: &str) -> String {
    let mut s = format!("{indent}l0: &l0 [{}]\n", vec!["\"lol\""; width].join(","));
    for i in 1..depth {
        let refs = vec![format!("*l{}", i - 1); width].join(",");
        s.push_str(&format!("{indent}l{i}: &l{i} [{refs}]\n"));
    }
    s
}

fn yaml_bomb_cases(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut lint = |name: String, text: String, expect: Expect| {
        let path = write(dir, &format!("{}.yaml", cases.len()), text);
        cases.push(Case::new(name, &[os("lint"), path.as_os_str()]).file(&path, expect));
    };
    for depth in [4, 6, 9, 12] {
        for width in [9, 30] {
            // Under an extension key and as a param's default.
            lint(
                format!("billion laughs {depth}x{width} in an x- key"),
                runbook_with(&format!("x-bomb:\n{}", laughs(depth, width, "  ")), CHECK),
                Expect::Any,
            );
            lint(
                format!("billion laughs {depth}x{width} as a param default"),
                format!(
                    "{}params:\n  p:\n    default:\n{}steps:\n{CHECK}",
                    HEAD,
                    laughs(depth, width, "      ")
                ),
                Expect::Any,
            );
        }
    }
    lint(
        "an alias to itself".into(),
        runbook_with("x-a: &a [*a]\n", CHECK),
        Expect::Located,
    );
    lint(
        "an undefined alias".into(),
        runbook_with("x-a: *nowhere\n", CHECK),
        Expect::Located,
    );
    lint(
        "merge keys chained 2000 deep".into(),
        runbook_with(
            &format!(
                "x-m:\n  m0: &m0 {{a: 1}}\n{}",
                (1..2000)
                    .map(|i| format!("  m{i}: &m{i} {{<<: *m{}, k{i}: {i}}}\n", i - 1))
                    .collect::<String>()
            ),
            CHECK,
        ),
        Expect::Any,
    );
    for n in [1_000, 10_000, 100_000] {
        lint(
            format!("[ nested {n} deep"),
            runbook_with(&format!("x-d: {}{}\n", "[".repeat(n), "]".repeat(n)), CHECK),
            Expect::Located,
        );
        lint(
            format!("{{ nested {n} deep"),
            runbook_with(
                &format!("x-d: {}{}\n", "{a: ".repeat(n), "}".repeat(n)),
                CHECK,
            ),
            Expect::Located,
        );
        lint(
            format!("[ unclosed, {n} deep"),
            runbook_with(&format!("x-d: {}\n", "[".repeat(n)), CHECK),
            Expect::Located,
        );
    }
    for n in [1_000, 20_000] {
        let mut s = String::from("x-d:\n");
        for i in 0..n.min(5000) {
            s.push_str(&" ".repeat(i + 2));
            s.push_str("- \n");
        }
        lint(
            format!("block list nested {} deep by indentation", n.min(5000)),
            runbook_with(&s, CHECK),
            Expect::Any,
        );
    }
    for (what, n) in [("1 MiB", 1 << 20), ("7 MiB", 7 << 20), ("9 MiB", 9 << 20)] {
        let expect = if n > 8 << 20 {
            Expect::Named
        } else {
            Expect::Any
        };
        lint(
            format!("a {what} key"),
            runbook_with(&format!("x-k:\n  {}: 1\n", "k".repeat(n)), CHECK),
            expect,
        );
        lint(
            format!("a {what} plain scalar title"),
            format!(
                "version: 1\nname: hostile\ntitle: {}\nsteps:\n{CHECK}",
                "t".repeat(n)
            ),
            expect,
        );
        lint(
            format!("a {what} double-quoted scalar with escapes"),
            runbook_with(&format!("x-s: \"{}\"\n", "\\u00e9".repeat(n / 6)), CHECK),
            expect,
        );
        lint(
            format!("a {what} block scalar"),
            runbook_with(&format!("x-s: |\n{}", "  line\n".repeat(n / 7)), CHECK),
            expect,
        );
    }
    lint(
        "a 20 MiB line with no newline".into(),
        "x".repeat(20 << 20),
        Expect::Named,
    );
    for n in [1_000, 100_000] {
        lint(
            format!("{n} documents"),
            format!("{}{}", runbook_with("", CHECK), "---\n{}\n".repeat(n)),
            Expect::Located,
        );
    }
    lint(
        "200 000 empty documents".into(),
        "---\n".repeat(200_000),
        Expect::Any,
    );
    lint(
        "50 000 steps".into(),
        runbook_with(
            "",
            &(0..50_000)
                .map(|i| format!("  - check: c{i}\n    id: c{i}\n    shell: {{ argv: [echo] }}\n"))
                .collect::<String>(),
        ),
        Expect::Any,
    );
    lint(
        "100 000 params".into(),
        format!(
            "{HEAD}params:\n{}steps:\n{CHECK}",
            (0..100_000)
                .map(|i| format!("  p{i}: {{ default: x }}\n"))
                .collect::<String>()
        ),
        Expect::Any,
    );
    for tag in [
        "!!binary aGk=",
        "!custom x",
        "!!python/object:os.system x",
        "!<tag:yaml.org,2002:str> x",
        "!!set {a, b}",
    ] {
        lint(
            format!("a tag: {tag}"),
            format!("version: 1\nname: hostile\ntitle: {tag}\nsteps:\n{CHECK}"),
            Expect::Any,
        );
    }
    lint(
        "a duplicate key".into(),
        format!("{HEAD}title: again\nsteps:\n{CHECK}"),
        Expect::Located,
    );
    lint(
        "a 4 KiB expression nested 10 000 deep".into(),
        runbook_with(
            "",
            &format!(
                "{CHECK}    expect: \"{}true{}\"\n",
                "(".repeat(10_000),
                ")".repeat(10_000)
            ),
        ),
        Expect::Located,
    );
    lint(
        "a condition over lists.range(10^8)".into(),
        runbook_with(
            "",
            &format!("{CHECK}    expect: \"lists.range(100000000).size() > 0\"\n"),
        ),
        Expect::Located,
    );
    lint(
        "a condition nesting three ranges of 1000".into(),
        runbook_with(
            "",
            &format!(
                "{CHECK}    expect: \"lists.range(1000).all(a, lists.range(1000).all(b, lists.range(1000).all(c, a + b + c >= 0)))\"\n"
            ),
        ),
        Expect::Located,
    );
    lint(
        "a condition doubling a string 30 times".into(),
        runbook_with(
            "",
            &format!(
                "{CHECK}    expect: \"['ab']{}.size() > 0\"\n",
                ".map(x, x + x)".repeat(30)
            ),
        ),
        Expect::Located,
    );
    lint(
        "a within of 10^12 days".into(),
        runbook_with(
            "",
            "  - action: Act\n    id: act\n    shell: { argv: [true] }\n    verify: { shell: { argv: [true] }, within: 1000000000000d }\n",
        ),
        Expect::Located,
    );
    lint(
        "retry attempts of 2^64".into(),
        runbook_with(
            "",
            &format!("{CHECK}    retry: {{ attempts: 18446744073709551616 }}\n"),
        ),
        Expect::Located,
    );
    cases
}

#[test]
fn yaml_bombs_and_huge_runbooks_fail_fast_with_a_location() {
    let dir = tempfile::tempdir().unwrap();
    run_all("yaml", yaml_bomb_cases(dir.path()));
}

// ---- 2. unicode tricks --------------------------------------------------------------

fn unicode_cases(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut lint = |name: &str, bytes: Vec<u8>, expect: Expect| {
        let path = write(dir, &format!("u{}.yaml", cases.len()), bytes);
        cases.push(Case::new(name, &[os("lint"), path.as_os_str()]).file(&path, expect));
    };
    let ok = runbook_with("", CHECK);
    let id = |id: &str| {
        runbook_with(
            "",
            &format!("  - check: Look\n    id: \"{id}\"\n    shell: {{ argv: [echo, hi] }}\n"),
        )
        .into_bytes()
    };
    lint(
        "a BOM at the start",
        [b"\xef\xbb\xbf".as_slice(), ok.as_bytes()].concat(),
        Expect::Any,
    );
    lint(
        "two BOMs at the start",
        [b"\xef\xbb\xbf\xef\xbb\xbf".as_slice(), ok.as_bytes()].concat(),
        Expect::Any,
    );
    lint(
        "a BOM in the middle",
        ok.replace("title: Hostile", "title: Hos\u{feff}tile")
            .into_bytes(),
        Expect::Any,
    );
    lint(
        "a UTF-16 LE file",
        {
            let mut v = vec![0xff, 0xfe];
            v.extend(ok.encode_utf16().flat_map(|u| u.to_le_bytes()));
            v
        },
        Expect::Located,
    );
    lint(
        "a NUL byte in the title",
        ok.replace("Hostile", "Host\0ile").into_bytes(),
        Expect::Located,
    );
    lint("a NUL byte in an id", id("lo\0ok"), Expect::Located);
    lint(
        "an RTL override in an id",
        id("look\u{202e}kool"),
        Expect::Located,
    );
    lint(
        "a zero-width space in an id",
        id("lo\u{200b}ok"),
        Expect::Located,
    );
    lint(
        "a Cyrillic confusable id",
        id("l\u{043e}\u{043e}k"),
        Expect::Located,
    );
    lint(
        "confusable duplicate ids",
        runbook_with(
            "",
            "  - check: A\n    id: look\n    shell: { argv: [echo] }\n  - check: B\n    id: \"l\u{043e}ok\"\n    shell: { argv: [echo] }\n",
        )
        .into_bytes(),
        Expect::Located,
    );
    lint("an emoji id", id("look-\u{1f525}"), Expect::Located);
    lint(
        "combining marks in an id",
        id("look\u{301}\u{301}\u{301}"),
        Expect::Located,
    );
    lint(
        "a U+2028 line separator in an id",
        id("lo\u{2028}ok"),
        Expect::Located,
    );
    lint(
        "an id of 300 two-byte characters",
        id(&"\u{e9}".repeat(300)),
        Expect::Located,
    );
    lint("a newline in an id", id("lo\\nok"), Expect::Located);
    lint("a tab in an id", id("lo\\tok"), Expect::Located);
    lint(
        "an RTL override in the runbook name",
        ok.replace("name: hostile", "name: \"host\u{202e}ile\"")
            .into_bytes(),
        Expect::Located,
    );
    for (what, bad) in [
        ("a lone 0xff", b"\xff".as_slice()),
        ("an overlong encoding", b"\xc0\xaf"),
        ("a UTF-16 surrogate", b"\xed\xa0\x80"),
        ("a 5-byte sequence", b"\xf8\x88\x80\x80\x80"),
        ("a continuation byte alone", b"\x80"),
    ] {
        let mut v = ok.replace("Hostile", "Host@ile").into_bytes();
        let at = v.iter().position(|&b| b == b'@').expect("marker");
        v.splice(at..at + 1, bad.iter().copied());
        lint(&format!("invalid UTF-8: {what}"), v, Expect::Located);
    }
    let mut cut = ok.clone().into_bytes();
    cut.extend_from_slice(b"# \xe2\x82");
    lint("a multibyte character cut at the end", cut, Expect::Located);
    lint(
        "CRLF line endings",
        ok.replace('\n', "\r\n").into_bytes(),
        Expect::Any,
    );
    lint(
        "CRLF line endings with an error on line 5",
        runbook_with("", "  - check: Look\n    id: look\n    shel: {}\n")
            .replace('\n', "\r\n")
            .into_bytes(),
        Expect::Located,
    );
    lint(
        "CR-only line endings",
        ok.replace('\n', "\r").into_bytes(),
        Expect::Any,
    );
    lint(
        "tabs for indentation",
        ok.replace("    id", "\tid").into_bytes(),
        Expect::Located,
    );
    lint(
        "a param named with an RTL override",
        format!("{HEAD}params:\n  \"p\u{202e}x\": {{ default: a }}\nsteps:\n{CHECK}").into_bytes(),
        Expect::Located,
    );
    cases
}

#[test]
fn unicode_tricks_are_refused_or_read_as_written() {
    let dir = tempfile::tempdir().unwrap();
    run_all("unicode", unicode_cases(dir.path()));
}

// ---- 3. giant and infinite inputs, for every command that reads a file --------------

/// Paths that are not runbooks: (name, path, whether the error can have a location).
fn weird_paths(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let fifo = dir.join("a.fifo");
    mkfifo(&fifo);
    let sub = dir.join("a-directory.yaml");
    std::fs::create_dir_all(&sub).unwrap();
    let zero = dir.join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let random = dir.join("random.yaml");
    std::os::unix::fs::symlink("/dev/urandom", &random).unwrap();
    let looped = dir.join("loop.yaml");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let big = dir.join("sparse-2g.yaml");
    sparse(&big, 2 << 30);
    let empty = write(dir, "empty.yaml", "");
    let missing = dir.join("missing.yaml");
    vec![
        ("/dev/zero", PathBuf::from("/dev/zero")),
        ("/dev/urandom", PathBuf::from("/dev/urandom")),
        ("a FIFO nobody writes", fifo),
        ("a directory", sub),
        ("a symlink to /dev/zero", zero),
        ("a symlink to /dev/urandom", random),
        ("a symlink loop", looped),
        ("a sparse 2 GiB file", big),
        ("an empty file", empty),
        ("a missing file", missing),
    ]
}

fn giant_cases(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let state = dir.join("state");
    let good = write(dir, "good.yaml", runbook_with("", CHECK));
    let secret = write(
        dir,
        "secret.yaml",
        runbook_with(
            "params:\n  token: { secret: true, required: true }\n",
            CHECK,
        ),
    );
    for (what, path) in weird_paths(dir) {
        let p = path.as_os_str();
        let st = state.as_os_str();
        cases.push(Case::new(format!("lint {what}"), &[os("lint"), p]).file(&path, Expect::Named));
        cases.push(
            Case::new(
                format!("run {what}"),
                &[os("--state-dir"), st, os("run"), p, os("--yes")],
            )
            .file(&path, Expect::Named),
        );
        cases.push(
            Case::new(
                format!("test {what}"),
                &[os("--state-dir"), st, os("test"), p],
            )
            .expect(Expect::Any),
        );
        cases.push(
            Case::new(format!("lab with {what} as its scenario"), &[os("lab"), p])
                .file(&path, Expect::Named),
        );
        // A test file beside a good runbook.
        let case_dir = dir.join(format!("t{}", cases.len()));
        std::fs::create_dir_all(&case_dir).unwrap();
        let rb = case_dir.join("r.yaml");
        std::fs::copy(&good, &rb).unwrap();
        let tf = case_dir.join("r.test.yaml");
        if path.symlink_metadata().is_ok() || path.starts_with("/dev") {
            std::os::unix::fs::symlink(&path, &tf).unwrap();
            cases.push(
                Case::new(
                    format!("test with {what} as the test file"),
                    &[os("--state-dir"), st, os("test"), rb.as_os_str()],
                )
                .file(&tf, Expect::Named),
            );
        }
        cases.push(
            Case::new(
                format!("run with --secret-file from {what}"),
                &[
                    os("--state-dir"),
                    st,
                    os("run"),
                    secret.as_os_str(),
                    os("--secret-file"),
                    &OsString::from(format!("token={}", path.display())),
                ],
            )
            .expect(Expect::Exit(2)),
        );
    }
    cases
}

#[test]
fn giant_and_infinite_inputs_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    run_all("giant", giant_cases(dir.path()));
}

// ---- 4. injection attempts ----------------------------------------------------------

const ECHO_PARAM: &str = "version: 1
name: inject
title: Params reach the program as written
params:
  x: { required: true }
  out: { required: true }
steps:
  - action: Write the value
    id: write
    gate: auto
    shell:
      argv: [sh, -c, 'printf %s \"$1\" > \"$2\"', sh, \"{{params.x}}\", \"{{params.out}}\"]
";

fn injection_cases(dir: &Path) -> Vec<(Case, Option<(PathBuf, String)>)> {
    let rb = write(dir, "inject.yaml", ECHO_PARAM);
    let state = dir.join("state");
    let canary = dir.join("PWNED");
    let c = canary.display();
    let values = [
        format!("; touch {c}"),
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("| touch {c}"),
        format!("&& touch {c}"),
        format!("\ntouch {c}\n"),
        format!("'; touch {c}; '"),
        format!("\"; touch {c}; \""),
        "../../../../etc/passwd".into(),
        "-rf".into(),
        "--help".into(),
        "*".into(),
        "{{params.out}}".into(),
        "{{#each this}}x{{/each}}".into(),
        "${IFS}touch${IFS}x".into(),
        "\u{202e}txt.exe".into(),
        "a\rb\x1b[2Jc".into(),
        "x".repeat(100_000),
    ];
    let mut cases = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let out = dir.join(format!("out{i}"));
        let case = Case::new(
            format!("param value {:?}", v.chars().take(40).collect::<String>()),
            &[
                os("--state-dir"),
                state.as_os_str(),
                os("run"),
                rb.as_os_str(),
                os("-p"),
                &OsString::from(format!("x={v}")),
                os("-p"),
                &OsString::from(format!("out={}", out.display())),
            ],
        )
        .expect(Expect::Exit(0));
        cases.push((case, Some((out, v.clone()))));
    }
    for p in ["../x=1", "x", "=1", "a b=1", "x=1\ny=2", "\u{202e}x=1"] {
        cases.push((
            Case::new(
                format!("param argument {p:?}"),
                &[
                    os("--state-dir"),
                    state.as_os_str(),
                    os("run"),
                    rb.as_os_str(),
                    os("-p"),
                    os(p),
                ],
            )
            .expect(Expect::Exit(2)),
            None,
        ));
    }
    for id in [
        "$(touch x)",
        "../../etc",
        "a;b",
        "a/b",
        "..",
        "a\\nb",
        "-rf",
    ] {
        let path = write(
            dir,
            &format!("id{}.yaml", cases.len()),
            runbook_with(
                "",
                &format!("  - check: c\n    id: \"{id}\"\n    shell: {{ argv: [echo] }}\n"),
            ),
        );
        cases.push((
            Case::new(format!("step id {id:?}"), &[os("lint"), path.as_os_str()])
                .file(&path, Expect::Located),
            None,
        ));
        let path = write(
            dir,
            &format!("name{}.yaml", cases.len()),
            format!("version: 1\nname: \"{id}\"\ntitle: t\nsteps:\n{CHECK}"),
        );
        cases.push((
            Case::new(
                format!("runbook name {id:?}"),
                &[os("lint"), path.as_os_str()],
            )
            .file(&path, Expect::Located),
            None,
        ));
    }
    for run_id in [
        "../../../etc/passwd",
        "..",
        "/",
        "$(touch x)",
        "",
        &"a".repeat(5000),
        "last/../..",
    ] {
        for cmd in [
            &["show"][..],
            &["postmortem"],
            &["resume", "--yes"],
            &["abort"],
        ] {
            let mut args = vec![os("--state-dir"), state.as_os_str(), os(cmd[0]), os(run_id)];
            args.extend(cmd[1..].iter().map(|a| os(a)));
            cases.push((
                Case::new(
                    format!(
                        "{} of run id {:?}",
                        cmd[0],
                        run_id.chars().take(30).collect::<String>()
                    ),
                    &args,
                )
                .expect(Expect::Exit(2)),
                None,
            ));
        }
        cases.push((
            Case::new(
                format!(
                    "note on run id {:?}",
                    run_id.chars().take(30).collect::<String>()
                ),
                &[
                    os("--state-dir"),
                    state.as_os_str(),
                    os("note"),
                    os(run_id),
                    os("text"),
                ],
            )
            .expect(Expect::Exit(2)),
            None,
        ));
    }
    cases
}

#[test]
fn injection_attempts_reach_the_program_as_data_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("PWNED");
    let cases = injection_cases(dir.path());
    let mut wrong = Vec::new();
    let (plain, outputs): (Vec<Case>, Vec<Option<(PathBuf, String)>>) = cases.into_iter().unzip();
    let names: Vec<String> = plain.iter().map(|c| c.name.clone()).collect();
    run_all("injection", plain);
    for (name, out) in names.iter().zip(outputs) {
        if let Some((file, value)) = out {
            let got = std::fs::read_to_string(&file).unwrap_or_default();
            if got != value {
                wrong.push(format!(
                    "{name}: the program got {:?}",
                    got.chars().take(60).collect::<String>()
                ));
            }
        }
    }
    assert!(!canary.exists(), "an injected command ran");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ---- 5. forged and truncated journals -----------------------------------------------

const PAUSING: &str = "version: 1
name: forged
title: A run that pauses at a gate
steps:
  - check: Look
    id: look
    shell: { argv: [echo, hi] }
  - action: Act
    id: act
    shell: { argv: [echo, acted] }
";

/// A real journal of a run paused at its gate, and the runbook it ran.
fn paused_journal(dir: &Path) -> Vec<u8> {
    let rb = write(dir, "forged.yaml", PAUSING);
    let state = dir.join("template-state");
    let out = Run::new([
        os("--state-dir"),
        state.as_os_str(),
        os("run"),
        rb.as_os_str(),
    ])
    .run();
    assert_eq!(out.code, Some(3), "the template run pauses\n{out}");
    let run = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .expect("one run");
    std::fs::read(run.path().join("journal.ndjson")).unwrap()
}

/// Seeded mutations of a journal: (name, bytes).
fn forgeries(base: &[u8], seed: u64) -> Vec<(String, Vec<u8>)> {
    let text = String::from_utf8_lossy(base).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let join = |ls: &[String]| {
        ls.iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..12u64 {
        let at = (mix(seed ^ i) % base.len() as u64) as usize;
        out.push((format!("truncated at byte {at}"), base[..at].to_vec()));
    }
    for i in 0..6u64 {
        let at = (mix(seed ^ (100 + i)) % base.len() as u64) as usize;
        let mut v = base.to_vec();
        v[at] ^= 1 << (mix(seed ^ (200 + i)) % 8);
        out.push((format!("bit flipped at byte {at}"), v));
    }
    out.push(("empty".into(), Vec::new()));
    out.push(("only a newline".into(), b"\n".to_vec()));
    out.push(("the first line dropped".into(), join(&owned[1..])));
    out.push(("the last line twice".into(), {
        let mut v = owned.clone();
        v.push(owned[owned.len() - 1].clone());
        join(&v)
    }));
    out.push(("lines reversed".into(), {
        let mut v = owned.clone();
        v.reverse();
        join(&v)
    }));
    let reseq = |f: &dyn Fn(usize, &str) -> String| {
        join(
            &owned
                .iter()
                .enumerate()
                .map(|(i, l)| f(i, l))
                .collect::<Vec<_>>(),
        )
    };
    out.push((
        "seq 2^64-1 on the last line".into(),
        reseq(&|i, l| {
            if i + 1 == owned.len() {
                l.replacen(
                    &format!("\"seq\":{}", i + 1),
                    "\"seq\":18446744073709551615",
                    1,
                )
            } else {
                l.to_string()
            }
        }),
    ));
    out.push((
        "seq over 2^64".into(),
        reseq(&|i, l| {
            l.replacen(
                &format!("\"seq\":{}", i + 1),
                "\"seq\":99999999999999999999999",
                1,
            )
        }),
    ));
    out.push((
        "seq negative".into(),
        reseq(&|i, l| l.replacen(&format!("\"seq\":{}", i + 1), "\"seq\":-1", 1)),
    ));
    out.push((
        "seq as a string".into(),
        reseq(&|i, l| {
            l.replacen(
                &format!("\"seq\":{}", i + 1),
                &format!("\"seq\":\"{}\"", i + 1),
                1,
            )
        }),
    ));
    out.push((
        "seq all 1".into(),
        reseq(&|i, l| l.replacen(&format!("\"seq\":{}", i + 1), "\"seq\":1", 1)),
    ));
    out.push(("an unknown event in the middle".into(), {
        let mut v = owned.clone();
        v.insert(
            1,
            r#"{"seq":2,"ts":"2026-01-01T00:00:00Z","event":"teleported","x":1}"#.into(),
        );
        join(&v)
    }));
    out.push(("invalid JSON in the middle".into(), {
        let mut v = owned.clone();
        v.insert(1, "{not json".into());
        join(&v)
    }));
    out.push(("a 5 MiB line in the middle".into(), {
        let mut v = owned.clone();
        v.insert(
            1,
            format!(
                "{{\"seq\":2,\"event\":\"note\",\"text\":\"{}\"}}",
                "n".repeat(5 << 20)
            ),
        );
        join(&v)
    }));
    out.push(("a JSON value nested 100 000 deep".into(), {
        let mut v = owned.clone();
        v.push(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
        join(&v)
    }));
    out.push(("NUL bytes appended".into(), [base, &[0u8; 4096]].concat()));
    out.push(("a 300 MiB line of NULs (sparse)".into(), Vec::new()));
    out.push((
        "CRLF line endings".into(),
        text.replace('\n', "\r\n").into_bytes(),
    ));
    out.push((
        "a BOM in front".into(),
        [b"\xef\xbb\xbf".as_slice(), base].concat(),
    ));
    out.push((
        "format 999".into(),
        text.replacen("\"format\":1", "\"format\":999", 1)
            .into_bytes(),
    ));
    out.push((
        "another run id inside".into(),
        text.replacen("\"run_id\":\"", "\"run_id\":\"../../x-", 1)
            .into_bytes(),
    ));
    out.push(("a runbook path to /dev/zero".into(), {
        let first = &owned[0];
        let v: serde_json::Value = serde_json::from_str(first).unwrap();
        let mut v = v;
        v["runbook"]["path"] = "/dev/zero".into();
        let mut ls = owned.clone();
        ls[0] = v.to_string();
        join(&ls)
    }));
    out.push((
        "a step finished that never started".into(),
        {
            let mut v = owned.clone();
            v.push(format!(
                r#"{{"seq":{},"ts":"2026-01-01T00:00:00Z","event":"step_finished","step":"ghost","outcome":"ok","duration_ms":1}}"#,
                owned.len() + 1
            ));
            join(&v)
        },
    ));
    out.push((
        "5 000 notes".into(),
        {
            let mut v = owned.clone();
            for i in 0..5_000 {
                v.push(format!(
                    r#"{{"seq":{},"ts":"2026-01-01T00:00:00Z","event":"note","text":"note {i} {}","by":"ana"}}"#,
                    owned.len() + 1 + i,
                    "w".repeat(100)
                ));
            }
            join(&v)
        },
    ));
    out
}

#[test]
fn forged_and_truncated_journals_are_read_or_refused_and_never_changed() {
    let dir = tempfile::tempdir().unwrap();
    let base = paused_journal(dir.path());
    let mut cases = Vec::new();
    for (i, (what, bytes)) in forgeries(&base, seed()).into_iter().enumerate() {
        for cmd in [
            &["show"][..],
            &["postmortem"],
            &["resume", "--yes"],
            &["note", "hello"],
        ] {
            let state = dir.path().join(format!("s{i}-{}", cmd[0]));
            let id = format!("20260101-000000-forged-{:04x}", i);
            let run = state.join("runs").join(&id);
            std::fs::create_dir_all(&run).unwrap();
            let journal = run.join("journal.ndjson");
            if what.contains("sparse") {
                sparse(&journal, 300 << 20);
            } else {
                std::fs::write(&journal, &bytes).unwrap();
            }
            let mut args = vec![os("--state-dir"), state.as_os_str(), os(cmd[0]), os(&id)];
            args.extend(cmd[1..].iter().map(|a| os(a)));
            let rule = if matches!(cmd[0], "show" | "postmortem") {
                Journal::Unchanged
            } else {
                Journal::Kept
            };
            cases.push(
                Case::new(format!("{} of a journal: {what}", cmd[0]), &args)
                    .journal(&journal, rule)
                    .cwd(dir.path()),
            );
        }
    }
    run_all("journal", cases);
}

impl Case {
    fn cwd(mut self, dir: &Path) -> Case {
        self.cwd = Some(dir.to_path_buf());
        self
    }
}

// ---- 6. hostile scenarios -----------------------------------------------------------

fn scenario_cases(dir: &Path) -> Vec<Case> {
    let head = "version: 1\nname: hostile\ndescription: d\nstart: \"2026-01-01T00:00:00Z\"\n";
    let pod = |name: &str, ns: &str| {
        format!(
            "  - apiVersion: v1\n    kind: Pod\n    metadata: {{ name: \"{name}\", namespace: \"{ns}\" }}\n    spec: {{ containers: [{{ name: c, image: i }}] }}\n"
        )
    };
    let texts: Vec<(&str, String, Expect)> = vec![
        ("billion laughs", format!("{head}x-bomb:\n{}objects: []\n", laughs(10, 10, "  ")), Expect::Named),
        ("objects nested 100 000 deep", format!("{head}objects: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)), Expect::Located),
        ("a pod named ../../x", format!("{head}objects:\n{}", pod("../../x", "default")), Expect::Located),
        ("a namespace ..", format!("{head}objects:\n{}", pod("p", "..")), Expect::Located),
        ("a pod defined twice", format!("{head}objects:\n{}{}", pod("p", "default"), pod("p", "default")), Expect::Located),
        ("a pod name of 10 000 characters", format!("{head}objects:\n{}", pod(&"p".repeat(10_000), "default")), Expect::Located),
        ("an RTL override in a pod name", format!("{head}objects:\n{}", pod("p\u{202e}x", "default")), Expect::Located),
        ("a fault at 10^12 days", format!("{head}faults:\n  - at: 1000000000000d\n    node_lost: {{ node: n }}\nobjects: []\n"), Expect::Located),
        ("a fault on a missing node", format!("{head}faults:\n  - at: 0s\n    node_lost: {{ node: nowhere }}\nobjects: []\n"), Expect::Any),
        ("a start date in year 99999", "version: 1\nname: hostile\ndescription: d\nstart: \"99999-01-01T00:00:00Z\"\nobjects: []\n".into(), Expect::Located),
        ("a metric with a bad selector", format!("{head}metrics:\n  - name: m\n    help: h\n    value: {{ pods_running: {{ namespace: default, selector: \"a in (\" }} }}\nobjects: []\n"), Expect::Located),
        ("an unknown kind", format!("{head}objects:\n  - apiVersion: v1\n    kind: Teleporter\n    metadata: {{ name: t }}\n"), Expect::Located),
        ("a 9 MiB scenario", format!("{head}x-pad: \"{}\"\nobjects: []\n", "x".repeat(9 << 20)), Expect::Named),
        ("a scenario that is a list", "- a\n- b\n".into(), Expect::Located),
        ("5000 pods", format!("{head}objects:\n{}", (0..5000).map(|i| pod(&format!("p{i}"), "default")).collect::<String>()), Expect::Any),
    ];
    let mut cases = Vec::new();
    for (i, (what, text, expect)) in texts.into_iter().enumerate() {
        let scen = write(dir, &format!("s{i}.scenario.yaml"), text);
        // `runbook lab` with a scenario that loads serves until killed: only the bad
        // ones are given to it, a good one is given to `runbook test`.
        if expect != Expect::Any {
            cases.push(
                Case::new(
                    format!("lab with a scenario: {what}"),
                    &[os("lab"), scen.as_os_str()],
                )
                .file(&scen, expect),
            );
        }
        let rb = write(dir, &format!("s{i}.yaml"), runbook_with("", CHECK));
        write(
            dir,
            &format!("s{i}.test.yaml"),
            format!(
                "version: 1\ntests:\n  - name: t\n    scenario: s{i}.scenario.yaml\n    expect: {{ status: succeeded }}\n"
            ),
        );
        let state = dir.join(format!("state{i}"));
        cases.push(
            Case::new(
                format!("test with a scenario: {what}"),
                &[
                    os("--state-dir"),
                    state.as_os_str(),
                    os("test"),
                    rb.as_os_str(),
                ],
            )
            .file(
                &scen,
                if expect == Expect::Any {
                    Expect::Any
                } else {
                    Expect::Named
                },
            ),
        );
    }
    cases
}

#[test]
fn hostile_scenarios_do_not_load_and_say_where() {
    let dir = tempfile::tempdir().unwrap();
    run_all("scenario", scenario_cases(dir.path()));
}

// ---- 7. hostile requests to a running lab -------------------------------------------

struct Lab {
    child: std::process::Child,
    port: u16,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is waited for by Lab's Drop; a lab that never starts is left to the panic.
#[allow(clippy::zombie_processes)]
fn start_lab(dir: &Path) -> Lab {
    let kc = dir.join("kubeconfig");
    let child = std::process::Command::new(crate::support::cli::BIN)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["lab", "--port", "0", "--write-kubeconfig"])
        .arg(&kc)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the lab starts");
    let t0 = std::time::Instant::now();
    loop {
        if let Some(port) = std::fs::read_to_string(&kc).ok().and_then(|k| {
            k.lines()
                .find_map(|l| l.trim().strip_prefix("server: http://127.0.0.1:"))
                .and_then(|p| p.trim().parse().ok())
        }) {
            return Lab { child, port };
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the lab did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn vmhwm_kb(pid: u32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Send raw bytes; the status code of the answer (0: no HTTP answer, the
/// connection closed), read within `bound`.
fn raw(port: u16, request: &[u8], bound: Duration) -> Result<u16, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(bound)).unwrap();
    s.set_write_timeout(Some(bound)).unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(request);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(format!("no answer within {bound:?}"));
            }
            Err(_) => break,
        }
    }
    let line = String::from_utf8_lossy(&head);
    Ok(line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// Which status codes answer a hostile request well.
type Accept<'a> = &'a dyn Fn(u16) -> bool;

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

#[test]
fn hostile_lab_requests_get_an_error_and_the_lab_stays_up_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let lab = start_lab(dir.path());
    let pods = "/api/v1/namespaces/prod/pods";
    let json = "application/json";
    let pod = |name: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"i"}}]}}}}"#
        )
    };
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>, Accept)> = vec![
        ("a 10 MiB body", post(pods, json, &vec![b' '; 10 << 20]), &|s| s == 413),
        ("a body that is not JSON", post(pods, json, b"{not json"), &|s| s == 400),
        ("a JSON body nested 100 000 deep", post(pods, json, deep.as_bytes()), &|s| s == 400 || s == 422),
        ("a JSON array body", post(pods, json, b"[]"), &|s| s == 400 || s == 422),
        ("a body of invalid UTF-8", post(pods, json, b"{\"a\":\"\xff\"}"), &|s| s == 400),
        ("a pod named ../../x", post(pods, json, pod("../../x").as_bytes()), &|s| s == 422 || s == 400),
        ("a pod name of 100 000 characters", post(pods, json, pod(&"p".repeat(100_000)).as_bytes()), &|s| s == 422 || s == 400),
        ("a YAML content type", post(pods, "application/yaml", b"a: b"), &|s| (400..500).contains(&s)),
        ("a Content-Length larger than the body", b"POST /api/v1/namespaces/prod/pods HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{}".to_vec(), &|s| s == 413 || s == 400 || s == 0),
        ("a negative Content-Length", b"POST /api/v1/namespaces/prod/pods HTTP/1.1\r\nHost: lab\r\nContent-Length: -5\r\n\r\n".to_vec(), &|s| s == 400 || s == 0),
        ("a traversal namespace", get("/api/v1/namespaces/../pods"), &|s| (200..500).contains(&s)),
        ("an encoded traversal", get("/api/v1/namespaces/%2e%2e/pods/%2e%2e%2f%2e%2e"), &|s| (400..500).contains(&s)),
        ("a NUL in the path", get("/api/v1/namespaces/prod/pods/a%00b"), &|s| (400..500).contains(&s)),
        ("a bad label selector", get("/api/v1/pods?labelSelector=a%20in%20("), &|s| s == 400),
        ("a selector of 100 000 characters", get(&format!("/api/v1/pods?labelSelector={}", "a%3D1,".repeat(20_000))), &|s| (400..500).contains(&s) || s == 200),
        ("a bad field selector", get("/api/v1/pods?fieldSelector=spec.nodeName%3D%3D%3Dx"), &|s| s == 400),
        ("limit over 2^64", get("/api/v1/pods?limit=99999999999999999999999"), &|s| s == 400 || s == 200),
        ("limit -1", get("/api/v1/pods?limit=-1"), &|s| s == 400 || s == 200),
        ("a garbage continue token", get("/api/v1/pods?limit=1&continue=%%%garbage"), &|s| s == 400),
        ("a continue token of 1 MiB", get(&format!("/api/v1/pods?limit=1&continue={}", "QUFB".repeat(1 << 18))), &|s| (400..500).contains(&s)),
        ("a garbage resourceVersion watch", get("/api/v1/pods?watch=true&resourceVersion=abc&timeoutSeconds=1"), &|s| (400..500).contains(&s) || s == 200),
        ("a watch with timeoutSeconds 10^20", get("/api/v1/pods?watch=true&timeoutSeconds=100000000000000000000"), &|s| (400..500).contains(&s) || s == 200),
        ("an unknown resource", get("/api/v1/teleporters"), &|s| s == 404),
        ("an unknown group", get("/apis/evil.example.com/v1/things"), &|s| s == 404),
        ("a patch with a bad patch type", b"PATCH /api/v1/namespaces/prod/pods/x HTTP/1.1\r\nHost: lab\r\nConnection: close\r\nContent-Type: text/evil\r\nContent-Length: 2\r\n\r\n{}".to_vec(), &|s| (400..500).contains(&s)),
        ("a JSON patch that is not a list", b"PATCH /api/v1/namespaces/prod/pods/x HTTP/1.1\r\nHost: lab\r\nConnection: close\r\nContent-Type: application/json-patch+json\r\nContent-Length: 2\r\n\r\n{}".to_vec(), &|s| (400..500).contains(&s)),
        ("a 1 MiB URI", get(&format!("/api/v1/pods?x={}", "a".repeat(1 << 20))), &|s| (400..500).contains(&s) || s == 0 || s == 200),
        ("2000 headers", {
            let mut v = b"GET /api/v1/pods HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n".to_vec();
            for i in 0..2000 { v.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes()); }
            v.extend_from_slice(b"\r\n");
            v
        }, &|s| (400..500).contains(&s) || s == 0),
        ("not HTTP at all", b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(), &|s| s == 400 || s == 0),
        ("HTTP/0.9", b"GET /\r\n".to_vec(), &|s| s == 400 || s == 0 || s == 505),
        ("a fault that is not JSON", post("/lab/v1/faults", json, b"{{{"), &|s| s == 400 || s == 422),
        ("losing a node named ../..", post("/lab/v1/nodes/..%2f../lose", json, b""), &|s| s == 400),
        ("a lab request log with a huge limit", get("/lab/v1/requests?limit=99999999999999"), &|s| s < 500),
        ("a lab time jump of 10^12 days", post("/lab/v1/advance?by=1000000000000d", json, b"{}"), &|s| (400..500).contains(&s)),
    ];
    let n = cases.len();
    let mut failures = Vec::new();
    // A client that sends half a request and stays: it must not block the others.
    let mut stalled = std::net::TcpStream::connect(("127.0.0.1", lab.port)).unwrap();
    std::io::Write::write_all(
        &mut stalled,
        b"POST /api/v1/namespaces/prod/pods HTTP/1.1\r\nHost: lab\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    for (what, request, ok) in &cases {
        match raw(lab.port, request, Duration::from_secs(20)) {
            Ok(status) if ok(status) => {}
            Ok(status) => failures.push(format!("{what}: status {status}")),
            Err(e) => failures.push(format!("{what}: {e}")),
        }
        let alive = raw(
            lab.port,
            &get("/api/v1/namespaces"),
            Duration::from_secs(20),
        );
        if alive != Ok(200) {
            failures.push(format!(
                "after {what}: the lab no longer answers ({alive:?})"
            ));
            break;
        }
    }
    drop(stalled);
    let peak = vmhwm_kb(lab.child.id());
    assert!(
        failures.is_empty(),
        "{} of {n} requests:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        peak > 0 && peak < MAX_KB,
        "the lab's peak RSS was {peak} KiB"
    );
}

/// The issue asks for at least 150 distinct cases; count them without running them.
#[test]
fn the_suite_has_at_least_150_distinct_cases() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| {
        let p = dir.path().join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let names: Vec<String> = yaml_bomb_cases(&d("y"))
        .into_iter()
        .chain(unicode_cases(&d("u")))
        .chain(giant_cases(&d("g")))
        .chain(injection_cases(&d("i")).into_iter().map(|(c, _)| c))
        .chain(scenario_cases(&d("s")))
        .map(|c| c.name)
        .chain(
            forgeries(b"{\"seq\":1}\n{\"seq\":2}\n", seed())
                .into_iter()
                .map(|(n, _)| n)
                .flat_map(|n| {
                    ["show", "postmortem", "resume", "note"]
                        .map(|c| format!("{c} of a journal: {n}"))
                }),
        )
        .collect();
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    // Plus the 34 lab requests of the test above.
    assert!(
        distinct.len() + 34 >= 150,
        "only {} distinct cases",
        distinct.len() + 34
    );
}
