//! A client generated from the OpenAPI document works: openapi-python-client (PyPI) builds a
//! Python package from the served document, with no edits to it, and the README's walk-through
//! runs with that package (`tests/client/walkthrough.py`): create a user, upload, list, fetch
//! a thumbnail, create and fetch an expiring link.
//!
//! Needs a Python with `openapi-python-client` installed: `IMAGEAPI_CLIENT_PYTHON` names it
//! (`.ci/run` makes one in `target/ci-venv`). Without it the test says so and passes, unless
//! `IMAGEAPI_REQUIRE_CLIENT_TOOLS` is set (CI sets it).

use std::path::Path;
use std::process::Command;

use crate::fixtures;
use crate::helpers::spawn_app;

#[track_caller]
fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_python_client_generated_from_the_document_runs_the_readme_walk_through() {
    // Arrange
    let Some(python) = std::env::var_os("IMAGEAPI_CLIENT_PYTHON") else {
        let missing = "skipping: IMAGEAPI_CLIENT_PYTHON names no Python with openapi-python-client \
                       (pip install 'openapi-python-client==0.29.*')";
        assert!(std::env::var_os("IMAGEAPI_REQUIRE_CLIENT_TOOLS").is_none(), "{missing}");
        println!("{missing}");
        return;
    };
    let app = spawn_app();
    let work = tempfile::tempdir().expect("a temp dir");
    let png = work.path().join("gradient.png");
    std::fs::write(&png, fixtures::png(900, 600)).expect("write the image");
    let document = app.get_anonymous("/api/openapi.json");
    document.assert_status(200);
    std::fs::write(work.path().join("openapi.json"), &document.body).expect("write the document");
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("client");

    // Act: generate the client, then walk through the README with it
    run(Command::new(&python)
        .current_dir(work.path())
        .args(["-m", "openapi_python_client", "generate", "--path", "openapi.json", "--meta", "none"])
        .args(["--output-path", "imageapi_client", "--config"])
        .arg(tests.join("openapi-python-client.yaml")));
    let mut walk = Command::new(&python);
    walk.arg(tests.join("walkthrough.py"))
        .arg(&app.address)
        .args([&app.admin.username, &app.admin.password])
        .arg(work.path())
        .arg(&png);

    // Assert: every step of the walk-through checks its own answer
    run(&mut walk);
}
