//! Whether a regular expression means the same to Prometheus (Go's RE2 `regexp`) as to us.
//!
//! Rust's `regex` crate and Go's `regexp` share RE2's syntax, but each accepts a few things the
//! other refuses. A regex is accepted here only when Rust compiles it *and* it uses none of the
//! Rust-only syntax Go rejects (or reads differently): the `x`, `u` and `R` flags, `\u`/`\U`
//! escapes, `\<` `\>` `\b{start}` word-boundary forms, nested or set-operation character classes
//! (`[a[b]]`, `[a--b]`, `[a&&b]`), long Unicode class names (`\p{Alphabetic}`), stacked
//! repetition (`a**`) and repetition counts over Go's limit of 1000 (also when nested, as Go
//! counts them). Go-only syntax (`\Q…\E`, octal escapes, `x{abc}` as a literal) is refused too,
//! because Rust cannot compile it; that only makes us stricter than Prometheus.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassSet, ClassSetItem, ClassUnicodeKind, Flag, FlagsItemKind, GroupKind,
    HexLiteralKind, LiteralKind, RepetitionKind, RepetitionRange,
};

/// Go's limit on repetition counts.
const GO_MAX_REPEAT: u32 = 1000;

/// Go's one-letter and two-letter Unicode general categories (`unicode.Categories`).
const GO_CATEGORIES: [&str; 37] = [
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N", "Nd", "Nl",
    "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So", "Z", "Zl", "Zp", "Zs",
    "Any",
];

/// Unicode 15.0 script names, as Go's `unicode.Scripts` spells them (Go 1.21 and newer).
const GO_SCRIPTS: [&str; 163] = [
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Arabic",
    "Armenian",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Bengali",
    "Bhaiksuki",
    "Bopomofo",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Chakma",
    "Cham",
    "Cherokee",
    "Chorasmian",
    "Common",
    "Coptic",
    "Cuneiform",
    "Cypriot",
    "Cypro_Minoan",
    "Cyrillic",
    "Deseret",
    "Devanagari",
    "Dives_Akuru",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Elymaic",
    "Ethiopic",
    "Georgian",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Greek",
    "Gujarati",
    "Gunjala_Gondi",
    "Gurmukhi",
    "Han",
    "Hangul",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Hebrew",
    "Hiragana",
    "Imperial_Aramaic",
    "Inherited",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Kaithi",
    "Kannada",
    "Katakana",
    "Kawi",
    "Kayah_Li",
    "Kharoshthi",
    "Khitan_Small_Script",
    "Khmer",
    "Khojki",
    "Khudawadi",
    "Lao",
    "Latin",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Lycian",
    "Lydian",
    "Mahajani",
    "Makasar",
    "Malayalam",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Modi",
    "Mongolian",
    "Mro",
    "Multani",
    "Myanmar",
    "Nabataean",
    "Nag_Mundari",
    "Nandinagari",
    "New_Tai_Lue",
    "Newa",
    "Nko",
    "Nushu",
    "Nyiakeng_Puachue_Hmong",
    "Ogham",
    "Ol_Chiki",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Old_Uyghur",
    "Oriya",
    "Osage",
    "Osmanya",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Phags_Pa",
    "Phoenician",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "Samaritan",
    "Saurashtra",
    "Sharada",
    "Shavian",
    "Siddham",
    "SignWriting",
    "Sinhala",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Syloti_Nagri",
    "Syriac",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Takri",
    "Tamil",
    "Tangsa",
    "Tangut",
    "Telugu",
    "Thaana",
    "Thai",
    "Tibetan",
    "Tifinagh",
    "Tirhuta",
    "Toto",
    "Ugaritic",
    "Vai",
    "Vithkuqi",
    "Wancho",
    "Warang_Citi",
    "Yezidi",
    "Yi",
    "Zanabazar_Square",
];

/// Checks a relabeling regex the way Prometheus compiles it: fully anchored, `.` matching
/// newlines. The error says why it was refused.
pub(crate) fn check_relabel_regex(re: &str) -> Result<(), String> {
    check(&format!("^(?s:{re})$"))
}

/// Checks a PromQL label-matcher regex (anchored like Prometheus does).
pub(crate) fn check_matcher_regex(re: &str) -> Result<(), String> {
    check(&format!("^(?s:{re})$"))
}

/// Results of earlier checks. Compiling a regex costs tens of microseconds and the same few
/// regexes recur across thousands of monitors, so results are remembered (they only depend on
/// the pattern); the cache is emptied when it grows past a bound.
static CACHE: LazyLock<Mutex<HashMap<String, Result<(), String>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
const CACHE_LIMIT: usize = 4096;

fn check(pattern: &str) -> Result<(), String> {
    if let Ok(cache) = CACHE.lock()
        && let Some(result) = cache.get(pattern)
    {
        return result.clone();
    }
    let result = check_uncached(pattern);
    if let Ok(mut cache) = CACHE.lock() {
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(pattern.to_string(), result.clone());
    }
    result
}

fn check_uncached(pattern: &str) -> Result<(), String> {
    let ast = ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| first_line(&e.to_string()))?;
    go_compatible(&ast)?;
    // The size limit and the translation to HIR are only checked by a real compile.
    regex::Regex::new(pattern).map_err(|e| first_line(&e.to_string()))?;
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid regular expression")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

fn go_compatible(node: &Ast) -> Result<(), String> {
    match node {
        Ast::Empty(_) | Ast::Dot(_) | Ast::ClassPerl(_) => Ok(()),
        Ast::Flags(f) => flags(&f.flags),
        Ast::Literal(l) => literal(l),
        Ast::Assertion(a) => match a.kind {
            AssertionKind::StartLine
            | AssertionKind::EndLine
            | AssertionKind::StartText
            | AssertionKind::EndText
            | AssertionKind::WordBoundary
            | AssertionKind::NotWordBoundary => Ok(()),
            _ => Err("word-boundary forms \\<, \\> and \\b{...} are not supported by Prometheus".into()),
        },
        Ast::ClassUnicode(c) => unicode_class(&c.kind),
        Ast::ClassBracketed(c) => class_set(&c.kind),
        Ast::Repetition(r) => {
            if matches!(*r.ast, Ast::Repetition(_)) {
                return Err("stacked repetition operators (like a**) are not supported by Prometheus".into());
            }
            if !repeat_size_ok(node, GO_MAX_REPEAT, true) {
                return Err(format!(
                    "repetition count exceeds Prometheus' limit of {GO_MAX_REPEAT}"
                ));
            }
            go_compatible(&r.ast)
        }
        Ast::Group(g) => {
            match &g.kind {
                GroupKind::CaptureIndex(_) => {}
                GroupKind::CaptureName { name, .. } => {
                    if !name.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(format!(
                            "capture group name {:?} is not supported by Prometheus",
                            name.name
                        ));
                    }
                }
                GroupKind::NonCapturing(f) => flags(f)?,
            }
            go_compatible(&g.ast)
        }
        Ast::Alternation(a) => a.asts.iter().try_for_each(go_compatible),
        Ast::Concat(c) => c.asts.iter().try_for_each(go_compatible),
    }
}

fn flags(f: &ast::Flags) -> Result<(), String> {
    for item in &f.items {
        if let FlagsItemKind::Flag(flag) = &item.kind
            && !matches!(
                flag,
                Flag::CaseInsensitive | Flag::MultiLine | Flag::DotMatchesNewLine | Flag::SwapGreed
            )
        {
            return Err("only the i, m, s and U flags are supported by Prometheus".into());
        }
    }
    Ok(())
}

fn literal(l: &ast::Literal) -> Result<(), String> {
    match &l.kind {
        LiteralKind::Verbatim | LiteralKind::Meta | LiteralKind::Special(_) => Ok(()),
        LiteralKind::HexFixed(HexLiteralKind::X) | LiteralKind::HexBrace(HexLiteralKind::X) => Ok(()),
        LiteralKind::Superfluous if l.c.is_ascii_punctuation() => Ok(()),
        LiteralKind::HexFixed(_) | LiteralKind::HexBrace(_) => {
            Err("\\u and \\U escapes are not supported by Prometheus; use \\x{...}".into())
        }
        _ => Err(format!(
            "escape sequence for {:?} is not supported by Prometheus",
            l.c
        )),
    }
}

fn unicode_class(kind: &ClassUnicodeKind) -> Result<(), String> {
    let ok = match kind {
        ClassUnicodeKind::OneLetter(c) => matches!(c, 'C' | 'L' | 'M' | 'N' | 'P' | 'S' | 'Z'),
        ClassUnicodeKind::Named(name) => {
            GO_CATEGORIES.contains(&name.as_str()) || GO_SCRIPTS.contains(&name.as_str())
        }
        ClassUnicodeKind::NamedValue { .. } => false,
    };
    if ok {
        Ok(())
    } else {
        Err(
            "only Unicode general categories (like \\p{Lu}) and script names (like \\p{Greek}) are \
             supported by Prometheus"
                .into(),
        )
    }
}

fn class_set(set: &ClassSet) -> Result<(), String> {
    match set {
        ClassSet::BinaryOp(_) => Err(
            "character class set operations (&&, --, ~~) are not supported by \
                                      Prometheus"
                .into(),
        ),
        ClassSet::Item(item) => class_item(item),
    }
}

fn class_item(item: &ClassSetItem) -> Result<(), String> {
    match item {
        ClassSetItem::Empty(_) | ClassSetItem::Ascii(_) | ClassSetItem::Perl(_) => Ok(()),
        ClassSetItem::Literal(l) => literal(l),
        ClassSetItem::Range(r) => {
            literal(&r.start)?;
            literal(&r.end)
        }
        ClassSetItem::Unicode(u) => unicode_class(&u.kind),
        ClassSetItem::Bracketed(_) => Err("nested character classes are not supported by Prometheus".into()),
        ClassSetItem::Union(u) => {
            // Go reads `x-y` as a range wherever it appears, so an unescaped `-` is only safe
            // as the first or the last item.
            let last = u.items.len().saturating_sub(1);
            for (i, item) in u.items.iter().enumerate() {
                if let ClassSetItem::Literal(l) = item
                    && l.c == '-'
                    && l.kind == LiteralKind::Verbatim
                    && i != 0
                    && i != last
                {
                    return Err("put - first or last in a character class, or escape it".into());
                }
                class_item(item)?;
            }
            Ok(())
        }
    }
}

/// Go's `repeatIsValid`: a counted repetition and the counted repetitions inside it may not
/// expand to more than `n` copies. Every counted repetition is checked where it stands, as Go
/// does while parsing.
fn repeat_size_ok(node: &Ast, n: u32, top: bool) -> bool {
    let mut n = n;
    if let Ast::Repetition(r) = node
        && let RepetitionKind::Range(range) = &r.op.kind
    {
        let (min, max) = match *range {
            RepetitionRange::Exactly(m) => (m, Some(m)),
            RepetitionRange::AtLeast(m) => (m, None),
            RepetitionRange::Bounded(a, b) => (a, Some(b)),
        };
        if top && min < 2 && max.is_none_or(|m| m < 2) {
            // Go only runs the check for repeats that can copy their operand.
            return children(node)
                .iter()
                .all(|c| repeat_size_ok(c, GO_MAX_REPEAT, true));
        }
        let m = match max {
            Some(0) => return true,
            Some(m) => m,
            None => min,
        };
        if m > n {
            return false;
        }
        if let Some(q) = n.checked_div(m) {
            n = q;
        }
    }
    children(node).iter().all(|c| repeat_size_ok(c, n, false))
}

fn children(node: &Ast) -> Vec<&Ast> {
    match node {
        Ast::Repetition(r) => vec![&*r.ast],
        Ast::Group(g) => vec![&*g.ast],
        Ast::Alternation(a) => a.asts.iter().collect(),
        Ast::Concat(c) => c.asts.iter().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_both_accept() {
        for re in [
            "(.*)",
            "a{1000}",
            "a{1000,}",
            "(?i)a",
            "(?U)a*",
            "(?P<n>a)",
            "(?<n>a)",
            "\\pL",
            "\\p{L}",
            "\\p{Greek}",
            "\\PL",
            "[[:alpha:]]",
            "[]a]",
            "[^]a]",
            "\\d",
            "\\-",
            "\\_",
            "\\%",
            "a|",
            "()",
            "(?:)",
            "(?i:a)",
            "(?s-i:a)",
            "(?im)a",
            "\\v",
            "\\x41",
            "\\x{41}",
            "a*?",
            "^*",
            "\\b+",
            "\\z",
            "(a{10}){100}",
            "[a-z0-9_]+",
            "foo;(.+)",
            "(Failed|Succeeded)",
        ] {
            assert_eq!(check_relabel_regex(re), Ok(()), "{re}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for re in [
            "a{1001}",
            "a{2,1001}",
            "(?x)a b",
            "(?u)a",
            "(?R)a",
            "\\p{Alphabetic}",
            "\\p{Lowercase_Letter}",
            "[a--b]",
            "[a&&b]",
            "[a~~b]",
            "[[a]]",
            "\\u0041",
            "a**",
            "a+*",
            "a{2}{3}",
            "(a{100}){20}",
            "\\<a\\>",
            "\\b{start}a",
            "(",
            "(?=a)",
            "(a)\\1",
            "\\C",
            "\\Z",
            "a{1001,}",
            "[--(]",
        ] {
            assert!(check_relabel_regex(re).is_err(), "{re}");
        }
    }
}
