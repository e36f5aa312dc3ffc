//! The API's one error type and its status mapping. 4xx bodies say what to fix (file, line or
//! record, field); 5xx bodies say little and the log says everything.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Json;
use p2law_shared::api::ErrorBody;
use p2law_shared::data::InputError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0} not found")]
    NotFound(String),
    /// It existed, and retention removed it for good.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("{0}")]
    Unprocessable(String),
    /// A request field out of its domain: 422 with the field named in the body.
    #[error("{0}")]
    Field(#[from] p2law_shared::law::InputsError),
    #[error("{0}")]
    Forbidden(String),
    /// Every slot for this kind of work is taken: 503 with `Retry-After`.
    #[error("{0}")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    /// A JSON body that cannot be read: 413 when it is over the body limit, 422 otherwise.
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge(format!("the request body is over the {} MiB limit", super::MAX_BODY_BYTES >> 20));
        }
        // A value the types refuse (an unknown method, a malformed N:M pattern, a missing
        // field): name the field as the handlers' own checks do.
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            if let Some(p) = s.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
                let path = p.path().to_string();
                let top: String = path.chars().take_while(|c| !matches!(c, '.' | '[')).collect();
                return ApiError::Unprocessable(match (top.is_empty(), top == path) {
                    (true, _) => p.inner().to_string(),
                    (false, true) => format!("field `{top}`: {}", p.inner()),
                    (false, false) => format!("field `{top}` ({path}): {}", p.inner()),
                });
            }
            source = s.source();
        }
        ApiError::Unprocessable(e.body_text())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::MissingRun { id } => ApiError::Unprocessable(format!("field `run_ids`: run {id} does not exist")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Input(_) | ApiError::Unprocessable(_) | ApiError::Field(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match self {
            ApiError::Input(e) => ErrorBody { error: e.to_string(), file: Some(e.file), location: Some(e.location), field: e.field },
            ApiError::Field(e) => ErrorBody { error: e.to_string(), file: None, location: None, field: Some(e.field.to_string()) },
            ApiError::Internal(detail) => {
                tracing::error!("{detail}");
                ErrorBody { error: "internal error; the server log has the details".into(), file: None, location: None, field: None }
            }
            other => ErrorBody { error: other.to_string(), file: None, location: None, field: None },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// A path `{id}`: a positive 64-bit integer. Anything else (text, an id beyond 2^63 - 1) is a
/// JSON 400 naming the segment, not axum's plain-text rejection.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub i64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        let raw = axum::extract::Path::<String>::from_request_parts(parts, state).await.map(|p| p.0).unwrap_or_default();
        raw.parse().map(Id).map_err(|_| ApiError::BadRequest(format!("path `{{id}}` `{raw}`: must be an integer id from 1 to {}", i64::MAX)))
    }
}
