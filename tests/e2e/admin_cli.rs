//! `imageapi-server createsuperuser`: the Django-style way to get the first admin.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::{server_binary, spawn_app, ServerOptions, TestApp, TestUser};

/// Runs `createsuperuser` on the app's metadata (its data dir, or its PostgreSQL database).
fn createsuperuser(app: &TestApp, username: &str, password: &str) -> std::process::Output {
    let mut command = Command::new(server_binary());
    command.env_clear();
    if let Some(url) = app.database_url() {
        command.env("IMAGEAPI_DATABASE_URL", url);
    }
    let mut child = command
        .args(["createsuperuser", "--username", username, "--password-stdin"])
        .env("IMAGEAPI_DATA_DIR", app.data_dir())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start createsuperuser");
    // The command may refuse (e.g. a locked database) and exit before reading its stdin:
    // a broken pipe here is that refusal, which the exit status and stderr then show.
    match child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write password: {e}"),
        _ => {}
    }
    child.wait_with_output().expect("createsuperuser finishes")
}

#[test]
fn createsuperuser_makes_an_admin_who_can_use_the_admin_api() {
    // Arrange: a data dir with no server running on it
    let mut app = spawn_app();
    app.kill();

    // Act
    let out = createsuperuser(&app, "root.admin", "a-long-secret");
    app.start_again(ServerOptions::default());

    // Assert
    assert!(out.status.success(), "createsuperuser failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("root.admin"));
    let root =
        TestUser { id: String::new(), username: "root.admin".into(), password: "a-long-secret".into(), token: None };
    let me = app.get_as(&root, "/api/v1/me");
    me.assert_status(200);
    assert_eq!(me.json()["is_admin"], json!(true));
    app.get_as(&root, "/api/v1/admin/users").assert_status(200);
    app.get_as(&root.with_password("wrong-password"), "/api/v1/me").assert_status(401);
}

#[test]
fn createsuperuser_says_clearly_when_a_running_server_holds_the_database() {
    let app = spawn_app();

    let out = createsuperuser(&app, "late.admin", "a-long-secret");

    if app.database_url().is_some() {
        // PostgreSQL is shared by design: the admin is made beside the running server.
        assert!(out.status.success(), "createsuperuser failed: {}", String::from_utf8_lossy(&out.stderr));
        let late = TestUser {
            id: String::new(),
            username: "late.admin".into(),
            password: "a-long-secret".into(),
            token: None,
        };
        app.get_as(&late, "/api/v1/admin/users").assert_status(200);
        return;
    }
    assert!(!out.status.success(), "must fail while the server runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by a running imageapi-server"), "unclear message: {stderr}");
}

#[test]
fn createsuperuser_rejects_a_short_password_and_changes_nothing() {
    let mut app = spawn_app();
    app.kill();

    let out = createsuperuser(&app, "shorty", "short");
    app.start_again(ServerOptions::default());

    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    let shorty = TestUser { id: String::new(), username: "shorty".into(), password: "short".into(), token: None };
    app.get_as(&shorty, "/api/v1/me").assert_status(401);
}
