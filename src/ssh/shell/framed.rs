//! Reading a framed command's output back out of the kept shell's streams: what
//! came before the begin marker is dropped (the login shell's rc noise), the end
//! marker closes the command and carries its status. Bytes arrive cut anywhere,
//! so a marker may come split across reads; the fuzz target and the property
//! test below hold that the cuts never change the result.

/// One stream of the shell: bytes before the begin marker are dropped (what the
/// login shell's rc files print), the command's bytes are kept, the end marker
/// closes it (with the exit status on stdout). Lines are reported as soon as they
/// are complete, so a long script's progress markers arrive live.
pub(super) struct Framed {
    begin: Vec<u8>,
    end: Vec<u8>,
    /// Bytes not yet known to be the command's: a tail that may start the end marker.
    buf: Vec<u8>,
    started: bool,
    pub(super) body: Vec<u8>,
    /// `body[..reported]` has been reported as lines.
    reported: usize,
    /// A line was reported on the strength of a newline still in `buf`: skip that
    /// newline when it reaches `body`.
    newline_pending: bool,
    pub(super) status: Option<u32>,
    finished: bool,
    /// What came after the end marker's line (a fed command's acknowledgement).
    pub(super) after: Vec<u8>,
}

/// What a framed command's output comes to: its body, the status on its end
/// marker, and whether the end was seen. For the fuzz target and the tests:
/// `chunks` arrive one after another as the channel would deliver them.
#[doc(hidden)]
pub fn parse_framed(begin: &str, end: &str, chunks: &[&[u8]]) -> (Vec<u8>, Option<u32>, bool) {
    let mut f = Framed::new(begin, end);
    let mut lines = Vec::new();
    for c in chunks {
        f.feed(c, &mut |l| lines.push(l.to_string()));
    }
    (f.body, f.status, f.finished)
}

impl Framed {
    pub(super) fn new(begin: &str, end: &str) -> Framed {
        Framed {
            begin: format!("\n{begin}\n").into_bytes(),
            end: format!("\n{end}").into_bytes(),
            buf: Vec::new(),
            started: false,
            body: Vec::new(),
            reported: 0,
            newline_pending: false,
            status: None,
            finished: false,
            after: Vec::new(),
        }
    }

    pub(super) fn done(&self) -> bool {
        self.finished
    }

    pub(super) fn feed(&mut self, data: &[u8], on_line: &mut (dyn FnMut(&str) + Send)) {
        if self.finished {
            self.after.extend_from_slice(data);
            return;
        }
        self.buf.extend_from_slice(data);
        if !self.started {
            let Some(at) = find(&self.buf, &self.begin) else {
                return;
            };
            self.buf.drain(..at + self.begin.len());
            self.started = true;
        }
        // The end marker is "\nEND[ STATUS]\n"; it may arrive split across reads.
        if let Some(at) = find(&self.buf, &self.end) {
            let rest = &self.buf[at + self.end.len()..];
            if let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                let status = String::from_utf8_lossy(&rest[..nl]).trim().to_string();
                self.status = status.parse().ok();
                let body: Vec<u8> = self.buf[..at].to_vec();
                self.body.extend_from_slice(&body);
                self.after = rest[nl + 1..].to_vec();
                self.buf.clear();
                self.finished = true;
                self.report(on_line, true);
            }
            return;
        }
        // Keep back only a tail that could be the start of the end marker.
        let hold = (1..=self.end.len().min(self.buf.len()))
            .rev()
            .find(|&n| self.buf[self.buf.len() - n..] == self.end[..n])
            .unwrap_or(0);
        let moved: Vec<u8> = self.buf.drain(..self.buf.len() - hold).collect();
        self.body.extend_from_slice(&moved);
        self.report(on_line, false);
        // A partial line followed by a newline is complete, whether that newline is
        // the command's or the one before the end marker.
        if hold > 0 && self.reported < self.body.len() {
            on_line(&String::from_utf8_lossy(&self.body[self.reported..]));
            self.reported = self.body.len();
            self.newline_pending = true;
        }
    }

    /// Reports complete lines, and at the end the last partial one.
    fn report(&mut self, on_line: &mut (dyn FnMut(&str) + Send), last: bool) {
        if self.newline_pending && self.body.len() > self.reported {
            if self.body[self.reported] == b'\n' {
                self.reported += 1;
            }
            self.newline_pending = false;
        }
        while let Some(nl) = self.body[self.reported..].iter().position(|b| *b == b'\n') {
            on_line(&String::from_utf8_lossy(
                &self.body[self.reported..self.reported + nl],
            ));
            self.reported += nl + 1;
        }
        if last && self.reported < self.body.len() {
            on_line(&String::from_utf8_lossy(&self.body[self.reported..]));
            self.reported = self.body.len();
        }
    }
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    /// Any bytes, with markers and their pieces mixed in, cut anywhere: never a
    /// panic, and the cuts never change whether the command ended, nor, once it
    /// ended, its output and status.
    #[test]
    fn framing_does_not_depend_on_how_the_bytes_are_cut() {
        let (begin, end) = ("etcdroll-begin-n-1", "etcdroll-end-n-1");
        let pieces: [&[u8]; 9] = [
            b"\n",
            b"etcdroll-begin-n-1",
            b"etcdroll-end-n-1",
            b" 0\n",
            b" 17\n",
            b"abc",
            b"etcdroll-",
            b"\n\n",
            b"\xff\x00",
        ];
        let mut next = crate::ssh::test_rng::xorshift(0x9e3779b97f4a7c15);
        for _ in 0..3000 {
            let mut data = Vec::new();
            for _ in 0..(next() % 12) {
                data.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let whole = parse_framed(begin, end, &[&data]);
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize % rest.len().min(7));
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            // Until the end marker's line is complete, how much of the body is
            // already confirmed may differ; once it is, nothing may.
            let cut = parse_framed(begin, end, &chunks);
            assert_eq!(cut.2, whole.2, "{data:?} cut as {chunks:?}");
            if whole.2 {
                assert_eq!(cut, whole, "{data:?} cut as {chunks:?}");
            }
        }
    }

    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Option<u32>, Vec<String>) {
        let mut f = Framed::new("B", "E");
        let mut lines = Vec::new();
        for c in chunks {
            f.feed(c, &mut |l| lines.push(l.to_string()));
        }
        assert!(f.done());
        (f.body, f.status, lines)
    }

    #[test]
    fn rc_noise_is_dropped_and_the_status_read() {
        let (body, status, lines) = run(&[b"motd junk\n\nB\nhello\nworld\n\nE 3\n"]);
        assert_eq!(body, b"hello\nworld\n");
        assert_eq!(status, Some(3));
        assert_eq!(lines, ["hello", "world"]);
    }

    #[test]
    fn output_without_a_final_newline() {
        let (body, status, lines) = run(&[b"\nB\npartial\nE 0\n"]);
        assert_eq!(body, b"partial");
        assert_eq!(status, Some(0));
        assert_eq!(lines, ["partial"]);
    }

    #[test]
    fn markers_split_across_reads_byte_by_byte() {
        let all = b"\nB\nline one\n\nmore\n\nE 17\n";
        let chunks: Vec<&[u8]> = all.chunks(1).collect();
        let (body, status, lines) = run(&chunks);
        assert_eq!(body, b"line one\n\nmore\n");
        assert_eq!(status, Some(17));
        assert_eq!(lines, ["line one", "", "more"]);
    }

    /// A progress line is reported when its newline arrives, not when the command
    /// ends or more output comes.
    #[test]
    fn lines_are_reported_as_soon_as_they_are_complete() {
        let mut f = Framed::new("B", "E-long-marker");
        let mut lines = Vec::new();
        f.feed(b"\nB\n@step one\n", &mut |l| lines.push(l.to_string()));
        assert_eq!(lines, ["@step one"]);
        f.feed(b"\n", &mut |l| lines.push(l.to_string()));
        f.feed(b"two", &mut |l| lines.push(l.to_string()));
        assert_eq!(lines, ["@step one", ""]);
        f.feed(b"\nE-long-marker 0\n", &mut |l| lines.push(l.to_string()));
        assert!(f.done());
        assert_eq!(lines, ["@step one", "", "two"]);
        assert_eq!(f.body, b"@step one\n\ntwo");
    }

    /// What follows the end marker (a fed command's acknowledgement) is kept,
    /// whether it arrives with the marker or after it.
    #[test]
    fn bytes_after_the_end_marker_are_kept() {
        let mut f = Framed::new("B", "E");
        f.feed(b"\nB\nout\n\nE 0\nack-1", &mut |_| {});
        assert!(f.done());
        f.feed(b"\n", &mut |_| {});
        assert_eq!(f.body, b"out\n");
        assert_eq!(f.after, b"ack-1\n");
    }

    #[test]
    fn empty_output_and_stderr_marker_without_status() {
        let (body, status, lines) = run(&[b"\nB\n", b"\nE\n"]);
        assert!(body.is_empty());
        assert_eq!(status, None);
        assert!(lines.is_empty());
    }
}
