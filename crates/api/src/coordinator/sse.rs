//! A parser of server-sent events (the `text/event-stream` format of the HTML standard), fed
//! with the chunks of a response as they arrive.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `event:` name (`message` when none was given).
    pub event: String,
    /// Its `data:` lines joined by newlines.
    pub data: String,
    /// The last `id:` seen so far in the stream.
    pub id: Option<String>,
}

/// A line, or an event's data (its `data:` lines joined), longer than this is refused rather
/// than buffered without end.
const MAX_LINE: usize = 1 << 20;

/// A line or an event's data over 1 MiB.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event-stream line or event exceeds {MAX_LINE} bytes")]
pub struct LineTooLong;

/// Incremental parser: [`SseParser::push`] bytes, then take events with
/// [`SseParser::next_event`] until it has none.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
}

impl SseParser {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete event in what was pushed, if any.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, LineTooLong> {
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(event) = self.process_line(&String::from_utf8_lossy(&line)) {
                return Ok(Some(event));
            }
            if self.data.len() > MAX_LINE {
                return Err(LineTooLong);
            }
        }
        if self.buffer.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(None)
    }

    fn process_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            let data = std::mem::take(&mut self.data);
            return Some(SseEvent {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
                id: self.last_id.clone(),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_whose_data_lines_never_end_is_refused() {
        // Each line is short, but an event that never ends must not grow without bound.
        let mut parser = SseParser::default();
        let line = format!("data: {}\n", "x".repeat(1_000));
        let mut refused = false;
        for _ in 0..2_000 {
            parser.push(line.as_bytes());
            match parser.next_event() {
                Ok(None) => {}
                Ok(Some(event)) => panic!("an event was dispatched: {}", event.data.len()),
                Err(LineTooLong) => {
                    refused = true;
                    break;
                }
            }
        }
        assert!(refused, "1 MiB of data lines was buffered");
    }

    fn events(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk);
            while let Some(event) = parser.next_event().unwrap() {
                out.push(event);
            }
        }
        out
    }

    #[test]
    fn parses_named_events_across_chunk_boundaries_and_skips_comments() {
        let stream = b": keep-alive\n\nevent: job\nid: 7\ndata: {\"a\":1}\n\nevent: job\r\ndata: line1\r\ndata:line2\r\n\r\ndata: tail";
        // Every split point gives the same events.
        for split in 0..stream.len() {
            let got = events(&[&stream[..split], &stream[split..]]);
            assert_eq!(
                got,
                vec![
                    SseEvent {
                        event: "job".into(),
                        data: "{\"a\":1}".into(),
                        id: Some("7".into())
                    },
                    SseEvent {
                        event: "job".into(),
                        data: "line1\nline2".into(),
                        id: Some("7".into())
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_its_name_is_reset() {
        let got = events(&[b"event: ping\n\ndata: x\n\n"]);
        assert_eq!(
            got,
            vec![SseEvent {
                event: "message".into(),
                data: "x".into(),
                id: None
            }]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::default();
        parser.push(&vec![b'a'; MAX_LINE + 1]);
        assert_eq!(parser.next_event(), Err(LineTooLong));
    }
}
