//! Maps an HTTP request of moby's plugin client to the plugin's endpoint
//! and its result to the reply the graphdriver proxy decodes: JSON for
//! every call, the raw tarball for a successful `Diff`, and `{"Err":"…"}`
//! with a non-200 status for every failure.

use crate::error::PluginError;
use crate::plugin::Plugin;
use crate::stream::{
    drain, forward_body, ChannelBody, ChannelReader, ChannelWriter, CHANNEL_DEPTH,
};
use crate::wire::{DriverRequest, DriverResponse, InitRequest, Manifest, GRAPH_DRIVER, MIME_TYPE};
use bytes::Bytes;
use http_body::Body;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The body of every reply.
pub type ReplyBody = BoxBody<Bytes, io::Error>;

/// Requests bodies larger than this are refused for JSON calls (a JSON
/// request is a few hundred bytes; tarballs go to `ApplyDiff` only).
const MAX_JSON: usize = 1 << 20;

/// Serves one request.
pub async fn handle<B>(
    plugin: Arc<Plugin>,
    req: Request<B>,
) -> Result<Response<ReplyBody>, Infallible>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let reply = match path.as_str() {
        "Plugin.Activate" => {
            drain(req.into_body()).await;
            Ok(json(
                StatusCode::OK,
                &Manifest {
                    implements: vec![GRAPH_DRIVER.to_owned()],
                },
            ))
        }
        "GraphDriver.ApplyDiff" => apply_diff(&plugin, &query, req.into_body()).await,
        "GraphDriver.Diff" => match read_json::<DriverRequest, B>("Diff", req.into_body()).await {
            Ok(r) => diff(&plugin, r).await,
            Err(e) => Err(e),
        },
        m if m.starts_with("GraphDriver.") => call(&plugin, m, req.into_body()).await,
        m => {
            drain(req.into_body()).await;
            Err(PluginError::UnknownMethod(m.to_owned()))
        }
    };
    Ok(reply.unwrap_or_else(|e| {
        tracing::warn!(method = %path, error = %e, "plugin call failed");
        error_reply(&e)
    }))
}

/// The reply to a failed call: `{"Err":"…"}` with the error's status. The
/// message carries the whole chain of causes: dockerd shows it as is.
pub fn error_reply(e: &PluginError) -> Response<ReplyBody> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status,
        &DriverResponse {
            err: aufs_driver::with_causes(e),
            ..DriverResponse::default()
        },
    )
}

async fn call<B>(plugin: &Plugin, method: &str, body: B) -> Result<Response<ReplyBody>, PluginError>
where
    B: Body<Data = Bytes> + Send + Unpin,
    B::Error: std::fmt::Display,
{
    let name = method.trim_start_matches("GraphDriver.");
    let mut out = DriverResponse::default();
    if name == "Init" {
        plugin
            .init(read_json::<InitRequest, B>(name, body).await?)
            .await?;
        return Ok(json(StatusCode::OK, &out));
    }
    let r: DriverRequest = read_json(name, body).await?;
    match name {
        "Create" => {
            plugin
                .create(false, &r.id, &r.parent, r.storage_opt)
                .await?
        }
        "CreateReadWrite" => plugin.create(true, &r.id, &r.parent, r.storage_opt).await?,
        "Remove" => plugin.remove(&r.id).await?,
        "Get" => out.dir = plugin.get(&r.id, &r.mount_label).await?,
        "Put" => plugin.put(&r.id).await?,
        "Exists" => out.exists = plugin.exists(&r.id).await?,
        "Status" => out.status = plugin.status().await?,
        "GetMetadata" => plugin.get_metadata(&r.id).await?,
        "Cleanup" => plugin.cleanup().await?,
        "Changes" => out.changes = plugin.changes(&r.id, &r.parent).await?,
        "DiffSize" => out.size = plugin.diff_size(&r.id, &r.parent).await?,
        "Capabilities" => out.capabilities = plugin.capabilities(),
        _ => return Err(PluginError::UnknownMethod(method.to_owned())),
    }
    Ok(json(StatusCode::OK, &out))
}

/// `Diff`: the reply is 200 only once the first bytes of the tarball
/// exist; a failure before then is an ordinary error reply, one after
/// cuts the connection (see [`ChannelBody`]).
async fn diff(plugin: &Arc<Plugin>, r: DriverRequest) -> Result<Response<ReplyBody>, PluginError> {
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let (plugin, err_tx) = (Arc::clone(plugin), tx.clone());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<PluginError>();
    tokio::spawn(async move {
        let writer = Box::new(ChannelWriter::new(tx));
        let result = match plugin.diff(&r.id, &r.parent, writer).await {
            Ok(mut w) => tokio::task::spawn_blocking(move || w.flush())
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
                .map_err(|e| e.to_string()),
            Err(e) => {
                // Before any byte went out this becomes the reply.
                let msg = e.to_string();
                let _ = done_tx.send(e);
                Err(msg)
            }
        };
        if let Err(msg) = result {
            tracing::warn!(id = %r.id, error = %msg, "Diff failed");
            let _ = err_tx.send(Err(msg)).await;
        }
    });
    match rx.recv().await {
        Some(Ok(first)) => Ok(tar_reply(ChannelBody::new(Some(first), rx))),
        None => Ok(tar_reply(ChannelBody::new(None, rx))),
        Some(Err(msg)) => match done_rx.await {
            Ok(e) => Err(e),
            Err(_) => Err(PluginError::Stream {
                method: "Diff".into(),
                reason: msg,
            }),
        },
    }
}

fn tar_reply(body: ChannelBody) -> Response<ReplyBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .body(body.boxed())
        .expect("static reply headers are valid")
}

/// `ApplyDiff?id=…&parent=…`: the body is the tarball, usually chunked;
/// it is read as it arrives.
async fn apply_diff<B>(
    plugin: &Plugin,
    query: &str,
    body: B,
) -> Result<Response<ReplyBody>, PluginError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let (id, parent) = match apply_query(query) {
        Ok(q) => q,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let forward = tokio::spawn(forward_body(body, tx));
    let size = plugin
        .apply_diff(&id, &parent, Box::new(ChannelReader::new(rx)))
        .await;
    // The reader is gone with the apply: what it did not read is drained.
    if let Ok(Some(rest)) = forward.await {
        drain(rest).await;
    }
    let out = DriverResponse {
        size: size?,
        ..DriverResponse::default()
    };
    Ok(json(StatusCode::OK, &out))
}

/// `id` and `parent` of `ApplyDiff`'s query.
fn apply_query(query: &str) -> Result<(String, String), PluginError> {
    let (mut id, mut parent) = (String::new(), String::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| PluginError::Invalid {
            method: "ApplyDiff".into(),
            reason: format!("bad escape in query {query:?}"),
        })?;
        match k {
            "id" => id = v,
            "parent" => parent = v,
            _ => {}
        }
    }
    Ok((id, parent))
}

/// Decodes `%XX` escapes and `+` (Go's query unescaping); `None` when an
/// escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn read_json<T, B>(method: &str, body: B) -> Result<T, PluginError>
where
    T: serde::de::DeserializeOwned + Default,
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| PluginError::Invalid {
            method: method.to_owned(),
            reason: format!("reading the body: {e}"),
        })?;
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
        if bytes.len() > MAX_JSON {
            return Err(PluginError::Invalid {
                method: method.to_owned(),
                reason: format!("the body is over {MAX_JSON} bytes"),
            });
        }
    }
    // moby's client sends nothing at all for a call without arguments.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|source| PluginError::BadRequest {
        method: method.to_owned(),
        source,
    })
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<ReplyBody> {
    let body = serde_json::to_vec(value).expect("reply types always serialise");
    Response::builder()
        .status(status)
        .header("Content-Type", MIME_TYPE)
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .expect("static reply headers are valid")
}
