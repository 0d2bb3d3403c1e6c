//! A real S3 server for the tests: moto's standalone server (PyPI `moto[server]`, installed by
//! `scripts/test` into `.venv`), on a free loopback port, stopped by its PID on `Drop`. It
//! honours conditional writes (`If-None-Match: *` answered 412), as AWS S3 does since 2024.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, stop, wait_for};

pub const ACCESS_KEY: &str = "mxpulse-test-key";
pub const SECRET_KEY: &str = "mxpulse-test-secret-do-not-print";

pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    /// Starts a server and creates `bucket` on it.
    pub fn start(log_dir: &Path, bucket: &str) -> S3Server {
        let port = free_port();
        let log = std::fs::File::create(log_dir.join(format!("moto-{port}.log"))).expect("log");
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("run moto_server (scripts/test installs moto[server] into .venv)");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let url = format!("{}/{bucket}", server.endpoint);
        let created = wait_for(Duration::from_secs(30), || {
            super::block_on(async {
                let response = reqwest::Client::new().put(&url).send().await.ok()?;
                response.status().is_success().then_some(())
            })
        });
        assert!(
            created.is_some(),
            "moto did not start on {}",
            server.endpoint
        );
        server
    }

    /// The `[lake]` settings of a lake at `s3://{bucket}/{prefix}` on this server.
    pub fn lake_settings(&self, root: &str) -> String {
        format!(
            "[lake]\nroot = \"{root}\"\ns3_endpoint = \"{}\"\ns3_region = \"us-east-1\"\n\
             s3_access_key_id = \"{ACCESS_KEY}\"\ns3_secret_access_key = \"{SECRET_KEY}\"\n\
             s3_allow_http = true\n",
            self.endpoint
        )
    }

    /// Lets this test process open the tables of the lake at `root` (an `s3://` URL).
    pub fn use_in_process(&self, root: &str) {
        let root = mxpulse_ingest::LakeRoot::parse(root).expect("s3 root");
        mxpulse_ingest::store::use_s3(
            &root,
            mxpulse_ingest::store::S3Settings {
                endpoint: Some(self.endpoint.clone()),
                region: Some("us-east-1".into()),
                access_key_id: Some(ACCESS_KEY.into()),
                secret_access_key: Some(SECRET_KEY.into()),
                allow_http: true,
            },
        );
    }

    /// Every object key in `bucket`, from the server's listing.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let body = super::block_on(async {
            reqwest::get(format!(
                "{}/{bucket}?list-type=2&max-keys=100000",
                self.endpoint
            ))
            .await
            .expect("list")
            .text()
            .await
            .expect("list body")
        });
        body.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn moto_server() -> PathBuf {
    super::python().with_file_name("moto_server")
}

/// An HTTP proxy on loopback in front of an S3 server that drops one request header: with
/// `if-none-match`, a store that ignores conditional writes (as some S3-compatible stores do).
pub struct HeaderDroppingProxy {
    pub endpoint: String,
    task: tokio::task::JoinHandle<()>,
}

impl HeaderDroppingProxy {
    pub async fn start(upstream: &str, dropped: &'static str) -> HeaderDroppingProxy {
        use axum::extract::{Request, State};
        use axum::response::{IntoResponse, Response};

        async fn forward(
            State((upstream, dropped)): State<(String, &'static str)>,
            request: Request,
        ) -> Response {
            let (parts, body) = request.into_parts();
            let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
                return axum::http::StatusCode::BAD_REQUEST.into_response();
            };
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut out = reqwest::Client::new()
                .request(parts.method, format!("{upstream}{path}"))
                .body(body);
            for (name, value) in &parts.headers {
                if name.as_str() != dropped && name != axum::http::header::HOST {
                    out = out.header(name, value);
                }
            }
            match out.send().await {
                Ok(answer) => {
                    let status = answer.status();
                    let headers = answer.headers().clone();
                    let bytes = answer.bytes().await.unwrap_or_default();
                    let mut response = (status, bytes).into_response();
                    for (name, value) in &headers {
                        if name != axum::http::header::CONTENT_LENGTH
                            && name != axum::http::header::TRANSFER_ENCODING
                        {
                            response.headers_mut().insert(name, value.clone());
                        }
                    }
                    response
                }
                Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .fallback(forward)
            .with_state((upstream.to_owned(), dropped));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HeaderDroppingProxy { endpoint, task }
    }
}

impl Drop for HeaderDroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
