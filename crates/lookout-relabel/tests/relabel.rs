//! Table-driven relabelling cases: each case is a label set, a YAML list of steps and the
//! expected outcome (`None` = dropped).

use lookout_relabel::{NameValidation, RelabelConfig, RelabelError, relabel, validate_all};
use lookout_storage::Labels;

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn cfgs(yaml: &str) -> Vec<RelabelConfig> {
    let c: Vec<RelabelConfig> =
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("bad test yaml: {e}\n{yaml}"));
    validate_all(&c).unwrap_or_else(|(i, e)| panic!("step {i} invalid: {e}"));
    c
}

struct Case {
    name: &'static str,
    input: &'static [(&'static str, &'static str)],
    steps: &'static str,
    want: Option<&'static [(&'static str, &'static str)]>,
}

const CASES: &[Case] = &[
    Case {
        name: "replace with capture group into new label",
        input: &[("a", "foo"), ("b", "bar")],
        steps: "- source_labels: [a]\n  regex: f(.*)\n  target_label: d\n  replacement: ch${1}-ch${1}",
        want: Some(&[("a", "foo"), ("b", "bar"), ("d", "choo-choo")]),
    },
    Case {
        name: "replace joins sources with separator",
        input: &[("a", "foo"), ("b", "bar")],
        steps: "- source_labels: [a, b]\n  separator: '-'\n  target_label: c",
        want: Some(&[("a", "foo"), ("b", "bar"), ("c", "foo-bar")]),
    },
    Case {
        name: "default separator is semicolon and missing source is empty",
        input: &[("a", "foo")],
        steps: "- source_labels: [a, missing, a]\n  target_label: c",
        want: Some(&[("a", "foo"), ("c", "foo;;foo")]),
    },
    Case {
        name: "no match leaves labels unchanged",
        input: &[("a", "foo")],
        steps: "- source_labels: [a]\n  regex: bar(.*)\n  target_label: a\n  replacement: x",
        want: Some(&[("a", "foo")]),
    },
    Case {
        name: "regex is anchored: partial match does nothing",
        input: &[("a", "xfoox")],
        steps: "- source_labels: [a]\n  regex: foo\n  target_label: b\n  replacement: hit",
        want: Some(&[("a", "xfoox")]),
    },
    Case {
        name: "empty replacement result deletes the target",
        input: &[("a", "foo"), ("b", "bar")],
        steps: "- source_labels: [a]\n  regex: foo\n  target_label: b\n  replacement: ''",
        want: Some(&[("a", "foo")]),
    },
    Case {
        name: "fast path sets constant on empty source",
        input: &[("a", "foo")],
        steps: "- target_label: env\n  replacement: prod",
        want: Some(&[("a", "foo"), ("env", "prod")]),
    },
    Case {
        name: "named groups and $$ escape",
        input: &[("addr", "10.0.0.1:9100")],
        steps: "- source_labels: [addr]\n  regex: '(?P<host>[^:]+):(?P<port>\\d+)'\n  target_label: hp\n  replacement: '$host$$${port}'",
        want: Some(&[("addr", "10.0.0.1:9100"), ("hp", "10.0.0.1$9100")]),
    },
    Case {
        name: "$1x refers to group 1x which does not exist",
        input: &[("a", "foo")],
        steps: "- source_labels: [a]\n  regex: (f)(o)o\n  target_label: b\n  replacement: '$1x-${2}y'",
        want: Some(&[("a", "foo"), ("b", "-oy")]),
    },
    Case {
        name: "target label with group reference",
        input: &[("a", "some-name-value")],
        steps: "- source_labels: [a]\n  regex: 'some-([^-]+)-([^,]+)'\n  target_label: '${1}'\n  replacement: '${2}'",
        want: Some(&[("a", "some-name-value"), ("name", "value")]),
    },
    Case {
        name: "expanded target that is empty is ignored",
        input: &[("a", "some--value")],
        steps: "- source_labels: [a]\n  regex: 'some-([^-]*)-(.*)'\n  target_label: '${1}'\n  replacement: '${2}'",
        want: Some(&[("a", "some--value")]),
    },
    Case {
        name: "dot matches newline",
        input: &[("a", "line1\nline2")],
        steps: "- source_labels: [a]\n  regex: 'line1.(.*)'\n  target_label: b",
        want: Some(&[("a", "line1\nline2"), ("b", "line2")]),
    },
    Case {
        name: "keep matching",
        input: &[("a", "foo")],
        steps: "- source_labels: [a]\n  regex: f.*\n  action: keep",
        want: Some(&[("a", "foo")]),
    },
    Case {
        name: "keep not matching drops",
        input: &[("a", "foo")],
        steps: "- source_labels: [a]\n  regex: b.*\n  action: keep",
        want: None,
    },
    Case {
        name: "keep on missing label matches empty regex",
        input: &[("a", "foo")],
        steps: "- source_labels: [b]\n  regex: ''\n  action: keep",
        want: Some(&[("a", "foo")]),
    },
    Case {
        name: "drop matching",
        input: &[("__name__", "go_gc_duration_seconds"), ("job", "x")],
        steps: "- source_labels: [__name__]\n  regex: 'go_.*'\n  action: drop",
        want: None,
    },
    Case {
        name: "drop not matching keeps",
        input: &[("__name__", "http_requests_total")],
        steps: "- source_labels: [__name__]\n  regex: 'go_.*'\n  action: DROP",
        want: Some(&[("__name__", "http_requests_total")]),
    },
    Case {
        name: "drop stops later steps",
        input: &[("a", "foo")],
        steps: "- source_labels: [a]\n  regex: foo\n  action: drop\n- target_label: z\n  replacement: never",
        want: None,
    },
    Case {
        name: "keepequal equal keeps",
        input: &[("a", "1"), ("b", "1")],
        steps: "- source_labels: [a]\n  target_label: b\n  action: keepequal",
        want: Some(&[("a", "1"), ("b", "1")]),
    },
    Case {
        name: "keepequal different drops",
        input: &[("a", "1"), ("b", "2")],
        steps: "- source_labels: [a]\n  target_label: b\n  action: keepequal",
        want: None,
    },
    Case {
        name: "dropequal equal drops",
        input: &[("__port", "9100"), ("port", "9100")],
        steps: "- source_labels: [__port]\n  target_label: port\n  action: dropequal",
        want: None,
    },
    Case {
        name: "dropequal different keeps",
        input: &[("a", "1")],
        steps: "- source_labels: [a]\n  target_label: b\n  action: dropequal",
        want: Some(&[("a", "1")]),
    },
    Case {
        name: "hashmod",
        input: &[("a", "foo")],
        steps: "- source_labels: [a]\n  target_label: shard\n  modulus: 1000\n  action: hashmod",
        want: Some(&[("a", "foo"), ("shard", "696")]),
    },
    Case {
        name: "hashmod other value",
        input: &[("__address__", "node1:9100")],
        steps: "- source_labels: [__address__]\n  target_label: __tmp_hash\n  modulus: 4\n  action: hashmod",
        want: Some(&[("__address__", "node1:9100"), ("__tmp_hash", "1")]),
    },
    Case {
        name: "labelmap copies meta labels",
        input: &[
            ("__meta_kubernetes_pod_label_app", "web"),
            ("__meta_other", "x"),
            ("a", "1"),
        ],
        steps: "- regex: __meta_kubernetes_pod_label_(.+)\n  action: labelmap",
        want: Some(&[
            ("__meta_kubernetes_pod_label_app", "web"),
            ("__meta_other", "x"),
            ("a", "1"),
            ("app", "web"),
        ]),
    },
    Case {
        name: "labelmap with fixed replacement prefix",
        input: &[("foo", "bar"), ("baz", "qux")],
        steps: "- regex: '(b.*)'\n  replacement: 'x_${1}'\n  action: labelmap",
        want: Some(&[("baz", "qux"), ("foo", "bar"), ("x_baz", "qux")]),
    },
    Case {
        name: "labeldrop",
        input: &[("a", "1"), ("b1", "2"), ("b2", "3")],
        steps: "- regex: 'b.*'\n  action: labeldrop",
        want: Some(&[("a", "1")]),
    },
    Case {
        name: "labelkeep",
        input: &[("__name__", "m"), ("a", "1"), ("b", "2")],
        steps: "- regex: '__name__|a'\n  action: labelkeep",
        want: Some(&[("__name__", "m"), ("a", "1")]),
    },
    Case {
        name: "lowercase and uppercase",
        input: &[("a", "MiXeD"), ("b", "ÄöÜ")],
        steps: "- source_labels: [a]\n  target_label: lower\n  action: lowercase\n- source_labels: [b]\n  target_label: upper\n  action: uppercase",
        want: Some(&[
            ("a", "MiXeD"),
            ("b", "ÄöÜ"),
            ("lower", "mixed"),
            ("upper", "ÄÖÜ"),
        ]),
    },
    Case {
        name: "lowercase of empty deletes target",
        input: &[("a", "X"), ("t", "old")],
        steps: "- source_labels: [missing]\n  target_label: t\n  action: lowercase",
        want: Some(&[("a", "X")]),
    },
    Case {
        name: "steps see earlier results",
        input: &[("__address__", "host:1234")],
        steps: "- source_labels: [__address__]\n  regex: '([^:]+):.*'\n  target_label: host\n- source_labels: [host]\n  regex: 'host'\n  action: keep",
        want: Some(&[("__address__", "host:1234"), ("host", "host")]),
    },
    Case {
        name: "numeric regex and replacement scalars are strings",
        input: &[("code", "200")],
        steps: "- source_labels: [code]\n  regex: 200\n  target_label: ok\n  replacement: 1",
        want: Some(&[("code", "200"), ("ok", "1")]),
    },
];

#[test]
fn table() {
    let mut failures = Vec::new();
    for c in CASES {
        let got = relabel(&ls(c.input), &cfgs(c.steps));
        let want = c.want.map(ls);
        if got != want {
            failures.push(format!("{}: got {:?}, want {:?}", c.name, got, want));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn empty_config_list_is_identity() {
    let l = ls(&[("a", "1")]);
    assert_eq!(relabel(&l, &[]), Some(l));
}

fn invalid(yaml: &str) -> String {
    let c: Vec<RelabelConfig> = match serde_yaml_ng::from_str(yaml) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    match validate_all(&c) {
        Ok(()) => panic!("expected an error for {yaml}"),
        Err((_, e)) => e.to_string(),
    }
}

#[test]
fn validation_errors_match_prometheus_wording() {
    let cases = [
        (
            "- source_labels: [a]\n  action: replace",
            "relabel configuration for replace action requires 'target_label' value",
        ),
        (
            "- action: hashmod\n  target_label: x",
            "relabel configuration for hashmod requires non-zero modulus",
        ),
        (
            "- action: uppercase\n  source_labels: [a]",
            "relabel configuration for uppercase action requires 'target_label' value",
        ),
        (
            "- action: lowercase\n  target_label: x\n  replacement: y",
            "'replacement' can not be set for lowercase action",
        ),
        (
            "- action: keepequal\n  target_label: x\n  regex: a",
            "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
        ),
        (
            "- action: labeldrop\n  regex: a\n  source_labels: [x]",
            "labeldrop action requires only 'regex', and no other fields",
        ),
        (
            "- action: labelkeep\n  regex: a\n  target_label: x",
            "labelkeep action requires only 'regex', and no other fields",
        ),
        (
            "- action: frobnicate",
            "unknown relabel action \"frobnicate\"",
        ),
        ("- regex: '('\n  target_label: x", "invalid regex \"(\""),
        ("- target_label: x\n  bogus: 1", "unknown field `bogus`"),
    ];
    for (yaml, want) in cases {
        let got = invalid(yaml);
        assert!(
            got.contains(want),
            "for {yaml:?}: got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn legacy_scheme_rejects_dotted_target_but_utf8_accepts() {
    let mut c: Vec<RelabelConfig> =
        serde_yaml_ng::from_str("- target_label: my.label\n  replacement: v").unwrap();
    assert!(validate_all(&c).is_ok());
    c[0].name_validation = NameValidation::Legacy;
    let (_, e) = validate_all(&c).unwrap_err();
    assert_eq!(
        e,
        RelabelError::InvalidTargetLabel {
            label: "my.label".into(),
            action: lookout_relabel::Action::Replace
        }
    );
    assert_eq!(
        e.to_string(),
        "\"my.label\" is invalid 'target_label' for replace action"
    );
}

#[test]
fn legacy_labelmap_replacement_checked() {
    let mut c: Vec<RelabelConfig> =
        serde_yaml_ng::from_str("- action: labelmap\n  regex: (.*)\n  replacement: 'a-$1'")
            .unwrap();
    c[0].name_validation = NameValidation::Legacy;
    let (_, e) = validate_all(&c).unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"a-$1\" is invalid 'replacement' for labelmap action"
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // labeldrop of a regex followed by labelkeep of the same regex always empties the set,
        // and keep/drop with the same regex partition every input.
        #[test]
        fn keep_and_drop_partition(v in "[a-z]{0,6}", pat in "[a-z]{0,2}\\.\\*") {
            let l = ls(&[("a", v.as_str())]);
            let keep = cfgs(&format!("- source_labels: [a]\n  regex: '{pat}'\n  action: keep"));
            let drop = cfgs(&format!("- source_labels: [a]\n  regex: '{pat}'\n  action: drop"));
            prop_assert!(relabel(&l, &keep).is_some() != relabel(&l, &drop).is_some());
        }

        #[test]
        fn hashmod_is_below_modulus(v in ".{0,20}", m in 1u64..10_000) {
            let l = ls(&[("a", v.as_str())]);
            let c = cfgs(&format!("- source_labels: [a]\n  target_label: h\n  modulus: {m}\n  action: hashmod"));
            let out = relabel(&l, &c).unwrap();
            let h: u64 = out.get("h").unwrap().parse().unwrap();
            prop_assert!(h < m);
        }
    }
}
