//! Protobuf request bodies, for what kubectl sends that way.
//!
//! kubectl's typed clients (`kubectl create namespace|configmap|secret`) send their
//! object as `application/vnd.kubernetes.protobuf` (client-go's
//! `UseProtobufAsDefault`), and client-go falls back to JSON on a 415 only for CBOR,
//! not for protobuf: a server that cannot read protobuf makes those commands fail.
//! `kubectl apply` sends JSON. So the lab reads protobuf for exactly those three
//! kinds, the fields kubectl fills, and answers 415 (as the API server does for a
//! media type it cannot read) for any other kind or a field it does not know.
//!
//! The wire format (k8s.io/apimachinery runtime/serializer/protobuf): the magic
//! `k8s\0`, then a `runtime.Unknown` { 1: typeMeta { 1: apiVersion, 2: kind },
//! 2: raw (the object's own message), 3: contentEncoding, 4: contentType }. The
//! objects (k8s.io/api core/v1 generated.proto): Namespace { 1: metadata, 2: spec
//! { 1: finalizers }, 3: status }, ConfigMap { 1: metadata, 2: data map<string,
//! string>, 3: binaryData map<string, bytes>, 4: immutable }, Secret { 1: metadata,
//! 2: data map<string, bytes>, 3: type, 4: stringData map<string, string>,
//! 5: immutable }; ObjectMeta { 1: name, 2: generateName, 3: namespace, 11: labels,
//! 12: annotations, 14: finalizers; 4–8 (selfLink, uid, resourceVersion,
//! generation, creationTimestamp) are server-set and read only when empty }.

use serde_json::{Map, Value, json};

use crate::lab::status::ApiError;

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// One field of a message: its number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn unsupported(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!(
            "the lab reads {MEDIA_TYPE} bodies only for Namespace, ConfigMap and Secret (what `kubectl create namespace|configmap|secret` sends): {why}; send the object as application/json"
        ),
    )
}

fn malformed(why: &str) -> ApiError {
    ApiError::bad_request(format!("the protobuf request body is malformed: {why}"))
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, ApiError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*at)
            .ok_or_else(|| malformed("a varint runs past the end"))?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(malformed("a varint is longer than 10 bytes"))
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let key = varint(buf, &mut at)?;
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => Field::Varint(varint(buf, &mut at)?),
            2 => {
                let len = usize::try_from(varint(buf, &mut at)?)
                    .map_err(|_| malformed("a length does not fit"))?;
                let end = at
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| malformed("a length runs past the end"))?;
                let b = &buf[at..end];
                at = end;
                Field::Bytes(b)
            }
            other => return Err(unsupported(format!("wire type {other} of field {num}"))),
        };
        out.push((num, f));
    }
    Ok(out)
}

fn bytes<'a>(f: &Field<'a>, what: &str) -> Result<&'a [u8], ApiError> {
    match f {
        Field::Bytes(b) => Ok(b),
        Field::Varint(_) => Err(malformed(&format!("{what} is not length-delimited"))),
    }
}

fn string(f: &Field<'_>, what: &str) -> Result<String, ApiError> {
    String::from_utf8(bytes(f, what)?.to_vec())
        .map_err(|_| malformed(&format!("{what} is not UTF-8")))
}

/// A `map<string, string>` or `map<string, bytes>` entry { 1: key, 2: value }; a
/// bytes value is base64, as JSON has it.
fn map_entry(f: &Field<'_>, what: &str, binary: bool) -> Result<(String, Value), ApiError> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (num, g) in fields(bytes(f, what)?)? {
        match num {
            1 => key = string(&g, what)?,
            2 if binary => value = Value::String(base64(bytes(&g, what)?)),
            2 => value = Value::String(string(&g, what)?),
            _ => {}
        }
    }
    Ok((key, value))
}

/// Standard base64 with padding, as JSON carries `bytes`.
fn base64(b: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | (u32::from(*x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn insert_entry(obj: &mut Map<String, Value>, key: &str, entry: (String, Value)) {
    if let Value::Object(m) = obj.entry(key).or_insert_with(|| json!({})) {
        m.insert(entry.0, entry.1);
    }
}

fn object_meta(buf: &[u8]) -> Result<Value, ApiError> {
    let mut meta = Map::new();
    for (num, f) in fields(buf)? {
        match num {
            1 => {
                meta.insert("name".into(), Value::String(string(&f, "metadata.name")?));
            }
            2 => {
                meta.insert(
                    "generateName".into(),
                    Value::String(string(&f, "metadata.generateName")?),
                );
            }
            3 => {
                meta.insert(
                    "namespace".into(),
                    Value::String(string(&f, "metadata.namespace")?),
                );
            }
            11 => insert_entry(
                &mut meta,
                "labels",
                map_entry(&f, "metadata.labels", false)?,
            ),
            12 => insert_entry(
                &mut meta,
                "annotations",
                map_entry(&f, "metadata.annotations", false)?,
            ),
            14 => {
                let v = Value::String(string(&f, "metadata.finalizers")?);
                if let Value::Array(a) = meta.entry("finalizers").or_insert_with(|| json!([])) {
                    a.push(v);
                }
            }
            // Set by the server: kubectl sends them empty.
            4..=8 => {
                let empty = match &f {
                    Field::Bytes(b) => b.is_empty(),
                    Field::Varint(v) => *v == 0,
                };
                if !empty {
                    return Err(unsupported(format!("metadata field {num}")));
                }
            }
            other => return Err(unsupported(format!("metadata field {other}"))),
        }
    }
    // Empty strings are what proto3 sends for unset ones.
    meta.retain(|_, v| v.as_str() != Some(""));
    Ok(Value::Object(meta))
}

/// The object of a protobuf body, as the JSON the lab stores.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("it does not start with the k8s\\0 magic"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (num, f) in fields(rest)? {
        match num {
            1 => {
                for (n, g) in fields(bytes(&f, "typeMeta")?)? {
                    match n {
                        1 => api_version = string(&g, "apiVersion")?,
                        2 => kind = string(&g, "kind")?,
                        _ => {}
                    }
                }
            }
            2 => raw = Some(bytes(&f, "raw")?),
            3 | 4 if !bytes(&f, "content encoding")?.is_empty() => {
                return Err(unsupported(
                    "a content encoding or type inside the envelope",
                ));
            }
            _ => {}
        }
    }
    if api_version != "v1" || !matches!(kind.as_str(), "Namespace" | "ConfigMap" | "Secret") {
        return Err(unsupported(format!("got {kind:?} of {api_version:?}")));
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!("v1"));
    obj.insert("kind".into(), json!(kind));
    for (num, f) in fields(raw.unwrap_or_default())? {
        let what = format!("{kind} field {num}");
        match (kind.as_str(), num) {
            (_, 1) => {
                obj.insert("metadata".into(), object_meta(bytes(&f, "metadata")?)?);
            }
            ("Namespace", 2) => {
                let mut finalizers = Vec::new();
                for (n, g) in fields(bytes(&f, "spec")?)? {
                    match n {
                        1 => finalizers.push(Value::String(string(&g, "spec.finalizers")?)),
                        other => return Err(unsupported(format!("Namespace spec field {other}"))),
                    }
                }
                if !finalizers.is_empty() {
                    obj.insert("spec".into(), json!({ "finalizers": finalizers }));
                }
            }
            // The status is the server's: a client's is dropped on create.
            ("Namespace", 3) => {}
            ("ConfigMap", 2) => insert_entry(&mut obj, "data", map_entry(&f, &what, false)?),
            ("ConfigMap", 3) => insert_entry(&mut obj, "binaryData", map_entry(&f, &what, true)?),
            ("Secret", 2) => insert_entry(&mut obj, "data", map_entry(&f, &what, true)?),
            ("Secret", 3) => {
                let t = string(&f, "type")?;
                if !t.is_empty() {
                    obj.insert("type".into(), Value::String(t));
                }
            }
            ("Secret", 4) => insert_entry(&mut obj, "stringData", map_entry(&f, &what, false)?),
            ("ConfigMap", 4) | ("Secret", 5) => match f {
                Field::Varint(v) => {
                    obj.insert("immutable".into(), Value::Bool(v != 0));
                }
                Field::Bytes(_) => return Err(malformed("immutable is not a bool")),
            },
            _ => return Err(unsupported(what)),
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kubectl 1.37.1 sent for `kubectl create configmap cm1 -n prod
    /// --from-literal=a=b --from-literal=c=d` (its `-v=8` hex dump).
    const CONFIGMAP: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x29\x0a\x17\x0a\x03cm1\x12\x00\x1a\x04prod\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x06\x0a\x01a\x12\x01b\x12\x06\x0a\x01c\x12\x01d\x1a\x00\x22\x00";
    /// `kubectl create secret generic s1 -n prod --from-literal=tok=secret1 --type=Opaque`.
    const SECRET: &[u8] = b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret\x12\x30\x0a\x16\x0a\x02s1\x12\x00\x1a\x04prod\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x0e\x0a\x03tok\x12\x07secret1\x1a\x06Opaque\x1a\x00\x22\x00";

    #[test]
    fn kubectls_configmap_reads_as_its_json() {
        assert_eq!(
            decode(CONFIGMAP).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm1", "namespace": "prod"},
                   "data": {"a": "b", "c": "d"}})
        );
    }

    #[test]
    fn kubectls_secret_reads_with_its_data_in_base64() {
        assert_eq!(
            decode(SECRET).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "s1", "namespace": "prod"},
                   "data": {"tok": "c2VjcmV0MQ=="}, "type": "Opaque"})
        );
    }

    #[test]
    fn base64_is_the_standard_one() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"secret1"), "c2VjcmV0MQ==");
    }

    #[test]
    fn another_kind_or_a_cut_body_is_refused_not_guessed() {
        let pod = b"k8s\x00\x0a\x09\x0a\x02v1\x12\x03Pod\x12\x00";
        let e = decode(pod).unwrap_err();
        assert_eq!(e.code, 415, "{}", e.to_status());
        let e = decode(&CONFIGMAP[..30]).unwrap_err();
        assert_eq!(e.code, 400, "{}", e.to_status());
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
    }
}
