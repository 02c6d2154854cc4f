//! A small filesystem, to see what happens when the disk fills up.
//!
//! [`SmallFs`] is a tmpfs of a given size mounted on a fresh temporary folder, grown or shrunk
//! at will, unmounted on drop. Mounting needs root (CI runs as root); where it cannot be
//! done, [`SmallFs::mount`] says so on stderr and returns `None` so the test can pass without
//! it — unless `IMAGEAPI_REQUIRE_ROOT_TESTS` is set (CI sets it), which makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to make tests that need a mount fail rather than skip where they cannot mount.
pub const REQUIRE_ROOT_TESTS: &str = "IMAGEAPI_REQUIRE_ROOT_TESTS";

/// A mounted tmpfs; unmounted (lazily, so a process still inside cannot block it) on drop.
#[derive(Debug)]
pub struct SmallFs {
    path: PathBuf,
}

impl SmallFs {
    /// A tmpfs of `bytes` (rounded up to whole KiB), or `None` where this process cannot mount.
    pub fn mount(bytes: u64) -> Option<Self> {
        let path = std::env::temp_dir().join(format!("imageapi-smallfs-{}", ulid::Ulid::new()));
        if let Err(e) = std::fs::create_dir(&path) {
            panic!("creating {}: {e}", path.display());
        }
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={}k,mode=0777", bytes.div_ceil(1024)), "tmpfs"])
            .arg(&path)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self { path }),
            other => {
                let _ = std::fs::remove_dir(&path);
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => format!("cannot run mount: {e}"),
                };
                super::unavailable(
                    REQUIRE_ROOT_TESTS,
                    &format!("this test mounts a small tmpfs, which needs root ({why})"),
                );
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Grows (or shrinks) the filesystem to `bytes`; what is on it stays.
    pub fn resize(&self, bytes: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={}k", bytes.div_ceil(1024))])
            .arg(&self.path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(out.status.success(), "remounting {}: {}", self.path.display(), String::from_utf8_lossy(&out.stderr));
    }

    /// Bytes an unprivileged writer can still use.
    pub fn available(&self) -> u64 {
        fs2::available_space(&self.path).unwrap_or_else(|e| panic!("statvfs {}: {e}", self.path.display()))
    }

    /// Takes all but `leave` bytes of the free space with a filler file (`filler` in the root),
    /// so that the next writes meet a full disk; [`Self::unfill`] gives the room back.
    pub fn fill_leaving(&self, leave: u64) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap_or_else(|e| panic!("creating the filler: {e}"));
        let chunk = vec![0u8; 64 * 1024];
        loop {
            let free = self.available();
            if free <= leave {
                break;
            }
            let n = (free - leave).min(chunk.len() as u64) as usize;
            if file.write_all(&chunk[..n]).and_then(|()| file.flush()).is_err() {
                break;
            }
        }
    }

    /// Removes the filler of [`Self::fill_leaving`].
    pub fn unfill(&self) {
        let _ = std::fs::remove_file(self.filler());
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
