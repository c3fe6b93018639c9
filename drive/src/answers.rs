//! The few HTTP answers a runtime gives by itself, before any product route: the JSON body of
//! an error, and what `GET /` says the server is.

/// The JSON body of an HTTP error: `{"error":"…"}`.
pub fn error_json(text: &str) -> String {
    let mut body = String::from("{\"error\":");
    fibergun::json::write_string(&mut body, text);
    body.push('}');
    body
}

/// The JSON answer to `GET /`: what this server is and where its endpoint is.
pub fn server_info_json() -> String {
    format!(
        "{{\"name\":\"fibergun\",\"version\":\"{}\",\"gun\":\"/gun\"}}",
        env!("CARGO_PKG_VERSION")
    )
}
