//! The streaming protocols of `pods/exec`, `pods/attach` and `pods/portforward`, as far as they
//! are pure: the WebSocket remote-command subprotocols and their channels, the `metav1.Status`
//! that ends a session (with the exit code), the query of a remote command, and the identity
//! the API server presents to node agents. The API server and the node agent both read it.

use serde_json::{Value, json};

/// The remote-command subprotocol with stdin close (`v5`, kubectl ≥ 1.30).
pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// The remote-command subprotocol with resize and a `metav1.Status` on the error channel.
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";
/// The subprotocols served, most preferred first.
pub const PROTOCOLS: &[&str] = &[PROTOCOL_V5, PROTOCOL_V4];

/// Channel of the process's standard input (client → server).
pub const STDIN: u8 = 0;
/// Channel of standard output (server → client).
pub const STDOUT: u8 = 1;
/// Channel of standard error (server → client).
pub const STDERR: u8 = 2;
/// Channel of the final `metav1.Status` (server → client).
pub const ERROR: u8 = 3;
/// Channel of terminal resizes, JSON `{"Width":…,"Height":…}` (client → server).
pub const RESIZE: u8 = 4;
/// v5's close signal: a message on this channel whose one byte names the channel closed.
pub const CLOSE: u8 = 255;

/// The request headers an upgrade (WebSocket, SPDY) carries that a proxy passes on to the
/// server behind it (the API server to a node agent, the agent to a runtime's streaming
/// server), lowercase.
pub const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

/// The user of the client certificate the API server presents to node agents (kubeadm's
/// name); node agents serve streaming and logs to this identity only.
pub const APISERVER_NODE_CLIENT: &str = "kube-apiserver-kubelet-client";

/// The first of the client's offered subprotocols (a `Sec-WebSocket-Protocol` header, comma
/// separated) that is served, in the server's order of preference.
pub fn negotiate(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS.iter().copied().find(|p| offered.contains(p))
}

/// What a remote command asks for: `?command=…&command=…&stdin=true&stdout=true&stderr=true&
/// tty=true&container=…`, as kubectl sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteCommand {
    /// argv (empty for attach).
    pub command: Vec<String>,
    /// Whether the client sends standard input.
    pub stdin: bool,
    /// Whether the client wants standard output.
    pub stdout: bool,
    /// Whether the client wants standard error (never with a TTY).
    pub stderr: bool,
    /// Whether the process gets a terminal.
    pub tty: bool,
    /// The container (empty: the pod's only one).
    pub container: String,
}

fn flag(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE")
}

impl RemoteCommand {
    /// Reads the query string of a remote command; a TTY has no separate standard error.
    pub fn parse(query: &str) -> RemoteCommand {
        let mut rc = RemoteCommand::default();
        for (k, v) in form_pairs(query) {
            match k.as_str() {
                "command" => rc.command.push(v),
                "input" | "stdin" => rc.stdin = flag(&v),
                "output" | "stdout" => rc.stdout = flag(&v),
                "error" | "stderr" => rc.stderr = flag(&v),
                "tty" => rc.tty = flag(&v),
                "container" => rc.container = v,
                _ => {}
            }
        }
        if rc.tty {
            rc.stderr = false;
        }
        rc
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `key=value` pairs of a query string, percent-decoded, in order.
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (unescape(k), unescape(v)),
            None => (unescape(p), String::new()),
        })
        .collect()
}

/// The `metav1.Status` written on the error channel when a command ends: `Success` for exit
/// code 0, else `NonZeroExitCode` with the code as the `ExitCode` cause (which kubectl turns
/// into its own exit code).
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The `metav1.Status` written on the error channel when a session fails without an exit code
/// (the command could not start, the container is gone).
pub fn failure_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

/// A terminal size sent on the resize channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str, expected: RemoteCommand) {
        assert_eq!(RemoteCommand::parse(query), expected, "{query}");
    }

    #[test]
    fn a_remote_command_is_read_from_kubectls_query() {
        check(
            "command=sh&command=-c&command=echo+%24HOSTNAME%3B+exit+3&container=c&stderr=true&stdout=true",
            RemoteCommand {
                command: vec!["sh".into(), "-c".into(), "echo $HOSTNAME; exit 3".into()],
                stdout: true,
                stderr: true,
                container: "c".into(),
                ..Default::default()
            },
        );
        check(
            "command=sh&stdin=true&stdout=true&stderr=true&tty=true",
            RemoteCommand {
                command: vec!["sh".into()],
                stdin: true,
                stdout: true,
                tty: true,
                ..Default::default()
            },
        );
        check(
            "command=a%2",
            RemoteCommand {
                command: vec!["a%2".into()],
                ..Default::default()
            },
        );
    }

    #[test]
    fn the_newest_offered_protocol_is_chosen() {
        assert_eq!(
            negotiate("v5.channel.k8s.io, v4.channel.k8s.io"),
            Some(PROTOCOL_V5)
        );
        assert_eq!(
            negotiate("v4.channel.k8s.io,v3.channel.k8s.io"),
            Some(PROTOCOL_V4)
        );
        assert_eq!(negotiate("channel.k8s.io"), None);
    }

    #[test]
    fn a_non_zero_exit_carries_its_code_as_the_exit_code_cause() {
        let s = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(&[], 0)["status"], "Success");
    }
}
