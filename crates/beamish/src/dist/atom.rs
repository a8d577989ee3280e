//! Atoms: interned names, like the BEAM's atom table.
//!
//! An [`Atom`] is a `u32` index into one table per OS process. Interning a
//! name that exists is a read-locked hash look-up; a new name is copied once
//! into leaked storage and never freed, as on the BEAM. The table is capped
//! ([`MAX_ATOMS`]) so that a peer flooding new atoms cannot grow memory
//! without bound: past the cap, [`Atom::new`] returns an error.
//!
//! The atoms the runtime itself needs (`normal`, `noconnection`,
//! `net_kernel`, …) sit at fixed indices and are constants of this module.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::RwLock;
use rustc_hash::{FxBuildHasher, FxHashMap};

/// The longest atom, in characters (Erlang's limit).
pub const MAX_ATOM_CHARS: usize = 255;
/// How many atoms one OS process may hold (the BEAM's default limit).
pub const MAX_ATOMS: usize = 1 << 20;

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = MAX_ATOMS / CHUNK;
const SHARDS: usize = 16;

/// An interned name: 4 bytes, `Copy`, compared by index.
///
/// ```
/// use beamish::dist::Atom;
/// let a = Atom::new("hello").unwrap();
/// assert_eq!(a, Atom::new("hello").unwrap());
/// assert_eq!(a.as_str(), "hello");
/// assert_eq!(a.to_string(), "hello");
/// assert_eq!(Atom::new("with space").unwrap().to_string(), "'with space'");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(u32);

/// Why a name could not become an atom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomError {
    /// More than [`MAX_ATOM_CHARS`] characters.
    TooLong,
    /// The table holds [`MAX_ATOMS`] atoms already.
    TableFull,
}

impl fmt::Display for AtomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtomError::TooLong => write!(f, "atom longer than {MAX_ATOM_CHARS} characters"),
            AtomError::TableFull => write!(f, "atom table full ({MAX_ATOMS} atoms)"),
        }
    }
}

impl std::error::Error for AtomError {}

struct Table {
    /// name -> index, sharded by hash so that interning from many threads
    /// rarely meets the same lock.
    shards: [RwLock<FxHashMap<&'static str, u32>>; SHARDS],
    /// index -> name, in chunks allocated on demand.
    chunks: [OnceLock<Box<[OnceLock<&'static str>]>>; CHUNKS],
    next: AtomicU32,
}

macro_rules! predefined {
    ($($(#[$doc:meta])* $name:ident = $text:literal;)*) => {
        const PREDEFINED: &[&str] = &[$($text),*];
        #[allow(non_camel_case_types, dead_code, clippy::upper_case_acronyms)]
        enum Index { $($name),* }
        impl Atom {
            $($(#[$doc])* pub const $name: Atom = Atom(Index::$name as u32);)*
        }
    };
}

predefined! {
    /// `''`
    EMPTY = "";
    /// `true`
    TRUE = "true";
    /// `false`
    FALSE = "false";
    /// `undefined`
    UNDEFINED = "undefined";
    /// `ok`
    OK = "ok";
    /// `error`
    ERROR = "error";
    /// `normal`
    NORMAL = "normal";
    /// `kill`
    KILL = "kill";
    /// `killed`
    KILLED = "killed";
    /// `shutdown`
    SHUTDOWN = "shutdown";
    /// `noproc`
    NOPROC = "noproc";
    /// `noconnection`
    NOCONNECTION = "noconnection";
    /// `panic`
    PANIC = "panic";
    /// `nonode@nohost`, the name of a node that is not distributed.
    NONODE = "nonode@nohost";
    /// `net_kernel`
    NET_KERNEL = "net_kernel";
    /// `$gen_call`
    GEN_CALL = "$gen_call";
    /// `is_auth`
    IS_AUTH = "is_auth";
    /// `yes`
    YES = "yes";
    /// `no`
    NO = "no";
    /// `EXIT`
    EXIT = "EXIT";
    /// `DOWN`
    DOWN = "DOWN";
    /// `process`
    PROCESS = "process";
    /// `nodeup`
    NODEUP = "nodeup";
    /// `nodedown`
    NODEDOWN = "nodedown";
    /// `notsup`
    NOTSUP = "notsup";
    /// `nil`
    NIL = "nil";
    /// `link`
    LINK = "link";
    /// `monitor`
    MONITOR = "monitor";
    /// `$gen_cast`
    GEN_CAST = "$gen_cast";
    /// `system`
    SYSTEM = "system";
    /// `alias`
    ALIAS = "alias";
    /// `erpc`
    ERPC = "erpc";
    /// `execute_call`
    EXECUTE_CALL = "execute_call";
    /// `execute_cast`
    EXECUTE_CAST = "execute_cast";
    /// `return`
    RETURN = "return";
    /// `throw`
    THROW = "throw";
    /// `exception`
    EXCEPTION = "exception";
    /// `undef`
    UNDEF = "undef";
    /// `badarg`
    BADARG = "badarg";
    /// `timeout`
    TIMEOUT = "timeout";
    /// `get_state`
    GET_STATE = "get_state";
    /// `get_status`
    GET_STATUS = "get_status";
    /// `status`
    STATUS = "status";
    /// `module`
    MODULE = "module";
    /// `gen_server`
    GEN_SERVER = "gen_server";
    /// `call`
    CALL = "call";
    /// `spawn_reply`
    SPAWN_REPLY = "spawn_reply";
    /// `exit`
    EXIT_LOWER = "exit";
    /// `calling_self`
    CALLING_SELF = "calling_self";
    /// `running`
    RUNNING = "running";
    /// `header`
    HEADER = "header";
    /// `data`
    DATA = "data";
    /// `nocatch`
    NOCATCH = "nocatch";
    /// `system_limit`
    SYSTEM_LIMIT = "system_limit";
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let t = Table {
            shards: std::array::from_fn(|_| RwLock::new(FxHashMap::default())),
            chunks: std::array::from_fn(|_| OnceLock::new()),
            next: AtomicU32::new(0),
        };
        for (i, name) in PREDEFINED.iter().enumerate() {
            let a = t.insert(name).unwrap_or(Atom::EMPTY);
            debug_assert_eq!(a.0 as usize, i);
        }
        t
    })
}

fn shard_of(name: &str) -> usize {
    (FxBuildHasher.hash_one(name) >> 60) as usize % SHARDS
}

impl Table {
    fn lookup(&self, name: &str) -> Option<Atom> {
        self.shards[shard_of(name)]
            .read()
            .get(name)
            .map(|&i| Atom(i))
    }

    fn insert(&self, name: &str) -> Result<Atom, AtomError> {
        let mut shard = self.shards[shard_of(name)].write();
        if let Some(&i) = shard.get(name) {
            return Ok(Atom(i));
        }
        let i = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                ((n as usize) < MAX_ATOMS).then_some(n + 1)
            })
            .map_err(|_| AtomError::TableFull)?;
        let text: &'static str = Box::leak(name.to_owned().into_boxed_str());
        let chunk = self.chunks[i as usize >> CHUNK_BITS]
            .get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
        let _ = chunk[i as usize & (CHUNK - 1)].set(text);
        shard.insert(text, i);
        Ok(Atom(i))
    }

    fn name(&self, i: u32) -> &'static str {
        self.chunks[i as usize >> CHUNK_BITS]
            .get()
            .and_then(|c| c[i as usize & (CHUNK - 1)].get())
            .copied()
            // An `Atom` is only made after its name is stored, and
            // handing it to another thread synchronises with that store.
            .unwrap_or("")
    }
}

impl Atom {
    /// Interns `name`, creating the atom if it is new.
    pub fn new(name: &str) -> Result<Atom, AtomError> {
        if name.chars().count() > MAX_ATOM_CHARS {
            return Err(AtomError::TooLong);
        }
        let t = table();
        match t.lookup(name) {
            Some(a) => Ok(a),
            None => t.insert(name),
        }
    }

    /// The atom named `name`, only if it exists already (never creates one).
    pub fn existing(name: &str) -> Option<Atom> {
        table().lookup(name)
    }

    /// The atom's name.
    pub fn as_str(self) -> &'static str {
        table().name(self.0)
    }

    /// The table index (stable within one OS process).
    pub const fn index(self) -> u32 {
        self.0
    }

    /// The atom at `index`, which must come from [`Atom::index`].
    pub(crate) const fn from_index(index: u32) -> Atom {
        Atom(index)
    }

    /// How many atoms exist in this OS process.
    pub fn count() -> usize {
        table().next.load(Ordering::Relaxed) as usize
    }

    /// True when Erlang prints the atom without quotes: a lowercase letter
    /// then letters, digits, `_` and `@` (Latin-1 letters count, as in
    /// `erl_scan`), and not a reserved word.
    fn is_bare(name: &str) -> bool {
        const RESERVED: &[&str] = &[
            "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor",
            "case", "catch", "cond", "div", "end", "fun", "if", "let", "not", "of", "or", "orelse",
            "receive", "rem", "try", "when", "xor",
        ];
        let lower = |c: char| c.is_ascii_lowercase() || ('ß'..='ÿ').contains(&c) && c != '÷';
        let upper = |c: char| c.is_ascii_uppercase() || ('À'..='Þ').contains(&c) && c != '×';
        let mut chars = name.chars();
        matches!(chars.next(), Some(c) if lower(c))
            && chars.all(|c| lower(c) || upper(c) || c.is_ascii_digit() || c == '_' || c == '@')
            && !RESERVED.contains(&name)
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.as_str();
        if Atom::is_bare(name) {
            f.write_str(name)
        } else {
            f.write_str("'")?;
            for c in name.chars() {
                match c {
                    '\'' => f.write_str("\\'")?,
                    '\\' => f.write_str("\\\\")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("'")
        }
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TryFrom<&str> for Atom {
    type Error = AtomError;
    fn try_from(name: &str) -> Result<Atom, AtomError> {
        Atom::new(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predefined_atoms_have_their_names() {
        assert_eq!(Atom::NORMAL.as_str(), "normal");
        assert_eq!(Atom::new("noconnection").unwrap(), Atom::NOCONNECTION);
        assert_eq!(Atom::EMPTY.to_string(), "''");
        assert_eq!(Atom::GEN_CALL.to_string(), "'$gen_call'");
        // As OTP 25's `~w`: Latin-1 letters are bare, reserved words quoted.
        for (name, shown) in [
            ("héllo", "héllo"),
            ("aÀ", "aÀ"),
            ("a×", "'a×'"),
            ("Àb", "'Àb'"),
            ("cond", "'cond'"),
            ("and", "'and'"),
            ("maybe", "maybe"),
            ("a.b", "'a.b'"),
            ("λ", "'λ'"),
        ] {
            assert_eq!(Atom::new(name).unwrap().to_string(), shown);
        }
        for (i, name) in PREDEFINED.iter().enumerate() {
            assert_eq!(Atom::new(name).unwrap().index() as usize, i);
        }
    }

    #[test]
    fn utf8_and_length_limit_in_characters() {
        let long: String = "ä".repeat(MAX_ATOM_CHARS);
        assert_eq!(Atom::new(&long).unwrap().as_str(), long);
        let too_long: String = "a".repeat(MAX_ATOM_CHARS + 1);
        assert_eq!(Atom::new(&too_long), Err(AtomError::TooLong));
    }

    #[test]
    fn existing_never_creates() {
        assert_eq!(Atom::existing("surely_not_an_atom_yet_7f3a"), None);
        let a = Atom::new("now_it_is_7f3a").unwrap();
        assert_eq!(Atom::existing("now_it_is_7f3a"), Some(a));
    }

    #[test]
    fn interning_from_many_threads_agrees() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..2000)
                        .map(|i| Atom::new(&format!("thr_{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Vec<Atom>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for v in &all[1..] {
            assert_eq!(v, &all[0]);
        }
        for (i, a) in all[0].iter().enumerate() {
            assert_eq!(a.as_str(), format!("thr_{i}"));
        }
    }
}
