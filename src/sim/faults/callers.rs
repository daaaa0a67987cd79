//! What the callers of a failing dependency write (tables, data mostly),
//! per symptom (refused, timeout, 5xx, TLS, no healthy upstream) and
//! language, for external hosts per kind of host (database, cache, API),
//! and what instances on a node with network trouble write.
//!
//! Guarantees: per-language tables are indexed Java, Go, Python, Node,
//! proxy, and every entry is non-empty.

use super::Symptom;
use crate::model::{ErrorEvent, EventTime, Severity};
use crate::sim::emit::{make, pick_dep};
use crate::sim::fleet::{Fleet, Instance, Lang, Service};
use crate::sim::gen::Rng;
use crate::sim::noise::{t, Tpl, JAVA_STACK, NODE_STACK, PY_TRACE};

use Severity::Error as E;

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

/// A network error of `svc`'s own (a reset, a DNS failure) on `inst`, most
/// naming the call it broke. `trace` is drawn after the template and the
/// dependency (the order every caller's recordings depend on).
pub fn own_network_error(
    rng: &mut Rng,
    fleet: &Fleet,
    svc: &Service,
    inst: Option<&Instance>,
    t: EventTime,
    trace: impl FnOnce(&mut Rng) -> Option<String>,
) -> ErrorEvent {
    let tpl = *rng.pick(network_lines(svc.lang));
    let dep = pick_dep(rng, svc);
    let dep_ns = fleet.namespace_of(&dep).to_string();
    let trace = trace(rng);
    let mut ev = make(rng, t, svc, inst, &tpl, &dep, &dep_ns, trace);
    if !dep.is_empty() && rng.chance(0.7) {
        ev.upstream = Some(dep);
    }
    ev
}
