//! `app-server admin create-user` as an operator runs it: the password comes from stdin or
//! a file, never from the command line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};

fn create_user(dir: &std::path::Path, email: &str, extra: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_app-server"))
        .args(["admin", "create-user", "--role", "cx", "--email", email, "--name", "Cx"])
        .args(extra)
        .env("APP__DATABASE__URL", format!("sqlite://{}/cli.db", dir.display()))
        .env("APP__LOG__LEVEL", "error")
        .env_remove("HEXRIDE_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run app-server");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("app-server finished")
}

fn created(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the new account as JSON")
}

#[test]
fn the_password_comes_from_stdin_or_a_file_and_never_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let account = created(&create_user(
        dir.path(),
        "stdin@example.com",
        &["--password-stdin"],
        Some("correct horse battery\n"),
    ));
    assert_eq!(
        (account["email"].as_str(), account["role"].as_str()),
        (Some("stdin@example.com"), Some("cx"))
    );

    let file = dir.path().join("password");
    std::fs::write(&file, "correct horse battery\nignored second line\n").unwrap();
    let account = created(&create_user(
        dir.path(),
        "file@example.com",
        &["--password-file", file.to_str().unwrap()],
        None,
    ));
    assert_eq!(account["email"], "file@example.com");

    // The old flag is gone, and without a source (and no terminal) it refuses to guess.
    let refused = create_user(
        dir.path(),
        "argv@example.com",
        &["--password", "correct horse battery"],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--password"),
        "{refused:?}"
    );
    let refused = create_user(dir.path(), "none@example.com", &[], None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no password"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
