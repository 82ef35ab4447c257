//! A fast reader for the YAML that Kubernetes manifests are written in (kubectl and helm
//! output, `bench/gen.py`): one document to a tree of nodes borrowing the text
//! ([`read_document`]), read into typed objects by a `serde::Deserializer` over its nodes
//! ([`from_node`], module `deserializer`) as they would be from the document's
//! `serde_json::Value`; several times faster than a general YAML parser, with one allocation
//! per few hundred nodes instead of one or more per node. [`parse_document`] gives the
//! `serde_json::Value` itself (the tests and the fuzz harness compare it with serde-saphyr's).
//!
//! serde-saphyr stays the authority. [`read_document`] either reads exactly the value
//! serde-saphyr gives for the document (deserialized into `serde_json::Value`), or declines
//! with `None`, and the caller parses the document with serde-saphyr, which also words every
//! error; so does a typed read from the nodes that fails. Declining is always safe; accepting needs certainty, so anything outside the subset
//! below is declined rather than guessed:
//!
//! - block mappings and block sequences indented with spaces (a sequence may sit at its key's
//!   indent), `- key: value` mappings in sequence items;
//! - plain scalars on one line, resolved as serde-saphyr resolves them only where that is
//!   certain: `null`/`Null`/`NULL`/`~`/empty → null, `true`/`false` (and their `True`/`TRUE`
//!   spellings) → bool, decimal integers without a sign or leading zero (or with `-`) that fit
//!   u64/i64 → numbers, and text that cannot be a number, bool or null → string; every other
//!   spelling (`yes`, `on`, `1.5`, `0x1f`, `1_000`, `+1`, `-0`, `007`, `.inf`, …) is declined;
//! - single-quoted and double-quoted scalars on one line (double-quoted with the escapes
//!   `\" \\ \/ \n \t \r` and `\uXXXX`);
//! - flow sequences of scalars on one line (`[10.97.0.1, "a"]`), `[]` and `{}`;
//! - comments, blank lines, a leading `---`.
//!
//! Declined: tabs, carriage returns and other control characters anywhere, anchors, aliases,
//! tags, block scalars, multi-line scalars, flow mappings with content, nested flows, complex
//! keys, directives, `...`, a second document, duplicate keys, keys other than strings, keys
//! longer than [`MAX_KEY_BYTES`], nesting deeper than [`MAX_DEPTH`], documents larger than
//! [`MAX_DOCUMENT_BYTES`], and a document that is not a block mapping or block sequence.

use std::borrow::Cow;

use serde_json::{Number, Value};

mod deserializer;

pub use deserializer::{NotRead, from_node};

/// Deepest nesting accepted (serde-saphyr's default budget refuses beyond 64).
pub const MAX_DEPTH: usize = 32;
/// Longest key accepted (serde-saphyr looks 1024 characters ahead for a simple key).
pub const MAX_KEY_BYTES: usize = 512;
/// Largest document accepted: far below the node, event and scalar budgets of the manifest
/// reader.
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;

/// One YAML document (optionally starting with a `---` line) as serde-saphyr would read it
/// into a `serde_json::Value`, or `None` when the document is outside the subset.
pub fn parse_document(text: &str) -> Option<Value> {
    read_document(text).map(|doc| doc.root().to_value())
}

/// One YAML document read into a [`Document`] (the value serde-saphyr would give, its strings
/// borrowed from `text`), or `None` when the document is outside the subset: what
/// [`parse_document`] gives, without a `String` per key and scalar and a map per mapping.
pub fn read_document(text: &str) -> Option<Document<'_>> {
    read_document_with(text, &mut Buffers::default())
}

/// [`read_document`] into the vectors of `buffers`: a reader of many documents hands each
/// read document back ([`Buffers::recycle`]), so that once the vectors have grown to a
/// document's size reading the next allocates nothing but a quoted scalar's escapes. At
/// start-up a fleet's million documents of about twenty lines each made the vectors' growth
/// a tenth of the read.
pub fn read_document_with<'a>(text: &'a str, buffers: &mut Buffers<'a>) -> Option<Document<'a>> {
    if text.len() > MAX_DOCUMENT_BYTES || has_unusual_characters(text) {
        return None;
    }
    let mut lines = std::mem::take(&mut buffers.lines);
    lines.clear();
    if !significant_lines(text, &mut lines) || lines.is_empty() {
        buffers.lines = lines;
        return None;
    }
    let first = lines[0];
    let mut parser = Parser {
        lines,
        at: 0,
        items: std::mem::take(&mut buffers.items),
        entries: std::mem::take(&mut buffers.entries),
        open_items: std::mem::take(&mut buffers.open_items),
        open_entries: std::mem::take(&mut buffers.open_entries),
    };
    let root = parser
        .block(first.indent, 1)
        .filter(|_| parser.at == parser.lines.len());
    let Parser {
        lines,
        mut items,
        mut entries,
        mut open_items,
        mut open_entries,
        ..
    } = parser;
    // A declined read leaves open runs behind.
    open_items.clear();
    open_entries.clear();
    buffers.lines = lines;
    buffers.open_items = open_items;
    buffers.open_entries = open_entries;
    match root {
        Some(root) => Some(Document {
            root,
            items,
            entries,
        }),
        None => {
            items.clear();
            entries.clear();
            buffers.items = items;
            buffers.entries = entries;
            None
        }
    }
}

/// The vectors [`read_document_with`] reads into, kept between the documents of one text.
#[derive(Debug, Default)]
pub struct Buffers<'a> {
    lines: Vec<Line<'a>>,
    items: Vec<Node<'a>>,
    entries: Vec<(Cow<'a, str>, Node<'a>)>,
    open_items: Vec<Node<'a>>,
    open_entries: Vec<(Cow<'a, str>, Node<'a>)>,
}

impl<'a> Buffers<'a> {
    /// Takes back the vectors of a document read with these buffers, for the next read.
    pub fn recycle(&mut self, mut doc: Document<'a>) {
        doc.items.clear();
        doc.entries.clear();
        if doc.items.capacity() > self.items.capacity() {
            self.items = doc.items;
        }
        if doc.entries.capacity() > self.entries.capacity() {
            self.entries = doc.entries;
        }
    }
}

/// A document the fast path read: the value serde-saphyr gives for it, as a tree of nodes whose
/// strings borrow the text (a quoted scalar with escapes owns its string). Read it through
/// [`Document::root`]: as a `serde::Deserializer` that behaves as `&serde_json::Value`'s does.
#[derive(Debug)]
pub struct Document<'a> {
    root: Node<'a>,
    /// The items of every sequence, each sequence's in one run.
    items: Vec<Node<'a>>,
    /// The entries of every mapping, each mapping's in one run, in document order; no key twice
    /// in a mapping.
    entries: Vec<(Cow<'a, str>, Node<'a>)>,
}

impl<'a> Document<'a> {
    /// The document's top node.
    pub fn root(&self) -> NodeRef<'_> {
        NodeRef {
            doc: self,
            node: &self.root,
        }
    }
}

/// One node of a [`Document`], resolved as serde-saphyr resolves it into a `serde_json::Value`.
#[derive(Debug, Clone)]
enum Node<'a> {
    Null,
    Bool(bool),
    /// A non-negative integer (`serde_json::Number`'s `PosInt`).
    PosInt(u64),
    /// A negative integer (`NegInt`).
    NegInt(i64),
    Str(Cow<'a, str>),
    /// A sequence: its items in [`Document::items`].
    Seq(Run),
    /// A mapping: its entries in [`Document::entries`].
    Map(Run),
}

/// Where a sequence's items or a mapping's entries are in their vector.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u32,
    len: u32,
}

impl Run {
    fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }
}

/// A node of a [`Document`] and the document it is in.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'d> {
    doc: &'d Document<'d>,
    node: &'d Node<'d>,
}

impl<'d> NodeRef<'d> {
    fn at(self, node: &'d Node<'d>) -> Self {
        Self {
            doc: self.doc,
            node,
        }
    }

    pub fn is_null(self) -> bool {
        matches!(self.node, Node::Null)
    }

    /// The string, when the node is one (as `Value::as_str`).
    pub fn as_str(self) -> Option<&'d str> {
        match self.node {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_mapping(self) -> bool {
        matches!(self.node, Node::Map(_))
    }

    /// The value of `key`, when the node is a mapping that has it (as `Value::get`).
    pub fn get(self, key: &str) -> Option<Self> {
        let Node::Map(run) = self.node else {
            return None;
        };
        self.doc.entries[run.range()]
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| self.at(v))
    }

    /// The items, when the node is a sequence.
    pub fn items(self) -> Option<impl ExactSizeIterator<Item = NodeRef<'d>>> {
        let Node::Seq(run) = self.node else {
            return None;
        };
        Some(self.doc.items[run.range()].iter().map(move |n| self.at(n)))
    }

    fn entries(self, run: Run) -> &'d [(Cow<'d, str>, Node<'d>)] {
        &self.doc.entries[run.range()]
    }

    /// The node as a `serde_json::Value`: what serde-saphyr reads.
    pub fn to_value(self) -> Value {
        match self.node {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::PosInt(n) => Value::Number(Number::from(*n)),
            Node::NegInt(n) => Value::Number(Number::from(*n)),
            Node::Str(s) => Value::String(s.as_ref().to_owned()),
            Node::Seq(_) => Value::Array(
                self.items()
                    .into_iter()
                    .flatten()
                    .map(Self::to_value)
                    .collect(),
            ),
            Node::Map(run) => Value::Object(
                self.entries(*run)
                    .iter()
                    .map(|(k, v)| (k.as_ref().to_owned(), self.at(v).to_value()))
                    .collect(),
            ),
        }
    }
}

/// Control characters other than the line feed (tabs and carriage returns included), byte
/// order marks, noncharacters and the Unicode line and paragraph separators.
fn has_unusual_characters(text: &str) -> bool {
    let mut non_ascii = false;
    for chunk in text.as_bytes().chunks(32) {
        // No early exit within a chunk: the compiler checks it many bytes at a time.
        let (mut control, mut high) = (false, false);
        for &b in chunk {
            control |= ((b < 0x20) & (b != b'\n')) | (b == 0x7f);
            high |= b >= 0x80;
        }
        if control {
            return true;
        }
        non_ascii |= high;
    }
    non_ascii
        && text.chars().any(|c| {
            (c.is_control() && c != '\n')
                || matches!(
                    c,
                    '\u{feff}' | '\u{fffe}' | '\u{ffff}' | '\u{2028}' | '\u{2029}'
                )
        })
}

#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    /// Leading spaces.
    indent: usize,
    /// The rest of the line: not empty, not a comment.
    text: &'a str,
}

/// The lines that hold content, into `lines`; `false` on directives, `...` and a `---` after
/// content.
fn significant_lines<'a>(text: &'a str, lines: &mut Vec<Line<'a>>) -> bool {
    let bytes = text.as_bytes();
    let mut start = 0;
    // Line ends found many bytes at a time, then each line looked at by its bytes: the lines of
    // manifests are short, and `str::split` searched each one anew.
    for end in memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len())) {
        let raw = &bytes[start..end];
        let line_start = start;
        start = end + 1;
        let indent = raw.iter().position(|&b| b != b' ').unwrap_or(raw.len());
        let (Some(&first), rest) = (raw.get(indent), &text[line_start + indent..end]) else {
            continue; // blank
        };
        if first == b'#' {
            continue;
        }
        if indent == 0 && matches!(first, b'-' | b'%' | b'.') {
            if let Some(after) = rest.strip_prefix("---") {
                let after_ok = after.is_empty() || after.starts_with(' ');
                if after_ok && lines.is_empty() && is_blank_or_comment(after) {
                    continue; // the document's start marker
                }
                if after_ok {
                    return false; // a second document, or content after the marker
                }
            }
            if first == b'%' || rest.starts_with("...") {
                return false;
            }
        }
        lines.push(Line { indent, text: rest });
    }
    true
}

/// Nothing but spaces, or spaces then a comment.
fn is_blank_or_comment(s: &str) -> bool {
    let t = s.trim_start_matches(' ');
    t.is_empty() || (t.starts_with('#') && t.len() < s.len())
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Mappings with more entries than this are checked for a key given twice by sorting their
/// keys; smaller ones key by key.
const SORTED_KEY_CHECK: usize = 16;

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    at: usize,
    /// The finished sequences' items and mappings' entries.
    items: Vec<Node<'a>>,
    entries: Vec<(Cow<'a, str>, Node<'a>)>,
    /// The items and entries of the sequences and mappings being read, innermost last.
    open_items: Vec<Node<'a>>,
    open_entries: Vec<(Cow<'a, str>, Node<'a>)>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.at).copied()
    }

    /// The block node whose first line is the current one, indented `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let line = self.peek()?;
        if is_item(line.text) {
            self.sequence(indent, depth)
        } else {
            self.mapping(indent, depth)
        }
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        let base = self.open_entries.len();
        while let Some(line) = self.peek() {
            if line.indent < indent || (line.indent == indent && is_item(line.text)) {
                break; // the parent decides whether that line may follow
            }
            if line.indent > indent {
                return None;
            }
            let (key, rest) = split_key(line.text)??;
            self.at += 1;
            let value = if is_blank_or_comment(rest) {
                match self.peek() {
                    Some(next) if next.indent > indent => self.block(next.indent, depth + 1)?,
                    Some(next) if next.indent == indent && is_item(next.text) => {
                        self.sequence(indent, depth + 1)?
                    }
                    _ => Node::Null,
                }
            } else {
                let value = self.inline_value(rest.trim_start_matches(' '), depth + 1)?;
                if self.peek().is_some_and(|next| next.indent > indent) {
                    return None; // a scalar continued on the next line
                }
                value
            };
            let open = &self.open_entries[base..];
            if open.len() < SORTED_KEY_CHECK && open.iter().any(|(k, _)| *k == key) {
                return None;
            }
            self.open_entries.push((key, value));
        }
        let open = &self.open_entries[base..];
        if open.len() > SORTED_KEY_CHECK {
            let mut keys: Vec<&str> = open.iter().map(|(k, _)| k.as_ref()).collect();
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return None;
            }
        }
        let start = self.entries.len();
        self.entries.extend(self.open_entries.drain(base..));
        // A document holds fewer than 2^32 nodes (it is at most MAX_DOCUMENT_BYTES long).
        Some(Node::Map(Run {
            start: start as u32,
            len: (self.entries.len() - start) as u32,
        }))
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        let base = self.open_items.len();
        while let Some(line) = self.peek() {
            if line.indent < indent || (line.indent == indent && !is_item(line.text)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let after = &line.text[1..];
            let spaces = after.len() - after.trim_start_matches(' ').len();
            let content = &after[spaces..];
            let item = if content.is_empty() || content.starts_with('#') {
                self.at += 1;
                match self.peek() {
                    Some(next) if next.indent > indent => self.block(next.indent, depth + 1)?,
                    _ => Node::Null,
                }
            } else if is_item(content) {
                return None; // `- - a`
            } else if split_key(content)?.is_some() {
                // `- key: value`: a mapping indented where its first key starts.
                let at = indent + 1 + spaces;
                self.lines[self.at] = Line {
                    indent: at,
                    text: content,
                };
                if depth + 1 > MAX_DEPTH {
                    return None;
                }
                self.mapping(at, depth + 1)?
            } else {
                self.at += 1;
                let value = self.inline_value(content, depth + 1)?;
                if self.peek().is_some_and(|next| next.indent > indent) {
                    return None;
                }
                value
            };
            self.open_items.push(item);
        }
        Some(self.close_sequence(base))
    }

    /// The sequence whose items are the open ones from `base` on.
    fn close_sequence(&mut self, base: usize) -> Node<'a> {
        let start = self.items.len();
        self.items.extend(self.open_items.drain(base..));
        // A document holds fewer than 2^32 nodes (it is at most MAX_DOCUMENT_BYTES long).
        Node::Seq(Run {
            start: start as u32,
            len: (self.items.len() - start) as u32,
        })
    }

    /// A value on the rest of a line (not empty, not a comment): a scalar or a one-line flow
    /// sequence of scalars, then optionally a comment.
    fn inline_value(&mut self, text: &'a str, depth: usize) -> Option<Node<'a>> {
        match text.as_bytes()[0] {
            quote @ (b'"' | b'\'') => {
                let (s, after) = quoted(text, quote)?;
                ends_line(after).then_some(Node::Str(s))
            }
            b'[' => {
                if depth > MAX_DEPTH {
                    return None;
                }
                let (items, after) = self.flow_sequence(text)?;
                ends_line(after).then_some(items)
            }
            b'{' => {
                let after = text[1..].trim_start_matches(' ').strip_prefix('}')?;
                ends_line(after).then_some(Node::Map(Run { start: 0, len: 0 }))
            }
            _ => {
                // One pass: where a comment starts (` #`), and whether `: ` comes before it.
                let bytes = text.as_bytes();
                let (mut end, mut colon_space) = (bytes.len(), false);
                for i in 1..bytes.len() {
                    // By the byte itself first: most are neither `#` nor a space.
                    match bytes[i] {
                        b'#' if bytes[i - 1] == b' ' => {
                            end = i - 1;
                            break;
                        }
                        b' ' if bytes[i - 1] == b':' => colon_space = true,
                        _ => {}
                    }
                }
                let s = text[..end].trim_end_matches(' ');
                if !plain_start_ok(s) || s.ends_with(':') || colon_space {
                    return None;
                }
                plain_scalar(s)
            }
        }
    }

    /// A one-line flow sequence of scalars, from its `[`: the sequence and the text after the
    /// `]`.
    fn flow_sequence(&mut self, text: &'a str) -> Option<(Node<'a>, &'a str)> {
        let base = self.open_items.len();
        let mut rest = text[1..].trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(']') {
            return Some((self.close_sequence(base), after));
        }
        loop {
            let (item, after) = match rest.as_bytes().first()? {
                quote @ (b'"' | b'\'') => {
                    let (s, after) = quoted(rest, *quote)?;
                    (Node::Str(s), after)
                }
                _ => {
                    let end = rest.find([',', ']'])?;
                    let raw = &rest[..end];
                    let s = raw.trim_end_matches(' ');
                    let colon_ends = raw.bytes().enumerate().any(|(i, b)| {
                        b == b':' && (i + 1 == raw.len() || raw.as_bytes()[i + 1] == b' ')
                    });
                    if !plain_start_ok(s)
                        || colon_ends
                        || s.contains(['[', ']', '{', '}', '#', '"', '\''])
                    {
                        return None;
                    }
                    (plain_scalar(s)?, &rest[end..])
                }
            };
            self.open_items.push(item);
            let after = after.trim_start_matches(' ');
            if let Some(after) = after.strip_prefix(']') {
                return Some((self.close_sequence(base), after));
            }
            rest = after.strip_prefix(',')?.trim_start_matches(' ');
            if rest.starts_with([']', ',']) {
                return None; // a trailing comma or an empty item
            }
        }
    }
}

/// Splits `key: rest` (or `key:` at the end of the line). `Some(None)`: the line is not a
/// mapping entry; `None`: it may be one, but outside the subset.
#[allow(clippy::type_complexity)]
fn split_key(text: &str) -> Option<Option<(Cow<'_, str>, &str)>> {
    match text.as_bytes()[0] {
        quote @ (b'"' | b'\'') => {
            let (key, after) = quoted(text, quote)?;
            let after_ok = |rest: &str| rest.is_empty() || rest.starts_with(' ');
            if let Some(rest) = after.strip_prefix(':')
                && after_ok(rest)
            {
                if text.len() - rest.len() > MAX_KEY_BYTES {
                    return None;
                }
                return Some(Some((key, rest)));
            }
            if after.trim_start_matches(' ').starts_with(':') {
                return None; // `"key" : value`
            }
            Some(None)
        }
        first if first.is_ascii_alphanumeric() || matches!(first, b'_' | b'/' | b'.') => {
            let bytes = text.as_bytes();
            // Most lines are a key of key bytes, then `: ` or the line's end: one pass over the
            // key. Neither `: ` nor ` #` can start within the key bytes, so the search below
            // goes on from the first other byte.
            let run = bytes
                .iter()
                .position(|&b| !is_key_byte(b))
                .unwrap_or(bytes.len());
            if bytes.get(run) == Some(&b':') && bytes.get(run + 1).is_none_or(|&b| b == b' ') {
                let key = &text[..run];
                if key.len() > MAX_KEY_BYTES || !plain_key_is_string(key) {
                    return None;
                }
                return Some(Some((Cow::Borrowed(key), &text[run + 1..])));
            }
            let mut i = run;
            while i < bytes.len() {
                match bytes[i] {
                    b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => {
                        let key = &text[..i];
                        if key.len() > MAX_KEY_BYTES
                            || !key.bytes().all(is_key_byte)
                            || !plain_key_is_string(key)
                        {
                            return None;
                        }
                        return Some(Some((Cow::Borrowed(key), &text[i + 1..])));
                    }
                    b'#' if bytes[i - 1] == b' ' => return Some(None),
                    _ => {}
                }
                i += 1;
            }
            Some(None)
        }
        _ => Some(None),
    }
}

/// The bytes a plain key is made of (a key of others is declined).
fn is_key_byte(b: u8) -> bool {
    KEY_BYTES[usize::from(b)]
}

/// [`is_key_byte`] as a table: one load a byte where the tests took several compares.
static KEY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'/' | b'-');
        b += 1;
    }
    table
};

/// Whether a plain key (of key bytes) resolves to a string, as [`plain_scalar`] says: a key
/// starting with a letter does unless it is one of the words [`plain_scalar`] resolves or
/// declines; the others are asked.
fn plain_key_is_string(key: &str) -> bool {
    if key.as_bytes()[0].is_ascii_alphabetic() {
        return !is_special_word(key);
    }
    matches!(plain_scalar(key), Some(Node::Str(_)))
}

/// Whether what follows a closing quote or bracket ends the line: nothing, or spaces and
/// maybe a comment.
fn ends_line(after: &str) -> bool {
    after.is_empty() || (after.starts_with(' ') && is_blank_or_comment(after))
}

/// Whether a plain scalar may start this way: not with an indicator (`-` only before a digit).
fn plain_start_ok(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.first() {
        None => false,
        Some(b'-') => bytes.get(1).is_some_and(u8::is_ascii_digit),
        Some(
            b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|'
            | b'>' | b'\'' | b'"' | b'%' | b'@' | b'`',
        ) => false,
        Some(_) => true,
    }
}

/// A quoted scalar closed on this line, from its opening quote: the string (borrowed when it
/// has no escapes or doubled quotes) and the text after the closing quote.
fn quoted(text: &str, quote: u8) -> Option<(Cow<'_, str>, &str)> {
    let body = &text[1..];
    if quote == b'\'' {
        let i = body.find('\'')?;
        if !body[i + 1..].starts_with('\'') {
            return Some((Cow::Borrowed(&body[..i]), &body[i + 1..]));
        }
        let mut out = String::new();
        let mut rest = body;
        loop {
            let i = rest.find('\'')?;
            out.push_str(&rest[..i]);
            if rest[i + 1..].starts_with('\'') {
                out.push('\'');
                rest = &rest[i + 2..];
            } else {
                return Some((Cow::Owned(out), &rest[i + 1..]));
            }
        }
    }
    let stop = body.find(['"', '\\'])?;
    if body.as_bytes()[stop] == b'"' {
        return Some((Cow::Borrowed(&body[..stop]), &body[stop + 1..]));
    }
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(out), &body[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    '"' | '\\' | '/' => out.push(e),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' => {
                        let mut code = 0u32;
                        for _ in 0..4 {
                            code = code * 16 + chars.next()?.1.to_digit(16)?;
                        }
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                }
            }
            _ => out.push(c),
        }
    }
    None
}

/// What serde-saphyr resolves a plain scalar to, when certain.
fn plain_scalar(s: &str) -> Option<Node<'_>> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Node::Null),
        "true" | "True" | "TRUE" => return Some(Node::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Node::Bool(false)),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if first.is_ascii_alphabetic() {
        // Most scalars: a word that is not special is a string.
        return (!is_special_word(s)).then_some(Node::Str(Cow::Borrowed(s)));
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let word = unsigned.strip_prefix('.').unwrap_or(unsigned);
    if is_special_word(word) {
        return None;
    }
    if first == b'/' || !first.is_ascii() {
        return Some(Node::Str(Cow::Borrowed(s)));
    }
    if let Some(n) = decimal_integer(s) {
        return Some(n);
    }
    // Text that no integer or float spelling can be: a character outside them, or two dots
    // (an IPv4 address).
    let numeric = |b: u8| {
        b.is_ascii_hexdigit()
            || matches!(
                b,
                b'x' | b'X' | b'o' | b'O' | b'b' | b'B' | b'_' | b'.' | b'+' | b'-'
            )
    };
    if !s.bytes().all(numeric) || s.bytes().filter(|&b| b == b'.').count() >= 2 {
        return Some(Node::Str(Cow::Borrowed(s)));
    }
    None
}

/// YAML 1.1 booleans (resolved or not, depending on options), spellings of null, true and
/// false, and the words Rust's float parser reads, in any case.
fn is_special_word(word: &str) -> bool {
    const WORDS: [&str; 12] = [
        "y", "yes", "n", "no", "on", "off", "true", "false", "null", "inf", "infinity", "nan",
    ];
    word.len() <= "infinity".len()
        && matches!(
            word.as_bytes().first(),
            Some(b'y' | b'n' | b'o' | b't' | b'f' | b'i' | b'Y' | b'N' | b'O' | b'T' | b'F' | b'I')
        )
        && WORDS.iter().any(|w| word.eq_ignore_ascii_case(w))
}

/// `0`, or digits without a leading zero, optionally after `-`, within u64 (i64 when negative).
fn decimal_integer(s: &str) -> Option<Node<'_>> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    if negative {
        if digits == "0" {
            return None;
        }
        s.parse::<i64>().ok().map(Node::NegInt)
    } else {
        digits.parse::<u64>().ok().map(Node::PosInt)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fuzzing::saphyr_documents;

    /// What the fast path reads, after checking that serde-saphyr reads the same.
    fn read(text: &str) -> Value {
        let fast = parse_document(text).unwrap_or_else(|| panic!("declined: {text:?}"));
        let slow: Vec<Value> = saphyr_documents(text)
            .unwrap_or_else(|e| panic!("serde-saphyr refuses {text:?}: {e}"))
            .into_iter()
            .map(|d| d.value)
            .collect();
        assert_eq!(slow, std::slice::from_ref(&fast), "{text:?}");
        fast
    }

    fn declined(text: &str) -> bool {
        parse_document(text).is_none()
    }

    #[test]
    fn a_manifest_reads_as_serde_saphyr_reads_it() {
        let text = "---\n# a Service\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-0 # trailing comment\n  namespace: 'ns-0'\n  labels:\n    app.kubernetes.io/name: \"svc\"\n\n  annotations: {}\nspec:\n  clusterIP: 10.97.0.1\n  clusterIPs: [10.97.0.1, \"fd00::1\"]\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n  -   name: dns\n      port: 53\n  selector:\n    app: x\n  externalIPs: []\n";
        assert_eq!(
            read(text),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "svc-0",
                    "namespace": "ns-0",
                    "labels": {"app.kubernetes.io/name": "svc"},
                    "annotations": {},
                },
                "spec": {
                    "clusterIP": "10.97.0.1",
                    "clusterIPs": ["10.97.0.1", "fd00::1"],
                    "ports": [
                        {"name": "http", "port": 80, "targetPort": 8080},
                        {"name": "dns", "port": 53},
                    ],
                    "selector": {"app": "x"},
                    "externalIPs": [],
                },
            })
        );
    }

    #[test]
    fn block_structure() {
        // a sequence at its key's indent, then the mapping goes on
        assert_eq!(read("a:\n- 1\n- x\nb: 2\n"), json!({"a": [1, "x"], "b": 2}));
        assert_eq!(
            read("- a:\n  - x\n  b: 1\n- c\n"),
            json!([{"a": ["x"], "b": 1}, "c"])
        );
        assert_eq!(
            read("-\n  a: 1\n- # empty\n-\n"),
            json!([{"a": 1}, null, null])
        );
        assert_eq!(read("  a: 1\n  b:\n"), json!({"a": 1, "b": null}));
        assert_eq!(
            read("a:\n    b:\n      - x\nc: z\n"),
            json!({"a": {"b": ["x"]}, "c": "z"})
        );
        assert_eq!(
            read("a: 1\n\n   # a comment anywhere\nb: 2"),
            json!({"a": 1, "b": 2})
        );
        assert_eq!(read("--- # start\na: 1\n"), json!({"a": 1}));
    }

    #[test]
    fn scalars() {
        let cases = [
            ("", json!(null)),
            (" ~", json!(null)),
            (" null", json!(null)),
            (" NULL", json!(null)),
            (" true", json!(true)),
            (" FALSE", json!(false)),
            (" 0", json!(0)),
            (" 8080", json!(8080)),
            (" -17", json!(-17)),
            (" 18446744073709551615", json!(u64::MAX)),
            (" -9223372036854775808", json!(i64::MIN)),
            (" 10.97.0.1", json!("10.97.0.1")),
            (" 2024-01-01T00:00:00Z", json!("2024-01-01T00:00:00Z")),
            (" 80/TCP", json!("80/TCP")),
            (" 100Mi", json!("100Mi")),
            (" http://x:80/y", json!("http://x:80/y")),
            (" b#c", json!("b#c")),
            (" x, y]", json!("x, y]")),
            (" .hidden", json!(".hidden")),
            (" inform", json!("inform")),
            (" 'it''s # not a comment'", json!("it's # not a comment")),
            (
                " \"q\\\"\\\\\\/\\n\\t\\r\\u00e9\"",
                json!("q\"\\/\n\t\r\u{e9}"),
            ),
            (" \u{e9}t\u{e9}", json!("\u{e9}t\u{e9}")),
            (
                " [1, -2, x, 'y', \"z\" , 10.0.0.1]",
                json!([1, -2, "x", "y", "z", "10.0.0.1"]),
            ),
            (" [fd00::1, a:b]", json!(["fd00::1", "a:b"])),
            (" [ ]", json!([])),
            (" { }", json!({})),
        ];
        for (text, value) in cases {
            assert_eq!(
                read(&format!("a:{text}\n")),
                json!({ "a": value }),
                "{text}"
            );
        }
        assert_eq!(read("\"k:\": 1\n'k''': 2\n"), json!({"k:": 1, "k'": 2}));
    }

    #[test]
    fn spellings_whose_resolution_is_not_certain_are_declined() {
        for value in [
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "n",
            "nULL",
            "tRUE",
            "1.5",
            "1e3",
            ".5",
            "1.",
            "0x1f",
            "0o17",
            "0b101",
            "1_000",
            "+1",
            "-0",
            "007",
            "-007",
            ".inf",
            "-.Inf",
            ".nan",
            "inf",
            "NaN",
            "Infinity",
            "18446744073709551616",
            "-9223372036854775809",
            "12abc",
            "-",
            "-x",
            "_1",
        ] {
            assert!(declined(&format!("a: {value}\n")), "{value}");
            assert!(declined(&format!("a: [{value}]\n")), "{value}");
        }
        // the same spellings as keys, and keys of other shapes
        for key in [
            "yes", "1", "true", "null", "~", "1.5", "a b", "a[0]", "-a", "<<", "&a a",
        ] {
            assert!(declined(&format!("{key}: x\n")), "{key}");
        }
        assert!(declined(&format!("{}: x\n", "k".repeat(MAX_KEY_BYTES + 1))));
        assert!(!declined(&format!("{}: x\n", "k".repeat(MAX_KEY_BYTES))));
    }

    #[test]
    fn yaml_outside_the_subset_is_declined() {
        let cases = [
            ("a:\tb\n", "tab"),
            ("a:\n\t- b\n", "tab indentation"),
            ("a: b\r\n", "carriage return"),
            ("a: \u{1}\n", "control character"),
            ("\u{feff}a: b\n", "byte order mark"),
            ("a: &x b\n", "anchor"),
            ("a: *x\n", "alias"),
            ("&x a: b\n", "anchor on a key"),
            ("a: !!str 1\n", "tag"),
            ("a: !t b\n", "local tag"),
            ("a: |\n  text\n", "literal block scalar"),
            ("a: >-\n  text\n", "folded block scalar"),
            ("a: multi\n  line\n", "multi-line plain scalar"),
            ("a: 'multi\n  line'\n", "multi-line quoted scalar"),
            ("a: \"multi\\\n  line\"\n", "escaped line break"),
            ("a: \"\\x41\"\n", "an unusual escape"),
            ("a: \"\\ud800\"\n", "a surrogate"),
            ("a: {b: 1}\n", "flow mapping with content"),
            ("a: [[1]]\n", "nested flow"),
            ("a: [{b: 1}]\n", "flow mapping in a flow sequence"),
            ("a: [b: 1]\n", "single-pair mapping in a flow sequence"),
            ("a: [1,\n  2]\n", "multi-line flow"),
            ("a: [1, 2,]\n", "trailing comma"),
            ("a: [1,,2]\n", "empty item"),
            ("a: [::1]\n", "plain scalar starting with an indicator"),
            ("? a\n: b\n", "complex key"),
            ("%YAML 1.2\n---\na: 1\n", "directive"),
            ("a: 1\n...\n", "document end"),
            ("a: 1\n---\nb: 2\n", "a second document"),
            ("--- a: 1\n", "content after the marker"),
            ("a: 1\na: 2\n", "duplicate key"),
            ("\"a\": 1\na: 2\n", "duplicate key, quoted"),
            ("a: b: c\n", "mapping in a plain scalar"),
            ("a: b:\n", "mapping in a plain scalar, at its end"),
            ("a: - b\n", "sequence after a key on one line"),
            ("- - a\n", "compact nested sequence"),
            ("a: 1\n b: 2\n", "more indented without a parent"),
            ("a:\n  b: 1\n c: 2\n", "indentation between levels"),
            ("- a\nb: 1\n", "a mapping after a root sequence"),
            ("a: 1\n- b\n", "a sequence item after a mapping entry"),
            ("a: \"x\" y\n", "text after a quoted scalar"),
            ("a: \"x\"# c\n", "comment without a space"),
            ("a: [x]y\n", "text after a flow sequence"),
            ("\"a\" : 1\n", "space before a quoted key's colon"),
            ("scalar\n", "a scalar document"),
            ("[1, 2]\n", "a flow document"),
            ("", "an empty document"),
            ("# only a comment\n", "a document of comments"),
            ("---\n", "a document of a marker"),
        ];
        for (text, what) in cases {
            assert!(declined(text), "{what}: {text:?}");
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_declined() {
        let mappings = |depth: usize| -> String {
            (0..depth)
                .map(|i| {
                    " ".repeat(i)
                        + "k:
"
                })
                .collect()
        };
        assert!(!declined(&mappings(MAX_DEPTH)));
        assert!(declined(&mappings(MAX_DEPTH + 1)));
        let items = |depth: usize| -> String {
            (0..depth)
                .map(|i| {
                    " ".repeat(i)
                        + "-
"
                })
                .collect()
        };
        assert!(!declined(&items(MAX_DEPTH)));
        assert!(declined(&items(MAX_DEPTH + 1)));
    }

    #[test]
    fn a_document_over_the_size_limit_is_declined() {
        let text = format!("a: {}\n", "x".repeat(MAX_DOCUMENT_BYTES));
        assert!(declined(&text));
    }
}
