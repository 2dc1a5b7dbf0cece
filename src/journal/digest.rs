//! Hex digests shared by the journal's writers and readers: the runbook's and each
//! step's sha256, an approval's plan hash, a postmortem's preserved-section hash.

use sha2::{Digest, Sha256};

/// Lower-case hex of `bytes`, two digits per byte. One allocation: the engine hashes
/// every step of a runbook at the start of a run, so this sits on the per-step path.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// sha256 of `bytes` as 64 lower-case hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 of the concatenation of `parts`, as 64 lower-case hex digits (a text held
/// in blocks is hashed without joining them).
pub fn sha256_hex_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex(&h.finalize())
}

/// The digest a gate approves: sha256 of the plan's operations, as JSON.
///
/// Without a target or preview, the operations as they serialize (`[{"scope":…}]`,
/// fields in declaration order). With either, the object `{"ops": […], "preview": …,
/// "target": …}` (`preview` only when there is one) as a `serde_json::Value` writes
/// it: every object's keys sorted, the operations' fields included. That is written
/// here straight into the hash, field by field, instead of building the value tree
/// first (a 1 000-item plan is a tree of tens of thousands of nodes): the same
/// bytes, which `plan_digest_is_the_value_trees_bytes` holds it to, since a paused
/// run's approval is checked against the digest journaled earlier.
pub fn plan_digest(
    ops: &[super::event::PlannedOp],
    target: Option<&str>,
    preview: Option<&str>,
) -> String {
    // Written into a buffer and hashed once: serde writes a plan a few bytes at a
    // time (a quote, a key, a comma), each `update` of a hash costs more than
    // copying those bytes, and a `Vec` writer is the one the journal's lines are
    // written with, so the serializer's code is the one already run for them.
    let mut h: Vec<u8> = Vec::with_capacity(512);
    // Writing into a Vec cannot fail, nor can serializing these types.
    let _ = (|| -> Result<(), serde_json::Error> {
        if target.is_none() && preview.is_none() {
            return serde_json::to_writer(&mut h, ops);
        }
        h.extend_from_slice(b"{\"ops\":[");
        for (i, op) in ops.iter().enumerate() {
            if i > 0 {
                h.extend_from_slice(b",");
            }
            sorted_op(&mut h, op)?;
        }
        h.extend_from_slice(b"]");
        if let Some(p) = preview {
            h.extend_from_slice(b",\"preview\":");
            serde_json::to_writer(&mut h, &p)?;
        }
        h.extend_from_slice(b",\"target\":");
        serde_json::to_writer(&mut h, &target)?;
        h.extend_from_slice(b"}");
        Ok(())
    })();
    sha256_hex(&h)
}

/// One planned operation with its fields in sorted order, as a `Value` writes it.
fn sorted_op(h: &mut Vec<u8>, op: &super::event::PlannedOp) -> Result<(), serde_json::Error> {
    let super::event::PlannedOp {
        scope,
        provider,
        display,
        op,
        mutating,
        impact,
    } = op;
    h.extend_from_slice(b"{\"display\":");
    serde_json::to_writer(&mut *h, display)?;
    if let Some(impact) = impact {
        h.extend_from_slice(b",\"impact\":");
        serde_json::to_writer(&mut *h, &serde_json::to_value(impact)?)?;
    }
    h.extend_from_slice(b",\"mutating\":");
    serde_json::to_writer(&mut *h, mutating)?;
    // Already a value: its maps are sorted.
    h.extend_from_slice(b",\"op\":");
    serde_json::to_writer(&mut *h, op)?;
    h.extend_from_slice(b",\"provider\":");
    serde_json::to_writer(&mut *h, provider)?;
    h.extend_from_slice(b",\"scope\":");
    serde_json::to_writer(&mut *h, &serde_json::to_value(scope)?)?;
    h.extend_from_slice(b"}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn a_text_in_parts_hashes_as_the_whole_text() {
        assert_eq!(
            sha256_hex_parts([&b"a"[..], b"", b"bc"]),
            sha256_hex(b"abc")
        );
    }

    #[test]
    fn sha256_hex_matches_the_published_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// The digest written field by field is the digest of the bytes the plan had
    /// as a `serde_json::Value` (what earlier versions journaled, and what a paused
    /// run's approval is checked against), for every shape of operation.
    #[test]
    fn plan_digest_is_the_value_trees_bytes() {
        use crate::journal::event::{Impact, PlannedOp, Scope};
        use serde_json::json;
        let op = |scope: Scope, impact: Option<Impact>| PlannedOp {
            scope,
            provider: "kube".into(),
            display: "kubectl delete pod \"a\" -n prod\u{e9}".into(),
            op: json!({"verb": "delete", "name": "a", "resource": {"plural": "pods", "group": ""}, "n": 1.5}),
            mutating: true,
            impact,
        };
        let ops = vec![
            op(
                Scope {
                    step: "s".into(),
                    ..Scope::default()
                },
                None,
            ),
            op(
                Scope {
                    step: "s".into(),
                    rung: Some("s.2".into()),
                    item: Some(7),
                    verification: true,
                },
                Some(Impact {
                    summary: "would delete 2 pods".into(),
                    objects: vec!["b".into(), "a".into()],
                    matched: Some(9),
                }),
            ),
            PlannedOp {
                provider: "shell".into(),
                mutating: false,
                op: json!({"argv": ["true"]}),
                ..op(
                    Scope {
                        step: "t".into(),
                        item: Some(0),
                        ..Scope::default()
                    },
                    None,
                )
            },
        ];
        let bytes = |v: serde_json::Value| sha256_hex(&serde_json::to_vec(&v).unwrap());
        let target = "context lab, server http://127.0.0.1:1, cluster uid x";
        assert_eq!(
            plan_digest(&ops, None, None),
            sha256_hex(&serde_json::to_vec(&ops).unwrap())
        );
        assert_eq!(
            plan_digest(&ops, Some(target), None),
            bytes(json!({"ops": &ops, "target": target}))
        );
        assert_eq!(
            plan_digest(&ops, Some(target), Some("3 pods would go")),
            bytes(json!({"ops": &ops, "target": Some(target), "preview": "3 pods would go"}))
        );
        assert_eq!(
            plan_digest(&ops, None, Some("3 pods would go")),
            bytes(json!({"ops": &ops, "target": None::<String>, "preview": "3 pods would go"}))
        );
        assert_eq!(
            plan_digest(&[], Some(target), None),
            bytes(json!({"ops": Vec::<PlannedOp>::new(), "target": target}))
        );
        // A plan far larger than the buffer starts (a 1 000-item fan-out) hashes
        // the same bytes.
        let many: Vec<PlannedOp> = ops.iter().cycle().take(600).cloned().collect();
        assert!(serde_json::to_vec(&many).unwrap().len() > 32 * 1024);
        assert_eq!(
            plan_digest(&many, None, None),
            sha256_hex(&serde_json::to_vec(&many).unwrap())
        );
        assert_eq!(
            plan_digest(&many, Some(target), None),
            bytes(json!({"ops": &many, "target": target}))
        );
        // Each part counts.
        assert_ne!(
            plan_digest(&ops, Some(target), None),
            plan_digest(&ops, None, None)
        );
        assert_ne!(
            plan_digest(&ops[..2], Some(target), None),
            plan_digest(&ops, Some(target), None)
        );
    }
}
