//! Test support used by the unit tests of several crates and by the black-box suite: real
//! services and real filesystems, started privately for one test.
//!
//! - [`small_fs`]: a small tmpfs, to fill a disk on purpose (needs root).
//! - [`postgres`]: a private PostgreSQL server from the installed server programs.
//!
//! Each says on stderr and gives `None` where what it needs is missing (a program, root), so
//! a contributor's first `cargo nextest run` passes — unless the matching
//! `IMAGEAPI_REQUIRE_*` variable is set (CI sets them all), which makes that a failure.

pub mod postgres;
pub mod small_fs;

/// Says why a test cannot run here, and fails it if `require` names a set variable.
pub fn unavailable(require: &str, why: &str) {
    if std::env::var_os(require).is_some() {
        panic!("{require} is set, but {why}");
    }
    eprintln!("skipped: {why} (set {require} to make that a failure)");
}
