//! Golden files: `examples/sample.jsonl` (the README's sample) must produce
//! exactly the records in `examples/expected/`. A behaviour change shows up
//! here as a diff; regenerate the expected files deliberately when intended:
//! `reflex run --input examples/sample.jsonl --output-dir examples/expected`
//! (then delete `detections.jsonl`, which is not pinned).

use std::process::Command;

#[test]
fn sample_produces_the_expected_records() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_reflex"))
        .current_dir(root)
        .args(["run", "--input", "examples/sample.jsonl", "--output-dir"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["incidents", "actions", "escalations", "dlq"] {
        let got = std::fs::read_to_string(out.path().join(format!("{f}.jsonl"))).unwrap();
        let want = std::fs::read_to_string(format!("{root}/examples/expected/{f}.jsonl")).unwrap();
        assert_eq!(got, want, "{f}.jsonl differs from examples/expected");
    }
}
