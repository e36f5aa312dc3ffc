//! The app's one HTTP client: typed requests and answers (the types of `p2law_shared::api`), a
//! refusal read as the server's [`ErrorBody`] and shown as `what: HTTP status: error`.

#[cfg(target_arch = "wasm32")]
use gloo_net::http::{Request, RequestBuilder, Response};
use p2law_shared::api::ErrorBody;
#[cfg(target_arch = "wasm32")]
use serde::{Serialize, de::DeserializeOwned};

/// What a refusal says: the error, and the file and field it names when the error does not.
pub fn refusal(what: &str, status: u16, body: Option<ErrorBody>) -> String {
    match body {
        Some(b) => {
            let mut at = Vec::new();
            if let Some(f) = &b.file {
                at.push(f.clone());
            }
            if let Some(f) = &b.field {
                at.push(format!("field `{f}`"));
            }
            let at = if at.is_empty() || at.iter().all(|a| b.error.contains(a.as_str())) { String::new() } else { format!(" ({})", at.join(", ")) };
            format!("{what}: HTTP {status}: {}{at}", b.error)
        }
        None => format!("{what}: HTTP {status}"),
    }
}

#[cfg(target_arch = "wasm32")]
async fn read<T: DeserializeOwned>(what: &str, resp: Response) -> Result<T, String> {
    if !resp.ok() {
        let status = resp.status();
        return Err(refusal(what, status, resp.json::<ErrorBody>().await.ok()));
    }
    resp.json().await.map_err(|e| format!("{what}: {e}"))
}

#[cfg(target_arch = "wasm32")]
fn authorized(builder: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(t) => builder.header("Authorization", &format!("Bearer {}", t.trim())),
        None => builder,
    }
}

#[cfg(target_arch = "wasm32")]
/// `GET path`.
pub async fn get<T: DeserializeOwned>(what: &str, path: &str) -> Result<T, String> {
    let resp = Request::get(path).send().await.map_err(|e| format!("{what}: {e}"))?;
    read(what, resp).await
}

#[cfg(target_arch = "wasm32")]
/// `POST path` with a JSON body.
pub async fn post_json<B: Serialize, T: DeserializeOwned>(what: &str, path: &str, token: Option<&str>, body: &B) -> Result<T, String> {
    let req = authorized(Request::post(path), token).json(body).map_err(|e| format!("{what}: {e}"))?;
    let resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
    read(what, resp).await
}

#[cfg(target_arch = "wasm32")]
/// `POST path` with a multipart form.
pub async fn post_form<T: DeserializeOwned>(what: &str, path: &str, token: Option<&str>, form: web_sys::FormData) -> Result<T, String> {
    let req = authorized(Request::post(path), token).body(form).map_err(|e| format!("{what}: {e}"))?;
    let resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
    read(what, resp).await
}

#[cfg(target_arch = "wasm32")]
/// `POST path` without a body.
pub async fn post<T: DeserializeOwned>(what: &str, path: &str, token: Option<&str>) -> Result<T, String> {
    let resp = authorized(Request::post(path), token).send().await.map_err(|e| format!("{what}: {e}"))?;
    read(what, resp).await
}

#[cfg(target_arch = "wasm32")]
type Listener = wasm_bindgen::closure::Closure<dyn FnMut(web_sys::MessageEvent)>;

#[cfg(target_arch = "wasm32")]
thread_local! {
    /// The open event stream and its listener (dropped together when another job is followed).
    static SOURCE: std::cell::RefCell<Option<(web_sys::EventSource, Listener)>> = const { std::cell::RefCell::new(None) };
}

/// Follows calibration job `id`'s server-sent events (`GET /api/calibrations/{id}/events`: the
/// log so far, then live ones) into `on_event`, closing any stream already open; the stream is
/// closed after the job's final event.
#[cfg(target_arch = "wasm32")]
pub fn follow_job(id: i64, mut on_event: impl FnMut(p2law_shared::calibrate::CalibrationEvent) + 'static) {
    use p2law_shared::calibrate::{CalibrationEvent, Stage};
    use wasm_bindgen::JsCast;
    SOURCE.with(|s| {
        if let Some((old, _)) = s.borrow_mut().take() {
            old.close();
        }
    });
    let Ok(source) = web_sys::EventSource::new(&format!("/api/calibrations/{id}/events")) else { return };
    let listener: Listener = wasm_bindgen::closure::Closure::new(move |m: web_sys::MessageEvent| {
        let Some(text) = m.data().as_string() else { return };
        let Ok(e) = serde_json::from_str::<CalibrationEvent>(&text) else { return };
        let end = e.stage.is_final();
        on_event(e);
        if end {
            SOURCE.with(|s| {
                if let Some((src, _)) = s.borrow().as_ref() {
                    src.close();
                }
            });
        }
    });
    // Every stage is its own SSE event name; `message` is the default one.
    for stage in Stage::ALL.iter().map(|s| s.as_str()).chain(["message"]) {
        let _ = source.add_event_listener_with_callback(stage, listener.as_ref().unchecked_ref());
    }
    SOURCE.with(|s| *s.borrow_mut() = Some((source, listener)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_the_servers_error_and_what_it_names() {
        let body = |error: &str, file: Option<&str>, field: Option<&str>| Some(ErrorBody { error: error.into(), file: file.map(str::to_string), location: None, field: field.map(str::to_string) });
        assert_eq!(refusal("fit", 422, body("field `run_ids`: run 9 does not exist", None, Some("run_ids"))), "fit: HTTP 422: field `run_ids`: run 9 does not exist");
        assert_eq!(refusal("upload", 422, body("line 3: no loss column", Some("a.csv"), None)), "upload: HTTP 422: line 3: no loss column (a.csv)");
        assert_eq!(refusal("job", 502, None), "job: HTTP 502");
    }
}
