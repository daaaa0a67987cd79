//! The harmless background every real fleet emits: single timeouts and
//! retries, 404s, validation failures of single requests, deprecation
//! warnings, slow queries, isolated probe failures, client disconnects —
//! each in the style of the service's language, many of them scary-looking
//! (they name timeouts, resets, refused connections or expiries) yet
//! isolated and at a steady low rate, so a good detector must stay quiet.

use super::fleet::Lang;
use crate::model::Severity;

/// A log-line template and the fields that come with it.
#[derive(Debug, Clone, Copy)]
pub struct Tpl {
    pub sev: Severity,
    pub msg: &'static str,
    pub error_type: Option<&'static str>,
    pub status: Option<i32>,
    /// The line is about a call to a dependency (`upstream` is set).
    pub upstream: bool,
    /// A stack trace/traceback template, when the runtime prints one.
    pub stack: Option<&'static str>,
}

/// Shorthand constructor for the tables.
pub const fn t(sev: Severity, msg: &'static str) -> Tpl {
    Tpl {
        sev,
        msg,
        error_type: None,
        status: None,
        upstream: false,
        stack: None,
    }
}

impl Tpl {
    /// With an `error_type`.
    pub const fn ty(mut self, e: &'static str) -> Tpl {
        self.error_type = Some(e);
        self
    }
    /// With an HTTP status.
    pub const fn st(mut self, s: i32) -> Tpl {
        self.status = Some(s);
        self
    }
    /// About a call to a dependency.
    pub const fn up(mut self) -> Tpl {
        self.upstream = true;
        self
    }
    /// With a stack trace.
    pub const fn stack(mut self, s: &'static str) -> Tpl {
        self.stack = Some(s);
        self
    }
}

use Severity::{Error as E, Info as I, Warning as W};

pub const JAVA_STACK: &str = "\tat com.shop.{svc}.{class}.handle({class}.java:{line})\n\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:883)\n\tat jakarta.servlet.http.HttpServlet.service(HttpServlet.java:658)\n\tat org.apache.tomcat.util.threads.ThreadPoolExecutor$Worker.run(ThreadPoolExecutor.java:659)\n\tat java.base/java.lang.Thread.run(Thread.java:1583)";
pub const PY_TRACE: &str = "Traceback (most recent call last):\n  File \"/app/{svc}/handlers.py\", line {line}, in handle\n    result = await self.process(payload)\n  File \"/app/{svc}/service.py\", line {line}, in process\n    return self.client.call(payload)";
pub const GO_TRACE: &str = "goroutine {n} [running]:\nmain.(*Server).handle(0xc000{hex})\n\t/src/internal/server/handler.go:{line} +0x1a4\nnet/http.HandlerFunc.ServeHTTP(...)\n\t/usr/local/go/src/net/http/server.go:2171";
pub const NODE_STACK: &str = "    at {class}.handle (/app/dist/handlers/index.js:{line}:17)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)";

const JAVA_ERR: &[Tpl] = &[
    t(E, "java.net.SocketTimeoutException: Read timed out (GET http://{dep}:8080{path})")
        .ty("java.net.SocketTimeoutException")
        .up()
        .stack(JAVA_STACK),
    t(E, "Request failed: GET {path}/{n} returned 404 Not Found").st(404),
    t(E, "org.springframework.web.HttpRequestMethodNotSupportedException: Request method 'PUT' is not supported")
        .ty("org.springframework.web.HttpRequestMethodNotSupportedException")
        .st(405),
    t(E, "Optimistic locking failure for entity Order#{n}; retrying (attempt 1/3)")
        .ty("org.springframework.orm.ObjectOptimisticLockingFailureException"),
    t(E, "org.postgresql.util.PSQLException: ERROR: duplicate key value violates unique constraint \"orders_idempotency_key_key\"")
        .ty("org.postgresql.util.PSQLException"),
    t(E, "Client {ip} sent invalid request: Required request parameter 'page' for method parameter type int is not present")
        .ty("org.springframework.web.bind.MissingServletRequestParameterException")
        .st(400),
    t(E, "Unhandled exception for request {uuid}: java.lang.IllegalStateException: cart {id} already checked out")
        .ty("java.lang.IllegalStateException")
        .stack(JAVA_STACK),
];
const JAVA_WARN: &[Tpl] = &[
    t(W, "HikariPool-1 - Thread starvation or clock leap detected (housekeeper delta={small}m{line}ms)."),
    t(W, "Slow query ({qms} ms): select o.id, o.status from orders o where o.customer_id=? order by o.created_at desc"),
    t(W, "Retrying call to {dep} (attempt 2/3) after java.net.SocketTimeoutException: Read timed out").up(),
    t(I, "Completed GET {path} in {qms} ms with status 200"),
    t(W, "Circuit breaker '{dep}' state transition CLOSED -> HALF_OPEN (probe)").up(),
    t(I, "Cache refresh for product index finished: {n} entries in {qms} ms"),
    t(W, "Deprecated API version v1 used by client {user}; please migrate to v2"),
];

const GO_ERR: &[Tpl] = &[
    t(E, "rpc error: code = NotFound desc = order {order} not found").st(404),
    t(E, "request {uuid} failed: context canceled").ty("context.Canceled"),
    t(E, "Get \"http://{dep}:8080{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
        .ty("context.DeadlineExceeded")
        .up(),
    t(E, "invalid argument: quantity must be >= 1 (got 0) for {sku}").st(400),
    t(E, "write tcp {ip}:8080->{ip}:{port}: write: broken pipe (client went away)"),
    t(E, "failed to publish metrics batch: statsd buffer full, dropping {n3} points"),
];
const GO_WARN: &[Tpl] = &[
    t(W, "http: TLS handshake error from {ip}:{port}: EOF"),
    t(
        W,
        "retrying after error: rpc error: code = Unavailable desc = transport is closing",
    )
    .up(),
    t(
        I,
        "request completed method=GET path={path} status=200 duration={qms}ms",
    ),
    t(W, "slow request method=POST path={path} duration={ms}ms"),
    t(
        I,
        "connection pool stats: open={small} idle={small} in_use=1 wait_count=0",
    ),
    t(W, "cache miss for key {svc}:{sku}, falling back to {dep}").up(),
];

const PY_ERR: &[Tpl] = &[
    t(E, "KeyError: 'coupon_code'")
        .ty("KeyError")
        .stack(PY_TRACE),
    t(E, "requests.exceptions.ReadTimeout: HTTPConnectionPool(host='{dep}', port=8080): Read timed out. (read timeout=5)")
        .ty("requests.exceptions.ReadTimeout")
        .up()
        .stack(PY_TRACE),
    t(E, "HTTP 404 for GET {path}/{n}: resource not found").st(404),
    t(E, "Rejected request from {ip}: 'quantity' must be >= 1").st(422),
    t(E, "Task tasks.refresh_recommendations[{uuid}] raised unexpected: SoftTimeLimitExceeded()")
        .ty("celery.exceptions.SoftTimeLimitExceeded"),
];
const PY_WARN: &[Tpl] = &[
    t(W, "Retrying (Retry(total=2, connect=None, read=None, redirect=None, status=None)) after connection broken by 'ReadTimeoutError(\"HTTPConnectionPool(host='{dep}', port=8080): Read timed out. (read timeout=5)\")': {path}").up(),
    t(I, "GET {path} 200 {qms}ms"),
    t(W, "DeprecationWarning: datetime.datetime.utcnow() is deprecated and scheduled for removal in a future version."),
    t(W, "model cache is {small}h old, scheduling refresh"),
    t(I, "consumer lag for partition {small}: {n3} messages"),
];

const NODE_ERR: &[Tpl] = &[
    t(E, "UnauthorizedError: jwt expired")
        .ty("TokenExpiredError")
        .st(401),
    t(
        E,
        "AxiosError: Request failed with status code 404 ({dep}{path})",
    )
    .ty("AxiosError")
    .st(404)
    .up(),
    t(E, "Error: socket hang up (client aborted request {uuid})")
        .ty("ECONNRESET")
        .stack(NODE_STACK),
    t(
        E,
        "BadRequestError: request body field 'email' is not a valid address",
    )
    .st(400),
    t(
        E,
        "UnhandledPromiseRejection: Error: session {id} not found",
    )
    .stack(NODE_STACK),
];
const NODE_WARN: &[Tpl] = &[
    t(W, "(node:1) [DEP0005] DeprecationWarning: Buffer() is deprecated due to security and usability issues."),
    t(I, "GET {path} 200 {qms} ms - 1832"),
    t(W, "retrying request to {dep} after 502 (attempt 1 of 3)").up(),
    t(W, "event loop lag {qms}ms above threshold"),
];

const PROXY_ERR: &[Tpl] = &[
    t(
        E,
        "\"GET {path}/{n} HTTP/1.1\" 404 0 \"-\" \"Mozilla/5.0\" {qms}ms upstream={dep}",
    )
    .st(404)
    .up(),
    t(
        E,
        "\"POST {path} HTTP/2\" 499 0 \"-\" \"okhttp/4.12.0\" client closed request",
    )
    .st(499),
    t(
        E,
        "\"GET /wp-login.php HTTP/1.1\" 404 162 \"-\" \"python-requests/2.31\" {qms}ms",
    )
    .st(404),
    t(E, "\"POST {path} HTTP/1.1\" 413 0 request entity too large").st(413),
];
const PROXY_WARN: &[Tpl] = &[
    t(
        I,
        "\"GET {path} HTTP/2\" 200 {n} \"-\" \"Mozilla/5.0\" {qms}ms upstream={dep}",
    )
    .up(),
    t(
        W,
        "\"GET {path} HTTP/2\" 200 {n} slow upstream response {ms}ms upstream={dep}",
    )
    .up(),
    t(W, "rate limit for client {ip} nearly reached (90%)"),
];

/// Kubernetes events about any workload: single probe failures and routine
/// scheduling — alarming words, harmless when isolated.
pub const K8S: &[Tpl] = &[
    t(W, "Readiness probe failed: Get \"http://{ip}:8080/ready\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"),
    t(I, "Successfully pulled image in {qms}ms"),
    t(W, "Liveness probe failed: HTTP probe failed with statuscode: 500"),
    t(I, "Created container {svc}"),
];

/// The background templates of a language: (errors, warnings and info).
pub fn templates(lang: Lang) -> (&'static [Tpl], &'static [Tpl]) {
    match lang {
        Lang::Java => (JAVA_ERR, JAVA_WARN),
        Lang::Go => (GO_ERR, GO_WARN),
        Lang::Python => (PY_ERR, PY_WARN),
        Lang::Node => (NODE_ERR, NODE_WARN),
        Lang::Proxy => (PROXY_ERR, PROXY_WARN),
    }
}
