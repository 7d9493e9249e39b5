//! Go's number formatting as Prometheus's templates and API print them: `%v`/`%g`/`%e`/`%f`
//! for floats, `strconv.FormatFloat(v, 'e', -1, 64)`, and a small `printf`.

/// Shortest round-trip digits and decimal exponent of a finite, non-zero `v`:
/// `v = 0.d1d2d3… × 10^(exp+1)`, returned as (`"d1d2d3…"`, exp).
fn shortest_digits(v: f64) -> (String, i32) {
    let s = format!("{:e}", v.abs());
    split_sci(&s)
}

/// `"1.2345e6"` → (`"12345"`, 6).
fn split_sci(s: &str) -> (String, i32) {
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    (digits.to_string(), exp.parse().unwrap_or(0))
}

fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("+Inf")
    } else if v == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

fn go_exp(exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("e{sign}{:02}", exp.abs())
}

/// Digits `d` (first digit before the point) with exponent `exp`, in `%e` form.
fn sci(neg: bool, d: &str, exp: i32) -> String {
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push_str(&d[..1]);
    if d.len() > 1 {
        s.push('.');
        s.push_str(&d[1..]);
    }
    s.push_str(&go_exp(exp));
    s
}

/// Digits `d` with exponent `exp`, in plain decimal form.
fn plain(neg: bool, d: &str, exp: i32) -> String {
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(d);
    } else {
        let int_len = exp as usize + 1;
        if d.len() <= int_len {
            s.push_str(d);
            for _ in 0..(int_len - d.len()) {
                s.push('0');
            }
        } else {
            s.push_str(&d[..int_len]);
            s.push('.');
            s.push_str(&d[int_len..]);
        }
    }
    s
}

/// Go's `%v` (also `fmt.Sprint` and `%g` without precision) of a float64: shortest
/// round-trip digits, exponent form when the decimal exponent is below -4 or at least 6
/// (`123456`, `1.234567e+06`, `1e-05`).
pub fn fmt_v(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (d, exp) = shortest_digits(v);
    if !(-4..6).contains(&exp) {
        sci(v < 0.0, &d, exp)
    } else {
        plain(v < 0.0, &d, exp)
    }
}

/// Go's `%g` without precision: the same as `%v`.
pub fn fmt_g_shortest(v: f64) -> String {
    fmt_v(v)
}

/// `strconv.FormatFloat(v, 'e', -1, 64)`: `1e+00`, `5.23e-02` (the API's alert `value`).
pub fn fmt_e_shortest(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    if v == 0.0 {
        return "0e+00".into();
    }
    let (d, exp) = shortest_digits(v);
    sci(v < 0.0, &d, exp)
}

/// Go's `%.{prec}g`.
pub fn fmt_g(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let p = prec.max(1);
    let s = format!("{:.*e}", p - 1, v.abs());
    let (d, exp) = split_sci(&s);
    if exp < -4 || exp >= p as i32 {
        sci(v < 0.0, &d, exp)
    } else {
        plain(v < 0.0, &d, exp)
    }
}

/// Go's `%.{prec}e`.
pub fn fmt_e(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let s = format!("{:.*e}", prec, v);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mant}{}", go_exp(exp))
}

/// Go's `%.{prec}f`.
pub fn fmt_f(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    format!("{:.*}", prec, v)
}

/// One `printf` argument.
#[derive(Clone, Debug, PartialEq)]
pub enum FmtArg {
    Str(String),
    Float(f64),
    Int(i64),
    Bool(bool),
}

/// Go's `fmt.Sprintf` for the verbs templates use (`%s %v %d %f %F %g %e %x %X %q %t %%`),
/// with flags `-+ 0`, width and precision. Mismatches are printed as Go does
/// (`%!d(string=x)`), missing arguments as `%!d(MISSING)`.
pub fn sprintf(format: &str, args: &[FmtArg]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = None;
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width = Some(width.unwrap_or(0) * 10 + (d as usize - '0' as usize));
            chars.next();
        }
        let mut prec = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0;
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p = p * 10 + (d as usize - '0' as usize);
                chars.next();
            }
            prec = Some(p);
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let body = format_one(verb, prec, plus, space, arg);
        pad(
            &mut out,
            &body,
            width,
            minus,
            zero && !minus && verb != 's' && verb != 'q',
        );
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| match a {
                FmtArg::Str(s) => format!("string={s}"),
                FmtArg::Float(f) => format!("float64={}", fmt_v(*f)),
                FmtArg::Int(i) => format!("int={i}"),
                FmtArg::Bool(b) => format!("bool={b}"),
            })
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn sign(s: String, plus: bool, space: bool) -> String {
    if s.starts_with('-') || s == "NaN" || s.starts_with('+') {
        s
    } else if plus {
        format!("+{s}")
    } else if space {
        format!(" {s}")
    } else {
        s
    }
}

fn format_one(verb: char, prec: Option<usize>, plus: bool, space: bool, arg: &FmtArg) -> String {
    let bad = |a: &FmtArg| match a {
        FmtArg::Str(s) => format!("%!{verb}(string={s})"),
        FmtArg::Float(f) => format!("%!{verb}(float64={})", fmt_v(*f)),
        FmtArg::Int(i) => format!("%!{verb}(int={i})"),
        FmtArg::Bool(b) => format!("%!{verb}(bool={b})"),
    };
    match (verb, arg) {
        ('s' | 'v', FmtArg::Str(s)) => match prec {
            Some(p) => s.chars().take(p).collect(),
            None => s.clone(),
        },
        ('q', FmtArg::Str(s)) => format!("{s:?}"),
        ('v' | 't', FmtArg::Bool(b)) => b.to_string(),
        ('v' | 'd', FmtArg::Int(i)) => sign(i.to_string(), plus, space),
        ('x', FmtArg::Int(i)) => format!("{i:x}"),
        ('X', FmtArg::Int(i)) => format!("{i:X}"),
        ('x', FmtArg::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
        ('v', FmtArg::Float(f)) => sign(fmt_v(*f), plus, space),
        ('g' | 'G', FmtArg::Float(f)) => sign(
            match prec {
                Some(p) => fmt_g(*f, p),
                None => fmt_g_shortest(*f),
            },
            plus,
            space,
        ),
        ('e' | 'E', FmtArg::Float(f)) => sign(fmt_e(*f, prec.unwrap_or(6)), plus, space),
        ('f' | 'F', FmtArg::Float(f)) => sign(fmt_f(*f, prec.unwrap_or(6)), plus, space),
        ('f' | 'F' | 'g' | 'e', FmtArg::Int(i)) => bad(&FmtArg::Int(*i)),
        _ => bad(arg),
    }
}

fn pad(out: &mut String, body: &str, width: Option<usize>, left: bool, zero: bool) {
    let len = body.chars().count();
    let fill = width.unwrap_or(0).saturating_sub(len);
    if fill == 0 {
        out.push_str(body);
    } else if left {
        out.push_str(body);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if zero {
        let (sign, rest) = match body.strip_prefix('-') {
            Some(r) => ("-", r),
            None => match body.strip_prefix('+') {
                Some(r) => ("+", r),
                None => ("", body),
            },
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_format_matches_go() {
        assert_eq!(fmt_v(1.0), "1");
        assert_eq!(fmt_v(0.0523), "0.0523");
        assert_eq!(fmt_v(1234567.0), "1.234567e+06");
        assert_eq!(fmt_v(123456.0), "123456");
        assert_eq!(fmt_v(1e-5), "1e-05");
        assert_eq!(fmt_v(-2.5), "-2.5");
        assert_eq!(fmt_v(f64::NAN), "NaN");
        assert_eq!(fmt_v(f64::INFINITY), "+Inf");
        assert_eq!(fmt_v(1e21), "1e+21");
        assert_eq!(fmt_v(1e6), "1e+06");
    }

    #[test]
    fn e_shortest_matches_strconv() {
        assert_eq!(fmt_e_shortest(1.0), "1e+00");
        assert_eq!(fmt_e_shortest(0.0523), "5.23e-02");
        assert_eq!(fmt_e_shortest(0.0), "0e+00");
        assert_eq!(fmt_e_shortest(123.0), "1.23e+02");
    }

    #[test]
    fn g_precision() {
        assert_eq!(fmt_g(1234.5, 4), "1234");
        assert_eq!(fmt_g(1235.5, 4), "1236");
        assert_eq!(fmt_g(0.5, 4), "0.5");
        assert_eq!(fmt_g(123456.0, 4), "1.235e+05");
        assert_eq!(fmt_g(2.0, 4), "2");
        assert_eq!(fmt_g(0.000012345, 4), "1.234e-05");
        assert_eq!(fmt_g(9999.9, 4), "1e+04");
    }

    #[test]
    fn printf_verbs() {
        let a = |f| vec![FmtArg::Float(f)];
        assert_eq!(sprintf("%.2f", &a(1.23456)), "1.23");
        assert_eq!(sprintf("%.1f%%", &a(12.345)), "12.3%");
        assert_eq!(sprintf("%5.1f|", &a(2.0)), "  2.0|");
        assert_eq!(sprintf("%-5s|", &[FmtArg::Str("ab".into())]), "ab   |");
        assert_eq!(sprintf("%d", &[FmtArg::Int(42)]), "42");
        assert_eq!(sprintf("%d", &[FmtArg::Str("x".into())]), "%!d(string=x)");
        assert_eq!(
            sprintf("%s %s", &[FmtArg::Str("x".into())]),
            "x %!s(MISSING)"
        );
        assert_eq!(sprintf("%q", &[FmtArg::Str("a\"b".into())]), "\"a\\\"b\"");
        assert_eq!(sprintf("%v", &a(0.25)), "0.25");
        assert_eq!(sprintf("%g", &a(1e6)), "1e+06");
        assert_eq!(sprintf("%e", &a(1234.5)), "1.234500e+03");
        assert_eq!(sprintf("%05.1f", &a(-2.0)), "-02.0");
    }
}
