//! An in-process fake Kubernetes API server (axum, plain HTTP on
//! 127.0.0.1:0) serving just what the kube executor uses — Deployments (and
//! their scale subresource), ReplicaSets, Pods (get, list, delete, eviction)
//! and Nodes (get, patch) — and recording every request as
//! (method, path?query, body) for exact assertions.
//!
//! Behaviour: a PATCH to a Deployment or its scale merges the body into the
//! stored object, bumps `metadata.generation` and makes the rollout ready at
//! once (unless `never_ready`). `fail` injects an API error for requests
//! whose "METHOD path" starts with a prefix; `evict_429` makes that many
//! evictions answer 429 (a PodDisruptionBudget refusing) first.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub content_type: String,
    pub body: Option<Value>,
}

#[derive(Default)]
pub struct State {
    pub deployments: BTreeMap<(String, String), Value>,
    pub replicasets: Vec<Value>,
    pub pods: Vec<Value>,
    pub nodes: BTreeMap<String, Value>,
    pub requests: Vec<Request>,
    /// ("METHOD path-prefix", status code) → answer with that error.
    pub fail: Option<(String, u16)>,
    pub evict_429: usize,
    pub never_ready: bool,
}

#[derive(Clone)]
pub struct FakeKube {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

pub fn deployment(ns: &str, name: &str, replicas: i64, revision: i64, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "generation": 1,
                     "labels": labels,
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string()}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": format!("{name}:v{revision}")}]}}},
        "status": ready_status(replicas, 1)
    })
}

pub fn replicaset(ns: &str, deploy: &str, revision: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{deploy}-{revision}"), "namespace": ns,
                     "labels": {"app": deploy, "pod-template-hash": format!("h{revision}")},
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy,
                                          "uid": format!("uid-{deploy}"), "controller": true}]},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": deploy}},
                 "template": {"metadata": {"labels": {"app": deploy, "pod-template-hash": format!("h{revision}")}},
                              "spec": {"containers": [{"name": deploy, "image": image}]}}}
    })
}

pub fn pod(ns: &str, name: &str, node: &str, labels: Value, owner_kind: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "owner", "uid": "u"}]},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}
    })
}

pub fn node(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {}})
}

fn ready_status(replicas: i64, generation: i64) -> Value {
    json!({"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
           "readyReplicas": replicas, "availableReplicas": replicas})
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn list(kind: &str, items: Vec<Value>) -> Response {
    ok(
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|t| {
        let (k, v) = t.split_once('=').unwrap_or((t, ""));
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn handle(
    st: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    body: Option<Value>,
) -> Response {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), seg.as_slice()) {
        (
            "GET" | "PATCH",
            ["apis", "apps", "v1", "namespaces", ns, "deployments", name, rest @ ..],
        ) => {
            let key = (ns.to_string(), name.to_string());
            let never_ready = st.never_ready;
            let Some(d) = st.deployments.get_mut(&key) else {
                return status(
                    404,
                    "NotFound",
                    &format!("deployments.apps \"{name}\" not found"),
                );
            };
            let scale = rest == ["scale"];
            if method == Method::PATCH {
                let patch = body.unwrap_or(Value::Null);
                if scale {
                    merge(&mut d["spec"], &patch["spec"]);
                } else {
                    merge(d, &patch);
                }
                let gen = d["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                d["metadata"]["generation"] = json!(gen);
                let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
                if never_ready {
                    d["status"]["observedGeneration"] = json!(gen);
                    d["status"]["readyReplicas"] = json!(0);
                } else {
                    d["status"] = ready_status(replicas, gen);
                }
            }
            if scale {
                let r = d["spec"]["replicas"].clone();
                return ok(json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": name, "namespace": ns}, "spec": {"replicas": r}, "status": {"replicas": r}}));
            }
            ok(d.clone())
        }
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "replicasets"]) => {
            let sel = query_param(query, "labelSelector").unwrap_or_default();
            let items = st
                .replicasets
                .iter()
                .filter(|r| r["metadata"]["namespace"] == *ns && labels_match(r, &sel))
                .cloned()
                .collect();
            list("ReplicaSetList", items)
        }
        ("GET", ["api", "v1", "pods"]) => {
            let field = query_param(query, "fieldSelector").unwrap_or_default();
            let node = field.strip_prefix("spec.nodeName=").unwrap_or("");
            let items = st
                .pods
                .iter()
                .filter(|p| node.is_empty() || p["spec"]["nodeName"] == node)
                .cloned()
                .collect();
            list("PodList", items)
        }
        ("GET" | "DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
            let idx = st
                .pods
                .iter()
                .position(|p| p["metadata"]["namespace"] == *ns && p["metadata"]["name"] == *name);
            let Some(i) = idx else {
                return status(404, "NotFound", &format!("pods \"{name}\" not found"));
            };
            if method == Method::DELETE {
                return ok(st.pods.remove(i));
            }
            ok(st.pods[i].clone())
        }
        ("POST", ["api", "v1", "namespaces", ns, "pods", name, "eviction"]) => {
            if st.evict_429 > 0 {
                st.evict_429 -= 1;
                return status(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                );
            }
            st.pods
                .retain(|p| !(p["metadata"]["namespace"] == *ns && p["metadata"]["name"] == *name));
            (StatusCode::CREATED, axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})))
                .into_response()
        }
        ("GET" | "PATCH", ["api", "v1", "nodes", name]) => {
            let Some(n) = st.nodes.get_mut(*name) else {
                return status(404, "NotFound", &format!("nodes \"{name}\" not found"));
            };
            if method == Method::PATCH {
                merge(n, &body.unwrap_or(Value::Null));
            }
            ok(n.clone())
        }
        _ => status(
            404,
            "NotFound",
            &format!("fake server does not serve {method} {path}"),
        ),
    }
}

impl FakeKube {
    pub async fn start() -> FakeKube {
        let state = Arc::new(Mutex::new(State::default()));
        let s2 = state.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = s2.clone();
                async move {
                    let path = uri.path().to_string();
                    let query = uri.query().unwrap_or("").to_string();
                    let body_json: Option<Value> = if body.is_empty() {
                        None
                    } else {
                        serde_json::from_slice(&body).ok()
                    };
                    let mut st = state.lock().unwrap();
                    let full = if query.is_empty() {
                        path.clone()
                    } else {
                        format!("{path}?{query}")
                    };
                    st.requests.push(Request {
                        method: method.to_string(),
                        path: full.clone(),
                        content_type: headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string(),
                        body: body_json.clone(),
                    });
                    if let Some((prefix, code)) = st.fail.clone() {
                        if format!("{method} {full}").starts_with(&prefix) {
                            return status(code, "InternalError", "injected failure");
                        }
                    }
                    handle(&mut st, &method, &path, &query, body_json)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeKube {
            url: format!("http://{addr}"),
            state,
        }
    }

    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(reflex::executors::kube::client_config(kube::Config::new(
            self.url.parse().unwrap(),
        )))
        .unwrap()
    }

    /// Every request so far as "METHOD path" strings.
    pub fn calls(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}
