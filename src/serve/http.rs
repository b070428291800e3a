//! The HTTP front door (axum on tokio): routes, authentication, the answer to each request,
//! health, metrics and graceful shutdown. A 202 is only sent once the broker has acknowledged
//! every record of the request, valid ones on the measurements topic and rejected ones on the
//! quarantine topic; anything less is a 503 and nothing is claimed as stored.

use super::auth::{authenticate, AuthFailure, DeviceCredential, Presented};
use super::body::{split_records, Framing};
use super::credentials::CredentialStore;
use super::ingest::{judge_request, reason_json, Verdict};
use super::metrics::ServeMetrics;
use crate::domain::time::UtcMillis;
use crate::stream::kafka::{producer_config, Compression};
use crate::stream::produce::{wire_headers, OutRecord};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The OpenAPI document of these routes, kept in the repository.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// How often credentials are read again from their store (a new token works within this).
const CREDENTIAL_RELOAD: Duration = Duration::from_secs(10);
/// An unknown device triggers a reload at most this often.
const RELOAD_ON_MISS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub brokers: String,
    pub measurements_topic: String,
    pub quarantine_topic: String,
    pub compression: Compression,
    pub max_body_bytes: usize,
    /// How long a request waits for the broker's acknowledgements before answering 503.
    pub ack_timeout: Duration,
    /// Serve the earlier platform's routes (`/iot/measurements`, `/ingest`).
    pub legacy_routes: bool,
    pub store: CredentialStore,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("kafka {brokers}: cannot create a producer: {source}")]
    Producer { brokers: String, source: KafkaError },
    #[error(transparent)]
    Credentials(#[from] super::credentials::CredentialError),
    #[error("the HTTP server failed: {0}")]
    Server(std::io::Error),
}

type Credentials = Arc<HashMap<Uuid, DeviceCredential>>;

/// rdkafka's futures on the tokio runtime `serve` already runs (rdkafka's own `tokio` feature
/// would do the same, at the price of another feature set to build).
pub struct Tokio;

impl rdkafka::util::AsyncRuntime for Tokio {
    type Delay = tokio::time::Sleep;

    fn spawn<T>(task: T)
    where
        T: std::future::Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(task);
    }

    fn delay_for(duration: Duration) -> Self::Delay {
        tokio::time::sleep(duration)
    }
}

type IngestProducer = FutureProducer<rdkafka::client::DefaultClientContext, Tokio>;

pub struct App {
    settings: ServeSettings,
    producer: IngestProducer,
    measurement_headers: OwnedHeaders,
    quarantine_headers: OwnedHeaders,
    credentials: RwLock<Credentials>,
    last_reload: Mutex<Instant>,
    pub metrics: ServeMetrics,
}

impl App {
    /// A producer for the settings' brokers and the credentials read once from their store.
    /// Blocking: call it before the async runtime starts serving.
    pub fn new(settings: ServeSettings) -> Result<Arc<App>, ServeError> {
        let timeout_ms = settings.ack_timeout.as_millis().max(1).to_string();
        let producer: IngestProducer = producer_config(&settings.brokers, settings.compression)
            // A request waits for its acknowledgement: batches are held 1 ms, not 5.
            .set("linger.ms", "1")
            // librdkafka gives up on a record when the request does, so that a record answered
            // with 503 is not delivered much later.
            .set("message.timeout.ms", &timeout_ms)
            .create()
            .map_err(|source| ServeError::Producer {
                brokers: settings.brokers.clone(),
                source,
            })?;
        let credentials = settings.store.load()?;
        Ok(Arc::new(App {
            producer,
            measurement_headers: wire_headers(),
            quarantine_headers: OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                })
                .insert(Header {
                    key: "kidjamo-source",
                    value: Some("http"),
                }),
            credentials: RwLock::new(Arc::new(credentials)),
            last_reload: Mutex::new(Instant::now()),
            metrics: ServeMetrics::default(),
            settings,
        }))
    }

    fn credentials(&self) -> Credentials {
        self.credentials
            .read()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Reads the store again; a store that fails keeps the credentials already known.
    async fn reload_credentials(self: &Arc<Self>) {
        let app = self.clone();
        let loaded = tokio::task::spawn_blocking(move || app.settings.store.load()).await;
        match loaded {
            Ok(Ok(c)) => {
                if let Ok(mut slot) = self.credentials.write() {
                    *slot = Arc::new(c);
                }
            }
            Ok(Err(e)) => tracing::warn!("device credentials not reloaded: {e}"),
            Err(e) => tracing::warn!("device credentials not reloaded: {e}"),
        }
        if let Ok(mut t) = self.last_reload.lock() {
            *t = Instant::now();
        }
    }

    fn may_reload_on_miss(&self) -> bool {
        self.last_reload
            .lock()
            .map(|t| t.elapsed() >= RELOAD_ON_MISS_EVERY)
            .unwrap_or(false)
    }
}

/// The routes; legacy ones only when asked for.
pub fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/v1/measurements", post(post_v1))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi));
    if app.settings.legacy_routes {
        r = r
            .route("/iot/measurements", post(post_legacy_iot))
            .route("/ingest", post(post_legacy_ingest));
    }
    // Ingestion routes read their bodies themselves, with the configured limit.
    r.layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app)
}

/// Serves until `shutdown` resolves, then drains in-flight requests and flushes the producer.
pub async fn serve(
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = app.settings.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let reloader = {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CREDENTIAL_RELOAD).await;
                app.reload_credentials().await;
            }
        })
    };
    tracing::info!(
        "listening on http://{}",
        listener.local_addr().unwrap_or(addr)
    );
    axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Server)?;
    reloader.abort();
    let producer = app.producer.clone();
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    Ok(())
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "error": message }))
}

async fn post_v1(State(app): State<Arc<App>>, request: Request) -> Response {
    ingest(app, "v1_measurements", false, request).await
}

async fn post_legacy_iot(State(app): State<Arc<App>>, request: Request) -> Response {
    ingest(app, "legacy_iot_measurements", true, request).await
}

async fn post_legacy_ingest(State(app): State<Arc<App>>, request: Request) -> Response {
    ingest(app, "legacy_ingest", true, request).await
}

async fn ingest(app: Arc<App>, route: &'static str, legacy: bool, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let response = match read_body(&app, &parts.headers, body).await {
        Ok(body) => handle(&app, legacy, &parts.headers, body).await,
        Err(too_large) => too_large,
    };
    app.metrics.request(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn presented(headers: &HeaderMap) -> Presented<'_> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(auth) = text("authorization") {
        return match auth.strip_prefix("Bearer ") {
            Some(token) => Presented::Bearer(token),
            None => Presented::Nothing,
        };
    }
    match (
        text("x-kidjamo-device"),
        text("x-kidjamo-timestamp"),
        text("x-kidjamo-signature"),
    ) {
        (Some(device_id), Some(timestamp), Some(signature)) => Presented::Signature {
            device_id,
            timestamp,
            signature,
        },
        _ => Presented::Nothing,
    }
}

/// Receive time: where records enter the platform, the one place `serve` reads the clock.
fn now() -> UtcMillis {
    UtcMillis(chrono::Utc::now().timestamp_millis())
}

async fn authenticated(
    app: &Arc<App>,
    headers: &HeaderMap,
    body: &[u8],
    now: UtcMillis,
) -> Result<DeviceCredential, AuthFailure> {
    let presented = presented(headers);
    let attempt = |credentials: &Credentials| {
        authenticate(&presented, body, now.0 / 1000, &|id| credentials.get(id)).cloned()
    };
    match attempt(&app.credentials()) {
        Err(AuthFailure::UnknownDevice) if app.may_reload_on_miss() => {
            app.reload_credentials().await;
            attempt(&app.credentials())
        }
        other => other,
    }
}

/// The body, or a 413: refused on its announced length before any of it is read (so the
/// client is not left sending into a closed connection), else cut off at the limit.
async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Bytes, Response> {
    let limit = app.settings.max_body_bytes;
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {limit} bytes"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // A read that fails is the limit being passed (chunked bodies) or a client gone away,
    // which cannot read any answer.
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

async fn handle(app: &Arc<App>, legacy: bool, headers: &HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let Some(framing) = Framing::from_content_type(content_type) else {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json or application/x-ndjson",
        );
    };
    let received_at = now();
    let device = match authenticated(app, headers, &body, received_at).await {
        Ok(d) => d,
        Err(failure) => {
            // Which part failed is for the server's log only.
            tracing::debug!(?failure, "authentication failed");
            return error_response(StatusCode::UNAUTHORIZED, "authentication failed");
        }
    };
    let records = match split_records(&body, framing) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("unparsable body: {e}")),
    };
    let (valid, invalid) = match judge_request(&records, legacy, &device, received_at) {
        Verdict::Forbidden => {
            return error_response(
                StatusCode::FORBIDDEN,
                "this device may not send these records",
            )
        }
        Verdict::Judged { valid, invalid } => (valid, invalid),
    };
    let to_send: Vec<(&str, &OutRecord, &OwnedHeaders)> = valid
        .iter()
        .map(|v| {
            (
                app.settings.measurements_topic.as_str(),
                &v.record,
                &app.measurement_headers,
            )
        })
        .chain(invalid.iter().map(|i| {
            (
                app.settings.quarantine_topic.as_str(),
                &i.quarantine,
                &app.quarantine_headers,
            )
        }))
        .collect();
    let acknowledged = produce_all(app, &to_send).await;
    if acknowledged < to_send.len() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": "the broker did not acknowledge every record: nothing of this request \
                          is confirmed as stored; send it again (records are deduplicated by \
                          message_id)",
                "records": to_send.len(),
                "acknowledged": acknowledged,
            }),
        );
    }
    app.metrics
        .records_accepted
        .fetch_add(valid.len() as u64, std::sync::atomic::Ordering::Relaxed);
    for i in &invalid {
        for r in &i.reasons {
            app.metrics.rejected(r.reason.code());
        }
    }
    json_response(
        StatusCode::ACCEPTED,
        json!({
            "accepted": valid.len(),
            "rejected": invalid.len(),
            "message_ids": valid.iter().map(|v| v.message_id.to_string()).collect::<Vec<_>>(),
            "rejections": invalid.iter().map(|i| json!({
                "index": i.index,
                "reasons": i.reasons.iter().map(reason_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    )
}

/// Hands every record to the producer and waits for the broker, at most the ack timeout.
/// Returns how many were acknowledged.
async fn produce_all(app: &App, records: &[(&str, &OutRecord, &OwnedHeaders)]) -> usize {
    let deadline = tokio::time::Instant::now() + app.settings.ack_timeout;
    let mut pending = Vec::with_capacity(records.len());
    for (topic, record, headers) in records {
        loop {
            let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
                .payload(record.payload.as_slice())
                .headers((*headers).clone());
            if let Some(k) = &record.key {
                r = r.key(k.as_str());
            }
            if let Some(t) = record.timestamp_ms {
                r = r.timestamp(t);
            }
            match app.producer.send_result(r) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    tracing::warn!("a record was refused by the producer: {e}");
                    return 0;
                }
            }
        }
    }
    let mut acknowledged = 0;
    for delivery in pending {
        match tokio::time::timeout_at(deadline + Duration::from_millis(500), delivery).await {
            Ok(Ok(Ok(_))) => acknowledged += 1,
            Ok(Ok(Err((e, _)))) => tracing::warn!("a record was not acknowledged: {e}"),
            Ok(Err(_)) | Err(_) => tracing::warn!("a record was not acknowledged in time"),
        }
    }
    acknowledged
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let started = Instant::now();
    let producer = app.producer.clone();
    let topic = app.settings.measurements_topic.clone();
    let probe = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(2))
            .map(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none())
            })
    })
    .await;
    let response = match probe {
        Ok(Ok(true)) => json_response(
            StatusCode::OK,
            json!({"status": "ok", "broker": "reachable"}),
        ),
        Ok(Ok(false)) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "broker": "reachable", "topic": "missing"}),
        ),
        _ => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "broker": "unreachable"}),
        ),
    };
    app.metrics.request(
        "health",
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(app.producer.in_flight_count());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_describes_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        for path in [
            "/v1/measurements",
            "/iot/measurements",
            "/ingest",
            "/health",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is documented");
        }
        for status in ["202", "400", "401", "403", "413", "415", "503"] {
            assert!(
                doc["paths"]["/v1/measurements"]["post"]["responses"][status].is_object(),
                "{status} is documented"
            );
        }
    }

    #[test]
    fn credentials_are_read_from_the_expected_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), Presented::Nothing);
        h.insert("authorization", "Basic abc".parse().expect("header"));
        assert_eq!(presented(&h), Presented::Nothing);
        h.insert("authorization", "Bearer kjd1.x.y".parse().expect("header"));
        assert_eq!(presented(&h), Presented::Bearer("kjd1.x.y"));
        let mut h = HeaderMap::new();
        h.insert("x-kidjamo-device", "d".parse().expect("header"));
        h.insert("x-kidjamo-timestamp", "1".parse().expect("header"));
        h.insert("x-kidjamo-signature", "sha256=00".parse().expect("header"));
        assert_eq!(
            presented(&h),
            Presented::Signature {
                device_id: "d",
                timestamp: "1",
                signature: "sha256=00"
            }
        );
    }
}
