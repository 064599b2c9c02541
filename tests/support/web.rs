//! The web side of the tests: a minimal HTTP/1.1 client (chromedriver's WebDriver API, the
//! dashboard's routes, an identity provider's pages) and a headless browser (Debian's chromium
//! driven over WebDriver by chromedriver), for what a person does in a browser.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::eventually;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (for chromedriver's WebDriver API and the dashboard's own routes):
// one request per connection, blocking, run off the async workers.

pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || body.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[(end + 2 + size + 2).min(body.len())..];
    }
    out
}

pub fn http_blocking(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n");
    for (k, v) in headers {
        request += &format!("{k}: {v}\r\n");
    }
    if body.is_some() {
        request += &format!(
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
            payload.len()
        );
    }
    request += "\r\n";
    request += &payload;
    stream.write_all(request.as_bytes())?;
    // Read the head, then the body by its length (servers may keep the connection open).
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            anyhow::bail!("no HTTP header in the reply from {addr}{path}");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let lower = head.to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    let mut body = raw[split + 4..].to_vec();
    loop {
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    if let Some(n) = length {
        body.truncate(n);
    } else if chunked {
        body = dechunk(&body);
    }
    Ok(Reply {
        status,
        headers: head,
        body,
    })
}

pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> anyhow::Result<Reply> {
    let (addr, method, path) = (addr.to_string(), method.to_string(), path.to_string());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http_blocking(&addr, &method, &path, &headers, body.as_ref())
    })
    .await?
}

// ---------------------------------------------------------------------------------------------
// WebDriver

pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
    profile: std::path::PathBuf,
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// Starts chromedriver and a headless chromium session; `None` when they are not installed
    /// (an error instead when `CWSM_REQUIRE_BROWSER=1`, as CI sets).
    pub async fn start() -> anyhow::Result<Option<Browser>> {
        let (Some(driver), Some(chromium)) = (which("chromedriver"), which("chromium")) else {
            if std::env::var("CWSM_REQUIRE_BROWSER").as_deref() == Ok("1") {
                anyhow::bail!(
                    "chromium and chromedriver are required (CWSM_REQUIRE_BROWSER=1): apt-get install -y chromium chromium-driver"
                );
            }
            eprintln!("skipped the browser: chromium or chromedriver not installed");
            return Ok(None);
        };
        let port = free_port()?;
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let addr = format!("127.0.0.1:{port}");
        let profile =
            std::env::temp_dir().join(format!("cwsm-chromium-{}", cwsm_platform::new_id()));
        let mut browser = Browser {
            driver: child,
            addr,
            session: String::new(),
            profile,
        };
        let ready = eventually(WAIT, || {
            let addr = browser.addr.clone();
            async move {
                let reply = http(&addr, "GET", "/status", &[], None).await.ok()?;
                let v = reply.json().ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        if ready.is_none() {
            anyhow::bail!("chromedriver did not become ready");
        }
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--hide-scrollbars".into(),
            "--window-size=1440,2400".into(),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
        }}});
        let reply = http(&browser.addr, "POST", "/session", &[], Some(caps)).await?;
        let v = reply.json()?;
        browser.session = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no WebDriver session: {}", reply.text()))?
            .to_string();
        Ok(Some(browser))
    }

    pub async fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let path = format!("/session/{}{path}", self.session);
        let reply = http(&self.addr, method, &path, &[], body).await?;
        let v = reply.json()?;
        if reply.status != 200 {
            anyhow::bail!(
                "WebDriver {method} {path}: {} {}",
                reply.status,
                reply.text()
            );
        }
        Ok(v["value"].clone())
    }

    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await
            .map(|_| ())
    }

    pub async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// The address the browser is at.
    pub async fn current_url(&self) -> anyhow::Result<String> {
        let v = self.command("GET", "/url", None).await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Forgets the cookies of the page's site (an identity provider's session, so that the next
    /// sign-in there shows its login page again).
    pub async fn delete_cookies(&self) -> anyhow::Result<()> {
        self.command("DELETE", "/cookie", None).await.map(|_| ())
    }

    /// The WebDriver id of the element `css` selects, if the page has one now.
    pub async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .command(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .ok()?;
        // The W3C element reference key.
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .map(str::to_string)
    }

    /// Types `text` into the element `id` (key by key, as a person would).
    pub async fn type_into(&self, id: &str, text: &str) -> anyhow::Result<()> {
        self.command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(|_| ())
    }

    /// Clicks the element `id`.
    pub async fn click(&self, id: &str) -> anyhow::Result<()> {
        self.command("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await
            .map(|_| ())
    }

    /// A screenshot of the whole page (the window grown to its height first).
    pub async fn screenshot(&self, path: &str) -> anyhow::Result<()> {
        let height = self
            .eval("return document.documentElement.scrollHeight;")
            .await?
            .as_u64()
            .unwrap_or(2400)
            .clamp(600, 8000);
        self.command(
            "POST",
            "/window/rect",
            Some(json!({ "width": 1440, "height": height })),
        )
        .await?;
        let v = self.command("GET", "/screenshot", None).await?;
        let png =
            base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default())?;
        std::fs::write(path, png)?;
        Ok(())
    }

    pub async fn quit(mut self) {
        let _ = self.command("DELETE", "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
