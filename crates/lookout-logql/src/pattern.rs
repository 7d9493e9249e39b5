//! Loki's pattern syntax (`<name> - <_> "<verb> <path>"`): captures separated by literals.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Lit(String),
    /// `None` for `<_>`.
    Cap(Option<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    nodes: Vec<Node>,
}

impl Pattern {
    pub fn parse(src: &str) -> Result<Pattern, String> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while !rest.is_empty() {
            if rest.starts_with('<')
                && let Some(end) = rest.find('>')
            {
                let name = &rest[1..end];
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if valid {
                    if !lit.is_empty() {
                        nodes.push(Node::Lit(std::mem::take(&mut lit)));
                    }
                    if matches!(nodes.last(), Some(Node::Cap(_))) {
                        return Err(
                            "consecutive capture: pattern must have literals between captures"
                                .into(),
                        );
                    }
                    nodes.push(Node::Cap(if name == "_" {
                        None
                    } else {
                        Some(name.to_string())
                    }));
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            let c = rest.chars().next().unwrap_or_default();
            lit.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !lit.is_empty() {
            nodes.push(Node::Lit(lit));
        }
        let mut seen = std::collections::HashSet::new();
        for n in &nodes {
            if let Node::Cap(Some(name)) = n
                && !seen.insert(name.clone())
            {
                return Err(format!("duplicate capture name ({name})"));
            }
        }
        Ok(Pattern { nodes })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Cap(Some(s)) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn has_captures(&self) -> bool {
        self.nodes.iter().any(|n| matches!(n, Node::Cap(_)))
    }

    /// Extracts named captures; a short line fills only the leading ones.
    pub fn extract<'a>(&self, line: &'a str, mut out: impl FnMut(&str, &'a str)) {
        if line.is_empty() || self.nodes.is_empty() {
            return;
        }
        let mut input = line;
        let mut nodes = &self.nodes[..];
        if let Some(Node::Lit(l)) = nodes.first() {
            if !input.starts_with(l.as_str()) {
                return;
            }
            input = &input[l.len()..];
            nodes = &nodes[1..];
        }
        while let Some(Node::Cap(name)) = nodes.first() {
            let Some(Node::Lit(l)) = nodes.get(1) else {
                if let Some(n) = name {
                    out(n, input);
                }
                return;
            };
            nodes = &nodes[2..];
            match input.find(l.as_str()) {
                None => {
                    if let Some(n) = name {
                        out(n, input);
                    }
                    return;
                }
                Some(i) => {
                    if let Some(n) = name {
                        out(n, &input[..i]);
                    }
                    input = &input[i + l.len()..];
                }
            }
        }
    }

    /// Line-filter match: the whole line must fit the pattern.
    pub fn test(&self, line: &str) -> bool {
        if line.is_empty() || self.nodes.is_empty() {
            return false;
        }
        let mut input = line;
        let mut nodes = &self.nodes[..];
        if let Some(Node::Lit(l)) = nodes.first() {
            if !input.starts_with(l.as_str()) {
                return false;
            }
            input = &input[l.len()..];
            nodes = &nodes[1..];
        }
        if nodes.is_empty() {
            return input.is_empty();
        }
        while !nodes.is_empty() {
            let Some(Node::Lit(l)) = nodes.get(1) else {
                return true; // ends on a capture
            };
            nodes = &nodes[2..];
            match input.find(l.as_str()) {
                None => return false,
                Some(i) => input = &input[i + l.len()..],
            }
        }
        input.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(p: &str, line: &str) -> Vec<(String, String)> {
        let p = Pattern::parse(p).unwrap();
        let mut v = Vec::new();
        p.extract(line, |n, s| v.push((n.to_string(), s.to_string())));
        v
    }

    #[test]
    fn extraction() {
        assert_eq!(
            caps("<method> <_> <status>", "GET /home 200"),
            [
                ("method".into(), "GET".into()),
                ("status".into(), "200".into())
            ]
        );
        assert_eq!(
            caps("<method> <path>", "POST"),
            [("method".to_string(), "POST".to_string())]
        );
        assert!(Pattern::parse("<a><b>").is_err());
        assert!(!Pattern::parse("no captures").unwrap().has_captures());
    }

    #[test]
    fn line_test() {
        let p = Pattern::parse("GET <_> 200").unwrap();
        assert!(p.test("GET /api 200"));
        assert!(!p.test("POST /api 500"));
        assert!(!Pattern::parse("GET /api").unwrap().test("GET /api 200"));
        assert!(
            Pattern::parse("level=error <_>")
                .unwrap()
                .test("level=error x")
        );
    }
}
