//! The HTTP side: one handler that reads method, path, query, Content-Type and
//! body, finds the resource, runs the verb on the store and answers as the real
//! API server would (JSON object or list, watch stream, or a Status on failure).
//! Write requests are logged for `FakeApi::writes`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

use crate::delete::DeleteOptions;
use crate::discovery;
use crate::errors::{ApiError, ApiResult};
use crate::faults::{Attempt, Fault};
use crate::meta;
use crate::patch::PatchKind;
use crate::path::{self, Route, Target};
use crate::query::Query;
use crate::resources::ResourceType;
use crate::selector::Selector;
use crate::shared::{AuditRecord, Shared};
use crate::store::{Store, WriteRecord};
use crate::verbs::{Part, PatchOptions, parse_object};
use crate::watch::{self, WatchRequest};

/// The router serving `shared`; every path goes through `dispatch`, since the
/// API's paths nest resources in ways axum's matcher would only duplicate.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.count_request();
    let query = Query::parse(uri.query());
    let found = match path::parse(uri.path()) {
        Some(Route::Version) => Ok(json(StatusCode::OK, discovery::version())),
        Some(Route::CoreVersions) => Ok(json(StatusCode::OK, discovery::core_versions())),
        Some(Route::Groups) => Ok(json(
            StatusCode::OK,
            discovery::groups(&shared.lock().registry),
        )),
        Some(Route::GroupVersion { group, version }) => {
            discovery::resources(&shared.lock().registry, &group, &version)
                .map(|list| json(StatusCode::OK, list))
                .ok_or_else(|| ApiError::no_route(uri.path()))
        }
        Some(Route::Resource(target)) => {
            let record = audit_record(&method, &target, &query, &headers);
            shared.audit(record.clone());
            let fault = shared.faults.draw(&Attempt {
                user: &record.user,
                write: !matches!(record.verb.as_str(), "get" | "list" | "watch"),
                watch: record.verb == "watch",
            });
            match fault {
                Some(Fault::ServerError) => {
                    return ApiError::injected(500, "InternalError").into_response();
                }
                Some(Fault::Conflict) => {
                    return ApiError::injected(409, "Conflict").into_response();
                }
                Some(Fault::WatchGone) => return watch_gone(),
                Some(Fault::Latency(delay)) => tokio::time::sleep(delay).await,
                Some(Fault::WatchDrop(_)) | None => {}
            }
            let request = Request {
                method,
                target,
                query,
                content_type: headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body,
            };
            let mut response = resource(&shared, request, uri.path());
            if let (Some(Fault::WatchDrop(after)), Ok(ok)) = (fault, response.as_mut()) {
                cut_off_after(ok, after);
            }
            // A server-side apply that creates the object is authorized as `create`
            // too, as the real API server does.
            if record.verb == "patch"
                && response
                    .as_ref()
                    .is_ok_and(|r| r.status() == StatusCode::CREATED)
            {
                shared.audit(AuditRecord {
                    verb: "create".to_owned(),
                    ..record
                });
            }
            response
        }
        None => Err(ApiError::no_route(uri.path())),
    };
    found.unwrap_or_else(IntoResponse::into_response)
}

/// The request as RBAC would authorize it: user, verb and resource attributes.
fn audit_record(
    method: &Method,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> AuditRecord {
    let named = target.name.is_some();
    let verb = match *method {
        Method::GET if named => "get",
        Method::GET if query.flag("watch") => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    let user = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    AuditRecord {
        user: user.to_owned(),
        verb: verb.to_owned(),
        group: target.group.clone(),
        resource: target.plural.clone(),
        subresource: target.subresource.clone(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
    }
}

/// A watch that ends at once with an in-stream `410 Expired`, as the real server
/// answers a watch from a compacted resourceVersion: the client lists again.
fn watch_gone() -> Response {
    let event = serde_json::json!({
        "type": "ERROR",
        "object": ApiError::injected(410, "Expired").to_status(),
    });
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        format!("{event}\n"),
    )
        .into_response()
}

/// Ends a (watch) response's body `after` from now, as a dropped connection would.
fn cut_off_after(response: &mut Response, after: std::time::Duration) {
    use futures_util::StreamExt;
    let body = std::mem::take(response.body_mut());
    let stream = body
        .into_data_stream()
        .take_until(tokio::time::sleep(after));
    *response.body_mut() = axum::body::Body::from_stream(stream);
}

fn json(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

/// A request addressed to a resource.
struct Request {
    method: Method,
    target: Target,
    query: Query,
    content_type: String,
    body: Bytes,
}

impl Request {
    fn namespace(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    fn part(&self) -> Part {
        if self.target.subresource.is_some() {
            Part::Status
        } else {
            Part::Main
        }
    }

    fn selector(&self) -> ApiResult<Selector> {
        Selector::parse(
            self.query.get("labelSelector"),
            self.query.get("fieldSelector"),
        )
        .map_err(ApiError::bad_request)
    }
}

fn resource(shared: &Arc<Shared>, request: Request, path: &str) -> ApiResult<Response> {
    let t = &request.target;
    let resource = shared
        .lock()
        .registry
        .by_plural(&t.group, &t.version, &t.plural)
        .cloned()
        .ok_or_else(|| ApiError::no_route(path))?;
    let scope_ok = if resource.namespaced {
        t.namespace.is_some() || t.name.is_none()
    } else {
        t.namespace.is_none()
    };
    let subresource_ok = match t.subresource.as_deref() {
        None => true,
        Some("status") => resource.status_subresource,
        Some(_) => false,
    };
    if !scope_ok || !subresource_ok {
        return Err(ApiError::no_route(path));
    }
    if matches!(
        request.method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && request.query.get("dryRun").is_some()
    {
        return Err(ApiError::bad_request(
            "dryRun is not supported by the fake API server",
        ));
    }
    match (&request.method, t.name.as_deref()) {
        (&Method::GET, None) => read_collection(shared, &resource, &request),
        (&Method::GET, Some(name)) => {
            let object = shared.lock().get(&resource, request.namespace(), name)?;
            Ok(json(StatusCode::OK, object))
        }
        (&Method::POST, None) if resource.namespaced && t.namespace.is_none() => {
            Err(ApiError::no_route(path))
        }
        (&Method::POST, None) if shared.reviews.get(&resource.plural).is_some() => {
            let answer = shared.reviews.get(&resource.plural).expect("checked");
            let mut review = parse_object(&request.body)?;
            review["status"] = answer(&review);
            Ok(json(StatusCode::CREATED, review))
        }
        (&Method::POST | &Method::PUT | &Method::PATCH | &Method::DELETE, _) => {
            Ok(write(shared, &resource, &request))
        }
        (method, _) => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// list or watch.
fn read_collection(
    shared: &Arc<Shared>,
    resource: &ResourceType,
    request: &Request,
) -> ApiResult<Response> {
    let selector = request.selector()?;
    if request.query.flag("watch") {
        let namespace = request.target.namespace.clone();
        let watch_request =
            WatchRequest::parse(resource.clone(), namespace, selector, &request.query)?;
        return Ok(watch::serve(shared.clone(), watch_request));
    }
    if request.query.get("continue").is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::bad_request(
            "continue tokens are never issued by the fake API server: every list is one page",
        ));
    }
    let list = shared.lock().list(resource, request.namespace(), &selector);
    Ok(json(StatusCode::OK, list))
}

/// The writing verbs, logged whether they succeed or not.
fn write(shared: &Arc<Shared>, resource: &ResourceType, request: &Request) -> Response {
    let outcome = shared.write(|store| {
        let ns = request.namespace();
        let name = request.target.name.as_deref();
        let (verb, outcome) = match (&request.method, name) {
            (&Method::POST, None) => (
                "create",
                parse_object(&request.body)
                    .and_then(|body| store.create(resource, ns, body))
                    .map(|o| (StatusCode::CREATED, o)),
            ),
            (&Method::PUT, Some(name)) => (
                "update",
                parse_object(&request.body)
                    .and_then(|body| store.replace(resource, ns, name, request.part(), body))
                    .map(|o| (StatusCode::OK, o)),
            ),
            (&Method::PATCH, Some(name)) => ("patch", patch(store, resource, request, name)),
            (&Method::DELETE, Some(name)) => (
                "delete",
                delete_options(request)
                    .and_then(|options| store.delete(resource, ns, name, &options))
                    .map(|o| (StatusCode::OK, o)),
            ),
            (&Method::DELETE, None) => (
                "deletecollection",
                request
                    .selector()
                    .and_then(|selector| Ok((selector, delete_options(request)?)))
                    .and_then(|(selector, options)| {
                        store.delete_collection(resource, ns, &selector, &options)
                    })
                    .map(|o| (StatusCode::OK, o)),
            ),
            (method, _) => ("", Err(ApiError::method_not_allowed(method.as_str()))),
        };
        if !verb.is_empty() {
            let written_name = match &outcome {
                Ok((_, object)) if name.is_none() && verb == "create" => {
                    meta::meta_str(object, "name")
                        .unwrap_or_default()
                        .to_owned()
                }
                _ => name.unwrap_or_default().to_owned(),
            };
            store.log_write(WriteRecord {
                at: Instant::now(),
                verb: verb.to_owned(),
                group: resource.group.clone(),
                plural: resource.plural.clone(),
                namespace: ns.unwrap_or_default().to_owned(),
                name: written_name,
                subresource: request.target.subresource.clone(),
                code: outcome
                    .as_ref()
                    .map_or_else(|e| e.code, |(code, _)| code.as_u16()),
            });
        }
        outcome
    });
    match outcome {
        Ok((code, object)) => json(code, object),
        Err(error) => error.into_response(),
    }
}

fn patch(
    store: &mut Store,
    resource: &ResourceType,
    request: &Request,
    name: &str,
) -> ApiResult<(StatusCode, Value)> {
    let kind = PatchKind::from_content_type(&request.content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(&request.content_type))?;
    let options = PatchOptions {
        field_manager: request.query.get("fieldManager").map(str::to_owned),
        force: request.query.flag("force"),
    };
    let (object, created) = store.patch(
        resource,
        request.namespace(),
        name,
        request.part(),
        kind,
        &request.body,
        &options,
    )?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        object,
    ))
}

fn delete_options(request: &Request) -> ApiResult<DeleteOptions> {
    DeleteOptions::parse(&request.body, request.query.get("propagationPolicy"))
}
