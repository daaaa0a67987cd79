//! Under CI the Kafka tests must FAIL, not skip, when no broker is configured.

mod common;

#[test]
fn missing_broker_fails_under_ci() {
    // Run this test binary's sibling check in a child process with CI set
    // and REFLEX_TEST_BROKERS removed: `brokers()` must panic there.
    if std::env::var("REFLEX_CI_GUARD_CHILD").is_ok() {
        let _ = common::brokers();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["missing_broker_fails_under_ci", "--exact", "--nocapture"])
        .env("REFLEX_CI_GUARD_CHILD", "1")
        .env("CI", "true")
        .env_remove("REFLEX_TEST_BROKERS")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "brokers() must fail under CI without a broker"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REFLEX_TEST_BROKERS is not set but CI is")
    );
}
