//! The JAAS login configuration file, in the syntax the JVM reads (its
//! `ConfigFile`): sections `Name { module.Class flag key=value ... ; ... };`,
//! `//` and `/* */` comments, values as words or quoted strings. Parsed once on the
//! main thread while the config is loaded; the result, the `Server` section's
//! `user_NAME="password"` options (what `SaslServerCallbackHandler` collects), goes
//! into `Config` and from there to every shard. Quorum SASL reads two more
//! sections: `QuorumServer` (users, the same way) and `QuorumLearner` (the
//! `username` and `password` a member logs in to the others with, `client_login`).
//!
//! Every section is checked for syntax. A section corral reads must name only
//! `DigestLoginModule`: Kerberos (GSSAPI) is out of scope, and any other module
//! would log users in some way corral does not. Errors carry the line they were
//! found on.

use super::Secret;
use std::collections::BTreeMap;
use thiserror::Error;

/// The login module whose `user_NAME` options are the DIGEST-MD5 users.
pub const DIGEST_LOGIN_MODULE: &str = "org.apache.zookeeper.server.auth.DigestLoginModule";
/// The Kerberos login module: GSSAPI, out of scope.
const KERBEROS_LOGIN_MODULE: &str = "com.sun.security.auth.module.Krb5LoginModule";
/// The section the server reads (the reference's `zookeeper.sasl.serverconfig`
/// default).
pub const SERVER_SECTION: &str = "Server";
/// Options naming a user start with this; the rest of the key is the user name.
const USER_PREFIX: &str = "user_";

/// A JAAS file that cannot be used, with the 1-based line it was found on.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {why}")]
pub struct JaasError {
    pub line: usize,
    pub why: String,
}

/// The DIGEST-MD5 users of a `Server` section: user name → password.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JaasUsers {
    users: BTreeMap<String, Secret>,
}

impl JaasUsers {
    pub fn password(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(Secret::expose)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Parses a whole JAAS file and returns the users of section `section` (the
/// reference's `Server`, its `zookeeper.sasl.serverconfig` default); `None` when the
/// file has no such section, or one without a login module (`Server { };`), which the
/// JVM's `Configuration` reports as absent too.
pub fn server_users(text: &str, section: &str) -> Result<Option<JaasUsers>, JaasError> {
    let Some(s) = find_section(parse(text)?, section) else {
        return Ok(None);
    };
    let mut users = BTreeMap::new();
    for m in &s.modules {
        check_server_module(m)?;
        for (key, value) in &m.options {
            if let Some(user) = key.strip_prefix(USER_PREFIX) {
                users.insert(user.to_string(), Secret::new(value.clone()));
            }
        }
    }
    Ok(Some(JaasUsers { users }))
}

/// The `username` / `password` options of a DIGEST-MD5 client section (what the
/// reference's DigestLoginModule puts in the subject a learner logs in with).
#[derive(Debug, Clone, PartialEq)]
pub struct JaasLogin {
    /// The section's first line.
    pub line: usize,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// Parses a whole JAAS file and returns the login of client section `section`
/// (quorum SASL's `QuorumLearner`); `None` when the file has no such section or one
/// without a login module.
pub fn client_login(text: &str, section: &str) -> Result<Option<JaasLogin>, JaasError> {
    let Some(s) = find_section(parse(text)?, section) else {
        return Ok(None);
    };
    let mut login = JaasLogin {
        line: s.modules.first().map_or(0, |m| m.line),
        user: None,
        password: None,
    };
    for m in &s.modules {
        check_server_module(m)?;
        for (key, value) in &m.options {
            match key.as_str() {
                "username" => login.user = Some(value.clone()),
                "password" => login.password = Some(Secret::new(value.clone())),
                _ => {}
            }
        }
    }
    Ok(Some(login))
}

/// Section `name` if it names at least one login module: the JVM's
/// `ConfigFile` parses `Name { };` but `getAppConfigurationEntry` answers null for it,
/// so the reference treats an empty section as a missing one.
fn find_section(sections: Vec<Section>, name: &str) -> Option<Section> {
    sections
        .into_iter()
        .find(|s| s.name == name && !s.modules.is_empty())
}

fn check_server_module(m: &Module) -> Result<(), JaasError> {
    let why = match m.class.as_str() {
        DIGEST_LOGIN_MODULE => return Ok(()),
        KERBEROS_LOGIN_MODULE => format!(
            "{KERBEROS_LOGIN_MODULE}: Kerberos (GSSAPI) is out of scope in corral; \
             use {DIGEST_LOGIN_MODULE} with user_NAME=\"password\" options"
        ),
        other => format!(
            "login module `{other}` is not supported in a section corral reads; \
             corral supports {DIGEST_LOGIN_MODULE}"
        ),
    };
    Err(JaasError { line: m.line, why })
}

/// One login module line of a section.
#[derive(Debug)]
struct Module {
    line: usize,
    class: String,
    options: Vec<(String, String)>,
}

#[derive(Debug)]
struct Section {
    name: String,
    modules: Vec<Module>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word: letters, digits, `$ _ - * .` and any non-ASCII character.
    Word(String),
    Quoted(String),
    /// A token starting with a digit, which the JVM's tokenizer reads as a number.
    Number(String),
    Sym(char),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Quoted(q) => format!("\"{q}\""),
            Tok::Number(n) => format!("the number {n} (quote it)"),
            Tok::Sym(c) => format!("`{c}`"),
            Tok::Eof => "the end of the file".into(),
        }
    }
}

/// A tokenizer after the JVM's `StreamTokenizer` as `ConfigFile` sets it up.
struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || matches!(c, '$' | '_' | '*' | '-') || (c as u32) >= 0xA0
}

fn is_word_char(c: char) -> bool {
    is_word_start(c) || c.is_ascii_digit() || c == '.'
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
        }
    }

    fn err(&self, why: impl Into<String>) -> JaasError {
        JaasError {
            line: self.line,
            why: why.into(),
        }
    }

    /// Takes one character, counting lines (`\r\n` once).
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' || (c == '\r' && self.chars.peek() != Some(&'\n')) {
            self.line += 1;
        }
        Some(c)
    }

    /// The next token and the line it starts on.
    fn next(&mut self) -> Result<(Tok, usize), JaasError> {
        self.skip_blank()?;
        let line = self.line;
        let Some(&c) = self.chars.peek() else {
            return Ok((Tok::Eof, line));
        };
        let tok = match c {
            '{' | '}' | ';' | '=' => {
                self.bump();
                Tok::Sym(c)
            }
            '"' => {
                self.bump();
                Tok::Quoted(self.quoted(c)?)
            }
            // The JVM's tokenizer reads it as a quote, which `ConfigFile` then refuses.
            '\'' => return Err(self.err("single quotes are not accepted; use \"...\"")),
            c if c.is_ascii_digit() || c == '.' => Tok::Number(self.word()),
            c if is_word_start(c) => Tok::Word(self.word()),
            c => return Err(self.err(format!("unexpected character `{c}`"))),
        };
        Ok((tok, line))
    }

    fn word(&mut self) -> String {
        let mut w = String::new();
        while let Some(&c) = self.chars.peek() {
            if !is_word_char(c) {
                break;
            }
            w.push(c);
            self.bump();
        }
        w
    }

    /// Whitespace and comments.
    fn skip_blank(&mut self) -> Result<(), JaasError> {
        loop {
            match self.chars.peek() {
                Some(c) if c.is_whitespace() || (*c as u32) < 0x20 => {
                    self.bump();
                }
                Some('/') => {
                    self.bump();
                    match self.bump() {
                        Some('/') => while self.bump().is_some_and(|c| c != '\n' && c != '\r') {},
                        Some('*') => self.block_comment()?,
                        _ => return Err(self.err("a lone `/` (quote values that hold one)")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn block_comment(&mut self) -> Result<(), JaasError> {
        let start = self.line;
        let mut star = false;
        loop {
            match self.bump() {
                None => {
                    return Err(JaasError {
                        line: start,
                        why: "a `/*` comment is not closed".into(),
                    })
                }
                Some('/') if star => return Ok(()),
                Some(c) => star = c == '*',
            }
        }
    }

    /// A quoted string after its opening `quote`, with the tokenizer's escapes.
    fn quoted(&mut self, quote: char) -> Result<String, JaasError> {
        let start = self.line;
        let unclosed = || JaasError {
            line: start,
            why: "a quoted string is not closed on its line".into(),
        };
        let mut s = String::new();
        loop {
            match self.chars.peek() {
                None | Some('\n') | Some('\r') => return Err(unclosed()),
                _ => {}
            }
            let c = self.bump().expect("peeked a character");
            if c == quote {
                return Ok(s);
            }
            if c != '\\' {
                s.push(c);
                continue;
            }
            let Some(e) = self.bump() else {
                return Err(unclosed());
            };
            s.push(match e {
                'a' => '\u{7}',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'v' => '\u{b}',
                '0'..='7' => self.octal(e),
                other => other,
            });
        }
    }

    /// `\ooo`: up to three octal digits, at most \377.
    fn octal(&mut self, first: char) -> char {
        let mut v = first.to_digit(8).unwrap_or(0);
        let max_digits = if first <= '3' { 3 } else { 2 };
        for _ in 1..max_digits {
            match self.chars.peek().and_then(|c| c.to_digit(8)) {
                Some(d) => {
                    v = v * 8 + d;
                    self.bump();
                }
                None => break,
            }
        }
        char::from_u32(v).unwrap_or('\u{fffd}')
    }
}

/// A recursive-descent parser over the tokens, one token of lookahead.
struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    line: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, JaasError> {
        let mut lex = Lexer::new(text);
        let (tok, line) = lex.next()?;
        Ok(Parser { lex, tok, line })
    }

    fn advance(&mut self) -> Result<Tok, JaasError> {
        let (next, line) = self.lex.next()?;
        self.line = line;
        Ok(std::mem::replace(&mut self.tok, next))
    }

    fn err(&self, expected: &str) -> JaasError {
        JaasError {
            line: self.line,
            why: format!("expected {expected}, found {}", self.tok.describe()),
        }
    }

    fn expect_sym(&mut self, c: char) -> Result<(), JaasError> {
        if self.tok != Tok::Sym(c) {
            return Err(self.err(&format!("`{c}`")));
        }
        self.advance()?;
        Ok(())
    }

    /// A word or a quoted string.
    fn text(&mut self, what: &str) -> Result<String, JaasError> {
        match &self.tok {
            Tok::Word(_) | Tok::Quoted(_) => match self.advance()? {
                Tok::Word(s) | Tok::Quoted(s) => Ok(s),
                _ => unreachable!("the token was just matched"),
            },
            _ => Err(self.err(what)),
        }
    }

    fn section(&mut self) -> Result<Section, JaasError> {
        let name = self.text("a section name such as Server")?;
        self.expect_sym('{')?;
        let mut modules = Vec::new();
        while self.tok != Tok::Sym('}') {
            modules.push(self.module()?);
        }
        self.advance()?;
        self.expect_sym(';')?;
        Ok(Section { name, modules })
    }

    fn module(&mut self) -> Result<Module, JaasError> {
        let line = self.line;
        let class = self.text("a login module class name")?;
        let flag_line = self.line;
        let flag = self.text("a control flag (required, requisite, sufficient or optional)")?;
        if !matches!(
            flag.to_ascii_lowercase().as_str(),
            "required" | "requisite" | "sufficient" | "optional"
        ) {
            return Err(JaasError {
                line: flag_line,
                why: format!(
                    "invalid control flag `{flag}` (required, requisite, sufficient or optional)"
                ),
            });
        }
        let mut options = Vec::new();
        while self.tok != Tok::Sym(';') {
            let key = self.text("an option `key=value` or `;`")?;
            self.expect_sym('=')?;
            let value_line = self.line;
            let value = self.text("an option value")?;
            if value.contains("${") {
                return Err(JaasError {
                    line: value_line,
                    why: format!("option `{key}`: property expansion (${{...}}) is not supported"),
                });
            }
            options.push((key, value));
        }
        self.advance()?;
        Ok(Module {
            line,
            class,
            options,
        })
    }
}

fn parse(text: &str) -> Result<Vec<Section>, JaasError> {
    let mut p = Parser::new(text)?;
    let mut sections: Vec<Section> = Vec::new();
    while p.tok != Tok::Eof {
        let line = p.line;
        let s = p.section()?;
        if sections.iter().any(|o| o.name == s.name) {
            return Err(JaasError {
                line,
                why: format!("section `{}` appears more than once", s.name),
            });
        }
        sections.push(s);
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
// the server's users
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="adminsecret"
    /* two users */ user_bob="bob's \"secret\""
    user_alice=plain;
};
Client {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="bob"
    password="bobsecret";
};
"#;

    #[test]
    fn a_section_without_a_login_module_is_no_section() {
        let text = "Server {\n};\nQuorumLearner { };\nOther { x.Y required; };";
        assert_eq!(server_users(text, "Server").unwrap(), None);
        assert_eq!(client_login(text, "QuorumLearner").unwrap(), None);
        assert_eq!(server_users(text, "Missing").unwrap(), None);
        // Still parsed: a syntax error in an empty section is an error.
        assert!(server_users("Server { ;", "Server").is_err());
    }

    #[test]
    fn reads_the_server_users_of_the_reference_format() {
        let u = server_users(SAMPLE, "Server").unwrap().unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(u.password("super"), Some("adminsecret"));
        assert_eq!(u.password("bob"), Some("bob's \"secret\""));
        assert_eq!(u.password("alice"), Some("plain"));
        assert_eq!(u.password("username"), None);
        assert_eq!(server_users(SAMPLE, "Other").unwrap(), None);
        let empty = "Server { org.apache.zookeeper.server.auth.DigestLoginModule optional; };";
        assert!(server_users(empty, "Server").unwrap().unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "Server {\n m.Class required a=\"x\"\n",
                3,
                "expected an option",
            ),
            (
                "Server {\n m.Class sometimes;\n};",
                2,
                "invalid control flag `sometimes`",
            ),
            ("Server\n\n[", 3, "unexpected character `[`"),
            ("Server {\n m.C required k=\"open\n};", 2, "not closed"),
            (
                "Server {\n m.C required k=12345;\n};",
                2,
                "the number 12345",
            ),
            (
                "A { m.C required; };\n\nA { m.C required; };",
                3,
                "appears more than once",
            ),
            ("/* open\n\n", 1, "comment is not closed"),
            ("Server {\n m.C required k='v';\n};", 2, "single quotes"),
            (
                "Server {\n m.C required k=\"${user.home}\";\n};",
                2,
                "property expansion",
            ),
            (
                "Server { m.C required; }",
                1,
                "expected `;`, found the end of the file",
            ),
            (
                "Server {\n\n com.sun.security.auth.module.Krb5LoginModule required;\n};",
                3,
                "Kerberos (GSSAPI) is out of scope",
            ),
            (
                "Server {\n other.Module required user_a=\"b\";\n};",
                2,
                "login module `other.Module` is not supported",
            ),
        ];
        for (text, line, why) in cases {
            let e = server_users(text, "Server").unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.why.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn other_sections_may_name_any_module() {
        let text = "Client { com.sun.security.auth.module.Krb5LoginModule required; };";
        assert_eq!(server_users(text, "Server").unwrap(), None);
    }

    #[test]
    fn escapes_and_line_endings() {
        let text = "Server {\r\n m.X required; };";
        assert_eq!(server_users(text, "Server").unwrap_err().line, 2);
        let text = "Server { org.apache.zookeeper.server.auth.DigestLoginModule required \
                    user_a=\"t\\tab\\101\\\\\"; };";
        let u = server_users(text, "Server").unwrap().unwrap();
        assert_eq!(u.password("a"), Some("t\tabA\\"));
    }

    #[test]
    fn a_learner_section_gives_its_login() {
        let text = r#"
QuorumServer { org.apache.zookeeper.server.auth.DigestLoginModule required user_test="test"; };
QuorumLearner {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="test" password="pw";
};
Bare { org.apache.zookeeper.server.auth.DigestLoginModule required; };
Krb { com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true; };
"#;
        let login = client_login(text, "QuorumLearner").unwrap().unwrap();
        assert_eq!(login.line, 4);
        assert_eq!(login.user.as_deref(), Some("test"));
        assert_eq!(login.password.as_ref().map(Secret::expose), Some("pw"));
        let bare = client_login(text, "Bare").unwrap().unwrap();
        assert_eq!((bare.user, bare.password), (None, None));
        assert_eq!(client_login(text, "Missing").unwrap(), None);
        let err = client_login(text, "Krb").unwrap_err();
        assert_eq!(err.line, 8);
        assert!(err.why.contains("Kerberos"), "{err}");
        let users = server_users(text, "QuorumServer").unwrap().unwrap();
        assert_eq!(users.password("test"), Some("test"));
    }
}
