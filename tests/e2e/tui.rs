//! The admin TUI end to end: the real `imageapi-tui` binary in a pseudo-terminal (util-linux
//! `script` provides it) against a real server. Keys go in as a terminal would send them;
//! the results are checked through the HTTP API.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{eventually, server_binary, spawn_app, TestApp};

const ENTER: &str = "\r";
const TAB: &str = "\t";

struct Tui {
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Tui {
    fn start(app: &TestApp) -> Self {
        Self::start_with(app, "auto")
    }

    /// With previews drawn as `graphics` (`halfblocks`, `auto`, …).
    fn start_with(app: &TestApp, graphics: &str) -> Self {
        let binary = server_binary().with_file_name(format!("imageapi-tui{}", std::env::consts::EXE_SUFFIX));
        // A real terminal of 80×24, as the issue asks to support.
        let shell = format!(
            "stty rows 24 cols 80; exec '{}' --url '{}' --username '{}'",
            binary.display(),
            app.address,
            app.admin.username
        );
        let mut child = Command::new("script")
            .args(["-qfec", &shell, "/dev/null"])
            .env("IMAGEAPI_PASSWORD", &app.admin.password)
            .env("TERM", "xterm-256color")
            .env("IMAGEAPI_TUI_GRAPHICS", graphics)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start imageapi-tui under script(1) (util-linux)");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().expect("piped");
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("screen").extend_from_slice(&chunk[..n]);
            }
        });
        Self { child, screen }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen")).into_owned()
    }

    /// The screen as a terminal would show it now (the output replayed through a VT100
    /// parser: ratatui redraws only the cells that changed).
    fn screen(&self) -> String {
        let mut parser = vt100::Parser::new(24, 80, 0);
        parser.process(&self.screen.lock().expect("screen"));
        parser.screen().contents()
    }

    /// Cells in the rectangle (rows and columns, 0-based, end exclusive) drawn as half blocks
    /// in two colours: a picture.
    fn picture_cells(&self, rows: std::ops::Range<u16>, cols: std::ops::Range<u16>) -> usize {
        let mut parser = vt100::Parser::new(24, 80, 0);
        parser.process(&self.screen.lock().expect("screen"));
        let screen = parser.screen();
        rows.flat_map(|r| cols.clone().map(move |c| (r, c)))
            .filter(|&(r, c)| {
                screen.cell(r, c).is_some_and(|cell| {
                    matches!(cell.contents(), "▀" | "▄")
                        && cell.bgcolor() != vt100::Color::Default
                        && cell.fgcolor() != vt100::Color::Default
                })
            })
            .count()
    }

    fn wait_for(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !self.screen().contains(text) {
            if std::time::Instant::now() > deadline {
                panic!("timed out after 20s waiting for the TUI to show {text:?}; the screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&mut self, keys: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin.write_all(keys.as_bytes()).expect("send keys");
        stdin.flush().expect("flush keys");
        // Let the event loop take them in order before the next step looks.
        std::thread::sleep(Duration::from_millis(150));
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_admin_creates_a_tier_and_a_user_from_the_tui() {
    let app = spawn_app();
    let mut tui = Tui::start(&app);
    tui.wait_for("Users");
    tui.wait_for("admin");

    // A tier: view 2, n, id, name, heights, original link on, save.
    tui.keys("2");
    tui.wait_for("Tiers (3)");
    tui.keys("n");
    tui.wait_for("New tier");
    tui.keys(&["bronze", TAB, "Bronze", TAB, "100, 300", TAB, " ", ENTER].concat());
    let tier = eventually(Duration::from_secs(20), "the tier to exist", || {
        let reply = app.get_tier("bronze");
        (reply.status == 200).then(|| reply.json())
    });
    assert_eq!(tier["name"], "Bronze");
    assert_eq!(tier["thumbnail_heights"], serde_json::json!([100, 300]));
    assert_eq!((tier["original_link"].as_bool(), tier["expiring_links"].as_bool()), (Some(true), Some(false)));
    tui.wait_for("created tier bronze");

    // A user: view 1, n, username, password, tier stays basic, save.
    tui.keys("1");
    tui.keys("n");
    tui.wait_for("New user");
    tui.keys(&["dave", TAB, "dave-password-1", ENTER].concat());
    let user = eventually(Duration::from_secs(20), "the user to exist", || {
        let users = app.list_users().json();
        users["results"].as_array()?.iter().find(|u| u["username"] == "dave").cloned()
    });
    assert_eq!(
        (user["tier"].as_str(), user["is_admin"].as_bool(), user["is_active"].as_bool()),
        (Some("basic"), Some(false), Some(true))
    );
    tui.wait_for("created user dave");

    // The new user can sign in with the password typed in the TUI.
    let dave = crate::helpers::TestUser {
        id: user["id"].as_str().unwrap_or_default().to_owned(),
        username: "dave".into(),
        password: "dave-password-1".into(),
        token: None,
    };
    app.me(&dave).assert_status(200);

    tui.keys("q");
    let status = eventually(Duration::from_secs(10), "the TUI to exit", || tui.child.try_wait().ok().flatten());
    assert!(status.success(), "q quits cleanly: {status}");
    assert!(tui.output().contains("\x1b[?1049l"), "the alternate screen was left (terminal restored)");
}

#[test]
fn an_admin_previews_an_image_and_deletes_it_from_the_tui() {
    let app = spawn_app();
    let owner = app.create_user("enterprise");
    let image = app.upload_ok(&owner, "moderate-me.jpg", &crate::fixtures::jpeg_seeded(600, 400, 5));
    let image_id = image["id"].as_str().expect("an id").to_owned();
    app.wait_until_ready(&owner, &image_id);
    let link = app.create_link_ok(&owner, &image_id, &serde_json::json!({"expires_in": 600}));
    let link_url = link["url"].as_str().expect("a link url").to_owned();
    // The TUI lists users by name, as the API does.
    let users = app.list_users().json();
    let position = users["results"]
        .as_array()
        .and_then(|all| all.iter().position(|u| u["id"] == serde_json::json!(owner.id)))
        .expect("the owner is listed");

    let mut tui = Tui::start_with(&app, "halfblocks");
    tui.wait_for("Users");
    tui.keys("3");
    tui.wait_for("Preview");
    tui.keys(&"j".repeat(position));
    tui.wait_for("moderate-me.jpg");
    tui.keys("l");
    tui.wait_for(&format!("owner  {}", owner.username));
    tui.wait_for("(enterprise)");
    tui.wait_for("1 live link(s)");
    // The preview pane (rows 12-21, columns 21-46 at 80×24) fills with the picture.
    eventually(Duration::from_secs(20), "the preview to be drawn", || {
        (tui.picture_cells(12..22, 21..47) >= 40).then_some(())
    });

    tui.keys("d");
    tui.wait_for("Delete image moderate-me.jpg");
    tui.keys("y");
    tui.wait_for("deleted image moderate-me.jpg");
    app.admin_image(&image_id).assert_problem(404);
    app.get_image(&owner, &image_id).assert_problem(404);
    app.get_anonymous(&link_url).assert_problem(404);
    tui.wait_for("no images yet");

    tui.keys("q");
    let status = eventually(Duration::from_secs(10), "the TUI to exit", || tui.child.try_wait().ok().flatten());
    assert!(status.success(), "q quits cleanly: {status}");
    assert!(tui.output().contains("\x1b[?1000l"), "mouse capture was turned off (terminal restored)");
}
