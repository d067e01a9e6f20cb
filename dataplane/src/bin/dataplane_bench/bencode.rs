//! Bencode, the encoding of rtpengine's ng control protocol: integers
//! `i42e`, byte strings `4:spam`, lists `l...e`, dictionaries `d...e` with
//! keys sorted as raw bytes.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input ends inside a value")]
    Truncated,
    #[error("unexpected byte {0:#04x} at offset {1}")]
    Unexpected(u8, usize),
    #[error("bad number at offset {0}")]
    BadNumber(usize),
    #[error("dictionary key is not a byte string at offset {0}")]
    BadKey(usize),
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Deeper nesting than anything rtpengine sends is refused, so hostile input
/// cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(pairs.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
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

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                // A BTreeMap of byte strings iterates in the raw-byte order bencode wants.
                for (k, v) in entries {
                    encode_bytes(k, out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value; returns it and the bytes it took.
    pub fn decode(input: &[u8]) -> Result<(Value, usize), DecodeError> {
        let mut pos = 0;
        let v = decode_at(input, &mut pos, 0)?;
        Ok((v, pos))
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

fn peek(input: &[u8], pos: usize) -> Result<u8, DecodeError> {
    input.get(pos).copied().ok_or(DecodeError::Truncated)
}

/// Digits (with an optional leading minus) up to `end`; `pos` ends past `end`.
fn number(input: &[u8], pos: &mut usize, end: u8) -> Result<i64, DecodeError> {
    let start = *pos;
    let stop = input[start..].iter().position(|&b| b == end).ok_or(DecodeError::Truncated)?;
    let text = std::str::from_utf8(&input[start..start + stop]).map_err(|_| DecodeError::BadNumber(start))?;
    if text.is_empty() || text.starts_with('+') {
        return Err(DecodeError::BadNumber(start));
    }
    let n = text.parse().map_err(|_| DecodeError::BadNumber(start))?;
    *pos = start + stop + 1;
    Ok(n)
}

fn decode_at(input: &[u8], pos: &mut usize, depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    match peek(input, *pos)? {
        b'i' => {
            *pos += 1;
            number(input, pos, b'e').map(Value::Int)
        }
        b'0'..=b'9' => decode_bytes(input, pos).map(Value::Bytes),
        b'l' => {
            *pos += 1;
            let mut items = Vec::new();
            while peek(input, *pos)? != b'e' {
                items.push(decode_at(input, pos, depth + 1)?);
            }
            *pos += 1;
            Ok(Value::List(items))
        }
        b'd' => {
            *pos += 1;
            let mut entries = BTreeMap::new();
            while peek(input, *pos)? != b'e' {
                if !peek(input, *pos)?.is_ascii_digit() {
                    return Err(DecodeError::BadKey(*pos));
                }
                let key = decode_bytes(input, pos)?;
                let value = decode_at(input, pos, depth + 1)?;
                entries.insert(key, value);
            }
            *pos += 1;
            Ok(Value::Dict(entries))
        }
        other => Err(DecodeError::Unexpected(other, *pos)),
    }
}

fn decode_bytes(input: &[u8], pos: &mut usize) -> Result<Vec<u8>, DecodeError> {
    let at = *pos;
    let len = usize::try_from(number(input, pos, b':')?).map_err(|_| DecodeError::BadNumber(at))?;
    let end = pos.checked_add(len).ok_or(DecodeError::BadNumber(at))?;
    let bytes = input.get(*pos..end).ok_or(DecodeError::Truncated)?.to_vec();
    *pos = end;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn encodes_an_offer() {
        let v = Value::dict([
            ("sdp", Value::str("v=0")),
            ("command", Value::str("offer")),
            ("call-id", Value::str("c1")),
            ("flags", Value::List(vec![Value::str("trust-address")])),
            ("ttl", Value::Int(-3)),
        ]);
        assert_eq!(
            encoded(&v),
            b"d7:call-id2:c17:command5:offer5:flagsl13:trust-addresse3:sdp3:v=03:ttli-3ee".to_vec()
        );
    }

    #[test]
    fn decodes_a_reply_and_encodes_it_sorted() {
        let reply = b"d3:sdp9:m=audio 16:result2:ok6:totalsd3:RTPd7:packetsi12eeee";
        let (v, used) = Value::decode(reply).unwrap();
        assert_eq!(used, reply.len());
        assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"));
        assert_eq!(v.get("sdp").and_then(Value::as_str), Some("m=audio 1"));
        assert_eq!(v.get("totals").and_then(|t| t.get("RTP")).and_then(|r| r.get("packets")), Some(&Value::Int(12)));
        // rtpengine does not sort its keys; we do, as bencode says.
        assert_eq!(encoded(&v), b"d6:result2:ok3:sdp9:m=audio 16:totalsd3:RTPd7:packetsi12eeee".to_vec());
    }

    #[test]
    fn refuses_broken_input() {
        for bad in [&b"i12"[..], b"5:abc", b"l", b"d3:abc", b"ie", b"i+1e", b"x", b"di1ei2ee"] {
            assert!(Value::decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = [b'l'; 100];
        assert_eq!(Value::decode(&deep), Err(DecodeError::TooDeep));
    }
}
