//! What real GRUB 2.06 does with environment blocks and scripts, checked by booting it under OVMF in QEMU.
//!
//! These tests pin the facts the boot-state design relies on: how `load_env` and `save_env` treat good, damaged,
//! truncated and missing blocks, variable whitelists, and what GRUB script can test and compute. Each test builds its
//! images, boots them (each boot prints its wall time to stderr, for reports only), and checks the console lines its
//! grub.cfg printed and the files GRUB rewrote. A missing QEMU, OVMF, GRUB or mtools fails every test by name.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use qemu_tests::{
    ok, report, BootEnd, BootLog, BootOptions, DiskImage, Error, GrubImage, Harness, Layout, GRUB_CFG_PATH,
    MARKER_NOT_FOUND, MARKER_RETURNED,
};
use tempfile::TempDir;

/// Generous: a boot takes a few seconds under TCG, more on a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(180);

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        Harness::new(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap_or_else(|err| panic!("{}", report(&err)))
    })
}

fn scratch(test: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("{test}."))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a scratch directory under the target directory")
}

fn build(spec: &GrubImage, dir: &TempDir, name: &str) -> DiskImage {
    ok(spec.build(harness(), &dir.path().join(name)))
}

fn boot(test: &str, image: &DiskImage) -> BootLog {
    let log = ok(harness().boot(image, TIMEOUT));
    eprintln!("[{test}] boot took {:.1?}", log.elapsed());
    log
}

fn assert_line(log: &BootLog, line: &str) {
    assert!(log.has_line(line), "no console line {line:?}; console tail:\n{}", log.tail(60));
}

/// A block made by `grub-editenv create` and `set` for each variable.
fn editenv(vars: &[(&str, &str)]) -> Vec<u8> {
    ok(harness().editenv_create(vars))
}

/// The variables `grub-editenv list` reads from `block`.
fn list(block: &[u8]) -> Vec<(String, String)> {
    ok(harness().editenv_list(block))
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

/// A hand-made block: the signature line, `body`, and `#` padding up to 1024 bytes.
fn handmade_block(body: &str) -> Vec<u8> {
    let mut block = format!("# GRUB Environment Block\n{body}").into_bytes();
    assert!(block.len() <= 1024, "body too long for a 1024-byte block");
    block.resize(1024, b'#');
    block
}

/// The script of the brief, on both layouts: GRUB reads a block made by grub-editenv, rewrites it in place with
/// `save_env`, and a later `load_env` in the same boot sees the new values.
#[test]
fn save_env_round_trip_on_gpt_and_superfloppy() {
    let dir = scratch("round_trip");
    let cfg = r#"
load_env -f ($root)/env/a.env
echo "EDGE-RESULT x=${x}"
set x=2
set y=hello
save_env -f ($root)/env/a.env x y
unset x
unset y
load_env -f ($root)/env/a.env
echo "EDGE-RELOAD x=${x} y=${y}"
halt
"#;
    let images: Vec<DiskImage> = [(Layout::Gpt, "gpt.img"), (Layout::Superfloppy, "superfloppy.img")]
        .into_iter()
        .map(|(layout, name)| {
            build(&GrubImage::new(cfg).layout(layout).file("env/a.env", editenv(&[("x", "1")])), &dir, name)
        })
        .collect();
    let logs = harness().boot_all(&images, TIMEOUT);
    for ((image, log), root) in images.iter().zip(logs).zip(["hd0,gpt1", "hd0"]) {
        let log = ok(log);
        eprintln!("[round_trip {:?}] boot took {:.1?}", image.layout(), log.elapsed());
        assert_eq!(log.end(), BootEnd::PoweredOff);
        assert_eq!(log.grub_root(), Some(root), "console tail:\n{}", log.tail(60));
        assert_line(&log, "EDGE-RESULT x=1");
        assert_line(&log, "EDGE-RELOAD x=2 y=hello");
        let saved = ok(image.read_file("env/a.env"));
        assert_eq!(saved.len(), 1024, "save_env keeps the file size");
        assert_eq!(list(&saved), vars(&[("x", "2"), ("y", "hello")]), "an existing variable keeps its place");
    }
}

/// Two blocks, `--skip-sig`, whitelists, which of two copies of a name wins, and a grub.cfg that returns.
#[test]
fn two_blocks_whitelists_and_duplicates() {
    let dir = scratch("whitelists");
    let cfg = r#"
set e=($root)/env
load_env --skip-sig -f $e/a.env
echo "EDGE-ALL x=$x y=$y z=$z"
unset x
unset y
unset z
set y=preset
load_env -f $e/a.env x q
echo "EDGE-WHITELIST x=$x y=$y z=$z q=$q"
load_env --skip-sig -f $e/b.env p
echo "EDGE-B p=$p q=$q x=$x"
load_env -f $e/b.env x
echo "EDGE-B-OVERRIDES x=$x"
if load_env -f $e/a.env nosuchvar; then echo "EDGE-NO-MATCH loads"; else echo "EDGE-NO-MATCH fails"; fi
set names="p q"
unset p
load_env -f $e/b.env $names
echo "EDGE-NAMES-FROM-VARIABLE p=$p q=$q"
load_env -f $e/dup.env
echo "EDGE-DUP d=$d"
echo "EDGE-END"
"#;
    let image = build(
        &GrubImage::new(cfg)
            .file("env/a.env", editenv(&[("x", "1"), ("y", "2"), ("z", "3")]))
            .file("env/b.env", editenv(&[("p", "10"), ("q", "20"), ("x", "from_b")]))
            .file("env/dup.env", handmade_block("d=first\nd=second\n")),
        &dir,
        "whitelists.img",
    );
    let log = boot("whitelists", &image);
    for line in [
        "EDGE-ALL x=1 y=2 z=3",
        // Only whitelisted names are set; a whitelisted name absent from the block leaves the variable as it was.
        "EDGE-WHITELIST x=1 y=preset z= q=",
        "EDGE-B p=10 q= x=1",
        "EDGE-B-OVERRIDES x=from_b",
        // A whitelist that matches nothing is still a successful load.
        "EDGE-NO-MATCH loads",
        // An unquoted variable splits into several names.
        "EDGE-NAMES-FROM-VARIABLE p=10 q=20",
        // The later of two lines with the same name wins.
        "EDGE-DUP d=second",
        "EDGE-END",
        // The grub.cfg ended without `halt`; the harness configuration halts for it.
        MARKER_RETURNED,
    ] {
        assert_line(&log, line);
    }
}

/// One damaged-block case: a file (or none), and the line its `load_env` prints.
struct Damaged {
    name: &'static str,
    block: Option<Vec<u8>>,
    expected: &'static str,
}

/// `load_env` on good, damaged, truncated and missing blocks; `if load_env ...` tells a load that failed.
#[test]
fn load_env_on_damaged_blocks() {
    let dir = scratch("damaged");
    let good = editenv(&[("x", "1"), ("y", "2"), ("z", "3")]);
    let at = |needle: &str| good.windows(needle.len()).position(|w| w == needle.as_bytes()).expect("needle in block");
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut block = good.clone();
        edit(&mut block);
        Some(block)
    };
    let cases = [
        Damaged { name: "good", block: Some(good.clone()), expected: "ok x=1 y=2 z=3" },
        // The signature line is the only thing checked: damage there fails the load (GRUB_ERR_BAD_FILE_TYPE).
        Damaged { name: "signature", block: with(&|b| b[0] = b'X'), expected: "failed rc=4" },
        Damaged { name: "signature_newline", block: with(&|b| b[24] = b' '), expected: "failed rc=4" },
        // A damaged comment line loses its `#` and swallows the next variable's name (`X WARNING...\nx` = 1).
        Damaged { name: "warning_line", block: with(&|b| b[25] = b'X'), expected: "ok x= y=2 z=3" },
        // Any length is accepted as long as the signature is whole.
        Damaged { name: "truncated_512", block: with(&|b| b.truncate(512)), expected: "ok x=1 y=2 z=3" },
        Damaged { name: "truncated_30", block: with(&|b| b.truncate(30)), expected: "ok x= y= z=" },
        Damaged { name: "truncated_24", block: with(&|b| b.truncate(24)), expected: "failed rc=4" },
        Damaged { name: "empty", block: Some(Vec::new()), expected: "failed rc=4" },
        Damaged { name: "all_zero", block: Some(vec![0; 1024]), expected: "failed rc=4" },
        Damaged { name: "grown_2048", block: with(&|b| b.resize(2048, b'#')), expected: "ok x=1 y=2 z=3" },
        // Parsing stops at the first line with no `=` before the end; what came before stays loaded.
        Damaged { name: "zero_tail", block: with(&|b| b[at("y=2")..].fill(0)), expected: "ok x=1 y= z=" },
        // A last line without its newline is dropped.
        Damaged { name: "cut_value", block: with(&|b| b.truncate(at("z=3") + 3)), expected: "ok x=1 y=2 z=" },
        // A line with no `=` runs into the next line's name, which is lost.
        Damaged {
            name: "line_without_equals",
            block: with(&|b| {
                let y = at("y=2");
                b.splice(y..y, b"garbage\n".iter().copied());
                b.truncate(1024);
            }),
            expected: "ok x=1 y= z=3",
        },
        // There is no checksum: a changed value loads as if it were right.
        Damaged { name: "bit_flip", block: with(&|b| b[at("x=1") + 2] = b'3'), expected: "ok x=3 y=2 z=3" },
        Damaged { name: "missing", block: None, expected: "failed rc=5" },
    ];

    let mut cfg = String::from("set e=($root)/env\n");
    let mut files = Vec::new();
    for case in &cases {
        let name = case.name;
        cfg.push_str(&format!(
            "unset x\nunset y\nunset z\nif load_env -f $e/{name}.env; \
             then echo \"EDGE-LOAD {name} ok x=$x y=$y z=$z\"; \
             else echo \"EDGE-LOAD {name} failed rc=$?\"; fi\n"
        ));
        if let Some(block) = &case.block {
            files.push((format!("env/{name}.env"), block.clone()));
        }
    }
    cfg.push_str("halt\n");
    let spec = files.into_iter().fold(GrubImage::new(cfg), |spec, (name, block)| spec.file(name, block));
    let image = build(&spec, &dir, "damaged.img");
    let log = boot("damaged", &image);
    for case in &cases {
        assert_line(&log, &format!("EDGE-LOAD {} {}", case.name, case.expected));
    }
    // The messages GRUB prints for a failed load.
    assert_line(&log, "error: invalid environment block.");
    assert_line(&log, "error: file `/env/missing.env' not found.");
}

/// What a file holds after the boot.
enum After {
    /// Byte for byte what the image was built with.
    Unchanged,
    /// These variables, in this order, and this length in bytes.
    Vars(&'static [(&'static str, &'static str)], usize),
    /// No file.
    Missing,
}

/// One `save_env` case: the file it writes (or none), the commands before it, the line it prints and the file after.
struct Save {
    name: &'static str,
    path: &'static str,
    block: Option<Vec<u8>>,
    prepare: &'static str,
    save: &'static str,
    expected: &'static str,
    after: After,
}

/// `save_env` in place: where it writes, what it refuses (leaving the file as it was), and what an unset name does.
#[test]
fn save_env_writes_in_place_or_refuses() {
    let dir = scratch("save_env");
    let good = editenv(&[("x", "1"), ("y", "2"), ("z", "3")]);
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut block = good.clone();
        edit(&mut block);
        Some(block)
    };
    let big = "0123456789".repeat(100);
    let cases = [
        Save {
            name: "in_subdirectory",
            path: "env/plain.env",
            block: Some(good.clone()),
            prepare: "",
            save: "x",
            expected: "ok",
            after: After::Vars(&[("x", "9"), ("y", "2"), ("z", "3")], 1024),
        },
        Save {
            name: "in_root_directory",
            path: "root.env",
            block: Some(good.clone()),
            prepare: "",
            save: "x",
            expected: "ok",
            after: After::Vars(&[("x", "9"), ("y", "2"), ("z", "3")], 1024),
        },
        Save {
            name: "fragmented",
            path: "env/fragmented.env",
            block: None, // written after the build, around a hole, and checked to be in two pieces
            prepare: "",
            save: "x",
            expected: "ok",
            after: After::Vars(&[("x", "9"), ("y", "2"), ("z", "3")], 1024),
        },
        Save {
            name: "names_from_variable",
            path: "env/names.env",
            block: Some(good.clone()),
            prepare: "set w=1\nset names=\"w x\"",
            save: "$names",
            expected: "ok",
            after: After::Vars(&[("x", "9"), ("y", "2"), ("z", "3"), ("w", "1")], 1024),
        },
        Save {
            name: "new_name_goes_last",
            path: "env/new.env",
            block: Some(good.clone()),
            prepare: "set w=\"a b\"",
            save: "w x",
            expected: "ok",
            after: After::Vars(&[("x", "9"), ("y", "2"), ("z", "3"), ("w", "a b")], 1024),
        },
        Save {
            name: "unset_name_is_deleted",
            path: "env/delete.env",
            block: Some(good.clone()),
            prepare: "unset y",
            save: "y",
            expected: "ok",
            after: After::Vars(&[("x", "1"), ("z", "3")], 1024),
        },
        Save {
            name: "truncated_512",
            path: "env/t512.env",
            block: with(&|b| b.truncate(512)),
            prepare: "",
            save: "x",
            expected: "ok",
            after: After::Vars(&[("x", "9"), ("y", "2"), ("z", "3")], 512),
        },
        Save {
            name: "grown_2048",
            path: "env/g2048.env",
            block: with(&|b| b.resize(2048, b'#')),
            prepare: "",
            save: "x",
            expected: "ok",
            after: After::Vars(&[("x", "9"), ("y", "2"), ("z", "3")], 2048),
        },
        // Free space is the `#` padding at the end of the block: with the tail zeroed (a torn write) there is
        // none, so even a same-length value is refused and the block stays as it was.
        Save {
            name: "zeroed_tail",
            path: "env/zeroed.env",
            block: with(&|b| b[512..].fill(0)),
            prepare: "",
            save: "x",
            expected: "failed rc=18",
            after: After::Unchanged,
        },
        Save {
            name: "signature_damaged",
            path: "env/damaged.env",
            block: with(&|b| b[0] = b'X'),
            prepare: "",
            save: "x",
            expected: "failed rc=4",
            after: After::Unchanged,
        },
        Save {
            name: "too_big",
            path: "env/full.env",
            block: Some(good.clone()),
            prepare: "",
            save: "big",
            expected: "failed rc=18",
            after: After::Unchanged,
        },
        Save {
            name: "missing",
            path: "env/missing.env",
            block: None,
            prepare: "",
            save: "x",
            expected: "failed rc=5",
            after: After::Missing,
        },
    ];

    let mut cfg = format!("set big={big}\n");
    let mut spec_files = vec![
        // Two one-cluster files; deleting the first leaves a hole the fragmented block is written around.
        ("pad/first".to_owned(), vec![b'p'; 512]),
        ("pad/second".to_owned(), vec![b'p'; 512]),
    ];
    for case in &cases {
        let (name, path, prepare, save) = (case.name, case.path, case.prepare, case.save);
        cfg.push_str(&format!(
            "set x=9\n{prepare}\nif save_env -f ($root)/{path} {save}; then echo \"EDGE-SAVE {name} ok\"; \
             else echo \"EDGE-SAVE {name} failed rc=$?\"; fi\n"
        ));
        if let Some(block) = &case.block {
            spec_files.push((path.to_owned(), block.clone()));
        }
    }
    cfg.push_str("halt\n");
    let spec = spec_files.into_iter().fold(GrubImage::new(cfg), |spec, (name, block)| spec.file(name, block));
    let image = build(&spec, &dir, "save_env.img");
    ok(image.delete_file("pad/first"));
    ok(image.write_file("env/fragmented.env", &good));
    let pieces = ok(image.clusters("env/fragmented.env"));
    assert!(pieces.len() > 1, "the test setup no longer fragments the file: clusters {pieces:?}");

    let log = boot("save_env", &image);
    for case in &cases {
        assert_line(&log, &format!("EDGE-SAVE {} {}", case.name, case.expected));
        let after = image.read_file(case.path);
        match &case.after {
            After::Unchanged => {
                assert_eq!(&ok(after), case.block.as_ref().expect("unchanged needs a block"), "{}", case.name)
            }
            After::Vars(expected, len) => {
                let block = ok(after);
                assert_eq!(block.len(), *len, "{}", case.name);
                assert_eq!(list(&block), vars(expected), "{}", case.name);
            }
            After::Missing => {
                assert!(matches!(after, Err(Error::Command { .. })), "{}: save_env created a file", case.name)
            }
        }
    }
    assert_line(&log, "error: invalid environment block.");
    assert_line(&log, "error: environment block too small.");
    assert_line(&log, "error: file `/env/missing.env' not found.");
}

/// Conditions, each run as `if CONDITION; then r=yes; else r=no; fi` with `a=3`, `b=4`, `c=3` and `u` unset.
const CONDITIONS: &[(&str, &str, &str)] = &[
    ("equal_variables", r#"[ "$a" = "$c" ]"#, "yes"),
    ("different_variables", r#"[ "$a" = "$b" ]"#, "no"),
    ("not_equal", r#"[ "$a" != "$b" ]"#, "yes"),
    ("double_equals", r#"[ "$a" == 3 ]"#, "yes"),
    ("and", r#"[ "$a" = 3 -a "$b" = 4 ]"#, "yes"),
    ("or", r#"[ "$a" = 9 -o "$b" = 4 ]"#, "yes"),
    ("not", r#"! [ "$a" = 9 ]"#, "yes"),
    ("empty_unset", r#"[ -z "$u" ]"#, "yes"),
    ("nonempty", r#"[ -n "$a" ]"#, "yes"),
    // An unquoted empty variable vanishes, and `[ = x ]` is true: always quote.
    ("unquoted_unset_equals_x", r#"[ $u = x ]"#, "yes"),
    ("quoted_unset_equals_x", r#"[ "$u" = x ]"#, "no"),
    ("numeric_less", r#"[ "9" -lt "10" ]"#, "yes"),
    // `<` and `>` compare strings.
    ("string_greater", r#"[ "10" \> "9" ]"#, "no"),
    // A word that is not a number makes `-eq` print `error: unrecognized number.` and come out true.
    ("non_number_eq_zero", r#"[ "abc" -eq 0 ]"#, "yes"),
    ("regexp_match", r#"regexp '^[0-9]$' "7""#, "yes"),
    ("regexp_no_match", r#"regexp '^[0-9]$' "12""#, "no"),
    ("file_exists", "[ -f ($root)/env/a.env ]", "yes"),
    ("file_missing", "[ -e ($root)/env/nope.env ]", "no"),
    ("file_nonempty", "[ -s ($root)/env/a.env ]", "yes"),
    ("directory", "[ -d ($root)/env ]", "yes"),
    // A function reports the status of its last command.
    ("function_status_true", "edge_is_one 1", "yes"),
    ("function_status_false", "edge_is_one 2", "no"),
    ("load_env_in_function", "edge_load a", "yes"),
    ("failed_load_env_in_function", "edge_load nope", "no"),
];

/// Scripts that leave a value in `$r`, and the value.
const VALUES: &[(&str, &str, &str)] = &[
    // No arithmetic: `+` is just a character, and no module has an `expr` (an unknown command leaves `$?` at 0).
    ("plus_is_text", "r=$a+1", "3+1"),
    ("no_expr", "expr 1 + 1; r=$?", "0"),
    // A try counter goes down through a chain of comparisons; at 0 it stays 0.
    ("decrement_3", "t=3; edge_dec; r=$t", "2"),
    ("decrement_1", "t=1; edge_dec; r=$t", "0"),
    ("decrement_0", "t=0; edge_dec; r=$t", "0"),
    ("decrement_twice", "t=3; edge_dec; edge_dec; r=$t", "1"),
    ("function_return_code", "edge_ret 3; r=$?", "3"),
    // Names built from variables and arguments, as in `set edge_whole_$1=1`.
    ("dynamic_name", "k=1; set v_$k=dyn; r=$v_1", "dyn"),
    ("dynamic_name_in_function", "edge_mark 0; r=$edge_whole_0", "1"),
    // An unquoted variable splits into words for `for`, `unset` and any command's arguments.
    ("for_splits_unquoted", r#"l="a b c"; r=; for v in $l; do r="$r$v"; done"#, "abc"),
    ("unset_by_variable", r#"w=1; n=w; unset $n; r="($w)""#, "()"),
    ("regexp_capture", r#"regexp --set=1:r '^gen([0-9])$' "gen2""#, "2"),
    ("while_loop", r#"r=0; while [ "$r" != 2 ]; do if [ "$r" = 0 ]; then r=1; else r=2; fi; done"#, "2"),
    ("eval", r#"eval "r=from_eval""#, "from_eval"),
];

/// What GRUB script can test and compute: comparisons, numbers, no arithmetic, and how a try counter goes down.
#[test]
fn grub_script_facts() {
    let dir = scratch("script");
    let mut cfg = String::from(
        r#"
function edge_dec {
    if [ "$t" = 3 ]; then t=2
    elif [ "$t" = 2 ]; then t=1
    elif [ "$t" = 1 ]; then t=0
    fi
}
function edge_is_one { if [ "$1" = 1 ]; then true; else false; fi; }
function edge_ret { return $1; }
function edge_load { load_env -f ($root)/env/$1.env; }
function edge_mark { set edge_whole_$1=1; }
a=3
b=4
c=3
unset u
"#,
    );
    for (name, condition, _) in CONDITIONS {
        cfg.push_str(&format!("unset r\nif {condition}; then r=yes; else r=no; fi\necho \"EDGE-FACT {name} [$r]\"\n"));
    }
    for (name, script, _) in VALUES {
        cfg.push_str(&format!("unset r\n{script}\necho \"EDGE-FACT {name} [$r]\"\n"));
    }
    cfg.push_str("true && echo \"EDGE-AND-AND\"\necho \"EDGE-END\"\nhalt\n");
    let image = build(&GrubImage::new(cfg).file("env/a.env", editenv(&[("x", "1")])), &dir, "script.img");
    let log = boot("script", &image);
    for (name, _, expected) in CONDITIONS.iter().chain(VALUES) {
        assert_line(&log, &format!("EDGE-FACT {name} [{expected}]"));
    }
    assert_line(&log, "error: unrecognized number.");
    assert_line(&log, "error: can't find command `expr'.");
    // `&&` is not GRUB script: the line is a syntax error, nothing of it runs, and the script goes on.
    assert_line(&log, "error: syntax error.");
    assert!(!log.has_line("EDGE-AND-AND"), "console tail:\n{}", log.tail(60));
    assert_line(&log, "EDGE-END");
}

/// The harness itself: stopping at a console text, timing out, and a disk without the grub.cfg.
#[test]
fn harness_stops_times_out_and_reports_a_missing_cfg() {
    let dir = scratch("harness");
    let hang = build(&GrubImage::new("echo \"EDGE-HANG-START\"\nwhile true; do sleep 1; done\n"), &dir, "hang.img");
    let stopped = ok(harness().boot_with(&hang, &BootOptions::new(TIMEOUT).stop_at("EDGE-HANG-START")));
    eprintln!("[harness stop_at] boot took {:.1?}", stopped.elapsed());
    assert_eq!(stopped.end(), BootEnd::Stopped);
    assert_line(&stopped, "EDGE-HANG-START");

    // The guest never powers off, so any timeout expires.
    let timed_out = harness().boot(&hang, Duration::from_millis(500));
    assert!(matches!(timed_out, Err(Error::BootTimeout { .. })), "{timed_out:?}");

    let no_cfg = build(&GrubImage::new("halt\n"), &dir, "no_cfg.img");
    ok(no_cfg.delete_file(GRUB_CFG_PATH));
    let log = boot("no_cfg", &no_cfg);
    assert_eq!(log.end(), BootEnd::PoweredOff);
    assert_line(&log, MARKER_NOT_FOUND);
}

/// Bad image specifications fail before anything is written, each with its variant.
#[test]
fn image_builder_rejects_bad_input() {
    let dir = scratch("bad_input");
    let path = dir.path().join("bad.img");
    let check = |spec: GrubImage, expected: &dyn Fn(&Error) -> bool| {
        let result = spec.build(harness(), &path);
        assert!(result.as_ref().is_err_and(expected), "{result:?}");
    };
    check(GrubImage::new("").size_mib(4), &|e| matches!(e, Error::ImageSize { size_mib: 4 }));
    check(GrubImage::new("").size_mib(2048), &|e| matches!(e, Error::ImageSize { size_mib: 2048 }));
    check(GrubImage::new("").file("../a.env", Vec::new()), &|e| matches!(e, Error::BadName { .. }));
    check(GrubImage::new("").file("/a.env", Vec::new()), &|e| matches!(e, Error::BadName { .. }));
    check(GrubImage::new("").file("efi/boot/GRUB.CFG", Vec::new()), &|e| matches!(e, Error::BadName { .. }));
    check(GrubImage::new("").file("a.env", Vec::new()).file("A.ENV", Vec::new()), &|e| {
        matches!(e, Error::BadName { .. })
    });
    assert!(!path.exists(), "nothing is written for a bad specification");

    let image = build(&GrubImage::new("halt\n").file("env/a.env", b"abc".to_vec()), &dir, "good.img");
    assert_eq!(ok(qemu_tests::read_file(&image, "env/a.env")), b"abc");
    assert!(matches!(image.read_file("env/nope.env"), Err(Error::Command { .. })));
}
