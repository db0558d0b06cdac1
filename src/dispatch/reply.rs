//! What a model request answers, before the edge turns it into an HTTP response: a status,
//! headers, and a body that is either whole or a stream pulled as the client reads.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::routing::Route;
use crate::upstream::buffered::BufferedAnswer;

/// The response header naming the route that served.
pub const HEADER_ROUTE: &str = "x-byollm-route";

/// A streamed body: bytes as the client pulls them; an error ends the body as a cut.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pub enum ReplyBody {
    Full(Bytes),
    /// An upstream's answer relayed whole: its share of the answer budget is held until the
    /// client has taken the last of it.
    Buffered(BufferedAnswer),
    Stream(BodyStream),
}

/// An answer for the client.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ReplyBody,
}

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

impl Reply {
    /// A whole JSON body, 200.
    pub fn json(body: impl Into<Bytes>) -> Reply {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(CONTENT_TYPE, APPLICATION_JSON);
        Reply { status: StatusCode::OK, headers, body: ReplyBody::Full(body.into()) }
    }

    /// An upstream's JSON answer relayed as it came, 200.
    pub fn relayed_json(answer: BufferedAnswer) -> Reply {
        let mut reply = Reply::json(Bytes::new());
        reply.body = ReplyBody::Buffered(answer);
        reply
    }

    /// A value serialised as JSON, 200.
    pub fn json_of(value: &impl serde::Serialize) -> Result<Reply, crate::error::ApiError> {
        let body =
            serde_json::to_vec(value).map_err(|_| crate::error::ApiError::internal("could not encode the answer"))?;
        Ok(Reply::json(body))
    }

    /// Server-sent events, 200, never cached or buffered by proxies.
    pub fn event_stream(body: BodyStream) -> Reply {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Reply { status: StatusCode::OK, headers, body: ReplyBody::Stream(body) }
    }

    /// `x-byollm-route: <label>`.
    pub fn with_route(mut self, route: &Route) -> Reply {
        if let Ok(value) = HeaderValue::from_str(&route.label) {
            self.headers.insert(HeaderName::from_static(HEADER_ROUTE), value);
        }
        self
    }
}
