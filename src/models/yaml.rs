//! The YAML subset that taming-transformers' `config.yaml` files use: nested block maps,
//! `- item` lists (also at their key's indentation), flow lists `[1, 2]`, scalars and
//! comments. Enough to read a model's hyperparameters without a YAML dependency; anything
//! else (anchors, multi-line strings, maps inside lists) is refused with its line number.

use serde_json::{Map, Number, Value};

struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

/// The document as JSON.
pub fn parse(text: &str) -> Result<Value, String> {
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let body = strip_comment(raw).trim_end();
            let trimmed = body.trim_start();
            (!trimmed.is_empty() && trimmed != "---").then(|| Line { number: i + 1, indent: body.len() - trimmed.len(), text: trimmed })
        })
        .collect();
    if lines.is_empty() {
        return Ok(Value::Null);
    }
    let mut pos = 0;
    let value = block(&lines, &mut pos)?;
    match lines.get(pos) {
        Some(l) => Err(format!("line {}: unexpected indentation", l.number)),
        None => Ok(value),
    }
}

/// A `#` starts a comment at the line's start or after a space, outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// The map or list starting at `lines[*pos]`, with that line's indentation.
fn block(lines: &[Line], pos: &mut usize) -> Result<Value, String> {
    let indent = lines[*pos].indent;
    if is_item(lines[*pos].text) {
        let mut list = Vec::new();
        while let Some(l) = lines.get(*pos).filter(|l| l.indent == indent && is_item(l.text)) {
            let item = l.text[1..].trim();
            *pos += 1;
            if item.is_empty() {
                list.push(nested(lines, pos, indent, false)?);
            } else if split_key(item).is_some() {
                return Err(format!("line {}: maps inside lists are not supported", l.number));
            } else {
                list.push(scalar(item));
            }
        }
        return Ok(Value::Array(list));
    }
    let mut map = Map::new();
    while let Some(l) = lines.get(*pos).filter(|l| l.indent == indent) {
        let (key, rest) = split_key(l.text).ok_or_else(|| format!("line {}: expected 'key: value'", l.number))?;
        *pos += 1;
        let value = if rest.is_empty() { nested(lines, pos, indent, true)? } else { scalar(rest) };
        map.insert(key.to_string(), value);
    }
    Ok(Value::Object(map))
}

/// The value under a `key:` or `-` with nothing after it: a deeper block, a list at the
/// key's own indentation (`in_map`), or null.
fn nested(lines: &[Line], pos: &mut usize, indent: usize, in_map: bool) -> Result<Value, String> {
    match lines.get(*pos) {
        Some(l) if l.indent > indent || (in_map && l.indent == indent && is_item(l.text)) => block(lines, pos),
        _ => Ok(Value::Null),
    }
}

/// "key: value" or "key:" -> (key, value text); None when the text is no mapping entry.
fn split_key(text: &str) -> Option<(&str, &str)> {
    if text.starts_with(['[', '{', '"', '\'']) {
        return None;
    }
    let i = text.find(": ").or_else(|| text.ends_with(':').then(|| text.len() - 1))?;
    Some((text[..i].trim(), text[i + 1..].trim()))
}

fn scalar(text: &str) -> Value {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return Value::Array(inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(scalar).collect());
    }
    if let Some(s) = t.strip_prefix('"').and_then(|s| s.strip_suffix('"')).or_else(|| t.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))) {
        return Value::String(s.to_string());
    }
    match t {
        "true" | "True" => return Value::Bool(true),
        "false" | "False" => return Value::Bool(false),
        "null" | "~" | "None" => return Value::Null,
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::Number(i.into());
    }
    // Rust also parses "inf" and "NaN", which YAML spells differently: those stay strings.
    match t.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(Number::from_f64) {
        Some(n) => Value::Number(n),
        None => Value::String(t.to_string()),
    }
}
