//! A private PostgreSQL server for one test, from the installed server programs — as the Redis
//! tests start their own `redis-server`, so no test depends on a server already listening.
//!
//! [`PrivatePostgres::start`] copies a cluster made once by `initdb` (kept in the temporary
//! folder, one per PostgreSQL version: `initdb` takes a second, a copy a fraction of it) and
//! starts it with `pg_ctl` on a free port, without fsync (a test's data need not survive a
//! power cut). It is stopped and removed on drop. `initdb` refuses to run as root, so as root
//! (CI) the cluster belongs to, and runs as, the `postgres` system user (`runuser`), which
//! Debian's server package creates.
//!
//! `IMAGEAPI_TEST_POSTGRES_URL` names an existing server (an admin URL) to use instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Set to make PostgreSQL tests fail rather than skip where no server can be had.
pub const REQUIRE_POSTGRES: &str = "IMAGEAPI_REQUIRE_POSTGRES";
/// An admin URL of an existing server, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL: &str = "IMAGEAPI_TEST_POSTGRES_URL";

/// Where the tests' PostgreSQL is: an existing server (`IMAGEAPI_TEST_POSTGRES_URL`) or a
/// private one, which lives as long as this value.
pub enum TestPostgres {
    Existing(String),
    Private(PrivatePostgres),
}

impl TestPostgres {
    /// `IMAGEAPI_TEST_POSTGRES_URL`'s server, or a private one; `None` (said on stderr) where
    /// neither is to be had.
    pub fn get() -> Option<Self> {
        match std::env::var(POSTGRES_URL).ok().filter(|url| !url.is_empty()) {
            Some(url) => Some(Self::Existing(url)),
            None => PrivatePostgres::start().map(Self::Private),
        }
    }

    /// A URL to connect as the superuser, to the `postgres` database.
    pub fn admin_url(&self) -> String {
        match self {
            Self::Existing(url) => url.clone(),
            Self::Private(server) => server.admin_url(),
        }
    }
}

pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    programs: Programs,
}

#[derive(Clone)]
struct Programs {
    bin: PathBuf,
    /// Run them as the `postgres` user (this process is root).
    as_postgres: bool,
}

impl Programs {
    fn find() -> Result<Self, String> {
        let bin = server_bin()
            .ok_or("PostgreSQL's server programs (initdb, pg_ctl) are not installed (Debian: postgresql)")?;
        let as_postgres = is_root();
        if as_postgres && !Command::new("id").arg("postgres").output().is_ok_and(|o| o.status.success()) {
            return Err("running as root, but there is no `postgres` user to run PostgreSQL as".to_owned());
        }
        Ok(Self { bin, as_postgres })
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command.args(args).output().map_err(|e| format!("running {}: {e}", path.display()))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(format!("{program} failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
        }
    }

    /// Makes `dir` (and what is in it) the server user's, where that is another user.
    fn hand_over(&self, dir: &Path) -> Result<(), String> {
        if !self.as_postgres {
            return Ok(());
        }
        let out =
            Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).output().map_err(|e| e.to_string())?;
        out.status.success().then_some(()).ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The folder of `initdb` and `pg_ctl`: `IMAGEAPI_PG_BIN`, PATH, or Debian's versioned folders
/// (newest first).
fn server_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("IMAGEAPI_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A cluster made by `initdb` once per PostgreSQL version, to copy from.
fn template(programs: &Programs) -> Result<PathBuf, String> {
    let version = programs.run("pg_ctl", &["--version"])?;
    let version: String =
        String::from_utf8_lossy(&version.stdout).chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
    let root = std::env::temp_dir().join(format!("imageapi-postgres-template-{version}"));
    let ready = root.join("data").join("PG_VERSION");
    if ready.is_file() {
        return Ok(root.join("data"));
    }
    // Made beside, then renamed into place: tests starting together make one each, one wins.
    let scratch = std::env::temp_dir().join(format!("imageapi-postgres-template-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    programs.hand_over(&scratch)?;
    let data = scratch.join("data");
    let data_arg = data.to_string_lossy().into_owned();
    let made = programs.run("initdb", &["-D", &data_arg, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(e);
    }
    if std::fs::rename(&scratch, &root).is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    if ready.is_file() {
        Ok(root.join("data"))
    } else {
        Err(format!("no cluster at {} after initdb", root.display()))
    }
}

impl PrivatePostgres {
    /// A fresh server, or `None` (said on stderr) where the server programs are missing —
    /// unless `IMAGEAPI_REQUIRE_POSTGRES` is set, which makes that a failure.
    pub fn start() -> Option<Self> {
        match Self::try_start() {
            Ok(server) => Some(server),
            Err(why) => {
                super::unavailable(REQUIRE_POSTGRES, &format!("this test needs PostgreSQL: {why}"));
                None
            }
        }
    }

    fn try_start() -> Result<Self, String> {
        let programs = Programs::find()?;
        let template = template(&programs)?;
        let dir = std::env::temp_dir().join(format!("imageapi-postgres-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let server = Self { dir, port: free_port()?, programs };
        let copied =
            Command::new("cp").arg("-a").arg(&template).arg(server.data()).output().map_err(|e| e.to_string())?;
        if !copied.status.success() {
            return Err(format!("copying the template cluster: {}", String::from_utf8_lossy(&copied.stderr)));
        }
        server.programs.hand_over(&server.dir)?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            server.port,
            server.dir.display()
        );
        let data = server.data().to_string_lossy().into_owned();
        let log = server.dir.join("postgres.log").to_string_lossy().into_owned();
        server.programs.run("pg_ctl", &["-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60", "start"])?;
        // `-w` waits for the socket; the TCP listener is up with it, but make sure.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("PostgreSQL did not listen on port {}", server.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser, to the `postgres` database (trust authentication).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data().to_string_lossy().into_owned();
        let _ = self.programs.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_server_answers_and_is_gone_after_drop() {
        let Some(server) = PrivatePostgres::start() else { return };
        let port = server.port();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(server.admin_url().ends_with(&format!(":{port}/postgres")));
        let dir = server.dir.clone();

        drop(server);

        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped");
        assert!(!dir.exists(), "removed");
    }
}
