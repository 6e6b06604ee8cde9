//! The engine edge, raw reads (I/O): a GET whose answer is kept as the
//! engine's own JSON, for the lists bollard's typed model would lose fields
//! of (its serde names are case-sensitive, the engine's are not: see
//! [`fix_service_json`]).

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value as Json;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Engine, EngineError};

/// Largest answer read (the list of every service of a large swarm fits).
const MAX_ANSWER: usize = 512 << 20;

impl Engine {
    /// `GET /v<api><path_and_query>`, the answer's bytes; `what` names the call in errors.
    pub(super) async fn get_bytes(&self, what: &str, path_and_query: &str) -> Result<Bytes, EngineError> {
        let uri = format!("/v{}{}", self.api_version, path_and_query);
        let call = async {
            if let Some(path) = self
                .host
                .strip_prefix("unix://")
                .or(self.host.starts_with('/').then_some(&*self.host))
            {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| self.unreachable(format!("connect {path}: {e}")))?;
                self.request(stream, what, &uri).await
            } else {
                let addr = self
                    .host
                    .trim_start_matches("tcp://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| self.unreachable(format!("connect {addr}: {e}")))?;
                self.request(stream, what, &uri).await
            }
        };
        self.within_deadline(what, "", call).await
    }

    fn unreachable(&self, detail: String) -> EngineError {
        EngineError::Unreachable {
            host: self.host.clone(),
            detail,
        }
    }

    async fn request<S>(&self, stream: S, what: &str, uri: &str) -> Result<Bytes, EngineError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(format!("{what}: HTTP handshake: {e}")))?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::get(uri)
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| EngineError::Other {
                what: what.to_string(),
                detail: format!("building the request {uri}: {e}"),
            })?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.unreachable(format!("{what}: {e}")))?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| EngineError::Other {
                what: what.to_string(),
                detail: format!("reading the answer: {e}"),
            })?
            .to_bytes();
        conn.abort();
        if status >= 400 {
            let message = serde_json::from_slice::<Json>(&body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(self.err(
                what,
                "",
                bollard::errors::Error::DockerResponseServerError {
                    status_code: status,
                    message,
                },
            ));
        }
        Ok(body)
    }
}

/// Services of the engine's JSON list, typed one at a time (each put into
/// the model's names by [`fix_service_json`] first): the whole list is never
/// held as a JSON tree, which at 5,000 services is several times its bytes.
/// Those `keep` refuses are dropped as they are read.
pub(super) fn services_from_json(
    body: &[u8],
    keep: &dyn Fn(&bollard::models::Service) -> bool,
) -> Result<Vec<bollard::models::Service>, String> {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};

    struct Services<'k>(&'k dyn Fn(&bollard::models::Service) -> bool);
    impl<'de> Visitor<'de> for Services<'_> {
        type Value = Vec<bollard::models::Service>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of services")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(mut item) = seq.next_element::<Json>()? {
                fix_service_json(&mut item);
                let id = item.get("ID").and_then(Json::as_str).unwrap_or_default().to_string();
                let service = serde_json::from_value(item).map_err(|e| {
                    serde::de::Error::custom(format!("service {id}: the engine's JSON does not fit the model: {e}"))
                })?;
                if (self.0)(&service) {
                    out.push(service);
                }
            }
            Ok(out)
        }
    }
    impl<'de> DeserializeSeed<'de> for Services<'_> {
        type Value = Vec<bollard::models::Service>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let services = Services(keep).deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(services)
}

/// Keys the engine writes under another name than bollard's model reads
/// (serde is case-sensitive; Go's decoder is not, so the engine accepts
/// either on create): (object holding the key, the engine's key, the model's).
const RENAMES: &[(&[&str], &str, &str)] = &[(&["TaskTemplate", "ContainerSpec"], "Healthcheck", "HealthCheck")];

/// Puts a service of the engine's JSON into the names bollard's model reads
/// (in its spec; the model has no `PreviousSpec`). The guard for the whole class is the
/// sandbox test `observe_loses_no_field_of_the_engines_json`.
pub(super) fn fix_service_json(service: &mut Json) {
    if let Some(spec) = service.get_mut("Spec") {
        for (parent, from, to) in RENAMES {
            let mut obj = Some(&mut *spec);
            for p in *parent {
                obj = obj.and_then(|o| o.get_mut(*p));
            }
            if let Some(o) = obj.and_then(Json::as_object_mut) {
                if let Some(v) = o.remove(*from) {
                    o.entry(to.to_string()).or_insert(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_services_is_typed_one_by_one() {
        let body = br#"[{"ID":"a","Spec":{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"i",
            "Healthcheck":{"Test":["CMD","true"]}}}}},{"ID":"b","Spec":{"Name":"y"}}]"#;
        let services = services_from_json(body, &|_| true).unwrap();
        assert_eq!(services.len(), 2);
        let hc = services[0]
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.health_check.as_ref());
        assert!(hc.is_some(), "the healthcheck is kept");
        assert_eq!(services[1].spec.as_ref().and_then(|s| s.name.as_deref()), Some("y"));
        assert!(services_from_json(b"[]", &|_| true).unwrap().is_empty());
        let only_y =
            services_from_json(body, &|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some("y")).unwrap();
        assert_eq!(only_y.len(), 1);
        // What does not fit says which service, and trailing bytes are refused.
        let e = services_from_json(br#"[{"ID":"c","Spec":{"Name":7}}]"#, &|_| true).unwrap_err();
        assert!(e.contains("service c"), "{e}");
        assert!(services_from_json(b"{}", &|_| true).is_err());
        assert!(services_from_json(b"[] x", &|_| true).is_err());
    }

    #[test]
    fn the_update_state_reaches_the_model() {
        // What the engine says of a start-first update stopped on a failed
        // task: the status reads it to tell the spec in force does not run.
        let body = br#"[{"ID":"k","Spec":{"Name":"kibana"},"UpdateStatus":{"State":"paused",
            "StartedAt":"2026-12-07T08:00:00Z","Message":"update paused due to failure or early termination of task x"}}]"#;
        let services = services_from_json(body, &|_| true).unwrap();
        let u = services[0].update_status.as_ref().expect("UpdateStatus is kept");
        assert_eq!(u.state, Some(bollard::models::ServiceUpdateStatusStateEnum::PAUSED));
    }

    #[test]
    fn engine_healthcheck_reaches_the_model() {
        let mut raw = serde_json::json!({
            "ID": "x",
            "Spec": {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "i",
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5000000000u64, "Retries": 3}}}}
        });
        // Without the fix-up the model drops it: the bug this guards against.
        let lost: bollard::models::Service = serde_json::from_value(raw.clone()).unwrap();
        assert!(lost
            .spec
            .unwrap()
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .health_check
            .is_none());
        fix_service_json(&mut raw);
        let s: bollard::models::Service = serde_json::from_value(raw).unwrap();
        let hc = s
            .spec
            .unwrap()
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .health_check
            .unwrap();
        assert_eq!(hc.test.as_deref(), Some(&["CMD".to_string(), "true".to_string()][..]));
        assert_eq!(hc.interval, Some(5_000_000_000));
        assert_eq!(hc.retries, Some(3));
    }
}
