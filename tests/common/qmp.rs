//! A QMP client: commands and their answers, and the events QEMU sends in between.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A QMP connection in command mode.
pub struct Qmp {
    stream: UnixStream,
    messages: Receiver<Value>,
    /// Every event received so far, oldest first.
    pub events: Vec<Value>,
    next_id: u64,
}

/// How long a command may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

impl Qmp {
    /// Connects to the socket at `path` (waiting up to `timeout` for QEMU to create it), reads the
    /// greeting and leaves capabilities negotiation.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, String> {
        let started = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(_) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(50)),
                Err(error) => return Err(format!("QMP socket {}: {error}", path.display())),
            }
        };
        let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        let mut qmp = Qmp { stream, messages, events: Vec::new(), next_id: 0 };
        let greeting = qmp.next(ANSWER_TIMEOUT)?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn next(&mut self, timeout: Duration) -> Result<Value, String> {
        self.messages.recv_timeout(timeout).map_err(|error| match error {
            RecvTimeoutError::Timeout => format!("QMP: nothing from QEMU in {timeout:?}"),
            RecvTimeoutError::Disconnected => "QMP: QEMU closed the connection".to_string(),
        })
    }

    /// Runs `command` and returns its `return` value; a QMP error is an `Err` with its description.
    /// Answers are matched to the request by id, so a late answer is never taken for another's.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "execute": command, "arguments": arguments, "id": id });
        writeln!(self.stream, "{request}").map_err(|error| format!("QMP {command}: {error}"))?;
        loop {
            let message = self.next(ANSWER_TIMEOUT)?;
            if message.get("event").is_some() {
                self.events.push(message);
            } else if message["id"] != id {
                continue; // the answer to an earlier request that timed out
            } else if let Some(answer) = message.get("return") {
                return Ok(answer.clone());
            } else {
                return Err(format!("QMP {command}: {}", message["error"]["desc"]));
            }
        }
    }

    /// Waits up to `timeout` for the event `name` about device `device` (one already received
    /// counts).
    pub fn wait_event(&mut self, name: &str, device: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) =
                self.events.iter().find(|e| e["event"] == name && e["data"]["device"] == device)
            {
                return Ok(event.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no {name} event for {device} in {timeout:?}"));
            }
            match self.messages.recv_timeout(left) {
                Ok(message) if message.get("event").is_some() => self.events.push(message),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err("QMP: QEMU closed the connection".into()),
            }
        }
    }

    /// The ids of the devices added with `-device id=...` or `device_add` that still exist.
    pub fn peripherals(&mut self) -> Result<Vec<String>, String> {
        let children = self.execute("qom-list", json!({ "path": "/machine/peripheral" }))?;
        Ok(children
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["type"].as_str().is_some_and(|t| t.starts_with("child<")))
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect())
    }
}
