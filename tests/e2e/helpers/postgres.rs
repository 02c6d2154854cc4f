//! A PostgreSQL database of a test's own, dropped afterwards: on a private server started for
//! the test (`imageapi_shared::testing::postgres`), or on the server `IMAGEAPI_E2E_POSTGRES`
//! names.
//!
//! `IMAGEAPI_E2E_POSTGRES` also runs every test app on PostgreSQL instead of sled: an admin URL
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`) puts them all on that server, `private`
//! gives each app a private server. Tests about several servers on one database make one with
//! [`TestDatabase::create`] whatever the variable says. Databases are made and dropped with
//! `psql`.

use std::process::Command;

use imageapi_shared::testing::postgres::PrivatePostgres;

/// The server `IMAGEAPI_E2E_POSTGRES` names, if it names one (not `private`).
fn named_server() -> Option<String> {
    std::env::var("IMAGEAPI_E2E_POSTGRES").ok().filter(|url| !url.is_empty() && url != "private")
}

/// Whether this run puts every test app on PostgreSQL.
pub fn postgres_for_every_app() -> bool {
    std::env::var("IMAGEAPI_E2E_POSTGRES").is_ok_and(|url| !url.is_empty())
}

pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// Stopped after the database is dropped (fields drop after `Drop::drop`).
    _server: Option<PrivatePostgres>,
}

fn psql(admin_url: &str, sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .args(["--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "-d", admin_url, "-c", sql])
        .output()
        .map_err(|e| format!("could not run psql (Debian: postgresql-client): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

impl TestDatabase {
    /// A database on `IMAGEAPI_E2E_POSTGRES`'s server, or on a private one; `None` (said on
    /// stderr; a failure with `IMAGEAPI_REQUIRE_POSTGRES`) where PostgreSQL is not installed.
    pub fn create() -> Option<Self> {
        let (admin_url, server) = match named_server() {
            Some(url) => (url, None),
            None => {
                let server = PrivatePostgres::start()?;
                (server.admin_url(), Some(server))
            }
        };
        let name = format!("imageapi_e2e_{}", super::random_hex());
        psql(&admin_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating a test database on {admin_url}: {e}"));
        Some(Self { admin_url, name, _server: server })
    }

    /// The URL servers get as `IMAGEAPI_DATABASE_URL`.
    pub fn url(&self) -> String {
        let base = self.admin_url.rsplit_once('/').map(|(base, _)| base).unwrap_or(&self.admin_url);
        format!("{base}/{}", self.name)
    }

    /// Stops (`false`) or again allows (`true`) connections to this database; stopping also
    /// ends the open ones, as a database restart would.
    pub fn allow_connections(&self, allowed: bool) {
        psql(&self.admin_url, &format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allowed}", self.name))
            .unwrap_or_else(|e| panic!("ALTER DATABASE: {e}"));
        if !allowed {
            let sql = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'", self.name);
            psql(&self.admin_url, &sql).unwrap_or_else(|e| panic!("terminating connections: {e}"));
        }
    }

    /// Runs SQL on this database (tests that look at what the server stored).
    pub fn query(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .args(["--no-psqlrc", "-At", "-v", "ON_ERROR_STOP=1", "-d", &self.url(), "-c", sql])
            .output()
            .expect("run psql");
        assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Err(e) = psql(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}
