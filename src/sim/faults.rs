//! The fault library and the fault schedule.
//!
//! Every category of SPEC §3 has at least one fault kind, each with several
//! phrasings per language. A fault has a root (a service, an external host
//! or a node), an onset, a symptom its callers see (refused connections,
//! timeouts, 5xx, TLS failures...), which actions heal it, which make it
//! worse, and whether it ends on its own. Faults cascade: a failure at the
//! root surfaces at its callers tens to hundreds of milliseconds later and
//! at their callers after that, sharing the trace id.
//!
//! The schedule spaces faults so that each incident can resolve before the
//! next fault starts, leaving fault-free stretches in between (where any
//! incident is a false one).

use super::fleet::{Fleet, Lang};
use super::gen::Rng;
use super::noise::{t, Tpl, GO_TRACE, JAVA_STACK, NODE_STACK, PY_TRACE};
use crate::model::{ActionType, Category, EventTime, Severity};
use serde::{Deserialize, Serialize};

use Severity::{Critical as C, Error as E, Warning as W};

/// The kinds of fault the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A new version that throws (rollback heals).
    BadDeploy,
    /// A configuration change that breaks start-up (rollback heals).
    BadConfig,
    /// A memory leak ending in OOM kills (restart heals).
    MemoryLeak,
    /// Connection pool / file descriptor / disk exhaustion (restart heals).
    PoolExhausted,
    /// A traffic spike beyond capacity (scale heals, restart worsens; ends when the spike does).
    Overload,
    /// Scaled to zero by a bad autoscaler decision (scale heals).
    ScaledToZero,
    /// Pods stuck failing their probes (restart or scale heals).
    StuckPods,
    /// The service's serving certificate expired (humans rotate it).
    CertExpired,
    /// An external dependency is down (ends on its own or humans act).
    ExternalDown,
    /// DNS/network trouble on one node (drain heals; often ends on its own).
    NodeNetwork,
    /// Poison messages failing validation (ends when the bad batch is drained).
    PoisonMessages,
    /// An opaque failure nothing recognises (humans act).
    Opaque,
}

/// Where a fault's root cause lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    Service,
    External,
    Node,
}

/// How callers experience a failing dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symptom {
    Refused,
    Timeout,
    ServerError,
    Tls,
    NoHealthy,
}

impl FaultKind {
    /// The category the fault belongs to (the ground truth).
    pub fn category(self) -> Category {
        match self {
            FaultKind::BadDeploy => Category::BadDeploy,
            FaultKind::BadConfig => Category::ConfigError,
            FaultKind::MemoryLeak => Category::MemoryExhaustion,
            FaultKind::PoolExhausted => Category::ResourceExhaustion,
            FaultKind::Overload => Category::Overload,
            FaultKind::ScaledToZero | FaultKind::StuckPods => Category::Unavailable,
            FaultKind::CertExpired => Category::CertificateExpired,
            FaultKind::ExternalDown => Category::DependencyFailure,
            FaultKind::NodeNetwork => Category::Network,
            FaultKind::PoisonMessages => Category::DataError,
            FaultKind::Opaque => Category::Unknown,
        }
    }

    /// The kinds of a category (the first is the most common).
    pub fn of(c: Category) -> &'static [FaultKind] {
        match c {
            Category::BadDeploy => &[FaultKind::BadDeploy],
            Category::ConfigError => &[FaultKind::BadConfig],
            Category::MemoryExhaustion => &[FaultKind::MemoryLeak],
            Category::ResourceExhaustion => &[FaultKind::PoolExhausted],
            Category::Overload => &[FaultKind::Overload],
            Category::Unavailable => &[FaultKind::ScaledToZero, FaultKind::StuckPods],
            Category::CertificateExpired => &[FaultKind::CertExpired],
            Category::DependencyFailure => &[FaultKind::ExternalDown],
            Category::Network => &[FaultKind::NodeNetwork],
            Category::DataError => &[FaultKind::PoisonMessages],
            Category::Unknown => &[FaultKind::Opaque],
        }
    }

    /// Actions that heal the fault when applied to its root.
    pub fn heals(self) -> &'static [ActionType] {
        use ActionType::*;
        match self {
            FaultKind::BadDeploy | FaultKind::BadConfig => &[Rollback],
            FaultKind::MemoryLeak => &[Restart, Scale, DeletePod],
            FaultKind::PoolExhausted => &[Restart, Scale],
            FaultKind::Overload | FaultKind::ScaledToZero => &[Scale],
            FaultKind::StuckPods => &[Restart, Scale],
            FaultKind::NodeNetwork => &[DrainNode],
            FaultKind::CertExpired
            | FaultKind::ExternalDown
            | FaultKind::PoisonMessages
            | FaultKind::Opaque => &[],
        }
    }

    /// Actions on the root that make the fault worse while they run.
    pub fn worsens(self) -> &'static [ActionType] {
        match self {
            // A rolling restart removes capacity from an overloaded service.
            FaultKind::Overload => &[ActionType::Restart],
            // Restarting pods that fail to start only adds crash loops.
            FaultKind::BadConfig | FaultKind::BadDeploy => &[ActionType::Restart],
            _ => &[],
        }
    }

    /// Whether the fault ends by itself (after a while) when nobody acts.
    pub fn self_ending(self) -> bool {
        matches!(
            self,
            FaultKind::Overload
                | FaultKind::ExternalDown
                | FaultKind::NodeNetwork
                | FaultKind::PoisonMessages
        )
    }

    /// The root emits nothing (it has no running pods).
    pub fn silent_root(self) -> bool {
        matches!(self, FaultKind::ScaledToZero)
    }

    /// What the root's callers see.
    pub fn symptom(self) -> Symptom {
        match self {
            FaultKind::BadDeploy | FaultKind::Opaque => Symptom::ServerError,
            FaultKind::BadConfig | FaultKind::MemoryLeak | FaultKind::StuckPods => Symptom::Refused,
            FaultKind::PoolExhausted | FaultKind::Overload => Symptom::Timeout,
            FaultKind::ScaledToZero => Symptom::NoHealthy,
            FaultKind::CertExpired => Symptom::Tls,
            FaultKind::ExternalDown | FaultKind::NodeNetwork | FaultKind::PoisonMessages => {
                Symptom::ServerError
            }
        }
    }
}

/// Actions that are an acceptable remedy for a category (SPEC §3). Anything
/// else done automatically is a wrong action; an empty list means "escalate".
pub fn acceptable(c: Category) -> &'static [ActionType] {
    use ActionType::*;
    match c {
        Category::BadDeploy | Category::ConfigError => &[Rollback],
        Category::MemoryExhaustion | Category::ResourceExhaustion => &[Restart, Scale, DeletePod],
        Category::Overload => &[Scale],
        Category::Unavailable => &[Scale, Restart],
        Category::Network => &[DrainNode],
        Category::CertificateExpired
        | Category::DependencyFailure
        | Category::DataError
        | Category::Unknown => &[],
    }
}

/// The usual remedy, as reported (`rollback`, `restart`, `scale`, `escalate`).
pub fn expected_action(c: Category) -> &'static str {
    match c {
        Category::BadDeploy | Category::ConfigError => "rollback",
        Category::MemoryExhaustion | Category::ResourceExhaustion => "restart",
        Category::Overload | Category::Unavailable => "scale",
        _ => "escalate",
    }
}

/// One planned fault.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub id: String,
    pub kind: FaultKind,
    pub root: String,
    pub root_kind: RootKind,
    pub onset: EventTime,
    /// When it ends by itself (self-ending kinds).
    pub natural_end: Option<EventTime>,
    /// When on-call engineers fix it if nothing else has.
    pub human_fix_at: EventTime,
    /// Root failures per second at full traffic.
    pub rate: f64,
    /// How it presents (the demo profile uses the default throughout).
    pub shape: Shape,
}

/// How a fault presents beyond its kind: intermittency, how much the root
/// itself logs, how loudly the callers retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// On/off phases (ms on, ms off) from the onset; `None`: continuous.
    pub intermittent: Option<(i64, i64)>,
    /// Share of the root's failures the root itself logs (1.0: all).
    pub root_share: f64,
    /// Lines each direct caller logs per failed call (retries), at least 1.
    pub caller_repeat: u32,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            intermittent: None,
            root_share: 1.0,
            caller_repeat: 1,
        }
    }
}

impl FaultPlan {
    /// Whether the fault is in an "on" phase at `t` (always, unless intermittent).
    pub fn on_at(&self, t: EventTime) -> bool {
        match self.shape.intermittent {
            None => true,
            Some((on, off)) => {
                (t.millis() - self.onset.millis()).rem_euclid((on + off).max(1)) < on
            }
        }
    }
}

// ---------------------------------------------------------------- phrasings

const BAD_DEPLOY_JAVA: &[Tpl] = &[
    t(E, "java.lang.NullPointerException: Cannot invoke \"com.shop.model.{class}.getId()\" because \"item\" is null")
        .ty("java.lang.NullPointerException")
        .st(500)
        .stack(JAVA_STACK),
    t(E, "java.lang.ClassCastException: class java.lang.String cannot be cast to class java.math.BigDecimal")
        .ty("java.lang.ClassCastException")
        .st(500)
        .stack(JAVA_STACK),
    t(E, "Servlet.service() for servlet [dispatcherServlet] threw exception: java.lang.IndexOutOfBoundsException: Index 0 out of bounds for length 0")
        .ty("java.lang.IndexOutOfBoundsException")
        .st(500)
        .stack(JAVA_STACK),
];
const BAD_DEPLOY_GO: &[Tpl] = &[
    t(E, "http: panic serving {ip}:{port}: runtime error: invalid memory address or nil pointer dereference")
        .st(500)
        .stack(GO_TRACE),
    t(E, "http: panic serving {ip}:{port}: runtime error: index out of range [3] with length 3")
        .st(500)
        .stack(GO_TRACE),
    t(E, "handler error: unexpected nil price for {sku}").st(500),
];
const BAD_DEPLOY_PY: &[Tpl] = &[
    t(
        E,
        "TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'",
    )
    .ty("TypeError")
    .st(500)
    .stack(PY_TRACE),
    t(
        E,
        "AttributeError: 'NoneType' object has no attribute 'get'",
    )
    .ty("AttributeError")
    .st(500)
    .stack(PY_TRACE),
];
const BAD_DEPLOY_NODE: &[Tpl] = &[
    t(
        E,
        "TypeError: Cannot read properties of undefined (reading 'price')",
    )
    .ty("TypeError")
    .st(500)
    .stack(NODE_STACK),
    t(E, "ReferenceError: featureFlags is not defined")
        .ty("ReferenceError")
        .st(500)
        .stack(NODE_STACK),
];

const CONFIG_JAVA: &[Tpl] = &[
    t(C, "APPLICATION FAILED TO START: Failed to bind properties under 'spring.datasource.url' to java.lang.String: Could not resolve placeholder 'DB_URL' in value \"${DB_URL}\"")
        .ty("org.springframework.boot.context.properties.bind.BindException"),
    t(E, "Error creating bean with name 'paymentClient': Injection of autowired dependencies failed; nested exception is java.lang.IllegalArgumentException: Could not resolve placeholder 'payments.api.key'")
        .ty("org.springframework.beans.factory.BeanCreationException"),
];
const CONFIG_GO: &[Tpl] = &[
    t(
        C,
        "failed to load config: yaml: line {line}: mapping values are not allowed in this context",
    ),
    t(
        C,
        "fatal: invalid configuration: listen_addr \":80800\" is not a valid port",
    ),
];
const CONFIG_PY: &[Tpl] = &[
    t(
        C,
        "RuntimeError: required environment variable DATABASE_URL is not set",
    )
    .ty("RuntimeError")
    .stack(PY_TRACE),
    t(
        E,
        "Configuration error: unknown configuration key 'max_retires' in /etc/{svc}/settings.toml",
    ),
];
const CONFIG_NODE: &[Tpl] = &[
    t(
        C,
        "Error: Config validation error: \"redis.port\" must be a number",
    )
    .ty("ValidationError")
    .stack(NODE_STACK),
    t(
        C,
        "Error: missing required environment variable SESSION_SECRET",
    ),
];
const CRASHLOOP: &[Tpl] = &[
    t(E, "Back-off restarting failed container {svc} in pod {pod}"),
    t(
        E,
        "container {svc} in pod {pod} terminated with exit code 1 (Error), restart count {small}",
    ),
];

const OOM_JAVA: &[Tpl] = &[
    t(E, "java.lang.OutOfMemoryError: Java heap space")
        .ty("java.lang.OutOfMemoryError")
        .stack(JAVA_STACK),
    t(E, "Exception in thread \"http-nio-8080-exec-{line}\" java.lang.OutOfMemoryError: GC overhead limit exceeded")
        .ty("java.lang.OutOfMemoryError"),
];
const OOM_GO: &[Tpl] = &[
    t(C, "fatal error: runtime: out of memory").stack(GO_TRACE),
    t(
        E,
        "runtime: cannot allocate memory (heap in use {n3} MiB, limit 512 MiB)",
    ),
];
const OOM_PY: &[Tpl] = &[t(E, "MemoryError").ty("MemoryError").stack(PY_TRACE)];
const OOM_NODE: &[Tpl] = &[t(
    C,
    "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
)];
const OOM_K8S: &[Tpl] = &[
    t(
        E,
        "Container {svc} in pod {pod} was OOMKilled (exit code 137), restarting",
    ),
    t(
        E,
        "Memory cgroup out of memory: Killed process {n} ({svc}) total-vm:{n}kB, anon-rss:{n}kB",
    ),
];

const POOL_JAVA: &[Tpl] = &[
    t(E, "HikariPool-1 - Connection is not available, request timed out after 30000ms.")
        .ty("java.sql.SQLTransientConnectionException")
        .stack(JAVA_STACK),
    t(E, "Could not open JDBC Connection for transaction; nested exception is java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available")
        .ty("org.springframework.transaction.CannotCreateTransactionException"),
];
const POOL_GO: &[Tpl] = &[
    t(
        E,
        "http: Accept error: accept tcp [::]:8080: accept4: too many open files; retrying in 1s",
    ),
    t(E, "open /var/cache/{svc}/{id}.tmp: too many open files"),
];
const POOL_PY: &[Tpl] = &[
    t(E, "sqlalchemy.exc.TimeoutError: QueuePool limit of size 10 overflow 20 reached, connection timed out, timeout 30.00")
        .ty("sqlalchemy.exc.TimeoutError")
        .stack(PY_TRACE),
    t(E, "OSError: [Errno 28] No space left on device: '/tmp/{svc}/{id}.parquet'")
        .ty("OSError"),
];
const POOL_NODE: &[Tpl] = &[
    t(
        E,
        "Error: EMFILE: too many open files, open '/app/cache/{id}.json'",
    )
    .ty("EMFILE"),
    t(
        E,
        "KnexTimeoutError: Knex: Timeout acquiring a connection. The pool is probably full.",
    )
    .ty("KnexTimeoutError"),
];

const OVERLOAD_ANY: &[Tpl] = &[
    t(
        E,
        "request rejected: server overloaded ({n3} in-flight, limit 256)",
    )
    .st(503),
    t(
        E,
        "429 Too Many Requests: concurrency limit reached for {path}",
    )
    .st(429),
    t(W, "slow request: {path} took {ms}ms (SLO 800ms)"),
];
const OVERLOAD_JAVA: &[Tpl] = &[
    t(E, "Task java.util.concurrent.FutureTask@{hex} rejected from java.util.concurrent.ThreadPoolExecutor@{hex}[Running, pool size = 200, active threads = 200, queued tasks = 1000, completed tasks = {n}]")
        .ty("java.util.concurrent.RejectedExecutionException")
        .st(503),
];

const STUCK: &[Tpl] = &[
    t(E, "Readiness probe failed: HTTP probe failed with statuscode: 503 (pod {pod})"),
    t(E, "health check failed: warm-up of {dep} client did not complete within 60s"),
    t(E, "Liveness probe failed: Get \"http://{ip}:8080/healthz\": dial tcp {ip}:8080: connect: connection refused"),
];

const CERT_ROOT: &[Tpl] = &[
    t(
        E,
        "http: TLS handshake error from {ip}:{port}: remote error: tls: bad certificate",
    ),
    t(
        E,
        "javax.net.ssl.SSLHandshakeException: Received fatal alert: certificate_expired",
    )
    .ty("javax.net.ssl.SSLHandshakeException"),
];

const POISON_PY: &[Tpl] = &[
    t(E, "pydantic_core._pydantic_core.ValidationError: 1 validation error for OrderEvent\n{field}\n  Input should be a valid decimal [type=decimal_parsing, input_value='{word}']")
        .ty("ValidationError"),
    t(E, "failed to process message at offset {offset} (partition {small}): invalid payload: '{field}' must be a positive amount"),
    t(W, "sent message at offset {offset} to dead-letter topic orders.events.dlq"),
];
const POISON_NODE: &[Tpl] = &[
    t(
        E,
        "SyntaxError: Unexpected token } in JSON at position {n3}",
    )
    .ty("SyntaxError"),
    t(
        E,
        "ValidationError: \"{field}\" must be a valid value, got '{word}'",
    )
    .ty("ValidationError"),
];
const POISON_JAVA: &[Tpl] = &[
    t(E, "com.fasterxml.jackson.databind.exc.InvalidFormatException: Cannot deserialize value of type `java.math.BigDecimal` from String \"{word}\": not a valid representation")
        .ty("com.fasterxml.jackson.databind.exc.InvalidFormatException"),
];
const POISON_GO: &[Tpl] = &[t(
    E,
    "json: cannot unmarshal string into Go struct field Order.{field} of type float64",
)];

const OPAQUE: &[Tpl] = &[
    t(E, "unexpected error in worker {small}: code=E{n}"),
    t(E, "internal error (ref {uuid})").st(500),
    t(E, "thread 'tokio-runtime-worker' panicked at src/ledger.rs:{line}:9: assertion failed: balance >= 0"),
    t(E, "operation {id} aborted: invariant violated in {class}"),
];

/// Lines the root writes for a fault kind, in its language's style.
pub fn root_lines(kind: FaultKind, lang: Lang) -> &'static [Tpl] {
    use FaultKind as K;
    match (kind, lang) {
        (K::BadDeploy, Lang::Java) => BAD_DEPLOY_JAVA,
        (K::BadDeploy, Lang::Go | Lang::Proxy) => BAD_DEPLOY_GO,
        (K::BadDeploy, Lang::Python) => BAD_DEPLOY_PY,
        (K::BadDeploy, Lang::Node) => BAD_DEPLOY_NODE,
        (K::BadConfig, Lang::Java) => CONFIG_JAVA,
        (K::BadConfig, Lang::Go | Lang::Proxy) => CONFIG_GO,
        (K::BadConfig, Lang::Python) => CONFIG_PY,
        (K::BadConfig, Lang::Node) => CONFIG_NODE,
        (K::MemoryLeak, Lang::Java) => OOM_JAVA,
        (K::MemoryLeak, Lang::Go | Lang::Proxy) => OOM_GO,
        (K::MemoryLeak, Lang::Python) => OOM_PY,
        (K::MemoryLeak, Lang::Node) => OOM_NODE,
        (K::PoolExhausted, Lang::Java) => POOL_JAVA,
        (K::PoolExhausted, Lang::Go | Lang::Proxy) => POOL_GO,
        (K::PoolExhausted, Lang::Python) => POOL_PY,
        (K::PoolExhausted, Lang::Node) => POOL_NODE,
        (K::Overload, Lang::Java) => OVERLOAD_JAVA,
        (K::Overload, _) => OVERLOAD_ANY,
        (K::StuckPods, _) => STUCK,
        (K::CertExpired, _) => CERT_ROOT,
        (K::PoisonMessages, Lang::Python) => POISON_PY,
        (K::PoisonMessages, Lang::Node) => POISON_NODE,
        (K::PoisonMessages, Lang::Java) => POISON_JAVA,
        (K::PoisonMessages, Lang::Go | Lang::Proxy) => POISON_GO,
        (K::Opaque, _) => OPAQUE,
        (K::ScaledToZero | K::ExternalDown | K::NodeNetwork, _) => &[],
    }
}

/// Extra lines from the platform (Kubernetes) about the root, if any.
pub fn platform_lines(kind: FaultKind) -> &'static [Tpl] {
    match kind {
        FaultKind::MemoryLeak => OOM_K8S,
        FaultKind::BadConfig => CRASHLOOP,
        FaultKind::Overload => OVERLOAD_ANY,
        _ => &[],
    }
}

const REFUSED: [&[Tpl]; 5] = [
    // Java
    &[
        t(E, "java.net.ConnectException: Connection refused calling http://{dep}.{depns}.svc.cluster.local:8080{path}")
            .ty("java.net.ConnectException")
            .stack(JAVA_STACK),
        t(E, "I/O error on POST request for \"http://{dep}:8080{path}\": Connection refused")
            .ty("org.springframework.web.client.ResourceAccessException"),
    ],
    // Go
    &[
        t(E, "dial tcp {ip}:8080: connect: connection refused"),
        t(E, "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp {ip}:9090: connect: connection refused\""),
    ],
    // Python
    &[t(E, "requests.exceptions.ConnectionError: HTTPConnectionPool(host='{dep}', port=8080): Max retries exceeded with url: {path} (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f{hex}>: Failed to establish a new connection: [Errno 111] Connection refused'))")
        .ty("requests.exceptions.ConnectionError")
        .stack(PY_TRACE)],
    // Node
    &[t(E, "Error: connect ECONNREFUSED {ip}:8080").ty("ECONNREFUSED").stack(NODE_STACK)],
    // Proxy
    &[t(E, "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: delayed connect error: 111")
        .st(503)],
];

const TIMEOUT: [&[Tpl]; 5] = [
    &[
        t(E, "java.net.SocketTimeoutException: Read timed out (POST http://{dep}:8080{path})")
            .ty("java.net.SocketTimeoutException")
            .stack(JAVA_STACK),
        t(E, "io.github.resilience4j.circuitbreaker.CallNotPermittedException: CircuitBreaker '{dep}' is OPEN and does not permit further calls")
            .ty("io.github.resilience4j.circuitbreaker.CallNotPermittedException"),
    ],
    &[
        t(E, "rpc error: code = DeadlineExceeded desc = context deadline exceeded"),
        t(E, "Post \"http://{dep}:8080{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"),
    ],
    &[t(E, "requests.exceptions.ReadTimeout: HTTPConnectionPool(host='{dep}', port=8080): Read timed out. (read timeout=5)")
        .ty("requests.exceptions.ReadTimeout")],
    &[t(E, "TimeoutError: request to http://{dep}:8080{path} timed out after 5000 ms").ty("ETIMEDOUT")],
    &[t(E, "upstream request timeout").st(504)],
];

const SERVER_ERROR: [&[Tpl]; 5] = [
    &[t(E, "org.springframework.web.client.HttpServerErrorException$InternalServerError: 500 Internal Server Error: \"{\"error\":\"internal\"}\" from {dep}")
        .ty("org.springframework.web.client.HttpServerErrorException")
        .st(502)],
    &[
        t(E, "unexpected status 500 from {dep}{path}: {\"error\":\"internal error\"}").st(502),
        t(E, "call {dep}.{class}/Get failed: rpc error: code = Internal desc = internal error"),
    ],
    &[t(E, "requests.exceptions.HTTPError: 500 Server Error: Internal Server Error for url: http://{dep}:8080{path}")
        .ty("requests.exceptions.HTTPError")],
    &[t(E, "AxiosError: Request failed with status code 500 ({dep}{path})").ty("AxiosError").st(502)],
    &[t(E, "\"POST {path} HTTP/1.1\" 500 87 \"-\" \"okhttp/4.12.0\" {qms}ms upstream={dep}").st(500)],
];

const TLS: [&[Tpl]; 5] = [
    &[t(E, "javax.net.ssl.SSLHandshakeException: PKIX path validation failed: java.security.cert.CertPathValidatorException: validity check failed")
        .ty("javax.net.ssl.SSLHandshakeException")],
    &[t(E, "Get \"https://{dep}.{depns}.svc:8443{path}\": tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time {now} is after 2026-01-01T00:00:00Z")],
    &[t(E, "requests.exceptions.SSLError: HTTPSConnectionPool(host='{dep}', port=8443): Max retries exceeded with url: {path} (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:1006)')))")
        .ty("requests.exceptions.SSLError")],
    &[t(E, "Error: certificate has expired").ty("CERT_HAS_EXPIRED")],
    &[t(E, "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: TLS_error:|268436501:SSL routines:OPENSSL_internal:SSLV3_ALERT_CERTIFICATE_EXPIRED").st(503)],
];

const NO_HEALTHY: [&[Tpl]; 5] = [
    &[t(E, "503 Service Unavailable from http://{dep}.{depns}.svc.cluster.local:8080{path}: no healthy upstream")
        .ty("org.springframework.web.client.HttpServerErrorException$ServiceUnavailable")
        .st(503)],
    &[t(E, "Get \"http://{dep}.{depns}.svc.cluster.local:8080{path}\": dial tcp {ip}:8080: connect: connection refused")],
    &[t(E, "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: http://{dep}:8080{path}")
        .ty("requests.exceptions.HTTPError")
        .st(503)],
    &[t(E, "Error: connect ECONNREFUSED {ip}:8080 ({dep} has no ready endpoints)").ty("ECONNREFUSED")],
    &[t(E, "no healthy upstream").st(503)],
];

fn lang_index(l: Lang) -> usize {
    match l {
        Lang::Java => 0,
        Lang::Go => 1,
        Lang::Python => 2,
        Lang::Node => 3,
        Lang::Proxy => 4,
    }
}

/// Lines a caller writes when a dependency fails with `s`.
pub fn caller_lines(s: Symptom, lang: Lang) -> &'static [Tpl] {
    let i = lang_index(lang);
    match s {
        Symptom::Refused => REFUSED[i],
        Symptom::Timeout => TIMEOUT[i],
        Symptom::ServerError => SERVER_ERROR[i],
        Symptom::Tls => TLS[i],
        Symptom::NoHealthy => NO_HEALTHY[i],
    }
}

const EXT_DB: [&[Tpl]; 5] = [
    &[
        t(E, "org.postgresql.util.PSQLException: Connection to {dep}:5432 refused. Check that the hostname and port are correct and that the postmaster is accepting TCP/IP connections.")
            .ty("org.postgresql.util.PSQLException"),
        t(E, "org.postgresql.util.PSQLException: FATAL: the database system is in recovery mode")
            .ty("org.postgresql.util.PSQLException"),
    ],
    &[t(E, "failed to connect to `host={dep} user=app database=app`: dial error (dial tcp {ip}:5432: connect: connection timed out)")],
    &[t(E, "psycopg2.OperationalError: could not connect to server: Connection timed out\n\tIs the server running on host \"{dep}\" and accepting TCP/IP connections on port 5432?")
        .ty("psycopg2.OperationalError")],
    &[t(E, "Error: Connection terminated unexpectedly (host {dep})").ty("Error")],
    &[t(E, "no healthy upstream").st(503)],
];
const EXT_API: [&[Tpl]; 5] = [
    &[t(
        E,
        "Call to https://{dep}{path} failed: 503 Service Unavailable",
    )
    .ty("org.springframework.web.client.HttpServerErrorException$ServiceUnavailable")
    .st(503)],
    &[
        t(
            E,
            "request to https://{dep}/v1/payment_intents failed: 503 Service Unavailable",
        )
        .st(503),
        t(
            E,
            "Post \"https://{dep}/v1/charges\": dial tcp {ip}:443: i/o timeout",
        ),
    ],
    &[t(
        E,
        "requests.exceptions.HTTPError: 502 Server Error: Bad Gateway for url: https://{dep}{path}",
    )
    .ty("requests.exceptions.HTTPError")
    .st(502)],
    &[t(
        E,
        "ResponseError: Service Unavailable (503) from https://{dep}/v3/mail/send",
    )
    .st(503)],
    &[t(E, "upstream request timeout").st(504)],
];
const EXT_CACHE: [&[Tpl]; 5] = [
    &[t(
        E,
        "io.lettuce.core.RedisConnectionException: Unable to connect to {dep}:6379",
    )
    .ty("io.lettuce.core.RedisConnectionException")],
    &[t(
        E,
        "redis: dial tcp {ip}:6379: i/o timeout (addr {dep}:6379)",
    )],
    &[t(
        E,
        "redis.exceptions.ConnectionError: Error 111 connecting to {dep}:6379. Connection refused.",
    )
    .ty("redis.exceptions.ConnectionError")],
    &[t(
        E,
        "ReplyError: LOADING Redis is loading the dataset in memory ({dep})",
    )
    .ty("ReplyError")],
    &[t(E, "no healthy upstream").st(503)],
];

/// Lines a service writes when the external host `host` fails.
pub fn external_lines(host: &str, lang: Lang) -> &'static [Tpl] {
    let i = lang_index(lang);
    if host.contains("rds.") || host.contains("-db.") {
        EXT_DB[i]
    } else if host.contains("cache.") {
        EXT_CACHE[i]
    } else {
        EXT_API[i]
    }
}

const NETWORK: [&[Tpl]; 5] = [
    &[
        t(E, "java.net.UnknownHostException: {dep}.{depns}.svc.cluster.local: Temporary failure in name resolution")
            .ty("java.net.UnknownHostException"),
        t(E, "java.net.SocketException: Connection reset").ty("java.net.SocketException"),
    ],
    &[
        t(E, "dial tcp: lookup {dep}.{depns}.svc.cluster.local on 10.96.0.10:53: read udp {ip}:{port}->10.96.0.10:53: i/o timeout"),
        t(E, "read tcp {ip}:{port}->{ip}:8080: read: connection reset by peer"),
    ],
    &[t(E, "socket.gaierror: [Errno -3] Temporary failure in name resolution")
        .ty("socket.gaierror")
        .stack(PY_TRACE)],
    &[
        t(E, "Error: getaddrinfo EAI_AGAIN {dep}.{depns}.svc.cluster.local").ty("EAI_AGAIN"),
        t(E, "Error: read ECONNRESET").ty("ECONNRESET"),
    ],
    &[t(E, "upstream connect error or disconnect/reset before headers. reset reason: connection termination").st(503)],
];

/// Lines an instance on a troubled node writes.
pub fn network_lines(lang: Lang) -> &'static [Tpl] {
    NETWORK[lang_index(lang)]
}

// ---------------------------------------------------------------- schedule

/// Minutes of fault-free warm-up before the first fault (baselines learn).
pub const WARMUP_MIN: i64 = 45;
/// Minutes kept fault-free after the last fault's slot.
pub const TAIL_MIN: i64 = 30;
/// The shortest spacing between two onsets, in minutes.
pub const MIN_SLOT_MIN: i64 = 36;

/// Services with at least one synchronous caller (so a fault cascades).
fn called(fleet: &Fleet) -> Vec<String> {
    fleet
        .services
        .keys()
        .filter(|s| !fleet.callers(s).is_empty())
        .cloned()
        .collect()
}

/// Plans `n` faults over `[start, start + hours)`. Categories cycle through
/// `only` in order when it is not empty, else through the whole taxonomy in
/// a seeded order (so 11 faults cover all of it).
pub fn plan(
    rng: &mut Rng,
    fleet: &Fleet,
    start: EventTime,
    hours: f64,
    n: usize,
    only: &[Category],
) -> Vec<FaultPlan> {
    let mut cats: Vec<Category> = Category::ALL.to_vec();
    for i in (1..cats.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        cats.swap(i, j);
    }
    if !only.is_empty() {
        cats = only.to_vec();
    }
    let total_min = (hours * 60.0) as i64;
    let slot = if n == 0 {
        0
    } else {
        (total_min - WARMUP_MIN - TAIL_MIN) / n as i64
    };
    let called = called(fleet);
    let all: Vec<String> = fleet.services.keys().cloned().collect();
    let consumers: Vec<String> = fleet
        .services
        .values()
        .filter(|s| s.consumer)
        .map(|s| s.name.clone())
        .collect();
    let externals: Vec<String> = fleet.externals.keys().cloned().collect();
    let mut out: Vec<FaultPlan> = Vec::with_capacity(n);
    let mut last_root = String::new();
    for i in 0..n {
        let cat = cats[i % cats.len()];
        let kind = *rng.pick(FaultKind::of(cat));
        let jitter = rng.int(0, (slot / 10).max(0));
        let onset = start.plus_ms((WARMUP_MIN + i as i64 * slot + jitter) * 60_000);
        let (root, root_kind) = loop {
            let (r, k) = match kind {
                FaultKind::ExternalDown => (rng.pick(&externals).clone(), RootKind::External),
                FaultKind::NodeNetwork => (rng.pick(&fleet.nodes).clone(), RootKind::Node),
                FaultKind::PoisonMessages => (rng.pick(&consumers).clone(), RootKind::Service),
                FaultKind::Opaque => (rng.pick(&all).clone(), RootKind::Service),
                _ => (rng.pick(&called).clone(), RootKind::Service),
            };
            if r != last_root {
                break (r, k);
            }
        };
        last_root.clone_from(&root);
        let natural_end = kind
            .self_ending()
            .then(|| onset.plus_ms(rng.int(7 * 60, 14 * 60) * 1000));
        let human_fix_at = onset.plus_ms(rng.int(12 * 60, 18 * 60) * 1000);
        out.push(FaultPlan {
            id: format!("F{:02}", i + 1),
            kind,
            root,
            root_kind,
            onset,
            natural_end,
            human_fix_at,
            rate: rng.range(1.2, 2.5),
            shape: Shape::default(),
        });
    }
    out
}
