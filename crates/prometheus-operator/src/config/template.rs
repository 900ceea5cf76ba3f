//! A conservative check of alert label and annotation templates.
//!
//! Prometheus parses the labels and annotations of alerting rules as Go `text/template`s when it
//! loads a rule file, and one bad template makes the whole file — and so the whole rule reload —
//! fail. A full Go template parser is out of scope; instead this accepts a well-defined subset
//! that covers what alert templates use in practice (`{{ $labels.instance }}`,
//! `{{ $value | humanize }}`, `{{ printf "%.2f" $value }}`, `{{ if … }}…{{ else }}…{{ end }}`,
//! `{{ range … }}`, `{{ with query "…" }}`, comments, trim markers) and refuses anything
//! outside it, so whatever passes here also parses in Go. Refused: `define`, `template`,
//! `block`, `break`, `continue`, `nil`, character constants, unknown functions, undefined
//! variables, and newlines inside actions.

/// Go's built-in template functions plus Prometheus' own, as both 2.53 and 3.x define them.
const FUNCTIONS: [&str; 45] = [
    "and",
    "call",
    "html",
    "index",
    "slice",
    "js",
    "len",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "urlquery",
    "eq",
    "ge",
    "gt",
    "le",
    "lt",
    "ne",
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "stripPort",
    "stripDomain",
    "toTime",
];

/// Parentheses per action; keeps the recursive pipeline check shallow.
const MAX_PARENS: usize = 32;

/// Variables Prometheus defines before every alert template.
const PREDEFINED: [&str; 5] = ["$", "$labels", "$externalLabels", "$externalURL", "$value"];

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Str,
    Num,
    Bool,
    Field,
    Var(String, bool),
    Ident(String),
    Open,
    Close,
    Pipe,
    Declare,
    Assign,
    Comma,
}

#[derive(PartialEq)]
enum Block {
    If,
    Range,
    With,
}

/// Checks one template text. The error says what is wrong, without echoing the text.
pub(crate) fn check(text: &str) -> Result<(), String> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut scopes: Vec<Vec<String>> = vec![PREDEFINED.iter().map(|s| s.to_string()).collect()];
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let (action, remaining) = split_action(after)?;
        rest = remaining;
        // `None` is a comment.
        if let Some(action) = action {
            action_ok(action, &mut blocks, &mut scopes)?;
        }
    }
    if !blocks.is_empty() {
        return Err("template has an unclosed if/range/with".into());
    }
    Ok(())
}

/// Splits off one action's content (trim markers removed; `None` for a comment) and the text
/// after its `}}`.
fn split_action(s: &str) -> Result<(Option<&str>, &str), String> {
    let mut body = s;
    if let Some(stripped) = body.strip_prefix('-')
        && stripped.starts_with([' ', '\t'])
    {
        body = stripped;
    }
    let trimmed = body.trim_start_matches([' ', '\t']);
    if let Some(comment) = trimmed.strip_prefix("/*") {
        if trimmed.len() != body.len() {
            // Go needs the comment right after the delimiter (or the trim marker's space).
            if body.len() - trimmed.len() != 1 || s.len() == body.len() {
                return Err("template comment must start right after {{".into());
            }
        }
        let end = comment.find("*/").ok_or("unclosed template comment")?;
        let after = &comment[end + 2..];
        let after = after.strip_prefix(" -").unwrap_or(after);
        return match after.strip_prefix("}}") {
            Some(rest) => Ok((None, rest)),
            None => Err("template comment must end right before }}".into()),
        };
    }
    // Find the closing delimiter outside string literals.
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                let mut content = &body[..i];
                if let Some(c) = content.strip_suffix(" -").or_else(|| content.strip_suffix("\t-")) {
                    content = c;
                }
                return Ok((Some(content), &body[i + 2..]));
            }
            _ => {}
        }
        i += 1;
    }
    Err("unclosed template action".into())
}

fn lex(action: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = action.chars().collect();
    let mut i = 0;
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let fields = |i: &mut usize| -> Result<(), String> {
        while *i < chars.len() && chars[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < chars.len() && ident_char(chars[*i]) {
                *i += 1;
            }
            if *i == start || chars[start].is_ascii_digit() {
                return Err("invalid field name in template".into());
            }
        }
        Ok(())
    };
    while i < chars.len() {
        let c = chars[i];
        let before = toks.len();
        match c {
            ' ' | '\t' => i += 1,
            '\n' | '\r' => return Err("newline inside a template action".into()),
            '"' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string in template".into()),
                        Some('"') => break,
                        Some('\\') => match chars.get(i + 1) {
                            Some('\\' | '"' | 'n' | 't' | 'r') => i += 2,
                            _ => return Err("unsupported escape in template string".into()),
                        },
                        Some('\n') => return Err("newline in template string".into()),
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                toks.push(Tok::Str);
            }
            '`' => {
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated raw string in template".into());
                }
                i += 1;
                toks.push(Tok::Str);
            }
            '0'..='9' | '-' => {
                if c == '-' {
                    i += 1;
                }
                let digits = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                if i == digits {
                    return Err("invalid number in template".into());
                }
                if i < chars.len() && chars[i] == '.' {
                    i += 1;
                    let frac = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i == frac {
                        return Err("invalid number in template".into());
                    }
                }
                toks.push(Tok::Num);
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let has_fields = i < chars.len() && chars[i] == '.';
                fields(&mut i)?;
                toks.push(Tok::Var(name, has_fields));
            }
            '.' => {
                if i + 1 < chars.len() && chars[i + 1] == '.' {
                    return Err("invalid field in template".into());
                }
                if i + 1 < chars.len() && ident_char(chars[i + 1]) {
                    fields(&mut i)?;
                } else {
                    i += 1;
                }
                toks.push(Tok::Field);
            }
            '(' => {
                i += 1;
                toks.push(Tok::Open);
            }
            ')' => {
                i += 1;
                toks.push(Tok::Close);
                if i < chars.len() && chars[i] == '.' {
                    fields(&mut i)?;
                }
            }
            '|' => {
                i += 1;
                toks.push(Tok::Pipe);
            }
            ',' => {
                i += 1;
                toks.push(Tok::Comma);
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                toks.push(Tok::Declare);
            }
            '=' => {
                i += 1;
                toks.push(Tok::Assign);
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                if i < chars.len() && chars[i] == '.' {
                    return Err("fields of functions are not supported in templates".into());
                }
                let word: String = chars[start..i].iter().collect();
                toks.push(match word.as_str() {
                    "true" | "false" => Tok::Bool,
                    _ => Tok::Ident(word),
                });
            }
            _ => return Err(format!("unexpected character {c:?} in template action")),
        }
        // After an operand Go accepts only a space, `)`, `|` or the end (and, after a variable,
        // the `,` or `:=` of a declaration; `=` needs a space before it).
        if let (true, Some(last), Some(next)) = (toks.len() > before, toks.last(), chars.get(i)) {
            let ok = match last {
                Tok::Var(..) => matches!(next, ' ' | '\t' | ')' | '|' | ',' | ':'),
                Tok::Str | Tok::Num | Tok::Bool | Tok::Field | Tok::Ident(_) | Tok::Close => {
                    matches!(next, ' ' | '\t' | ')' | '|')
                }
                _ => true,
            };
            if !ok {
                return Err("operands in a template action must be separated by spaces".into());
            }
        }
        let depth = toks.iter().filter(|t| **t == Tok::Open).count();
        if depth > MAX_PARENS {
            return Err("too many parentheses in template action".into());
        }
    }
    Ok(toks)
}

fn defined(scopes: &[Vec<String>], name: &str) -> bool {
    scopes.iter().any(|s| s.iter().any(|v| v == name))
}

fn action_ok(action: &str, blocks: &mut Vec<Block>, scopes: &mut Vec<Vec<String>>) -> Result<(), String> {
    if action.trim().is_empty() {
        return Err("empty template action".into());
    }
    let toks = lex(action)?;
    match toks.first() {
        Some(Tok::Ident(k)) if k == "end" => {
            if toks.len() != 1 {
                return Err("unexpected words after end".into());
            }
            blocks.pop().ok_or("end without if/range/with")?;
            scopes.pop();
            Ok(())
        }
        Some(Tok::Ident(k)) if k == "else" => {
            let Some(open) = blocks.last() else {
                return Err("else without if/range/with".into());
            };
            // Variables declared in the branch end with it.
            scopes.pop();
            scopes.push(Vec::new());
            match toks.get(1) {
                None => Ok(()),
                Some(Tok::Ident(k)) if k == "if" && *open == Block::If => {
                    let mut scope = Vec::new();
                    pipeline(&toks[2..], scopes, &mut scope, false)?;
                    if let Some(s) = scopes.last_mut() {
                        s.extend(scope);
                    }
                    Ok(())
                }
                _ => Err("unsupported else form in template".into()),
            }
        }
        Some(Tok::Ident(k)) if matches!(k.as_str(), "if" | "range" | "with") => {
            let block = match k.as_str() {
                "if" => Block::If,
                "range" => Block::Range,
                _ => Block::With,
            };
            let mut scope = Vec::new();
            pipeline(&toks[1..], scopes, &mut scope, block == Block::Range)?;
            blocks.push(block);
            scopes.push(scope);
            Ok(())
        }
        Some(Tok::Ident(k))
            if matches!(
                k.as_str(),
                "define" | "template" | "block" | "break" | "continue" | "nil"
            ) =>
        {
            Err(format!("{k} is not supported in alert templates here"))
        }
        _ => {
            let mut scope = Vec::new();
            pipeline(&toks, scopes, &mut scope, false)?;
            if let Some(s) = scopes.last_mut() {
                s.extend(scope);
            }
            Ok(())
        }
    }
}

/// `[$x :=] command (| command)*`, declarations going into `declared`.
fn pipeline(
    toks: &[Tok],
    scopes: &[Vec<String>],
    declared: &mut Vec<String>,
    allow_two: bool,
) -> Result<(), String> {
    let mut toks = toks;
    // Declarations and assignments.
    let decl_end = toks.iter().position(|t| matches!(t, Tok::Declare | Tok::Assign));
    if let Some(end) = decl_end {
        let vars = &toks[..end];
        let names: Vec<&str> = match vars {
            [Tok::Var(a, false)] => vec![a.as_str()],
            [Tok::Var(a, false), Tok::Comma, Tok::Var(b, false)] if allow_two => vec![a.as_str(), b.as_str()],
            _ => return Err("invalid variable declaration in template".into()),
        };
        if names.contains(&"$") {
            return Err("cannot declare $ in a template".into());
        }
        if toks[end] == Tok::Assign && names.iter().any(|n| !defined(scopes, n)) {
            return Err("assignment to an undefined template variable".into());
        }
        declared.extend(names.iter().map(|n| n.to_string()));
        toks = &toks[end + 1..];
    }
    if toks
        .iter()
        .any(|t| matches!(t, Tok::Declare | Tok::Assign | Tok::Comma))
    {
        return Err("unexpected declaration in template".into());
    }
    if toks.is_empty() {
        return Err("missing value in template action".into());
    }
    let mut stage = 0;
    let mut i = 0;
    loop {
        let start = i;
        i = command(toks, i, scopes)?;
        if stage > 0 && matches!(toks[start], Tok::Str | Tok::Num | Tok::Bool | Tok::Field) {
            return Err("non-executable command in a template pipeline".into());
        }
        stage += 1;
        match toks.get(i) {
            None => return Ok(()),
            Some(Tok::Pipe) => i += 1,
            Some(Tok::Close) => return Err("unexpected ) in template".into()),
            Some(_) => return Err("unexpected token in template".into()),
        }
    }
}

/// One command (operands up to `|`, `)` or the end); returns the index after it.
fn command(toks: &[Tok], mut i: usize, scopes: &[Vec<String>]) -> Result<usize, String> {
    let start = i;
    // Go may only complain when the template runs, but a literal taking arguments is never
    // meant; refusing it keeps us on the safe side.
    if matches!(toks.get(i), Some(Tok::Str | Tok::Num | Tok::Bool))
        && !matches!(toks.get(i + 1), None | Some(Tok::Pipe | Tok::Close))
    {
        return Err("a literal cannot take arguments in a template".into());
    }
    while let Some(t) = toks.get(i) {
        match t {
            Tok::Pipe | Tok::Close => break,
            Tok::Str | Tok::Num | Tok::Bool | Tok::Field => i += 1,
            Tok::Var(name, _) => {
                if !defined(scopes, name) {
                    return Err("undefined variable in template".into());
                }
                i += 1;
            }
            Tok::Ident(name) => {
                if !FUNCTIONS.contains(&name.as_str()) {
                    return Err(format!("function {name:?} is not defined for templates"));
                }
                i += 1;
            }
            Tok::Open => {
                // A parenthesised pipeline.
                let mut depth = 0usize;
                let mut j = i;
                loop {
                    match toks.get(j) {
                        None => return Err("unclosed ( in template".into()),
                        Some(Tok::Open) => depth += 1,
                        Some(Tok::Close) => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                    j += 1;
                }
                let mut ignored = Vec::new();
                pipeline(&toks[i + 1..j], scopes, &mut ignored, false)?;
                i = j + 1;
            }
            Tok::Declare | Tok::Assign | Tok::Comma => return Err("unexpected token in template".into()),
        }
    }
    if i == start {
        return Err("missing command in template pipeline".into());
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_alert_templates() {
        for t in [
            "plain text",
            "{{ $labels.instance }} is down",
            "{{ $value | humanize }}",
            "{{ printf \"%.2f\" $value }}%",
            "{{ if gt $value 1.0 }}high{{ else if lt $value 0.5 }}low{{ else }}ok{{ end }}",
            "{{ range $i, $e := query \"up\" }}{{ $e.Labels.job }}{{ end }}",
            "{{ with query \"up\" }}{{ . | first | value | humanize }}{{ end }}",
            "{{- $labels.job -}}",
            "{{/* a comment */}}",
            "{{ $x := 1 }}{{ $x }}",
            "{{ humanizeDuration (index $labels \"age\") }}",
            "{{ reReplaceAll \"(.*)\" \"$1\" $labels.x }}",
            "}} alone is text",
        ] {
            assert_eq!(check(t), Ok(()), "{t}");
        }
    }

    #[test]
    fn refuses_what_go_may_refuse() {
        for t in [
            "{{",
            "{{ }}",
            "{{}}",
            "{{- -}}",
            "{{ $undefined }}",
            "{{ nosuchfunc }}",
            "{{ if }}{{ end }}",
            "{{ if true }}",
            "{{ end }}",
            "{{ else }}",
            "{{ 1 | 2 }}",
            "{{ $labels.foo-bar }}",
            "{{ \"x }}",
            "{{ define \"x\" }}{{ end }}",
            "{{ nil }}",
            "{{ 'a' }}",
            "{{ (1 }}",
            "{{ printf \"a\"$value }}",
            "{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}",
            "{{/* open",
        ] {
            assert!(check(t).is_err(), "{t}");
        }
    }
}
