//! The chronic background's phrasing tables (data only): the noisy
//! services and their lines, the cron jobs and theirs, Kubernetes warning
//! events, the upstream's own harmless errors on a failed call, and the
//! retry warnings of a storm.
//!
//! Guarantees: per-language tables are indexed Java, Go, Python, Node,
//! proxy (as `chronic` indexes them); nothing here draws or decides.

use crate::model::Severity;
use crate::sim::noise::{t, Tpl, GO_TRACE, JAVA_STACK, NODE_STACK, PY_TRACE};

use Severity::{Error as E, Warning as W};

const HOT_ANALYTICS: &[Tpl] = &[
    t(E, "dropping event {uuid}: schema validation failed: field \"{field}\" is required").ty("SchemaValidationError"),
    t(E, "dropping event {uuid}: payload too large ({n} bytes > 65536)"),
    t(E, "insert batch of {n3} rows to {dep} failed: googleapi: Error 400: Invalid value for field '{field}', invalid").up(),
    t(W, "event {uuid} arrived {small}h late, routing to late-events"),
];
const HOT_RECS: &[Tpl] = &[
    t(E, "FeatureLookupError: no feature vector for user {user}").ty("FeatureLookupError"),
    t(
        E,
        "ValueError: Input contains NaN, infinity or a value too large for dtype('float32').",
    )
    .ty("ValueError")
    .stack(PY_TRACE),
    t(
        E,
        "model returned {small} recommendations, expected 10; padding with bestsellers",
    ),
];
const HOT_PARTNER: &[Tpl] = &[
    t(E, "Invalid API key for partner {id} (key prefix pk_live_{id})").st(401),
    t(E, "429 Too Many Requests: rate limit exceeded for partner {id} ({n3} req/min)").st(429),
    t(E, "Malformed partner payload: com.fasterxml.jackson.core.JsonParseException: Unexpected character ('<' (code 60)): expected a valid value")
        .ty("com.fasterxml.jackson.core.JsonParseException")
        .st(400),
    t(E, "Partner {id} requested unknown SKU {sku}").st(404),
];

/// Services with high chronic error rates: (service, errors/s at peak,
/// follows traffic, lines).
pub(super) const HOT: &[(&str, f64, bool, &[Tpl])] = &[
    ("analytics-collector", 5.0, false, HOT_ANALYTICS),
    ("recommendations", 2.0, true, HOT_RECS),
    ("partner-api", 1.2, true, HOT_PARTNER),
];

const CRON_REPORTING: &[Tpl] = &[
    t(E, "psycopg2.errors.QueryCanceled: canceling statement due to statement timeout")
        .ty("psycopg2.errors.QueryCanceled")
        .stack(PY_TRACE),
    t(E, "requests.exceptions.ReadTimeout: HTTPConnectionPool(host='{dep}', port=8080): Read timed out. (read timeout=5)")
        .ty("requests.exceptions.ReadTimeout")
        .up(),
    t(E, "row {n} skipped: invalid date '{word}' in column created_at"),
    t(W, "export of partition {small} to {dep} retried ({small}/5)").up(),
];
const CRON_RECONCILE: &[Tpl] = &[
    t(
        E,
        "Reconciliation mismatch for account {id}: ledger {n} != processor {n}",
    ),
    t(
        E,
        "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
    )
    .ty("java.sql.SQLTransientConnectionException")
    .stack(JAVA_STACK),
    t(
        E,
        "org.postgresql.util.PSQLException: ERROR: canceling statement due to lock timeout",
    )
    .ty("org.postgresql.util.PSQLException"),
];
const CRON_INDEXER: &[Tpl] = &[
    t(E, "bulk request to {dep} failed: 429 es_rejected_execution_exception: rejected execution of coordinating operation (queue capacity 200)")
        .st(429)
        .up(),
    t(E, "java.net.SocketTimeoutException: Read timed out (GET http://{dep}:8080/api/v2/products)")
        .ty("java.net.SocketTimeoutException")
        .up(),
    t(W, "reindex of products: {n} documents, {n3} failures so far"),
];

/// One scheduled job: (service, every N hours, at minute, minutes long
/// (lo, hi), errors/s while running, lines, a Kubernetes CronJob (its own
/// pod per run) rather than a task inside the service's pods).
pub(super) type Cron = (
    &'static str,
    i64,
    i64,
    (i64, i64),
    f64,
    &'static [Tpl],
    bool,
);

/// The scheduled jobs of the fleet.
pub(super) const CRONS: &[Cron] = &[
    ("reporting-batch", 1, 5, (3, 6), 2.0, CRON_REPORTING, true),
    ("ledger-reconcile", 2, 45, (4, 8), 1.2, CRON_RECONCILE, true),
    ("search-indexer", 3, 20, (4, 8), 1.5, CRON_INDEXER, false),
];

/// Kubernetes warning events (`reason`, message).
pub(super) const K8S_WARN: &[(&str, Tpl)] = &[
    ("Unhealthy", t(W, "Readiness probe failed: Get \"http://{ip}:8080/ready\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
    ("Unhealthy", t(W, "Liveness probe failed: HTTP probe failed with statuscode: 503")),
    ("Unhealthy", t(W, "Readiness probe failed: HTTP probe failed with statuscode: 503 (pod {pod})")),
    ("BackOff", t(W, "Back-off restarting failed container {svc} in pod {pod}")),
    ("BackOff", t(W, "Back-off pulling image \"registry.example.com/shop/{svc}:canary\"")),
    ("FailedScheduling", t(W, "0/9 nodes are available: 3 Insufficient memory, 6 node(s) didn't match pod anti-affinity rules. preemption: 0/9 nodes are available: 9 No preemption victims found for incoming pod.")),
    ("FailedMount", t(W, "MountVolume.SetUp failed for volume \"kube-api-access-{id}\" : object \"{ns}\"/\"kube-root-ca.crt\" not registered")),
];

/// Harmless errors an upstream logs on a request its caller saw fail.
pub(super) const UPSTREAM_OWN: [&[Tpl]; 5] = [
    &[
        t(E, "Unhandled exception for request {uuid}: java.lang.IllegalStateException: request {id} already completed")
            .ty("java.lang.IllegalStateException")
            .st(500)
            .stack(JAVA_STACK),
        t(E, "Servlet.service() for servlet [dispatcherServlet] threw exception: java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"token\" is null")
            .ty("java.lang.NullPointerException")
            .st(500)
            .stack(JAVA_STACK),
        t(W, "Request processing exceeded {ms}ms, client likely gave up"),
    ],
    &[
        t(E, "request {uuid} failed: context canceled").ty("context.Canceled"),
        t(E, "handler error: {path}: upstream returned status 500").st(500),
        t(E, "http: panic serving {ip}:{port}: runtime error: invalid memory address or nil pointer dereference")
            .st(500)
            .stack(GO_TRACE),
    ],
    &[
        t(E, "Internal Server Error: {path}").st(500).stack(PY_TRACE),
        t(E, "asyncio.exceptions.CancelledError: request {uuid} cancelled by client"),
    ],
    &[
        t(E, "Error: request aborted (client closed connection) {path}").ty("ECONNRESET"),
        t(E, "TypeError: Cannot read properties of undefined (reading 'id')")
            .ty("TypeError")
            .st(500)
            .stack(NODE_STACK),
    ],
    &[t(E, "\"GET {path} HTTP/1.1\" 500 0 \"-\" \"okhttp/4.12.0\" {qms}ms").st(500)],
];

/// Warning lines of a caller retrying a failing dependency (retry storms).
pub(super) const RETRY: [&[Tpl]; 5] = [
    &[t(W, "Retrying call to {dep} (attempt {small}/5) after java.net.SocketTimeoutException: Read timed out").up()],
    &[t(W, "retrying after error: rpc error: code = Unavailable desc = connection error (attempt {small})").up()],
    &[t(W, "Retrying (Retry(total={small}, connect=None, read=None, redirect=None, status=None)) after connection broken by 'ReadTimeoutError(\"HTTPConnectionPool(host='{dep}', port=8080): Read timed out. (read timeout=5)\")': {path}").up()],
    &[t(W, "retrying request to {dep} after ETIMEDOUT (attempt {small} of 5)").up()],
    &[t(W, "upstream {dep} retry {small}/3: upstream request timeout").up()],
];
