//! The stage's access log, as API Gateway's `AccessLogSettings`: one line per connect, message
//! and disconnect, in the stage's `Format` with its `$context.…` variables
//! (`$context.requestId`, `$context.connectionId`, `$context.status`, …), written to a file or
//! stderr. A variable with no value here, or one the gateway does not know, renders as `-`, as
//! API Gateway renders missing values.
//!
//! Values are escaped as JSON string contents (`"`, `\`, control characters), so that a client's
//! `User-Agent` can neither break a JSON format nor start a line of its own. Lines go through a
//! writer thread: a connection never waits on the log's I/O (when the writer falls 64 Ki lines
//! behind, lines are dropped and counted in `dynamowave_access_log_dropped_total`).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use crate::settings::{AccessLog, AccessLogDestination};

/// Lines that may wait for the writer thread.
const BACKLOG: usize = 64 * 1024;

/// A parsed format.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    /// The variable's name after `$context.`.
    Variable(String),
}

fn parse(format: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = format;
    while !rest.is_empty() {
        let (name, after) = if let Some(braced) = rest.strip_prefix("${context.") {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => return Err(format!("access log format {format:?}: a `${{` without its `}}`")),
            }
        } else if let Some(bare) = rest.strip_prefix("$context.") {
            let end = bare.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(bare.len());
            let end = bare[..end].trim_end_matches('.').len();
            (&bare[..end], &bare[end..])
        } else {
            let c = rest.chars().next().unwrap_or_default();
            literal.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        if name.is_empty() {
            return Err(format!("access log format {format:?}: `$context.` without a variable name"));
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal)));
        }
        parts.push(Part::Variable(name.to_string()));
        rest = after;
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    // API Gateway refuses a format without one of these: a line must say which request it is.
    if !parts.iter().any(|p| matches!(p, Part::Variable(v) if v == "requestId" || v == "extendedRequestId")) {
        return Err(format!(
            "access log format {format:?} must include $context.requestId or $context.extendedRequestId"
        ));
    }
    Ok(parts)
}

/// What one access log line may say: what the gateway knows of one connect, message or
/// disconnect.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccessRecord {
    pub request_id: Option<String>,
    pub connection_id: Option<String>,
    pub event_type: &'static str,
    pub route_key: Option<String>,
    pub message_id: Option<String>,
    /// The status API Gateway answered with (the upgrade's, or the message's outcome).
    pub status: Option<u16>,
    /// The integration's own status, when it answered.
    pub integration_status: Option<i64>,
    pub integration_latency: Option<Duration>,
    /// The error API Gateway reports (`error.message`), e.g. "Unauthorized".
    pub error_message: Option<String>,
    /// What the integration's failure was (`integrationErrorMessage`).
    pub integration_error_message: Option<String>,
    /// Milliseconds since the epoch.
    pub request_time_epoch: i64,
    pub connected_at: Option<i64>,
    pub source_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub domain_name: Option<Arc<str>>,
    pub principal_id: Option<String>,
    pub disconnect_status_code: Option<u16>,
    pub disconnect_reason: Option<String>,
}

impl AccessRecord {
    /// A record for a request starting now.
    pub fn starting(event_type: &'static str) -> Self {
        Self { event_type, request_time_epoch: chrono::Utc::now().timestamp_millis(), ..Default::default() }
    }

    /// The value of `$context.NAME`, if it has one.
    fn value(&self, name: &str, stage: &str, api_id: &str) -> Option<String> {
        let ms = |d: &Duration| d.as_millis().to_string();
        Some(match name {
            "requestId" | "extendedRequestId" => self.request_id.clone()?,
            "connectionId" => self.connection_id.clone()?,
            "eventType" => self.event_type.to_string(),
            "routeKey" => self.route_key.clone()?,
            "messageId" => self.message_id.clone()?,
            "messageDirection" => "IN".to_string(),
            "status" => self.status?.to_string(),
            "integrationStatus" | "integration.status" | "integration.integrationStatus" => {
                self.integration_status?.to_string()
            }
            "integrationLatency" | "integration.latency" => ms(self.integration_latency.as_ref()?),
            "error.message" => self.error_message.clone()?,
            "error.messageString" => format!("\"{}\"", self.error_message.as_deref()?),
            "integrationErrorMessage" | "integration.error" => self.integration_error_message.clone()?,
            "requestTime" => chrono::DateTime::from_timestamp_millis(self.request_time_epoch)?
                .format("%d/%b/%Y:%H:%M:%S %z")
                .to_string(),
            "requestTimeEpoch" => self.request_time_epoch.to_string(),
            "connectedAt" => self.connected_at?.to_string(),
            "identity.sourceIp" => self.source_ip?.to_string(),
            "identity.userAgent" => self.user_agent.clone()?,
            "domainName" => self.domain_name.as_deref()?.to_string(),
            "authorizer.principalId" => self.principal_id.clone()?,
            "disconnectStatusCode" => self.disconnect_status_code?.to_string(),
            "disconnectReason" => self.disconnect_reason.clone()?,
            "stage" => stage.to_string(),
            "apiId" => api_id.to_string(),
            _ => return None,
        })
    }
}

/// The authorizer's `principalId`, if the connection has one.
pub(crate) fn principal_id(ctx: &crate::events::ConnectionContext) -> Option<String> {
    ctx.authorizer.as_ref()?.get("principalId")?.as_str().map(str::to_string)
}

/// A record for an event the gateway built (a message or `$disconnect`).
pub(crate) fn for_event(
    event: &aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest,
    ctx: &crate::events::ConnectionContext,
    event_type: &'static str,
) -> AccessRecord {
    let c = &event.request_context;
    AccessRecord {
        request_id: c.request_id.clone(),
        connection_id: Some(ctx.connection_id.clone()),
        event_type,
        route_key: c.route_key.clone(),
        message_id: c.message_id.clone(),
        request_time_epoch: c.request_time_epoch,
        connected_at: Some(ctx.connected_at),
        source_ip: Some(ctx.source_ip),
        user_agent: ctx.user_agent.clone(),
        domain_name: Some(ctx.domain_name.clone()),
        principal_id: principal_id(ctx),
        ..Default::default()
    }
}

/// Whether `format` is one the access log can use.
pub(crate) fn check_format(format: &str) -> Result<(), String> {
    parse(format).map(|_| ())
}

/// Escapes `value` as the contents of a JSON string.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
}

/// The stage's access log: its format, and the channel to its writer thread.
pub(crate) struct AccessLogger {
    parts: Vec<Part>,
    stage: String,
    api_id: String,
    lines: SyncSender<String>,
}

impl AccessLogger {
    /// Parses the format and opens the destination (a file is created if missing and appended
    /// to); the error names what is wrong.
    pub fn open(settings: &AccessLog, stage: &str, api_id: &str) -> Result<Self, String> {
        let parts = parse(&settings.format)?;
        let sink: Box<dyn Write + Send> = match &settings.destination {
            AccessLogDestination::Stderr => Box::new(std::io::stderr()),
            AccessLogDestination::File(path) => Box::new(open_file(path)?),
        };
        let (lines, receiver) = std::sync::mpsc::sync_channel(BACKLOG);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(receiver, sink))
            .map_err(|e| format!("access log: cannot start its writer: {e}"))?;
        Ok(Self { parts, stage: stage.to_string(), api_id: api_id.to_string(), lines })
    }

    /// Renders `record` in the format and queues the line.
    pub fn log(&self, record: &AccessRecord) {
        let mut line = String::with_capacity(256);
        for part in &self.parts {
            match part {
                Part::Literal(text) => line.push_str(text),
                Part::Variable(name) => match record.value(name, &self.stage, &self.api_id) {
                    Some(value) => escape_into(&mut line, &value),
                    None => line.push('-'),
                },
            }
        }
        line.push('\n');
        if let Err(TrySendError::Full(_)) = self.lines.try_send(line) {
            metrics::counter!("dynamowave_access_log_dropped_total").increment(1);
        }
    }
}

fn open_file(path: &PathBuf) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("access log destination {}: {e}", path.display()))
}

/// The writer thread: writes lines as they come, flushing whenever none is waiting; ends when
/// the gateway (every sender) is gone.
fn write_lines(lines: Receiver<String>, sink: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(sink);
    while let Ok(line) = lines.recv() {
        let _ = out.write_all(line.as_bytes());
        while let Ok(line) = lines.try_recv() {
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: &str, record: &AccessRecord) -> String {
        let parts = parse(format).expect("format");
        let (lines, receiver) = std::sync::mpsc::sync_channel(1);
        let logger = AccessLogger { parts, stage: "production".into(), api_id: "api1".into(), lines };
        logger.log(record);
        receiver.recv().expect("a line")
    }

    #[test]
    fn variables_render_their_values_and_unknown_or_missing_ones_a_dash() {
        let mut record = AccessRecord::starting("MESSAGE");
        record.request_id = Some("req=".into());
        record.route_key = Some("sendmessage".into());
        record.status = Some(200);
        record.integration_latency = Some(Duration::from_millis(42));
        let line = render(
            "$context.requestId $context.eventType ${context.routeKey}/$context.status $context.integrationLatency \
             $context.stage $context.apiId $context.nope $context.error.message.",
            &record,
        );
        assert_eq!(line, "req= MESSAGE sendmessage/200 42 production api1 - -.\n");
    }

    #[test]
    fn values_cannot_break_the_line_or_the_json() {
        let mut record = AccessRecord::starting("CONNECT");
        record.request_id = Some("r".into());
        record.user_agent = Some("evil\"}\n{\"forged\":\"1\\".into());
        let line = render(r#"{"requestId":"$context.requestId","ua":"$context.identity.userAgent"}"#, &record);
        assert_eq!(line.lines().count(), 1);
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("still JSON");
        assert_eq!(parsed["ua"], "evil\"}\n{\"forged\":\"1\\");
    }

    #[test]
    fn a_format_must_name_the_request() {
        assert!(parse("$context.connectionId").expect_err("no request id").contains("requestId"));
        assert!(parse("${context.requestId").is_err());
        assert!(parse("$context.extendedRequestId").is_ok());
        assert_eq!(
            parse("[$context.requestId]").expect("format"),
            [Part::Literal("[".into()), Part::Variable("requestId".into()), Part::Literal("]".into())]
        );
    }
}
