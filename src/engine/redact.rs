//! Masking secrets in free text, by structure.
//!
//! A secret is known by where it comes from: a param marked `secret: true`, or the
//! value of an HTTP header named like a credential (`Authorization`, `Cookie`,
//! `X-Api-Key`, anything with `token`, `secret`, `password` or `api-key` in its name),
//! learned the first time a resolved operation carries it.
//!
//! What is masked is chosen by the event's structure, never by looking for the value
//! everywhere: step ids, scopes, enum tags, param names, non-secret param values,
//! sequence numbers and digests are never rewritten (a substring rewrite once renamed
//! a step equal to a secret, corrupted `dir=/x/work-secret` into `dir=/x/work-***`, and
//! turned a secret `ok` into an unreadable `"outcome": "***"`). Only free-text leaves
//! are masked: operation results (keys as well as values), display strings, resolved
//! operation arguments, messages.
//!
//! In those leaves every secret is masked in each form it is likely to take on the
//! way out: raw, URL-encoded (`%20` and `+` for a space, strict and as a URL parser
//! leaves a path), base64 (standard and URL-safe, the whole value and the value at
//! each of the three alignments inside a longer base64 string) and JSON-escaped.
//! A secret shorter than [`MIN_MASKABLE`] characters cannot be found inside text
//! without masking half of it (`e`, `ok`): only a leaf equal to it is masked, and the
//! run warns at start.
//!
//! Kubernetes Secrets are masked by structure too, whatever their values are and
//! whether or not a secret param produced them ([`mask_kube_secrets`]): in any object
//! of kind `Secret` (a manifest `apply` sends, an object the API returns, an item of a
//! `get`) every value under `data` and `stringData` becomes [`MASK`], keys kept; and in
//! any object the annotation `kubectl.kubernetes.io/last-applied-configuration` (a
//! copy of the whole object as last applied, Secret data included) becomes [`MASK`].
//! The values so masked are learned as secrets ([`secret_object_values`]), so a later
//! step that templates one elsewhere is masked there too.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// What a masked secret is replaced with.
pub(crate) const MASK: &str = "***";

/// Secrets shorter than this are masked only where a whole leaf equals them.
pub(crate) const MIN_MASKABLE: usize = 4;

/// Base64 fragments shorter than this (from a short secret at an odd alignment) are
/// not searched for: they would match ordinary words.
const MIN_B64_FRAGMENT: usize = 6;

/// The secrets of a run and every form of them to mask.
#[derive(Debug, Default, Clone)]
pub(crate) struct Redactor {
    /// Secrets of at least [`MIN_MASKABLE`] characters, in every encoded form,
    /// longest first (a form containing another is replaced whole).
    forms: Vec<String>,
    /// Every secret value, for whole-leaf equality.
    whole: BTreeSet<String>,
}

impl Redactor {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut r = Redactor::default();
        for s in secrets {
            r.add(&s);
        }
        r
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.whole.is_empty()
    }

    /// Learn a secret (a no-op for one already known or empty).
    pub(crate) fn add(&mut self, secret: &str) {
        if secret.is_empty() || !self.whole.insert(secret.to_string()) {
            return;
        }
        if secret.chars().count() < MIN_MASKABLE {
            return;
        }
        let mut forms: BTreeSet<String> = self.forms.drain(..).collect();
        forms.extend(encoded_forms(secret));
        self.forms = forms.into_iter().collect();
        self.forms
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// `s` with every form of every secret replaced by [`MASK`].
    pub(crate) fn mask(&self, s: &str) -> String {
        if self.whole.contains(s) {
            return MASK.to_string();
        }
        let mut out = s.to_string();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), MASK);
            }
        }
        out
    }

    /// A masker for a stream of bytes (an output spilled to a side file), knowing
    /// the secrets known now.
    pub(crate) fn stream_mask(&self) -> StreamMask {
        let forms: Vec<Vec<u8>> = self.forms.iter().map(|f| f.as_bytes().to_vec()).collect();
        let mut first = [false; 256];
        for f in &forms {
            if let Some(&b) = f.first() {
                first[usize::from(b)] = true;
            }
        }
        StreamMask {
            longest: forms.iter().map(Vec::len).max().unwrap_or(0),
            forms,
            first,
            pending: Vec::new(),
        }
    }

    /// A free-text value masked throughout: strings, object keys, and numbers whose
    /// digits hold a secret. Also learns the values of credential-named headers
    /// (see [`Redactor::learn_headers`]) before masking.
    pub(crate) fn mask_value(&self, v: &Value) -> Value {
        self.mask_value_cow(v).into_owned()
    }

    /// [`Redactor::mask_value`] without a copy when there is nothing to mask (no
    /// secret known and no Kubernetes Secret in `v`): a 1 000-pod list is read
    /// where it is instead of being rebuilt node by node.
    pub(crate) fn mask_value_cow<'v>(&self, v: &'v Value) -> std::borrow::Cow<'v, Value> {
        use std::borrow::Cow;
        if self.is_empty() && !holds_kube_secrets(v) {
            return Cow::Borrowed(v);
        }
        Cow::Owned(self.mask_value_owned(v))
    }

    fn mask_value_owned(&self, v: &Value) -> Value {
        // Most events hold no Secret: look before rebuilding (this runs on every
        // journaled value).
        let masked;
        let v = if holds_kube_secrets(v) {
            masked = mask_kube_secrets(v);
            &masked
        } else {
            v
        };
        if self.is_empty() {
            return v.clone();
        }
        self.mask_leaves(v)
    }

    fn mask_leaves(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.mask(s)),
            Value::Number(n) => {
                let text = n.to_string();
                let masked = self.mask(&text);
                if masked == text {
                    v.clone()
                } else {
                    Value::String(masked)
                }
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.mask_leaves(x)).collect()),
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    let mut key = self.mask(k);
                    // Two keys masked alike must not overwrite each other.
                    while out.contains_key(&key) {
                        key.push('*');
                    }
                    out.insert(key, self.mask_leaves(x));
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    /// Learn as secrets the values of credential-named headers anywhere in a resolved
    /// operation (`{"headers": {"Authorization": "Bearer …"}}`), so they are masked
    /// though the runbook did not mark them. Returns true when one was new.
    pub(crate) fn learn_headers(&mut self, op: &Value) -> bool {
        let mut found = Vec::new();
        collect_credential_headers(op, &mut found);
        let before = self.whole.len();
        for value in found {
            self.add(&value);
            // `Bearer abc` / `Basic abc`: the credential alone is a secret too.
            if let Some((_, cred)) = value.split_once(' ') {
                self.add(cred.trim());
            }
        }
        self.whole.len() != before
    }
}

/// The annotation in which `kubectl apply` (client-side) keeps the whole object as
/// last applied: a Secret's data in clear inside a JSON string.
/// Masks every form of the secrets in a stream given in chunks, including a form
/// split across two chunks: the last `longest - 1` bytes of a chunk wait for the
/// next one before they are passed on.
pub(crate) struct StreamMask {
    /// Forms as bytes, longest first (as [`Redactor`] keeps them).
    forms: Vec<Vec<u8>>,
    /// Whether some form starts with this byte (most bytes are passed on at once).
    first: [bool; 256],
    longest: usize,
    pending: Vec<u8>,
}

impl StreamMask {
    /// The masked bytes that can be passed on after `chunk`.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.forms.is_empty() {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        let safe = self.pending.len().saturating_sub(self.longest - 1);
        self.scan(safe)
    }

    /// The rest, at the end of the stream.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let all = self.pending.len();
        self.scan(all)
    }

    /// Mask and pass on the bytes before `upto` (and any form starting there).
    fn scan(&mut self, upto: usize) -> Vec<u8> {
        let p = &self.pending;
        let mut out = Vec::with_capacity(upto);
        let mut i = 0;
        while i < upto {
            if self.first[usize::from(p[i])]
                && let Some(f) = self.forms.iter().find(|f| p[i..].starts_with(f))
            {
                out.extend_from_slice(MASK.as_bytes());
                i += f.len();
            } else {
                out.push(p[i]);
                i += 1;
            }
        }
        self.pending.drain(..i.min(self.pending.len()));
        out
    }
}

pub(crate) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Values of a Secret shorter than this are masked where they stand but not learned
/// as run secrets: a learned `prod` or `true` would mask every leaf equal to it.
const MIN_LEARNED: usize = 8;

/// Whether `v` is a Kubernetes Secret (a manifest or an object the API returned).
fn is_secret_object(m: &Map<String, Value>) -> bool {
    m.get("kind").and_then(Value::as_str) == Some("Secret")
        && m.get("apiVersion")
            .and_then(Value::as_str)
            .is_none_or(|a| a == "v1")
}

/// Whether [`mask_kube_secrets`] could change anything in `v`: a Secret, a
/// SecretList, or a last-applied annotation somewhere inside it. Reads only.
pub(crate) fn holds_kube_secrets(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(holds_kube_secrets),
        Value::Object(m) => {
            matches!(
                m.get("kind").and_then(Value::as_str),
                Some("Secret" | "SecretList")
            ) || m.contains_key(LAST_APPLIED)
                || m.values().any(holds_kube_secrets)
        }
        _ => false,
    }
}

/// `v` with every Kubernetes Secret's `data` and `stringData` values and every
/// last-applied-configuration annotation replaced by [`MASK`], anywhere inside it
/// (a result holding an object, a list of items, a resolved `apply` with its
/// manifest). Keys are kept: which keys a Secret has is not secret.
pub(crate) fn mask_kube_secrets(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(mask_kube_secrets).collect()),
        Value::Object(m) => {
            let secret = is_secret_object(m);
            let list = m.get("kind").and_then(Value::as_str) == Some("SecretList");
            let mut out = Map::new();
            for (k, x) in m {
                let x = match (k.as_str(), x) {
                    ("data" | "stringData", Value::Object(d)) if secret => Value::Object(
                        d.keys()
                            .map(|k| (k.clone(), Value::String(MASK.to_string())))
                            .collect(),
                    ),
                    // An API list's items may omit their kind.
                    ("items", Value::Array(items)) if list => Value::Array(
                        items
                            .iter()
                            .map(|i| {
                                let mut i = i.clone();
                                if let Value::Object(o) = &mut i {
                                    o.entry("kind").or_insert_with(|| "Secret".into());
                                }
                                mask_kube_secrets(&i)
                            })
                            .collect(),
                    ),
                    ("metadata", Value::Object(meta)) => {
                        let mut meta = meta.clone();
                        if let Some(Value::Object(a)) = meta.get_mut("annotations")
                            && let Some(x) = a.get_mut(LAST_APPLIED)
                        {
                            *x = Value::String(MASK.to_string());
                        }
                        mask_kube_secrets(&Value::Object(meta))
                    }
                    _ => mask_kube_secrets(x),
                };
                out.insert(k.clone(), x);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The values of every Secret inside `v` worth learning as run secrets: each
/// `stringData` value, each `data` value as written (base64) and decoded.
pub(crate) fn secret_object_values(v: &Value, found: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| secret_object_values(x, found)),
        Value::Object(m) => {
            if is_secret_object(m) {
                for (field, decode) in [("stringData", false), ("data", true)] {
                    if let Some(Value::Object(d)) = m.get(field) {
                        for x in d.values().filter_map(Value::as_str) {
                            found.push(x.to_string());
                            if decode && let Some(plain) = base64_decode(x) {
                                found.push(plain);
                            }
                        }
                    }
                }
            }
            m.values().for_each(|x| secret_object_values(x, found));
        }
        _ => {}
    }
    found.retain(|s| s.chars().count() >= MIN_LEARNED && s != MASK);
}

/// Standard base64 (padding optional) decoded to UTF-8 text, or None.
fn base64_decode(s: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        let d = STD.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | d;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A header whose value is a credential, by its name (case-insensitive).
pub(crate) fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key"
    ) || [
        "token", "secret", "password", "api-key", "apikey", "api_key",
    ]
    .iter()
    .any(|w| n.contains(w))
}

fn collect_credential_headers(v: &Value, found: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "headers"
                    && let Value::Object(h) = x
                {
                    for (name, value) in h {
                        if is_credential_header(name)
                            && let Value::String(s) = value
                        {
                            found.push(s.clone());
                        }
                    }
                }
                collect_credential_headers(x, found);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_credential_headers(x, found)),
        _ => {}
    }
}

/// Every form of `secret` worth masking (including itself), deduplicated.
fn encoded_forms(secret: &str) -> BTreeSet<String> {
    let mut forms = BTreeSet::new();
    forms.insert(secret.to_string());
    for plus in [false, true] {
        forms.insert(percent_encode(secret, plus, true));
        forms.insert(percent_encode(secret, plus, false));
    }
    let bytes = secret.as_bytes();
    for alphabet in [STD, URL_SAFE] {
        let whole = base64(bytes, alphabet);
        forms.insert(whole.trim_end_matches('=').to_string());
        forms.insert(whole);
        for offset in 0..3 {
            let fragment = base64_fragment(bytes, offset, alphabet);
            if fragment.len() >= MIN_B64_FRAGMENT {
                forms.insert(fragment);
            }
        }
    }
    if let Ok(json) = serde_json::to_string(secret) {
        forms.insert(json[1..json.len() - 1].to_string());
    }
    forms.retain(|f| f.len() >= MIN_MASKABLE);
    forms
}

/// URL-encoding: `strict` encodes everything but RFC 3986's unreserved characters;
/// otherwise only what a URL parser encodes in a path or query (space, quotes, `<>`,
/// `` ` ``, `{}`, controls, non-ASCII), which is what a secret templated raw into a
/// URL becomes (`Sup er/Sec` → `Sup%20er/Sec`). `plus` writes a space as `+`.
fn percent_encode(s: &str, plus: bool, strict: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let keep = if strict {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
        } else {
            b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}')
        };
        if b == b' ' && plus {
            out.push('+');
        } else if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with `=` padding.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let word = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(alphabet[((word >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The base64 characters that depend only on `secret` when it sits `offset` bytes
/// after a 3-byte boundary inside a longer encoded string: character `i` covers bits
/// `6i..6i+6`, which must lie inside the secret's bits `8·offset..8·(offset+len)`.
fn base64_fragment(secret: &[u8], offset: usize, alphabet: &[u8; 64]) -> String {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(secret);
    let encoded = base64(&padded, alphabet);
    let first = (8 * offset).div_ceil(6);
    let end = (8 * (offset + secret.len())) / 6;
    encoded.get(first..end).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(base64(b"hunter2", STD), "aHVudGVyMg==");
        assert_eq!(base64(b"\xfb\xff", URL_SAFE), "-_8=");
        assert_eq!(base64(b"", STD), "");
    }

    #[test]
    fn a_secret_inside_a_longer_base64_string_is_masked_at_every_alignment() {
        let secret = "Sup3r-Secret-Value";
        let r = Redactor::new([secret.to_string()]);
        for prefix in ["", "a", "ab", "abc", "user:"] {
            let encoded = base64(format!("{prefix}{secret}:tail").as_bytes(), STD);
            let masked = r.mask(&encoded);
            assert!(masked.contains(MASK), "{prefix:?}: {encoded} → {masked}");
        }
    }

    #[test]
    fn encoded_forms_are_masked() {
        let secret = "Sup er/Sec+ret\"x";
        let r = Redactor::new([secret.to_string()]);
        for text in [
            format!("https://h/a/{}", percent_encode(secret, false, false)),
            format!("q={}", percent_encode(secret, true, true)),
            format!("q={}", percent_encode(secret, false, true)),
            base64(secret.as_bytes(), STD),
            base64(secret.as_bytes(), URL_SAFE),
            serde_json::to_string(secret).unwrap(),
        ] {
            assert!(r.mask(&text).contains(MASK), "{text}");
            assert!(!r.mask(&text).contains("Sec"), "{text} → {}", r.mask(&text));
        }
    }

    #[test]
    fn a_short_secret_is_masked_only_as_a_whole_leaf() {
        let r = Redactor::new(["ok".to_string()]);
        assert_eq!(r.mask("ok"), MASK);
        assert_eq!(r.mask("look"), "look");
        let v = r.mask_value(&serde_json::json!({"ok": ["ok", "book"]}));
        assert_eq!(v, serde_json::json!({"***": ["***", "book"]}));
    }

    #[test]
    fn object_keys_and_numbers_are_masked() {
        let r = Redactor::new(["hunter22".to_string(), "31337".to_string()]);
        let v = r.mask_value(&serde_json::json!({"user-hunter22": 1, "pin": 31337}));
        assert_eq!(v, serde_json::json!({"user-***": 1, "pin": "***"}));
    }

    #[test]
    fn kubernetes_secrets_are_masked_by_structure_and_their_values_learned() {
        let v = serde_json::json!({"object": {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {LAST_APPLIED: "{\"data\":{}}", "a": "b"}},
            "data": {"token": "c2VjcmV0LXRva2Vu"}, "stringData": {"pw": "hunter2-long"}},
            "list": {"kind": "SecretList", "items": [{"metadata": {"name": "x"}, "data": {"k": "dg=="}}]},
            "cm": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"mode": "safe"}}});
        let m = Redactor::default().mask_value(&v);
        assert_eq!(m["object"]["data"], serde_json::json!({"token": MASK}));
        assert_eq!(m["object"]["stringData"], serde_json::json!({"pw": MASK}));
        assert_eq!(m["object"]["metadata"]["annotations"][LAST_APPLIED], MASK);
        assert_eq!(m["object"]["metadata"]["annotations"]["a"], "b");
        assert_eq!(m["list"]["items"][0]["data"]["k"], MASK);
        assert_eq!(
            m["cm"]["data"]["mode"], "safe",
            "a ConfigMap is not a Secret"
        );
        let mut found = Vec::new();
        secret_object_values(&v, &mut found);
        found.sort();
        // The short `v` is not learned; the data value is learned encoded and decoded.
        assert_eq!(found, ["c2VjcmV0LXRva2Vu", "hunter2-long", "secret-token"]);
    }

    #[test]
    fn credential_headers_are_learned_as_secrets() {
        let mut r = Redactor::default();
        let op = serde_json::json!({"url": "u", "headers": {
            "Authorization": "Bearer abcdef123", "X-Api-Key": "k3y-value", "Accept": "text/plain"}});
        assert!(r.learn_headers(&op));
        let v = r.mask_value(&op);
        assert_eq!(v["headers"]["Authorization"], MASK);
        assert_eq!(v["headers"]["X-Api-Key"], MASK);
        assert_eq!(v["headers"]["Accept"], "text/plain");
        assert_eq!(r.mask("echo abcdef123"), "echo ***");
        assert!(is_credential_header("X-Vault-Token"));
        assert!(!is_credential_header("Content-Type"));
    }

    #[test]
    fn only_values_holding_a_secret_or_a_last_applied_annotation_are_rebuilt() {
        assert!(!holds_kube_secrets(
            &serde_json::json!({"items": [{"kind": "Pod", "metadata": {"name": "a"}}]})
        ));
        let nested =
            serde_json::json!({"result": {"items": [{"kind": "Secret", "data": {"k": "dg=="}}]}});
        assert!(holds_kube_secrets(&nested));
        assert_ne!(mask_kube_secrets(&nested), nested);
        let list = serde_json::json!({"kind": "SecretList", "items": [{"data": {"k": "dg=="}}]});
        assert!(holds_kube_secrets(&list));
        let annotated = serde_json::json!([{"metadata": {"annotations": {LAST_APPLIED: "{}"}}}]);
        assert!(holds_kube_secrets(&annotated));
        assert_ne!(mask_kube_secrets(&annotated), annotated);
    }

    #[test]
    fn a_secret_split_across_chunks_of_a_stream_is_masked() {
        let r = Redactor::new(["hunter2-secret".to_string()]);
        for split in 0..40 {
            let text = b"before hunter2-secret after hunter2-secret";
            let mut m = r.stream_mask();
            let mut out = m.push(&text[..split.min(text.len())]);
            out.extend(m.push(&text[split.min(text.len())..]));
            out.extend(m.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "before *** after ***",
                "split at {split}"
            );
        }
        let mut none = Redactor::default().stream_mask();
        assert_eq!(none.push(b"plain"), b"plain");
    }
}
