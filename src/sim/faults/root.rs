//! What a failing root writes, per fault kind and language (tables, data
//! mostly): bad deploys' exceptions and panics, configuration errors at
//! start-up, OOM kills, exhausted pools and descriptors, overload, stuck
//! pods, expired certificates, poison messages, opaque failures; and the
//! platform's (Kubernetes) lines about the root.
//!
//! Guarantees: every kind whose root logs has lines for every language;
//! silent kinds (scaled to zero, external, node) have none.

use super::FaultKind;
use crate::model::Severity;
use crate::sim::fleet::Lang;
use crate::sim::noise::{t, Tpl, GO_TRACE, JAVA_STACK, NODE_STACK, PY_TRACE};

use Severity::{Critical as C, Error as E, Warning as W};

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
