//! Bencode, the encoding of rtpengine's ng control protocol: integers
//! `i42e`, byte strings `4:spam`, lists `l...e` and dictionaries `d...e`
//! (keys are byte strings, written sorted). Only what the ng client needs.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Nesting deeper than this is refused (rtpengine's replies are shallow).
const MAX_DEPTH: usize = 32;

impl Value {
    pub fn dict<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(entries.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
    }

    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(items) => {
                out.push(b'l');
                items.iter().for_each(|v| v.encode(out));
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value that must fill `input` exactly.
    pub fn decode(input: &[u8]) -> Result<Value, String> {
        let mut pos = 0;
        let v = decode_at(input, &mut pos, 0)?;
        if pos != input.len() {
            return Err(format!("{} bytes after the value", input.len() - pos));
        }
        Ok(v)
    }
}

fn decode_at(input: &[u8], pos: &mut usize, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deep".into());
    }
    let at = *pos;
    match input.get(at) {
        None => Err("truncated".into()),
        Some(b'i') => {
            let end = find(input, at + 1, b'e')?;
            let text = std::str::from_utf8(&input[at + 1..end]).map_err(|_| "bad integer")?;
            let i = text.parse::<i64>().map_err(|_| format!("bad integer {text:?}"))?;
            *pos = end + 1;
            Ok(Value::Int(i))
        }
        Some(b'l') => {
            *pos += 1;
            let mut items = Vec::new();
            while input.get(*pos) != Some(&b'e') {
                items.push(decode_at(input, pos, depth + 1)?);
            }
            *pos += 1;
            Ok(Value::List(items))
        }
        Some(b'd') => {
            *pos += 1;
            let mut d = BTreeMap::new();
            while input.get(*pos) != Some(&b'e') {
                let Value::Bytes(key) = decode_at(input, pos, depth + 1)? else {
                    return Err(format!("dictionary key at {at} is not a string"));
                };
                let value = decode_at(input, pos, depth + 1)?;
                d.insert(key, value);
            }
            *pos += 1;
            Ok(Value::Dict(d))
        }
        Some(c) if c.is_ascii_digit() => {
            let colon = find(input, at, b':')?;
            let text = std::str::from_utf8(&input[at..colon]).map_err(|_| "bad length")?;
            let len = text.parse::<usize>().map_err(|_| format!("bad length {text:?}"))?;
            let start = colon + 1;
            let end = start.checked_add(len).filter(|&e| e <= input.len()).ok_or("string runs past the end")?;
            *pos = end;
            Ok(Value::Bytes(input[start..end].to_vec()))
        }
        Some(c) => Err(format!("unexpected byte {c:#04x} at {at}")),
    }
}

fn find(input: &[u8], from: usize, byte: u8) -> Result<usize, String> {
    input
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == byte))
        .map(|i| from + i)
        .ok_or_else(|| format!("no {:?} after {from}", byte as char))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_command_with_sorted_keys() {
        let v = Value::dict([("command", Value::str("ping")), ("a", Value::Int(-3))]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out, b"d1:ai-3e7:command4:pinge");
    }

    #[test]
    fn decodes_a_reply() {
        let v = Value::decode(b"d6:result2:ok5:statsd7:packetsi1000eee").unwrap();
        assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"));
        assert_eq!(v.get("stats").and_then(|s| s.get("packets")).and_then(Value::as_int), Some(1000));
        let l = Value::decode(b"li1e3:abce").unwrap();
        assert_eq!(l, Value::List(vec![Value::Int(1), Value::str("abc")]));
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [&b"i12"[..], b"5:abc", b"d3:keyi1e", b"x", b"i1ei2e", b"di1ei2ee", b"99999999999999999999:"] {
            assert!(Value::decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert!(Value::decode(deep.as_bytes()).is_err());
    }
}
