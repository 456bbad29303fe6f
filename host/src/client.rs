//! A small Tencent Cloud API 3.0 client: signs each request as the official SDKs do and
//! reuses keep-alive connections. The load generator and the end-to-end tests use it.

use crate::api::actions::Product;
use crate::api::tc3;
use crate::error::{Error, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use zeroize::Zeroizing;

#[derive(Clone)]
pub struct TcClient {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoint: hyper::Uri,
    host: String,
    secret_id: String,
    secret_key: Zeroizing<String>,
    region: String,
}

/// One raw exchange, for tests that need to see or bend the protocol.
pub struct RawRequest<'a> {
    pub version: &'a str,
    pub service: &'a str,
    pub action: &'a str,
    pub body: Vec<u8>,
    /// Overrides the signing timestamp (defaults to now).
    pub timestamp: Option<i64>,
    /// Signs and sends this Host header instead of the endpoint's (tccli sends
    /// `http://127.0.0.1:8080`).
    pub host: Option<String>,
    /// Extra or replacement headers applied after signing.
    pub headers: Vec<(String, String)>,
}

pub struct RawResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl TcClient {
    /// `endpoint` is `http://host:port` (plain HTTP only: the load generator and tests run on
    /// loopback).
    pub fn new(endpoint: &str, secret_id: &str, secret_key: &str, region: &str) -> Result<Self> {
        let endpoint: hyper::Uri = endpoint
            .parse()
            .map_err(|e| Error::Config(format!("endpoint {endpoint}: {e}")))?;
        if endpoint.scheme_str() != Some("http") {
            return Err(Error::Config("the client speaks plain http:// only".into()));
        }
        let host = endpoint
            .authority()
            .ok_or_else(|| Error::Config("endpoint needs host:port".into()))?
            .to_string();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build(connector);
        Ok(TcClient {
            http,
            endpoint,
            host,
            secret_id: secret_id.into(),
            secret_key: Zeroizing::new(secret_key.into()),
            region: region.into(),
        })
    }

    pub fn with_credentials(&self, secret_id: &str, secret_key: &str) -> Self {
        let mut c = self.clone();
        c.secret_id = secret_id.into();
        c.secret_key = Zeroizing::new(secret_key.into());
        c
    }

    /// Calls a KMS action and returns the `Response` object (errors included).
    pub async fn kms(&self, action: &str, body: Value) -> Result<Value> {
        let p = Product::Kms;
        self.call(p.version(), p.service(), action, body).await
    }

    /// Calls a Secrets Manager action and returns the `Response` object (errors included).
    pub async fn ssm(&self, action: &str, body: Value) -> Result<Value> {
        let p = Product::Ssm;
        self.call(p.version(), p.service(), action, body).await
    }

    pub async fn call(
        &self,
        version: &str,
        service: &str,
        action: &str,
        body: Value,
    ) -> Result<Value> {
        let raw = self
            .raw(RawRequest {
                version,
                service,
                action,
                body: serde_json::to_vec(&body).map_err(|e| Error::Internal(e.to_string()))?,
                timestamp: None,
                host: None,
                headers: vec![],
            })
            .await?;
        let v: Value = serde_json::from_slice(&raw.body)
            .map_err(|e| Error::Internal(format!("response is not JSON: {e}")))?;
        v.get("Response")
            .cloned()
            .ok_or_else(|| Error::Internal("response lacks `Response`".into()))
    }

    pub async fn raw(&self, req: RawRequest<'_>) -> Result<RawResponse> {
        let timestamp = req.timestamp.unwrap_or_else(now);
        let content_type = "application/json";
        let host = req.host.as_deref().unwrap_or(&self.host);
        let auth = tc3::authorization_header(&tc3::SignRequest {
            secret_id: &self.secret_id,
            secret_key: &self.secret_key,
            service: req.service,
            host,
            content_type,
            timestamp,
            body: &req.body,
        });
        let mut builder = hyper::Request::post(self.endpoint.clone())
            .header("Host", host)
            .header("Content-Type", content_type)
            .header("Authorization", auth)
            .header("X-TC-Action", req.action)
            .header("X-TC-Version", req.version)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let mut request = builder
            .body(Full::new(Bytes::from(req.body)))
            .map_err(|e| Error::Internal(e.to_string()))?;
        // Headers given twice (override) must replace, not repeat.
        for (k, v) in &req.headers {
            if let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                hyper::header::HeaderValue::from_str(v),
            ) {
                request.headers_mut().insert(name, value);
            }
        }
        let resp = self
            .http
            .request(request)
            .await
            .map_err(|e| Error::Internal(format!("HTTP request failed: {e}")))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Internal(format!("reading response: {e}")))?
            .to_bytes()
            .to_vec();
        Ok(RawResponse {
            status,
            content_type,
            body,
        })
    }
}
