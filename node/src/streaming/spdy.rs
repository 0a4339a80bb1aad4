//! SPDY/3.1 framing, as much as Kubernetes' port-forward needs (the server side of
//! `moby/spdystream`, which kubectl speaks): every frame of the protocol is read and written
//! (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE, DATA;
//! other control frames are skipped, as the spec asks), and header blocks are zlib streams
//! primed with SPDY/3's dictionary. Each direction keeps one compression context for the
//! whole connection ([`FrameReader`] inflates, [`FrameWriter`] deflates), since every header
//! block continues the previous one's zlib stream.
//!
//! Pure: `tokio_util::codec` traits over byte buffers, no IO. Flow control is not enforced
//! (spdystream neither sends nor obeys WINDOW_UPDATE); the frames are still parsed.
//!
//! No maintained Rust crate speaks SPDY (ARCHITECTURE.md, *Streaming*).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;

/// Stream status codes of RST_STREAM (SPDY/3 §2.4.2).
pub mod status {
    /// The stream does not follow the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The stream is refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// Something went wrong on the server.
    pub const INTERNAL_ERROR: u32 = 6;
}

/// The largest frame accepted (the 24-bit length field allows 16 MiB; 1 MiB is plenty).
const MAX_FRAME: usize = 1 << 20;

/// The largest decompressed header block accepted.
const MAX_HEADERS: usize = 256 << 10;

/// A header block: lowercase names, each with its values (SPDY joins them with NUL).
pub type Headers = Vec<(String, String)>;

/// One SETTINGS entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// `FLAG_SETTINGS_PERSIST_VALUE` (1) or `FLAG_SETTINGS_PERSISTED` (2).
    pub flags: u8,
    /// The setting's id (4 = MAX_CONCURRENT_STREAMS, 7 = INITIAL_WINDOW_SIZE, …).
    pub id: u32,
    /// Its value.
    pub value: u32,
}

/// A SPDY/3.1 frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A new stream, with its headers.
    SynStream {
        /// The new stream's id (odd when the client opens it).
        stream: u32,
        /// The stream it is associated with, or 0.
        associated: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The receiver may not send on it.
        unidirectional: bool,
        /// Its headers.
        headers: Headers,
    },
    /// The answer to a SYN_STREAM.
    SynReply {
        /// The stream.
        stream: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The answer's headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why ([`status`]).
        status: u32,
    },
    /// Connection settings.
    Settings {
        /// `FLAG_SETTINGS_CLEAR_SETTINGS`.
        clear: bool,
        /// The entries.
        entries: Vec<Setting>,
    },
    /// A ping, echoed by the receiver when the other side sent it.
    Ping {
        /// Odd from clients, even from servers.
        id: u32,
    },
    /// The sender opens no more streams and accepts none above `last_good`.
    GoAway {
        /// The last stream the sender acted on.
        last_good: u32,
        /// 0 OK, 1 PROTOCOL_ERROR, 2 INTERNAL_ERROR.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// More room in the receiver's window (stream 0: the whole connection, SPDY/3.1).
    WindowUpdate {
        /// The stream, or 0.
        stream: u32,
        /// Bytes added to the window.
        delta: u32,
    },
    /// Stream bytes.
    Data {
        /// The stream.
        stream: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The bytes.
        data: Bytes,
    },
}

/// Errors reading or writing frames; each ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A control frame of another SPDY version.
    #[error("SPDY version {0} is not supported (only 3)")]
    Version(u16),
    /// A frame longer than this server accepts.
    #[error("a frame of {0} bytes is too large")]
    TooLarge(usize),
    /// A frame shorter than its type needs, or otherwise malformed.
    #[error("malformed {kind} frame: {message}")]
    Malformed {
        /// The frame type.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A header block that does not inflate or parse.
    #[error("bad header block: {0}")]
    HeaderBlock(String),
}

/// The value of header `name` (lowercase) in `headers`.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// SPDY/3's header compression dictionary (the spec's §2.6.10.1), 1423 bytes.
pub const DICTIONARY: &[u8] =
    b"\0\0\0\x07options\0\0\0\x04head\0\0\0\x04post\0\0\0\x03put\0\0\0\x06delete\0\0\0\x05\
    trace\0\0\0\x06accept\0\0\0\x0eaccept-charset\0\0\0\x0faccept-encoding\0\0\0\x0facce\
    pt-language\0\0\0\x0daccept-ranges\0\0\0\x03age\0\0\0\x05allow\0\0\0\x0dauthorizatio\
    n\0\0\0\x0dcache-control\0\0\0\x0aconnection\0\0\0\x0ccontent-base\0\0\0\x10content-\
    encoding\0\0\0\x10content-language\0\0\0\x0econtent-length\0\0\0\x10content-location\
    \0\0\0\x0bcontent-md5\0\0\0\x0dcontent-range\0\0\0\x0ccontent-type\0\0\0\x04date\0\0\
    \0\x04etag\0\0\0\x06expect\0\0\0\x07expires\0\0\0\x04from\0\0\0\x04host\0\0\0\x08if-\
    match\0\0\0\x11if-modified-since\0\0\0\x0dif-none-match\0\0\0\x08if-range\0\0\0\x13i\
    f-unmodified-since\0\0\0\x0dlast-modified\0\0\0\x08location\0\0\0\x0cmax-forwards\0\
    \0\0\x06pragma\0\0\0\x12proxy-authenticate\0\0\0\x13proxy-authorization\0\0\0\x05ran\
    ge\0\0\0\x07referer\0\0\0\x0bretry-after\0\0\0\x06server\0\0\0\x02te\0\0\0\x07traile\
    r\0\0\0\x11transfer-encoding\0\0\0\x07upgrade\0\0\0\x0auser-agent\0\0\0\x04vary\0\0\
    \0\x03via\0\0\0\x07warning\0\0\0\x10www-authenticate\0\0\0\x06method\0\0\0\x03get\0\
    \0\0\x06status\0\0\0\x06200 OK\0\0\0\x07version\0\0\0\x08HTTP/1.1\0\0\0\x03url\0\0\0\
    \x06public\0\0\0\x0aset-cookie\0\0\0\x0akeep-alive\0\0\0\x06origin100101201202205206\
    300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Auth\
    oritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthori\
    zed403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service \
    UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, \
    Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/x\
    ml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflat\
    e,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// Reads frames, inflating header blocks with the connection's one inflate context.
pub struct FrameReader {
    inflate: Decompress,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            inflate: Decompress::new(true),
        }
    }
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader").finish_non_exhaustive()
    }
}

fn malformed(kind: &'static str, message: impl Into<String>) -> Error {
    Error::Malformed {
        kind,
        message: message.into(),
    }
}

/// A payload at least `n` bytes long (`exact`: exactly).
fn need(kind: &'static str, payload: &Bytes, n: usize, exact: bool) -> Result<(), Error> {
    if payload.len() < n || (exact && payload.len() != n) {
        return Err(malformed(
            kind,
            format!("{} bytes, {n} expected", payload.len()),
        ));
    }
    Ok(())
}

fn stream_id(b: &mut Bytes) -> u32 {
    b.get_u32() & 0x7fff_ffff
}

impl FrameReader {
    /// The raw header block of a compressed one, continuing the connection's zlib stream.
    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            let result =
                self.inflate
                    .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.inflate.total_in() - in_before) as usize;
            match result {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| Error::HeaderBlock(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(Error::HeaderBlock(e.to_string())),
                Ok(Status::StreamEnd) => {
                    return Err(Error::HeaderBlock("the header stream was ended".into()));
                }
                Ok(_) => {}
            }
            if out.len() > MAX_HEADERS {
                return Err(Error::HeaderBlock(format!(
                    "more than {MAX_HEADERS} bytes of headers"
                )));
            }
            let progress = pos > 0 && self.inflate.total_in() > in_before || out.len() > out_before;
            if pos == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if !progress && out.len() < out.capacity() {
                return Err(Error::HeaderBlock("truncated header block".into()));
            }
        }
    }

    fn headers(&mut self, kind: &'static str, block: &[u8]) -> Result<Headers, Error> {
        let raw = self.inflate(block)?;
        parse_headers(&raw).map_err(|m| malformed(kind, m))
    }

    fn control(&mut self, kind: u16, flags: u8, mut p: Bytes) -> Result<Option<Frame>, Error> {
        let fin = flags & FLAG_FIN != 0;
        Ok(Some(match kind {
            SYN_STREAM => {
                need("SYN_STREAM", &p, 10, false)?;
                let stream = stream_id(&mut p);
                let associated = stream_id(&mut p);
                let priority = p.get_u8() >> 5;
                p.advance(1);
                Frame::SynStream {
                    stream,
                    associated,
                    priority,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: self.headers("SYN_STREAM", &p)?,
                }
            }
            SYN_REPLY | HEADERS => {
                let name = if kind == SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                need(name, &p, 4, false)?;
                let stream = stream_id(&mut p);
                let headers = self.headers(name, &p)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream,
                        fin,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need("RST_STREAM", &p, 8, true)?;
                Frame::RstStream {
                    stream: stream_id(&mut p),
                    status: p.get_u32(),
                }
            }
            SETTINGS => {
                need("SETTINGS", &p, 4, false)?;
                let count = p.get_u32() as usize;
                if p.len() != count.saturating_mul(8) {
                    return Err(malformed(
                        "SETTINGS",
                        format!("{count} entries in {} bytes", p.len()),
                    ));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = p.get_u32();
                        Setting {
                            flags: (word >> 24) as u8,
                            id: word & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            PING => {
                need("PING", &p, 4, true)?;
                Frame::Ping { id: p.get_u32() }
            }
            GOAWAY => {
                need("GOAWAY", &p, 8, true)?;
                Frame::GoAway {
                    last_good: stream_id(&mut p),
                    status: p.get_u32(),
                }
            }
            WINDOW_UPDATE => {
                need("WINDOW_UPDATE", &p, 8, true)?;
                Frame::WindowUpdate {
                    stream: stream_id(&mut p),
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            _ => return Ok(None),
        }))
    }
}

/// Parses a raw (inflated) header block: a count, then length-prefixed names and values.
fn parse_headers(mut raw: &[u8]) -> Result<Headers, String> {
    fn string(raw: &mut &[u8], what: &str) -> Result<String, String> {
        if raw.len() < 4 {
            return Err(format!("the header block ends inside a {what} length"));
        }
        let n = raw.get_u32() as usize;
        if raw.len() < n {
            return Err(format!("a {what} of {n} bytes runs past the header block"));
        }
        let s = String::from_utf8(raw[..n].to_vec())
            .map_err(|_| format!("a header {what} is not UTF-8"))?;
        raw.advance(n);
        Ok(s)
    }
    if raw.len() < 4 {
        return Err("the header block has no count".into());
    }
    let count = raw.get_u32() as usize;
    if count > raw.len() / 8 {
        return Err(format!("{count} headers cannot fit in the header block"));
    }
    let mut headers = Headers::with_capacity(count);
    for _ in 0..count {
        let name = string(&mut raw, "name")?;
        if name.is_empty() {
            return Err("a header has an empty name".into());
        }
        let value = string(&mut raw, "value")?;
        headers.push((name.to_ascii_lowercase(), value));
    }
    if !raw.is_empty() {
        return Err(format!("{} bytes after the last header", raw.len()));
    }
    Ok(headers)
}

impl tokio_util::codec::Decoder for FrameReader {
    type Item = Frame;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        loop {
            if src.len() < 8 {
                return Ok(None);
            }
            let length = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
            if length > MAX_FRAME {
                return Err(Error::TooLarge(length));
            }
            if src.len() < 8 + length {
                src.reserve(8 + length - src.len());
                return Ok(None);
            }
            let mut head = src.split_to(8);
            let payload = src.split_to(length).freeze();
            let first = head.get_u32();
            let flags = head.get_u8();
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream: first & 0x7fff_ffff,
                    fin: flags & FLAG_FIN != 0,
                    data: payload,
                }));
            }
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(Error::Version(version));
            }
            if let Some(frame) = self.control(first as u16, flags, payload)? {
                return Ok(Some(frame));
            }
        }
    }
}

/// Writes frames, deflating header blocks with the connection's one deflate context.
pub struct FrameWriter {
    deflate: Compress,
    primed: bool,
}

impl Default for FrameWriter {
    fn default() -> Self {
        FrameWriter {
            deflate: Compress::new(Compression::default(), true),
            primed: false,
        }
    }
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// The compressed header block of `headers`, flushed so the reader can inflate it whole.
    fn deflate(&mut self, headers: &Headers) -> Result<Vec<u8>, Error> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (name, value) in headers {
            raw.put_u32(name.len() as u32);
            raw.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
            raw.put_u32(value.len() as u32);
            raw.extend_from_slice(value.as_bytes());
        }
        if !self.primed {
            self.deflate
                .set_dictionary(DICTIONARY)
                .map_err(|e| Error::HeaderBlock(e.to_string()))?;
            self.primed = true;
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| Error::HeaderBlock(e.to_string()))?;
            pos += (self.deflate.total_in() - before) as usize;
            if pos == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

fn control(dst: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]) -> Result<(), Error> {
    if payload.len() > MAX_FRAME {
        return Err(Error::TooLarge(payload.len()));
    }
    dst.reserve(8 + payload.len());
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32(((flags as u32) << 24) | payload.len() as u32);
    dst.put_slice(payload);
    Ok(())
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

impl tokio_util::codec::Encoder<Frame> for FrameWriter {
    type Error = Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), Error> {
        let mut p = Vec::new();
        match frame {
            Frame::SynStream {
                stream,
                associated,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                p.put_u32(stream & 0x7fff_ffff);
                p.put_u32(associated & 0x7fff_ffff);
                p.put_u8((priority & 0x07) << 5);
                p.put_u8(0);
                p.extend(self.deflate(&headers)?);
                let flags = fin_flag(fin)
                    | if unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control(dst, SYN_STREAM, flags, &p)
            }
            Frame::SynReply {
                stream,
                fin,
                headers,
            } => {
                p.put_u32(stream & 0x7fff_ffff);
                p.extend(self.deflate(&headers)?);
                control(dst, SYN_REPLY, fin_flag(fin), &p)
            }
            Frame::Headers {
                stream,
                fin,
                headers,
            } => {
                p.put_u32(stream & 0x7fff_ffff);
                p.extend(self.deflate(&headers)?);
                control(dst, HEADERS, fin_flag(fin), &p)
            }
            Frame::RstStream { stream, status } => {
                p.put_u32(stream & 0x7fff_ffff);
                p.put_u32(status);
                control(dst, RST_STREAM, 0, &p)
            }
            Frame::Settings { clear, entries } => {
                p.put_u32(entries.len() as u32);
                for e in &entries {
                    p.put_u32(((e.flags as u32) << 24) | (e.id & 0x00ff_ffff));
                    p.put_u32(e.value);
                }
                let flags = if clear { FLAG_CLEAR_SETTINGS } else { 0 };
                control(dst, SETTINGS, flags, &p)
            }
            Frame::Ping { id } => control(dst, PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                p.put_u32(last_good & 0x7fff_ffff);
                p.put_u32(status);
                control(dst, GOAWAY, 0, &p)
            }
            Frame::WindowUpdate { stream, delta } => {
                p.put_u32(stream & 0x7fff_ffff);
                p.put_u32(delta & 0x7fff_ffff);
                control(dst, WINDOW_UPDATE, 0, &p)
            }
            Frame::Data { stream, fin, data } => {
                if data.len() > MAX_FRAME {
                    return Err(Error::TooLarge(data.len()));
                }
                dst.reserve(8 + data.len());
                dst.put_u32(stream & 0x7fff_ffff);
                dst.put_u32(((fin_flag(fin) as u32) << 24) | data.len() as u32);
                dst.put_slice(&data);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::{Decoder, Encoder};

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Writes `frames` with one writer and reads them back with one reader, as the two ends
    /// of a connection do: every header block continues the same zlib stream.
    fn check(frames: Vec<Frame>) {
        let (mut writer, mut reader) = (FrameWriter::default(), FrameReader::default());
        let mut wire = BytesMut::new();
        for f in frames.clone() {
            writer.encode(f, &mut wire).expect("encode");
        }
        let mut read = Vec::new();
        while let Some(f) = reader.decode(&mut wire).expect("decode") {
            read.push(f);
        }
        assert_eq!(read, frames);
        assert!(wire.is_empty(), "{} bytes left over", wire.len());
    }

    fn hex(s: &str) -> BytesMut {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect::<Vec<_>>()
            .as_slice()
            .into()
    }

    #[test]
    fn every_frame_type_round_trips() {
        let port = headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]);
        check(vec![
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: headers(&[
                    ("streamtype", "error"),
                    ("port", "8080"),
                    ("requestid", "0"),
                ]),
            },
            Frame::SynStream {
                stream: 3,
                associated: 1,
                priority: 7,
                fin: true,
                unidirectional: true,
                headers: port.clone(),
            },
            Frame::SynReply {
                stream: 3,
                fin: false,
                headers: Headers::new(),
            },
            Frame::Headers {
                stream: 3,
                fin: true,
                headers: port,
            },
            Frame::RstStream {
                stream: 5,
                status: status::CANCEL,
            },
            Frame::Settings {
                clear: true,
                entries: vec![Setting {
                    flags: 1,
                    id: 7,
                    value: 65536,
                }],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::WindowUpdate {
                stream: 0,
                delta: 1 << 20,
            },
            Frame::Data {
                stream: 3,
                fin: false,
                data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"),
            },
            Frame::Data {
                stream: 3,
                fin: true,
                data: Bytes::new(),
            },
        ]);
    }

    #[test]
    fn many_header_blocks_share_one_compression_context() {
        let frames = (0..200)
            .map(|i| Frame::SynReply {
                stream: 2 * i + 1,
                fin: false,
                headers: headers(&[
                    ("requestid", &i.to_string()),
                    ("x", &"y".repeat(i as usize)),
                ]),
            })
            .collect();
        check(frames);
    }

    #[test]
    fn the_dictionary_is_spdy3s_named_by_its_adler32_in_the_zlib_header() {
        assert_eq!(DICTIONARY.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in DICTIONARY {
            a = (a + byte as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
        let mut wire = BytesMut::new();
        FrameWriter::default()
            .encode(
                Frame::SynReply {
                    stream: 1,
                    fin: false,
                    headers: Headers::new(),
                },
                &mut wire,
            )
            .expect("encode");
        let zlib = &wire[12..];
        assert_eq!(zlib[1] & 0x20, 0x20, "FDICT not set");
        assert_eq!(zlib[2..6], 0xe3c6_a7c2u32.to_be_bytes());
    }

    #[test]
    fn header_blocks_compressed_by_c_zlib_are_read() {
        // Two SYN_STREAMs of a kubectl port-forward, their header blocks deflated by Python's
        // zlib (`compressobj(zdict=…)`, Z_SYNC_FLUSH after each), the second continuing the
        // first's stream.
        let mut wire = hex(
            "800300010000003d0000000100000000000078f9e3c6a7c202253a703a2b294a4dcc851625aca9a080\
             8614cb45e01c6061606100a4398b20d198094ade8c0600000000ffff8003000100000018000000030000\
             00000000c2aa19540e2512d60b000000ffff",
        );
        let mut reader = FrameReader::default();
        let first = reader.decode(&mut wire).expect("decode").expect("a frame");
        let second = reader.decode(&mut wire).expect("decode").expect("a frame");
        let expect = |stream, kind| Frame::SynStream {
            stream,
            associated: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: headers(&[("streamtype", kind), ("port", "8080"), ("requestid", "0")]),
        };
        assert_eq!(first, expect(1, "error"));
        assert_eq!(second, expect(3, "data"));
        let Frame::SynStream { headers: h, .. } = &second else {
            unreachable!()
        };
        assert_eq!(header(h, "port"), Some("8080"));
    }

    #[test]
    fn partial_unknown_and_malformed_input() {
        let mut reader = FrameReader::default();
        // Half a frame: nothing yet, nothing consumed.
        let mut wire = hex("800300060000");
        assert_eq!(reader.decode(&mut wire).expect("decode"), None);
        assert_eq!(wire.len(), 6);
        // An unknown control frame (type 10, CREDENTIAL) is skipped.
        let mut wire = hex("8003000a00000002abcd800300060000000400000007");
        assert_eq!(
            reader.decode(&mut wire).expect("decode"),
            Some(Frame::Ping { id: 7 })
        );
        let errors = [
            (
                "800200060000000400000007",
                "SPDY version 2 is not supported",
            ),
            ("80030003000000040000000b", "malformed RST_STREAM frame"),
            ("8003000400000004000000ff", "malformed SETTINGS frame"),
            ("800300020000000600000001ffff", "bad header block"),
            ("8003000600ffffff", "too large"),
        ];
        for (input, message) in errors {
            let err = FrameReader::default()
                .decode(&mut hex(input))
                .expect_err(input)
                .to_string();
            assert!(err.contains(message), "{input}: {err}");
        }
    }
}
