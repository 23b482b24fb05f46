//! A scripted stand-in for the endpoint web service: a real HTTP server on loopback whose
//! answers a test sets and changes, and which records what it was asked.

use std::{
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

/// What the server answers a method ("version" or "endpoints") with.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Wait this long before answering (a hang past the client's timeout).
    pub delay: Duration,
}

impl Answer {
    pub fn ok(body: impl Into<String>) -> Answer {
        Answer {
            status: 200,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            body: String::new(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

/// `{"instance": "Worldwide", "latest": VERSION}`, as the version method answers.
pub fn version_body(version: &str) -> String {
    format!(r#"{{"instance": "Worldwide", "latest": "{version}"}}"#)
}

#[derive(Default)]
struct Script {
    version: Option<Answer>,
    endpoints: Option<Answer>,
    /// Answers for other paths (a download), by path.
    files: std::collections::HashMap<String, Answer>,
    requests: Vec<String>,
}

pub struct FakeService {
    pub url: String,
    script: Arc<Mutex<Script>>,
    server: Arc<tiny_http::Server>,
}

impl FakeService {
    pub fn start() -> FakeService {
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind the fake service"));
        let url = format!("http://{}", server.server_addr());
        let script = Arc::new(Mutex::new(Script::default()));
        let (srv, scr) = (server.clone(), script.clone());
        thread::spawn(move || {
            for request in srv.incoming_requests() {
                let path = request.url().to_string();
                let answer = {
                    let mut s = scr.lock().expect("script");
                    s.requests.push(path.clone());
                    if path.starts_with("/version/") {
                        s.version.clone()
                    } else if path.starts_with("/endpoints/") {
                        s.endpoints.clone()
                    } else {
                        s.files.get(&path).cloned()
                    }
                };
                let answer = answer.unwrap_or_else(|| Answer::status(404));
                // Each answer on its own thread, so a slow one does not hold up the next.
                thread::spawn(move || {
                    thread::sleep(answer.delay);
                    let mut response = tiny_http::Response::from_string(answer.body)
                        .with_status_code(answer.status);
                    for (name, value) in &answer.headers {
                        if let Ok(h) =
                            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                        {
                            response.add_header(h);
                        }
                    }
                    let _ = request.respond(response);
                });
            }
        });
        FakeService {
            url,
            script,
            server,
        }
    }

    pub fn set_version(&self, answer: Answer) {
        self.script.lock().expect("script").version = Some(answer);
    }

    pub fn set_endpoints(&self, answer: Answer) {
        self.script.lock().expect("script").endpoints = Some(answer);
    }

    /// What a GET of `path` (a download) is answered with.
    pub fn set_file(&self, path: &str, answer: Answer) {
        self.script
            .lock()
            .expect("script")
            .files
            .insert(path.into(), answer);
    }

    /// The request paths (with query) received so far, and forgets them.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut self.script.lock().expect("script").requests)
    }
}

impl Drop for FakeService {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// Log lines captured from `tracing`, for asserting what was logged.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }

    pub fn clear(&self) {
        self.0.lock().expect("logs").clear();
    }

    /// A subscriber writing plain lines here.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let logs = self.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || logs.clone())
            .finish()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
